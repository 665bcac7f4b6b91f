package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluice-proxy/sluice/internal/config"
)

// demoConfig is the embedded demo configuration; the %s are the demo
// backends' addresses.
const demoConfig = `
listen: "127.0.0.1:8080"
admin:
  listen: "127.0.0.1:9901"
access_log: stderr
health:
  active:
    path: /health
    interval: 2s
routes:
  - name: api
    path_prefix: /api
    backends:
      - http://%s
      - http://%s
      - http://%s
  - name: static
    path_prefix: /static
    strip_prefix: true
    backends:
      - http://%s
`

// startDemo starts four demo backends on free loopback ports: three for /api
// (the third fails one request in five with a 503) and one for /static,
// and makes the certificate of the demo's HTTPS listener. It returns the
// demo configuration and a function that stops the backends and removes
// the certificate.
func startDemo(log *slog.Logger) (*config.Config, func(), error) {
	var servers []*http.Server
	var addrs []any
	certDir, err := demoCertificate()
	if err != nil {
		return nil, nil, err
	}
	stop := func() {
		for _, s := range servers {
			s.Close()
		}
		os.RemoveAll(certDir)
	}
	for i, name := range []string{"api-1", "api-2", "api-3-flaky", "static"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			stop()
			return nil, nil, err
		}
		srv := &http.Server{Handler: demoBackend(name, i == 2, i == 3), ReadHeaderTimeout: 5 * time.Second}
		servers = append(servers, srv)
		addrs = append(addrs, ln.Addr().String())
		go srv.Serve(ln)
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(demoConfig, addrs...) +
		fmt.Sprintf(demoTLS, filepath.Join(certDir, "demo.crt"), filepath.Join(certDir, "demo.key"))))
	if err != nil {
		stop()
		return nil, nil, err
	}
	log.Info("demo backends started", "api", addrs[:3], "static", addrs[3])
	return cfg, stop, nil
}

func demoBackend(name string, flaky, static bool) http.Handler {
	var n atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			io.WriteString(w, "ok\n")
			return
		}
		if flaky && n.Add(1)%5 == 0 {
			http.Error(w, name+": failing now and then\n", http.StatusServiceUnavailable)
			return
		}
		if static {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintf(w, "static file %s from %s\n", r.URL.Path, name)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"backend":%q,"method":%q,"path":%q,"request_id":%q}`+"\n",
			name, r.Method, r.URL.RequestURI(), r.Header.Get("X-Request-Id"))
	})
}

// printDemoHelp prints what to try; ca is the CA file of the HTTPS
// listener's certificate, which is for localhost.
func printDemoHelp(w io.Writer, proxy, secure, ca, admin string) {
	_, port, _ := net.SplitHostPort(secure)
	fmt.Fprintf(w, strings.TrimLeft(`
sluice demo is running: proxy on http://%[1]s and https://localhost:%[3]s, admin on http://%[2]s
Dashboard: open http://%[2]s/ in a browser
Try:
  curl -i http://%[1]s/api/users           # round robin over three backends
  curl -i http://%[1]s/static/logo.png     # strip_prefix: the backend sees /logo.png
  curl -i http://%[1]s/nowhere             # 404 with a JSON error body
  curl -i --cacert %[4]s https://localhost:%[3]s/api/users    # HTTP/2 over TLS (or -k instead of --cacert)
  curl -i http://%[2]s/readyz
Stop with Ctrl-C (graceful drain).
`, "\n"), proxy, admin, port, ca)
}
