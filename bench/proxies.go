package main

// The proxies under test and the equivalent configuration each gets for a
// scenario: round robin over the scenario's upstreams, upstream keep-alive,
// no access log, no health checks, and for retry_get one retry on 503 to the
// other backend, without delay or budget in the way. In the balancer
// scenarios (slow_backend, flapping_backend) nginx balances by least_conn,
// HAProxy by leastconn, and sluice by the balancer of its variant: sluice
// round_robin (its default), sluice-lr least_request, sluice-ewma ewma.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"text/template"
	"time"
)

// proxy is one proxy implementation under test.
type proxy interface {
	// name is the proxy's name on the command line and in reports.
	name() string
	// command writes the proxy's configuration for c into c.dir and returns
	// the command line and extra environment that run it in the foreground.
	command(c proxyConfig) (argv, env []string, err error)
}

// proxyConfig is what a proxy needs to know to be configured for one run.
type proxyConfig struct {
	dir       string   // private scratch directory for config, pid and temp files
	logDir    string   // where log files go (the results folder)
	logName   string   // base name for this run's log files
	port      int      // the port to listen on, on 127.0.0.1
	adminPort int      // a second free port, for sluice's admin listener
	upstreams []string // host:port of each backend, in order
	retry     bool     // retry 503 once on the other backend (retry_get)
	accessLog bool     // sluice-log: write the JSON access log to a file in dir
	// leastConn: a balancer scenario; nginx least_conn, HAProxy leastconn
	// (sluice's balancer is its variant's, set by sluiceProxy.command).
	leastConn bool
	balancer  string // sluice's route balancer; "" leaves the key out (round_robin)
}

// sluiceProxy runs sluice with a YAML configuration as docs/configuration.md
// describes it.
// With accessLog it is "sluice-log": the same configuration with the JSON
// access log written to a file, to measure what the log costs. With a
// balancer it is "sluice-lr" (least_request) or "sluice-ewma" (ewma), run in
// the balancer scenarios; plain "sluice" has none and so round_robin.
type sluiceProxy struct {
	bin       string
	accessLog bool
	balancer  string
	baseline  bool // "sluice-baseline": another build (-baseline), configured as plain sluice
}

// sluiceVariants maps the names of sluice's balancer variants to their
// balancers.
var sluiceVariants = map[string]string{"sluice-lr": "least_request", "sluice-ewma": "ewma"}

func (p sluiceProxy) name() string {
	if p.baseline {
		return "sluice-baseline"
	}
	if p.accessLog {
		return "sluice-log"
	}
	for n, b := range sluiceVariants {
		if b == p.balancer {
			return n
		}
	}
	return "sluice"
}

// sluiceTemplate is the sluice configuration. Active checks are off and
// passive ejection is effectively off, like nginx max_fails=0 and HAProxy
// without "check", so that retry_get exercises the retry path on every other
// request. With retries on, backoff is 0 and the budget generous, because
// nginx and HAProxy retry at once and have no budget.
var sluiceTemplate = template.Must(template.New("sluice").Parse(`# sluice benchmark configuration (generated)
listen: "127.0.0.1:{{.port}}"
admin:
  listen: "127.0.0.1:{{.adminPort}}"
access_log: "{{if .accessLog}}{{.dir}}/access.log{{else}}off{{end}}"
health:
  active:
    path: ""
  passive:
    consecutive_failures: 1000000
{{- if .retry}}
retry:
  attempts: 2
  backoff: 0s
  on_status: [503]
  budget_percent: 100
  budget_min_per_second: 100000
{{- end}}
routes:
  - name: bench
    path_prefix: /
{{- if .balancer}}
    balancer: {{.balancer}}
{{- end}}
    backends:
{{- range .upstreams}}
      - http://{{.}}
{{- end}}
`))

func (p sluiceProxy) command(c proxyConfig) ([]string, []string, error) {
	cfg := filepath.Join(c.dir, "sluice.yaml")
	c.accessLog = p.accessLog
	c.balancer = p.balancer
	if err := renderTo(cfg, sluiceTemplate, c); err != nil {
		return nil, nil, err
	}
	// One scheduler thread, as nginx has one worker and HAProxy one thread.
	return []string{p.bin, "-config", cfg}, []string{"GOMAXPROCS=1"}, nil
}

// nginxProxy runs nginx in the foreground with a private prefix, so that it
// needs no privileges and touches nothing outside its scratch directory.
type nginxProxy struct{ bin string }

func (nginxProxy) name() string { return "nginx" }

// nginxTempPaths keeps every temp file of an nginx (a proxy's or the
// backends') inside its scratch directory, {{.dir}}.
const nginxTempPaths = `    client_body_temp_path {{.dir}}/client_body;
    proxy_temp_path {{.dir}}/proxy;
    fastcgi_temp_path {{.dir}}/fastcgi;
    uwsgi_temp_path {{.dir}}/uwsgi;
    scgi_temp_path {{.dir}}/scgi;
`

// nginxTemplate is the nginx configuration. Beyond the defaults it raises
// the keep-alive request limits (sluice and HAProxy have none), keeps 64 KiB
// request bodies and 256 KiB responses in memory instead of temp files, and
// widens the listen backlog to the kernel's somaxconn, which Go and HAProxy
// use too.
var nginxTemplate = template.Must(template.New("nginx").Parse(`# nginx benchmark configuration (generated)
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 65536;
pid {{.dir}}/nginx.pid;
error_log {{.logDir}}/{{.logName}}.error.log warn;

events {
    worker_connections 8192;
}

http {
    access_log off;
` + nginxTempPaths + `
    keepalive_timeout 60s;
    keepalive_requests 1000000;
    client_max_body_size 16m;
    client_body_buffer_size 128k;
    proxy_buffer_size 16k;
    proxy_buffers 8 32k;
    proxy_busy_buffers_size 64k;
    proxy_max_temp_file_size 0;

    upstream backends {
{{- if .leastConn}}
        least_conn;
{{- end}}
{{- range .upstreams}}
        server {{.}} max_fails=0;
{{- end}}
        keepalive 64;
        keepalive_requests 1000000;
    }

    server {
        listen 127.0.0.1:{{.port}} backlog=4096;
        location / {
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
{{- if .retry}}
            proxy_next_upstream error timeout http_503;
            proxy_next_upstream_tries 2;
{{- end}}
        }
    }
}
`))

func (p nginxProxy) command(c proxyConfig) ([]string, []string, error) {
	cfg := filepath.Join(c.dir, "nginx.conf")
	if err := renderTo(cfg, nginxTemplate, c); err != nil {
		return nil, nil, err
	}
	// -e: the error log used before the configuration is read (nginx 1.19.5+);
	// -p: the prefix, so that no default path under /var is used.
	return []string{p.bin, "-p", c.dir, "-c", cfg, "-e", filepath.Join(c.logDir, c.logName+".error.log")}, nil, nil
}

// haproxyProxy runs HAProxy in the foreground (-db) with one thread.
type haproxyProxy struct{ bin string }

func (haproxyProxy) name() string { return "haproxy" }

// haproxyTemplate is the HAProxy configuration: no "log" line (no logging),
// servers without "check", idle server connections shared by all clients
// (http-reuse always), and for retry_get "retries 1" with "retry-on 503" and
// "option redispatch" so that the retry goes to the other server; leastconn
// in the balancer scenarios.
var haproxyTemplate = template.Must(template.New("haproxy").Parse(`# HAProxy benchmark configuration (generated)
global
    nbthread 1
    maxconn {{.maxconn}}

defaults
    mode http
    maxconn {{.maxconn}}
    option http-keep-alive
    http-reuse always
    timeout connect 3s
    timeout client 60s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 60s

frontend bench
    bind 127.0.0.1:{{.port}}
    default_backend backends

backend backends
    balance {{if .leastConn}}leastconn{{else}}roundrobin{{end}}
{{- if .retry}}
    retries 1
    retry-on 503
    option redispatch
{{- end}}
{{- range $i, $u := .upstreams}}
    server s{{$i}} {{$u}}
{{- end}}
`))

func (p haproxyProxy) command(c proxyConfig) ([]string, []string, error) {
	cfg := filepath.Join(c.dir, "haproxy.cfg")
	if err := renderTo(cfg, haproxyTemplate, c); err != nil {
		return nil, nil, err
	}
	return []string{p.bin, "-f", cfg, "-db"}, nil, nil
}

// haproxyMaxconn returns a connection limit for HAProxy that its file
// descriptor limit can hold (it needs two descriptors per proxied
// connection), up to 10,000 and at least 1,100 for many_conns; HAProxy
// refuses to start when it cannot raise its limit far enough.
func haproxyMaxconn() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 4096
	}
	return int(min(10000, max(1100, (int64(rl.Cur)-200)/2)))
}

// renderTo executes t with c's fields and writes the result to path.
func renderTo(path string, t *template.Template, c proxyConfig) error {
	var buf bytes.Buffer
	err := t.Execute(&buf, map[string]any{
		"dir": c.dir, "logDir": c.logDir, "logName": c.logName,
		"port": c.port, "adminPort": c.adminPort,
		"upstreams": c.upstreams, "retry": c.retry, "accessLog": c.accessLog,
		"leastConn": c.leastConn, "balancer": c.balancer,
		"maxconn": haproxyMaxconn(),
	})
	if err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// proxyProcess is a running proxy.
type proxyProcess struct {
	name    string
	cmd     *exec.Cmd
	exited  chan struct{} // closed once the process has been waited for
	waitErr error         // valid once exited is closed
	logFile string
	pids    []int // the process and its descendants, set once ready
}

// startProxy configures and starts p, pinned with pin (a taskset prefix, or
// nil), and waits until GET readyPath through it answers 200.
func startProxy(ctx context.Context, p proxy, c proxyConfig, pin []string, readyPath string) (*proxyProcess, error) {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, err
	}
	// nginx started as root runs its worker as nobody, which must be able to
	// reach the temp paths inside c.dir.
	if err := os.Chmod(c.dir, 0o755); err != nil {
		return nil, err
	}
	argv, env, err := p.command(c)
	if err != nil {
		return nil, err
	}
	argv = append(append([]string{}, pin...), argv...)
	logFile := filepath.Join(c.logDir, c.logName+".log")
	logf, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Dir = c.dir
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", p.name(), err)
	}
	pp := &proxyProcess{name: p.name(), cmd: cmd, exited: make(chan struct{}), logFile: logFile}
	go func() {
		pp.waitErr = cmd.Wait()
		close(pp.exited)
	}()

	url := fmt.Sprintf("http://127.0.0.1:%d%s", c.port, readyPath)
	if err := waitStatus(ctx, url, 200, 15*time.Second, pp.exited); err != nil {
		pp.stop()
		return nil, fmt.Errorf("%s not ready: %w\n%s", p.name(), err, tail(logFile, 20))
	}
	pp.pids = processTree(cmd.Process.Pid)
	return pp, nil
}

// alive reports whether the proxy process is still running.
func (pp *proxyProcess) alive() bool {
	select {
	case <-pp.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits up to 15 seconds for the proxy to exit, then
// kills it and every process of its tree (an nginx worker would otherwise
// outlive a killed master).
func (pp *proxyProcess) stop() {
	if !pp.alive() {
		return
	}
	_ = pp.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-pp.exited:
		return
	case <-time.After(15 * time.Second):
	}
	for _, pid := range processTree(pp.cmd.Process.Pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	<-pp.exited
}

// exitError describes an unexpected exit of the proxy, or returns nil.
func (pp *proxyProcess) exitError() error {
	if pp.alive() {
		return nil
	}
	if pp.waitErr != nil {
		return fmt.Errorf("%s exited: %w\n%s", pp.name, pp.waitErr, tail(pp.logFile, 20))
	}
	return fmt.Errorf("%s exited early\n%s", pp.name, tail(pp.logFile, 20))
}

// tail returns the last n lines of a log file, indented, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return "  (no log output in " + path + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + path + ":\n    " + strings.Join(lines, "\n    ")
}

// newProxies returns the proxies named in names, in that order. Those whose
// binaries are not installed are left out with a message on skipped; sluice
// is built from the module with "go build".
func newProxies(names []string, root, tmp, sluiceBin, baselineBin string) (ps []proxy, skipped []string, err error) {
	for _, n := range names {
		switch n {
		case "sluice-baseline":
			if baselineBin == "" {
				return nil, nil, errors.New("sluice-baseline needs -baseline, the path of the sluice build to compare with")
			}
			ps = append(ps, sluiceProxy{bin: baselineBin, baseline: true})
		case "sluice", "sluice-log", "sluice-lr", "sluice-ewma":
			if sluiceBin == "" {
				sluiceBin = filepath.Join(tmp, "sluice")
				if err := buildSluice(root, sluiceBin); err != nil {
					return nil, nil, err
				}
			}
			ps = append(ps, sluiceProxy{bin: sluiceBin, accessLog: n == "sluice-log", balancer: sluiceVariants[n]})
		case "go-std":
			exe, err := os.Executable()
			if err != nil {
				return nil, nil, fmt.Errorf("go-std runs this executable again: %w", err)
			}
			ps = append(ps, goStdProxy{bin: exe})
		case "nginx", "haproxy":
			bin, err := exec.LookPath(n)
			if err != nil {
				skipped = append(skipped, fmt.Sprintf("%s: not installed (%v), skipped", n, err))
				continue
			}
			if n == "nginx" {
				ps = append(ps, nginxProxy{bin: bin})
			} else {
				ps = append(ps, haproxyProxy{bin: bin})
			}
		default:
			return nil, nil, fmt.Errorf("unknown proxy %q (want sluice, sluice-baseline, sluice-log, sluice-lr, sluice-ewma, nginx, haproxy or go-std)", n)
		}
	}
	if len(ps) == 0 {
		return nil, skipped, errors.New("no proxy to benchmark")
	}
	return ps, skipped, nil
}

// buildSluice runs "go build -o bin ./cmd/sluice" in the module root.
func buildSluice(root, bin string) error {
	// A static build, as sluice ships: without cgo the binary maps no C
	// library, which is about 1 MiB less resident memory.
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/sluice")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build ./cmd/sluice: %w\n%s", err, out)
	}
	return nil
}

// proxyVersion returns the first line of the proxy's version output.
func proxyVersion(p proxy) string {
	var argv []string
	switch p := p.(type) {
	case sluiceProxy:
		argv = []string{p.bin, "-version"}
	case nginxProxy:
		argv = []string{p.bin, "-v"}
	case haproxyProxy:
		argv = []string{p.bin, "-v"}
	case goStdProxy:
		return "Go's net/http server, " + runtime.Version() + ", answering from memory (a reference, not a proxy)"
	}
	out, _ := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// Interface guards.
var (
	_ proxy = sluiceProxy{}
	_ proxy = nginxProxy{}
	_ proxy = haproxyProxy{}
	_ proxy = goStdProxy{}
)
