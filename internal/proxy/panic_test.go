package proxy

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/h1"
)

// TestPanicClosesOnlyItsConnection: a panic while a request is served
// (here, as its response is about to be relayed, holding a backend
// connection) closes that client's connection without an answer and is
// reported with its stack; the request stops counting as in flight, the
// backend connection it held is closed rather than pooled, and another
// client connection goes on being served throughout.
func TestPanicClosesOnlyItsConnection(t *testing.T) {
	h, _ := benchRuntime(t, cannedBackend(t))
	testHookRespond = func(path string) {
		if path == "/api/panic" {
			panic("boom")
		}
	}
	t.Cleanup(func() { testHookRespond = nil })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	panics := make(chan string, 4)
	srv := &h1.Server{Handler: h, MaxHeaderBytes: 64 << 10, HeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute,
		OnPanic: func(v any, stack []byte) { panics <- v.(string) + "\n" + string(stack) }}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		ln.Close()
		srv.CloseAll()
		<-done
	})
	dial := func() *rawClient {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return &rawClient{c: c, br: bufio.NewReaderSize(c, 64<<10)}
	}
	const ok = "GET /api/users HTTP/1.1\r\nHost: example.com\r\n\r\n"
	steady := dial()
	if status, _ := steady.do(t, ok); status != 200 {
		t.Fatalf("status %d before the panic, want 200", status)
	}
	pool := h.Runtime().Routes[0].Pools[0]
	if n := pool.IdleCount(); n != 1 {
		t.Fatalf("%d idle backend connections, want 1", n)
	}

	victim := dial()
	victim.c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(victim.c, "GET /api/panic HTTP/1.1\r\nHost: example.com\r\n\r\n")
	rest, err := io.ReadAll(victim.br)
	if err != nil || len(rest) != 0 {
		t.Fatalf("the panicking request's client read %q, %v; want its connection closed with nothing sent", rest, err)
	}
	select {
	case report := <-panics:
		if !strings.HasPrefix(report, "boom\n") || !strings.Contains(report, "proxy.(*exchange).respond") {
			t.Fatalf("OnPanic got %q, want the value and a stack through respond", report[:min(len(report), 300)])
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnPanic was not called")
	}
	if n := h.InFlight(); n != 0 {
		t.Errorf("%d requests in flight after the panic, want 0", n)
	}
	if b := h.Runtime().Routes[0].Backends[0]; b.InFlight() != 0 {
		t.Errorf("the backend has %d requests in flight after the panic, want 0", b.InFlight())
	}
	if n := pool.IdleCount(); n != 0 {
		t.Errorf("%d idle backend connections after the panic, want 0 (the one the request held is closed, not pooled)", n)
	}
	for i := 0; i < 3; i++ {
		if status, body := steady.do(t, ok); status != 200 || len(body) != 100 {
			t.Fatalf("after the panic, the other connection got %d %q, want 200", status, body)
		}
	}
}
