package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/sluice-proxy/sluice/internal/accesslog"
	"github.com/sluice-proxy/sluice/internal/backend"
	"github.com/sluice-proxy/sluice/internal/config"
	"github.com/sluice-proxy/sluice/internal/metrics"
	"github.com/valyala/fasthttp"
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

func benchRuntime(tb testing.TB, addr string) (*Handler, *Transport) {
	return benchRuntimeWith(tb, addr, metrics.New(func() float64 { return 0 }))
}

func benchRuntimeWith(tb testing.TB, addr string, m *metrics.Metrics) (*Handler, *Transport) {
	cfg, err := config.Parse([]byte("access_log: \"off\"\nhealth: {active: {path: \"\"}}\nroutes:\n  - path_prefix: /api\n    backends: [http://" + addr + "]\n"))
	if err != nil {
		tb.Fatal(err)
	}
	t := NewTransport(0)
	tb.Cleanup(t.Close)
	return NewHandler(Build(cfg, t, nil, nopEvents{}, m), nil), t
}

// BenchmarkServe is one proxied GET through the handler: admission, routing,
// the upstream request over a pooled loopback connection, and the response
// relayed into the engine's response; without metrics and access log, with
// metrics, and with both.
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
		l := accesslog.New(io.Discard, nil)
		defer l.Close()
		h.AccessLog.Store(l)
		benchServe(b, h)
	})
}

func benchServe(b *testing.B, h *Handler) {
	var req fasthttp.Request
	req.Header.DisableNormalizing()
	raw := "GET /api/users?id=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
	if err := req.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		b.Fatal(err)
	}
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555}, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ctx.Response.Reset()
		h.Serve(&ctx)
		if ctx.Response.StatusCode() != 200 || len(ctx.Response.Body()) != 100 {
			b.Fatalf("status %d body %q", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

func TestServeOverCannedBackend(t *testing.T) {
	h, tr := benchRuntime(t, cannedBackend(t))
	var req fasthttp.Request
	req.Header.DisableNormalizing()
	raw := "GET /api/users HTTP/1.1\r\nHost: example.com\r\n\r\n"
	if err := req.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555}, nil)
	for i := 0; i < 3; i++ {
		ctx.Response.Reset()
		h.Serve(&ctx)
		if ctx.Response.StatusCode() != 200 || !bytes.Equal(ctx.Response.Body(), bytes.Repeat([]byte("x"), 100)) {
			t.Fatalf("status %d body %q", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
	// The three requests shared one pooled connection.
	rt := h.Runtime()
	if n := rt.Routes[0].Pools[0].idleCount(); n != 1 {
		t.Fatalf("idle connections = %d, want 1", n)
	}
	_ = tr
}

type nopEvents struct{}

func (nopEvents) Transition(string, *backend.Backend, backend.State, backend.State, string) {}

// BenchmarkHeaderReceived is the engine hook run for every request with a
// body: it must not allocate.
func BenchmarkHeaderReceived(b *testing.B) {
	h, _ := benchRuntime(b, cannedBackend(b))
	var hdr fasthttp.RequestHeader
	hdr.DisableNormalizing()
	raw := "POST /api/upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: 65536\r\n\r\n"
	if err := hdr.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if cfg := h.HeaderReceived(&hdr); cfg.ReadTimeout == 0 {
			b.Fatal("no route found for the body")
		}
	}
}
