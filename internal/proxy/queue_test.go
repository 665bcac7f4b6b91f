package proxy

import (
	"bufio"
	"context"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPartlyWrittenRequestGoesOut: a request head too big for what the
// upstream socket takes at once (the backend, with a small receive buffer,
// reads nothing for a while) is written on in a write that waits, and the
// backend gets all of it before it answers.
func TestPartlyWrittenRequestGoesOut(t *testing.T) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10) })
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	filler := strings.Repeat("f", 60<<10)
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		time.Sleep(50 * time.Millisecond) // let the proxy's write fill the socket
		br := bufio.NewReaderSize(c, 128<<10)
		var head strings.Builder
		for {
			line, err := br.ReadString('\n')
			head.WriteString(line)
			if err != nil || line == "\r\n" {
				break
			}
		}
		got <- head.String()
		c.Write([]byte("HTTP/1.1 204 No Content\r\n\r\n"))
	}()

	h, _ := benchRuntimeWith(t, ln.Addr().String(), nil)
	// The request goes out on a pooled connection with a small send
	// buffer, so that it cannot be written whole at once.
	pool := h.Runtime().Routes[0].Pools[0]
	c, err := pool.dial(context.Background(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.nc.(*net.TCPConn).SetWriteBuffer(4 << 10)
	pool.put(c, time.Now(), 0)

	cl := serveEngine(t, h)
	status, body := cl.do(t, "GET /api/big HTTP/1.1\r\nHost: example.com\r\nX-Filler: "+filler+"\r\n\r\n")
	if status != 204 {
		t.Fatalf("status %d, body %q; want 204", status, body)
	}
	head := <-got
	if !strings.HasPrefix(head, "GET /api/big HTTP/1.1\r\n") || !strings.Contains(head, "\r\nX-Filler: "+filler+"\r\n") || !strings.HasSuffix(head, "\r\n\r\n") {
		t.Fatalf("the backend got a head of %d bytes that is not the whole request", len(head))
	}
}
