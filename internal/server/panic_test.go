package server

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/config"
	"github.com/sluice-proxy/sluice/internal/h1"
)

// panicky wraps the proxy's handler and panics on the path /panic, as a
// bug in the request path would.
type panicky struct{ h1.Handler }

func (p panicky) Serve(c *h1.Conn) {
	if string(c.Target) == "/panic" {
		panic("injected for the test")
	}
	p.Handler.Serve(c)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestPanicIsContainedAndCounted: a panic while one connection is served
// closes that connection, is logged with its stack and counted in
// sluice_panics_total; the server goes on serving other connections.
func TestPanicIsContainedAndCounted(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(be.Close)
	cfg, err := config.Parse([]byte(`listen: "127.0.0.1:0"
admin:
  listen: "127.0.0.1:0"
access_log: "off"
health:
  active:
    path: ""
routes:
  - path_prefix: /
    backends: [` + be.URL + `]
`))
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	s, err := New(cfg, "", slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s.engine.Handler = panicky{s.engine.Handler}
	s.Serve()
	t.Cleanup(func() { s.Shutdown() })

	client := &http.Client{Timeout: 5 * time.Second}
	get := func(path string) (int, string) {
		resp, err := client.Get("http://" + s.Addr().String() + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/before"); code != 200 || body != "ok" {
		t.Fatalf("GET /before = %d %q", code, body)
	}

	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /panic HTTP/1.1\r\nHost: x\r\n\r\n")
	if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
		t.Fatalf("the panicking request's connection gave %q, %v; want it closed with nothing sent", b, err)
	}

	for i := 0; i < 3; i++ {
		if code, body := get("/after"); code != 200 || body != "ok" {
			t.Fatalf("GET /after = %d %q, want 200 ok", code, body)
		}
	}
	_, metrics := getAdmin(t, s, "/metrics")
	if !strings.Contains(metrics, "\nsluice_panics_total 1\n") {
		t.Errorf("/metrics does not count the panic:\n%s", grepLines(metrics, "sluice_panics"))
	}
	if l := logs.String(); !strings.Contains(l, "injected for the test") || !strings.Contains(l, "goroutine ") {
		t.Errorf("the panic was not logged with its stack:\n%s", l)
	}
}

func getAdmin(t *testing.T, s *Server, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + s.AdminAddr().String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
