package proxy

import (
	"bufio"
	"bytes"
	"context"
	"github.com/sluice-proxy/sluice/internal/upstream"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/accesslog"
	"github.com/sluice-proxy/sluice/internal/backend"
	"github.com/sluice-proxy/sluice/internal/config"
	"github.com/sluice-proxy/sluice/internal/h1"
	"github.com/sluice-proxy/sluice/internal/metrics"
)

// cannedBackend answers every request on a keep-alive connection with the
// same small response, as fast as it can, over real loopback sockets.
func cannedBackend(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	body := strings.Repeat("x", 100)
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n" + body)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					// Requests in this benchmark have no body: read to the
					// empty line.
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) == 2 {
							break
						}
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func benchRuntime(tb testing.TB, addr string) (*Handler, *upstream.Transport) {
	return benchRuntimeWith(tb, addr, metrics.New(func() float64 { return 0 }))
}

func benchRuntimeWith(tb testing.TB, addr string, m *metrics.Metrics) (*Handler, *upstream.Transport) {
	cfg, err := config.Parse([]byte("access_log: \"off\"\nhealth: {active: {path: \"\"}}\nroutes:\n  - path_prefix: /api\n    backends: [http://" + addr + "]\n"))
	if err != nil {
		tb.Fatal(err)
	}
	t := upstream.NewTransport(0)
	tb.Cleanup(t.Close)
	return NewHandler(Build(cfg, t, nil, nopEvents{}, m), nil), t
}

// BenchmarkServe is one proxied keep-alive GET, from a client over a real
// loopback connection, through the h1 engine and the handler: admission,
// routing, the upstream request over a pooled loopback connection, and the
// response written back; without metrics and access log, with metrics, and
// with both. The client does not allocate, so allocs/op are the proxy's.
func BenchmarkServe(b *testing.B) {
	addr := cannedBackend(b)
	b.Run("bare", func(b *testing.B) {
		h, _ := benchRuntimeWith(b, addr, nil)
		benchServe(b, h)
	})
	b.Run("metrics", func(b *testing.B) {
		h, _ := benchRuntime(b, addr)
		benchServe(b, h)
	})
	b.Run("metrics+accesslog", func(b *testing.B) {
		h, _ := benchRuntime(b, addr)
		l := accesslog.New(io.Discard, nil, nil)
		defer l.Close()
		h.AccessLog.Store(l)
		benchServe(b, h)
	})
}

func benchServe(b *testing.B, h *Handler) {
	cl := serveEngine(b, h)
	req := "GET /api/users?id=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		status, body := cl.do(b, req)
		if status != 200 || len(body) != 100 {
			b.Fatalf("status %d body %q", status, body)
		}
	}
}

func TestServeOverCannedBackend(t *testing.T) {
	h, _ := benchRuntime(t, cannedBackend(t))
	cl := serveEngine(t, h)
	for i := 0; i < 3; i++ {
		status, body := cl.do(t, "GET /api/users HTTP/1.1\r\nHost: example.com\r\n\r\n")
		if status != 200 || string(body) != strings.Repeat("x", 100) {
			t.Fatalf("status %d body %q", status, body)
		}
	}
	// The three requests shared one pooled connection.
	rt := h.Runtime()
	if n := rt.Routes[0].Pools[0].IdleCount(); n != 1 {
		t.Fatalf("idle connections = %d, want 1", n)
	}
}

// serveEngine serves h on a loopback listener with the h1 engine, and
// returns a keep-alive client connection to it.
func serveEngine(tb testing.TB, h *Handler) *rawClient {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &h1.Server{Handler: h, MaxHeaderBytes: 64 << 10, HeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		c.Close()
		srv.Shutdown(context.Background())
		<-done
	})
	return &rawClient{c: c, br: bufio.NewReaderSize(c, 128<<10)}
}

// rawClient sends raw requests on one connection and reads responses
// framed by Content-Length, without allocating.
type rawClient struct {
	c    net.Conn
	br   *bufio.Reader
	req  []byte
	body []byte
}

func (cl *rawClient) do(tb testing.TB, req string) (int, []byte) {
	tb.Helper()
	cl.c.SetDeadline(time.Now().Add(10 * time.Second))
	cl.req = append(cl.req[:0], req...)
	if _, err := cl.c.Write(cl.req); err != nil {
		tb.Fatal(err)
	}
	status, length := 0, 0
	for first := true; ; first = false {
		line, err := cl.br.ReadSlice('\n')
		if err != nil {
			tb.Fatalf("reading the response: %v", err)
		}
		if first {
			if len(line) < 12 {
				tb.Fatalf("status line %q", line)
			}
			status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
			continue
		}
		if len(line) == 2 {
			break
		}
		if len(line) > 16 && bytes.EqualFold(line[:15], []byte("Content-Length:")) {
			for _, ch := range bytes.TrimSpace(line[15:]) {
				length = length*10 + int(ch-'0')
			}
		}
	}
	if cap(cl.body) < length {
		cl.body = make([]byte, length)
	}
	cl.body = cl.body[:length]
	if _, err := io.ReadFull(cl.br, cl.body); err != nil {
		tb.Fatalf("reading the body: %v", err)
	}
	return status, cl.body
}

type nopEvents struct{}

func (nopEvents) Transition(string, *backend.Backend, backend.State, backend.State, string) {}
