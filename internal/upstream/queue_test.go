package upstream

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPartlyWrittenRequestGoesOut: a request head too big for what the
// upstream socket takes at once (the backend, with a small receive buffer,
// reads nothing for a while) is written on by AwaitHead in a write that
// waits, and the backend gets all of it before it answers.
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

	tr := NewTransport(time.Minute)
	t.Cleanup(tr.Close)
	c, err := tr.Pool("http", ln.Addr().String(), "").Dial(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A small send buffer, so that the request cannot be written whole at
	// once.
	c.nc.(*net.TCPConn).SetWriteBuffer(4 << 10)
	req := "GET /api/big HTTP/1.1\r\nHost: example.com\r\nX-Filler: " + filler + "\r\n\r\n"
	if !c.Queue([]byte(req), 5*time.Second) {
		t.Fatal("a fresh connection did not take a queued request")
	}
	var h Head
	if err := c.AwaitHead(&h, time.Now(), 5*time.Second, false, nil); err != nil {
		t.Fatalf("AwaitHead: %v", err)
	}
	if h.Status != 204 || !c.Written() || !c.ResponseStarted() || c.Reused() {
		t.Fatalf("status %d, written %v, response started %v, reused %v; want 204, true, true, false",
			h.Status, c.Written(), c.ResponseStarted(), c.Reused())
	}
	if head := <-got; head != req {
		t.Fatalf("the backend got a head of %d bytes that is not the whole request of %d", len(head), len(req))
	}
}

// TestResponseStartedOnPartialHead: a backend that sends part of a head
// and closes leaves the connection reporting that a response began, so
// that the caller knows it must not resend a request that is not
// idempotent; one that closes before answering reports none.
func TestResponseStartedOnPartialHead(t *testing.T) {
	for _, tt := range []struct {
		name    string
		answer  string
		started bool
	}{
		{"part of a head", "HTTP/1.1 200 OK\r\nContent-", true},
		{"nothing", "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, c, server := dialTestPool(t)
			go func() {
				b := make([]byte, 64)
				server.Read(b)
				io.WriteString(server, tt.answer)
				server.Close()
			}()
			if !c.Queue([]byte("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"), time.Second) {
				t.Fatal("a fresh connection did not take a queued request")
			}
			var h Head
			err := c.AwaitHead(&h, time.Now(), 5*time.Second, false, nil)
			if err == nil {
				t.Fatal("AwaitHead succeeded on a cut head")
			}
			if c.ResponseStarted() != tt.started || !c.Written() {
				t.Fatalf("ResponseStarted %v, Written %v after %v; want %v, true", c.ResponseStarted(), c.Written(), err, tt.started)
			}
		})
	}
}

// TestAwaitHeadClientGone: a wait for a slow backend asks the gone check
// every PollInterval and ends with ErrClientGone when it says so.
func TestAwaitHeadClientGone(t *testing.T) {
	_, c, _ := dialTestPool(t)
	calls := 0
	gone := func() bool { calls++; return calls == 2 }
	var h Head
	t0 := time.Now()
	err := c.AwaitHead(&h, t0, time.Minute, false, gone)
	if err != ErrClientGone {
		t.Fatalf("AwaitHead = %v, want ErrClientGone", err)
	}
	if d := time.Since(t0); d < 2*PollInterval-PollInterval/8 || d > 10*PollInterval {
		t.Errorf("the wait ended after %v, want after about two poll intervals (%v each)", d, PollInterval)
	}
}

// FuzzResponse checks that a backend's response head and chunked body,
// whatever they are, are parsed without panic or hang.
func FuzzResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 204 No Content\r\nKeep-Alive: timeout=5\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;a=\"b\"\r\nok\r\n0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(raw), 4096)
		var h Head
		if err := h.read(br); err != nil {
			return
		}
		if h.Status < 100 || h.Status > 599 {
			t.Fatalf("status %d", h.Status)
		}
		if h.Chunked {
			var cr chunkedReader
			cr.reset(br)
			n, _ := io.Copy(io.Discard, &cr)
			if n > int64(len(raw)) {
				t.Fatalf("decoded %d bytes from %d", n, len(raw))
			}
		}
	})
}
