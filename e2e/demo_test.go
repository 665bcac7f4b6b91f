package e2e

import (
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemo runs "sluice -demo", which binds the fixed ports 127.0.0.1:8080
// and 127.0.0.1:9901; it skips when either is busy.
func TestDemo(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"127.0.0.1:8080", "127.0.0.1:9901"} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("%s is busy: %v", addr, err)
		}
		l.Close()
	}
	p := launch(t, "-demo")
	p.Addr, p.Admin = "127.0.0.1:8080", "127.0.0.1:9901"
	if err := p.waitReady(); err != nil {
		t.Fatal(err)
	}

	resp, body := get(t, "http://127.0.0.1:8080/api/")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /api/ = %d %q, want 200 from a demo backend", resp.StatusCode, body)
	}
	if resp.Header.Get("Content-Type") == "application/json" && len(body) > 0 && body[0] == '{' {
		// A proxy error would have this shape; a demo answer should not
		// carry the proxy's error word.
		for _, w := range []string{`"no_route"`, `"upstream_error"`, `"no_healthy_backend"`} {
			if strings.Contains(string(body), w) {
				t.Errorf("GET /api/ answered by the proxy, not a demo backend: %s", body)
			}
		}
	}
	if id := resp.Header.Get("X-Request-Id"); !validRequestID(id) {
		t.Errorf("X-Request-Id = %q, want one", id)
	}
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(10 * time.Second); code != 0 {
		t.Errorf("exit code = %d, want 0", code)
	}
}
