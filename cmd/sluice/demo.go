package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
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
// (the third fails one request in five with a 503) and one for /static. It
// returns the demo configuration and a function that stops them.
func startDemo(log *slog.Logger) (*config.Config, func(), error) {
	var servers []*http.Server
	var addrs []any
	stop := func() {
		for _, s := range servers {
			s.Close()
		}
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
	cfg, err := config.Parse([]byte(fmt.Sprintf(demoConfig, addrs...)))
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

func printDemoHelp(w io.Writer, proxy, admin string) {
	fmt.Fprintf(w, strings.TrimLeft(`
sluice demo is running: proxy on http://%[1]s, admin on http://%[2]s
Dashboard: open http://%[2]s/ in a browser
Try:
  curl -i http://%[1]s/api/users           # round robin over three backends
  curl -i http://%[1]s/static/logo.png     # strip_prefix: the backend sees /logo.png
  curl -i http://%[1]s/nowhere             # 404 with a JSON error body
  curl -i http://%[2]s/readyz
Stop with Ctrl-C (graceful drain).
`, "\n"), proxy, admin)
}
