package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/config"
	"github.com/sluice-proxy/sluice/internal/h1"
	"github.com/sluice-proxy/sluice/internal/upstream"
)

// TestRedirect checks the Location of tls.redirect_http's 308s: the Host
// without its port, the HTTPS port unless it is 443, the target as
// received; and that a request with no Host to redirect to gets 400.
func TestRedirect(t *testing.T) {
	cfg, err := config.Parse([]byte(`
access_log: "off"
health: {active: {path: ""}}
tls:
  listen: "127.0.0.1:0"
  redirect_http: true
  certificates: [{cert: ../config/testdata/tls/a.crt, key: ../config/testdata/tls/a.key}]
routes: [{path_prefix: /, backends: ["http://127.0.0.1:1"]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	tr := upstream.NewTransport(0)
	t.Cleanup(tr.Close)
	rt := Build(cfg, tr, nil, nopEvents{}, nil)
	// serve serves a handler whose HTTPS port is port, and returns its
	// address.
	serve := func(port int) string {
		h := NewHandler(rt, nil)
		h.TLSPort = port
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &h1.Server{Handler: h, MaxHeaderBytes: 64 << 10, HeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Shutdown(context.Background()) })
		return ln.Addr().String()
	}

	tests := []struct {
		name   string
		port   int
		req    string
		status int
		want   string
	}{
		{"origin-form", 8443, "GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\n\r\n", 308, "https://example.com:8443/a/b?c=d"},
		{"port dropped", 8443, "POST /x HTTP/1.1\r\nHost: example.com:80\r\nContent-Length: 2\r\n\r\nhi", 308, "https://example.com:8443/x"},
		{"443 left out", 443, "GET /x HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", 308, "https://example.com/x"},
		{"IPv6 keeps its brackets", 443, "GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n", 308, "https://[2001:db8::1]/"},
		{"IPv6 without a port", 8443, "GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n", 308, "https://[::1]:8443/"},
		{"absolute-form", 443, "GET http://other.example:81/p?q HTTP/1.1\r\nHost: example.com\r\n\r\n", 308, "https://other.example/p?q"},
		{"absolute-form without a path", 443, "GET http://other.example?q HTTP/1.1\r\nHost: example.com\r\n\r\n", 308, "https://other.example/?q"},
		{"HTTP/1.0 without Host", 443, "GET /x HTTP/1.0\r\n\r\n", 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", serve(tt.port))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, tt.req)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status || resp.Header.Get("Location") != tt.want {
				t.Errorf("%d Location %q, want %d %q", resp.StatusCode, resp.Header.Get("Location"), tt.status, tt.want)
			}
			if resp.Header.Get("X-Request-Id") == "" || tt.status == 308 && resp.ContentLength != 0 {
				t.Errorf("X-Request-Id %q, Content-Length %d", resp.Header.Get("X-Request-Id"), resp.ContentLength)
			}
			if tt.status == 308 && !strings.HasPrefix(resp.Status, "308 Permanent Redirect") {
				t.Errorf("status line %q", resp.Status)
			}
		})
	}
}
