// Command sluice is an HTTP reverse proxy and load balancer. Its command
// line and configuration are described in docs/configuration.md.
package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/sluice-proxy/sluice/internal/config"
	"github.com/sluice-proxy/sluice/internal/gcfloor"
	"github.com/sluice-proxy/sluice/internal/server"
)

// gcHeapFloor is the least heap goal of the garbage collector (see
// gcfloor): a collection is due only once the heap reaches it, unless GOGC
// or GOMEMLIMIT is set.
const gcHeapFloor = 16 << 20

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "path of the YAML configuration file")
	check := fs.Bool("check", false, "validate the configuration and exit")
	demo := fs.Bool("demo", false, "run on an embedded demo configuration with built-in demo backends")
	showVersion := fs.Bool("version", false, "print the version and exit")
	logFormat := fs.String("log-format", "json", "log format: json or text")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	pprof := fs.Bool("pprof", false, "serve runtime profiles on the admin listener under /debug/pprof/")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "sluice", currentVersion())
		return 0
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}

	var cfg *config.Config
	var stopDemo func()
	switch {
	case *demo:
		cfg, stopDemo, err = startDemo(log)
		if err != nil {
			fmt.Fprintln(stderr, "demo:", err)
			return 1
		}
		defer stopDemo()
	case *configPath == "":
		fmt.Fprintln(stderr, "sluice: -config is required (or -demo); see -help")
		return 2
	default:
		cfg, err = config.Load(*configPath)
	}
	if err != nil {
		printConfigErrors(stderr, err)
		return 1
	}
	if *check {
		for _, w := range cfg.Warnings {
			fmt.Fprintln(stderr, "warning:", w)
		}
		fmt.Fprintln(stdout, "configuration ok")
		return 0
	}
	for _, w := range cfg.Warnings {
		log.Warn("configuration warning", "warning", w)
	}
	stopFloor, floorOn := gcfloor.Floor(gcHeapFloor)
	defer stopFloor()
	log.Debug("garbage collector", "heap_goal_floor_bytes", gcHeapFloor, "floor_on", floorOn)

	// Signals are taken before any listener is bound: from the moment
	// /readyz can answer, a SIGHUP reloads and a SIGTERM drains, instead of
	// Go's default action ending the process.
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(signals)

	opts := []server.Option{server.WithVersion(currentVersion())}
	if *pprof {
		opts = append(opts, server.WithPprof())
	}
	srv, err := server.New(cfg, *configPath, log, opts...)
	if err != nil {
		fmt.Fprintln(stderr, "sluice:", err)
		return 1
	}
	srv.Serve()
	log.Info("sluice started", "version", currentVersion(), "listen", addrString(srv.Addr()), "tls_listen", addrString(srv.TLSAddr()),
		"admin", addrString(srv.AdminAddr()), "routes", len(cfg.Routes))
	if *demo {
		ca := filepath.Join(filepath.Dir(cfg.TLS.Certificates[0].Cert), "ca.pem")
		printDemoHelp(stdout, srv.Addr().String(), srv.TLSAddr().String(), ca, addrString(srv.AdminAddr()))
	}

	for {
		select {
		case err := <-srv.Errors():
			log.Error("listener failed", "error", err.Error())
			srv.Shutdown()
			return 1
		case sig := <-signals:
			if sig == syscall.SIGHUP {
				srv.ReloadFile()
				continue
			}
			srv.Shutdown()
			return 0
		}
	}
}

// printConfigErrors prints every configuration problem on its own line.
func printConfigErrors(w io.Writer, err error) {
	for _, line := range server.Problems(err) {
		fmt.Fprintln(w, line)
	}
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level: %q: must be debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format: %q: must be json or text", format)
}

func addrString(a interface{ String() string }) string {
	if a == nil {
		return ""
	}
	return a.String()
}
