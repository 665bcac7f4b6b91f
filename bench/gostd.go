package main

// go-std: a reference, not a proxy. In the HTTPS scenarios it is Go's own
// HTTP server (net/http, with its HTTP/2 server and crypto/tls) answering
// /api/users from memory, pinned and measured like the proxies. It forwards
// nothing, so its CPU per request is a floor for any Go program that serves
// through net/http: sluice's HTTP/2 listener is that server with sluice's
// proxy behind it. Set beside nginx's figure, it says how much of sluice's
// cost in h2_get is the library's and how much is sluice's own.

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-proxy/sluice/internal/gcfloor"
)

// goStdEnv, when set, turns this executable into the go-std server: its
// value is the plain port, then optionally the HTTPS port, the certificate
// file and the key file, comma-separated.
const goStdEnv = "SLUICE_BENCH_GOSTD"

// goStdHeapFloor is the heap floor sluice's binary sets (cmd/sluice), so
// that the two differ in what serves the requests, not in how often the
// collector runs.
const goStdHeapFloor = 16 << 20

// goStdProxy runs the go-std server (this executable, re-executed).
type goStdProxy struct{ bin string }

func (goStdProxy) name() string { return "go-std" }

// command serves the plain port only; tlsProxy adds the HTTPS listener.
func (p goStdProxy) command(c proxyConfig) ([]string, []string, error) {
	return []string{p.bin}, []string{goStdEnv + "=" + strconv.Itoa(c.port)}, nil
}

// goStdTLSEnv is the environment that gives the go-std server its HTTPS
// listener on port with files' certificate, in place of env's plain-only
// setting.
func goStdTLSEnv(env []string, port int, files tlsFiles) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, goStdEnv+"="); ok {
			kv = fmt.Sprintf("%s=%s,%d,%s,%s", goStdEnv, v, port, files.cert, files.key)
		}
		out = append(out, kv)
	}
	return out
}

// goStdSettings is goStdEnv's value, parsed.
type goStdSettings struct {
	plain, tls int
	cert, key  string
}

func parseGoStd(v string) (goStdSettings, error) {
	f := strings.Split(v, ",")
	if len(f) != 1 && len(f) != 4 {
		return goStdSettings{}, fmt.Errorf("%s=%q: want PORT or PORT,TLSPORT,CERT,KEY", goStdEnv, v)
	}
	var s goStdSettings
	var err error
	if s.plain, err = strconv.Atoi(f[0]); err != nil {
		return goStdSettings{}, fmt.Errorf("%s: plain port: %w", goStdEnv, err)
	}
	if len(f) == 4 {
		if s.tls, err = strconv.Atoi(f[1]); err != nil {
			return goStdSettings{}, fmt.Errorf("%s: HTTPS port: %w", goStdEnv, err)
		}
		s.cert, s.key = f[2], f[3]
	}
	return s, nil
}

// goStdHandler answers /api/users with the backends' body, and 404
// elsewhere: the answer a proxy in front of the backends relays.
func goStdHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/users", func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = []string{"application/json"}
		w.Write(usersJSON)
	})
	return mux
}

// maybeServeGoStd runs the go-std server and returns true when goStdEnv is
// set; it returns false at once otherwise.
func maybeServeGoStd() bool {
	v := os.Getenv(goStdEnv)
	if v == "" {
		return false
	}
	if err := serveGoStd(v); err != nil {
		fmt.Fprintln(os.Stderr, "go-std:", err)
		os.Exit(1)
	}
	return true
}

// serveGoStd serves until SIGTERM or SIGINT.
func serveGoStd(v string) error {
	s, err := parseGoStd(v)
	if err != nil {
		return err
	}
	stop, _ := gcfloor.Floor(goStdHeapFloor)
	defer stop()
	h := goStdHandler()
	errc := make(chan error, 2)
	var servers []*http.Server
	listen := func(port int, srv *http.Server) error {
		ln, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			return err
		}
		servers = append(servers, srv)
		go func() {
			if srv.TLSConfig != nil {
				errc <- srv.ServeTLS(ln, "", "")
			} else {
				errc <- srv.Serve(ln)
			}
		}()
		return nil
	}
	if err := listen(s.plain, &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}); err != nil {
		return err
	}
	if s.tls != 0 {
		cert, err := tls.LoadX509KeyPair(s.cert, s.key)
		if err != nil {
			return err
		}
		var protos http.Protocols
		protos.SetHTTP1(true)
		protos.SetHTTP2(true)
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, Protocols: &protos,
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}}
		if err := listen(s.tls, srv); err != nil {
			return err
		}
	}
	fmt.Printf("go-std (%s) serving on 127.0.0.1:%d (plain) and :%d (HTTPS)\n", runtime.Version(), s.plain, s.tls)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	for _, srv := range servers {
		srv.Close()
	}
	return nil
}
