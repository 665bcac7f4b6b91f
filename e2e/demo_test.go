package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemo runs "sluice -demo", which binds the fixed ports 127.0.0.1:8080,
// 127.0.0.1:8443 and 127.0.0.1:9901; it skips when one is busy.
func TestDemo(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"127.0.0.1:8080", "127.0.0.1:8443", "127.0.0.1:9901"} {
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

	// The HTTPS listener, with the CA the printed curl line names.
	m := regexp.MustCompile(`--cacert (\S+) (https://\S+)`).FindStringSubmatch(p.stdout.String())
	if m == nil {
		t.Fatalf("no curl line with --cacert in the demo's help:\n%s", p.stdout.String())
	}
	pem, err := os.ReadFile(m[1])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true, DisableKeepAlives: true}}
	resp, err = c.Get(m[2])
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/2.0" {
		t.Errorf("GET %s = %s %d, want HTTP/2.0 200", m[2], resp.Proto, resp.StatusCode)
	}
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(10 * time.Second); code != 0 {
		t.Errorf("exit code = %d, want 0", code)
	}
}
