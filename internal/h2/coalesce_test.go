package h2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a real loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) { return tcpPairBuffers(t, 0) }

// tcpPairBuffers is tcpPair with socket buffers of size bytes (0: the
// system's), set before the connection is made so that the window the
// client advertises is small from the start.
func tcpPairBuffers(t *testing.T, size int) (client, server net.Conn) {
	t.Helper()
	control := func(_, _ string, rc syscall.RawConn) error {
		if size == 0 {
			return nil
		}
		return rc.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, size)
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, size)
		})
	}
	lc := net.ListenConfig{Control: control}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	d := net.Dialer{Control: control}
	client, err = d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// countingConn counts the writes that reach the socket under a coalescer.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestCoalescesWritesOfOnePass: what the server writes while it keeps the
// scheduler (here: three writes in a row, as a HEADERS frame, a DATA frame
// and another stream's frames) reaches the socket in one send, in order.
func TestCoalescesWritesOfOnePass(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	client, server := tcpPair(t)
	cc := &countingConn{Conn: server}
	c := newCoalescer(cc, 5*time.Second)
	parts := []string{"HEADERS;", "DATA;", "OTHER-STREAM;"}
	for _, p := range parts {
		if n, err := c.Write([]byte(p)); n != len(p) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", p, n, err)
		}
	}
	want := "HEADERS;DATA;OTHER-STREAM;"
	got := make([]byte, len(want))
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("peer read %q, want %q", got, want)
	}
	if n := cc.writes.Load(); n != 1 {
		t.Errorf("%d sends for three writes made without yielding, want 1", n)
	}
}

// TestCoalescerKeepsBytesAndOrder: writers taking turns (as the server's
// frame writes do, one at a time) through a slow-reading peer: every byte
// arrives, in order, though the pending bound makes writers wait.
func TestCoalescerKeepsBytesAndOrder(t *testing.T) {
	client, server := tcpPair(t)
	c := newCoalescer(server, 10*time.Second)
	const total = 4 << 20
	src := make([]byte, total)
	for i := range src {
		src[i] = byte(i*7 + i>>10)
	}
	want := sha256.Sum256(src)
	done := make(chan error, 1)
	go func() {
		var mu sync.Mutex // the server writes one frame at a time
		var wg sync.WaitGroup
		next := 0
		var werr error
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					mu.Lock()
					if next >= total || werr != nil {
						mu.Unlock()
						return
					}
					n := min(1+(next*31)%20000, total-next)
					_, err := c.Write(src[next : next+n])
					next += n
					if err != nil {
						werr = err
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if werr == nil {
			werr = c.Close()
		}
		done <- werr
	}()
	h := sha256.New()
	buf := make([]byte, 3000) // a slow reader: small reads
	var got int
	client.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		n, err := client.Read(buf)
		h.Write(buf[:n])
		got += n
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read after %d bytes: %v", got, err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got != total || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("peer got %d bytes (checksum match %v), want %d intact", got, bytes.Equal(h.Sum(nil), want[:]), total)
	}
}

// TestCoalescerBoundsAStalledClient: a peer that reads nothing makes
// writes wait once maxPending is held, and the send that cannot go out
// within the timeout fails every later write; nothing grows without end.
func TestCoalescerBoundsAStalledClient(t *testing.T) {
	_, server := tcpPair(t)
	c := newCoalescer(server, 300*time.Millisecond)
	chunk := make([]byte, 16<<10)
	var written int
	var err error
	start := time.Now()
	for written < 256<<20 {
		var n int
		if n, err = c.Write(chunk); err != nil {
			break
		}
		written += n
	}
	if err == nil {
		t.Fatalf("256 MiB written to a peer that reads nothing")
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("write error %v, want a timeout", err)
	}
	if time.Since(start) > 20*time.Second {
		t.Errorf("the stalled write took %v to fail", time.Since(start))
	}
	if _, again := c.Write(chunk); again == nil {
		t.Error("a write after the failed send succeeded")
	}
	c.Close()
}

// TestCoalescerCloseSendsWhatWasWritten: a last frame written just before
// Close (a GOAWAY) reaches the peer, then the connection ends; Close does
// not wait for it, and writes after it fail.
func TestCoalescerCloseSendsWhatWasWritten(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	client, server := tcpPair(t)
	c := newCoalescer(server, 5*time.Second)
	if _, err := c.Write([]byte("GOAWAY")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after Close: %v, want net.ErrClosed", err)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "GOAWAY" {
		t.Fatalf("peer read %q before the end, want %q", got, "GOAWAY")
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v, want net.ErrClosed", err)
	}
}

// closeConn reports when the coalescer closes the socket.
type closeConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (c *closeConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// TestCoalescerCloseCutsAStalledSend: Close returns at once even when a
// send is stuck on a peer that reads nothing, and the socket is closed
// within closeFlush, not after the send's own timeout.
func TestCoalescerCloseCutsAStalledSend(t *testing.T) {
	// Small socket buffers: the pending bytes cannot all fit, so a send
	// that the peer does not read is stuck (for a minute, but for the cut).
	_, server := tcpPairBuffers(t, 4096)
	cc := &closeConn{Conn: server, closed: make(chan struct{})}
	c := newCoalescer(cc, time.Minute)
	released := stall(t, c)
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Close waited %v", d)
	}
	select {
	case <-cc.closed:
	case <-time.After(closeFlush + 5*time.Second):
		t.Fatalf("the socket was still open %v after Close", closeFlush+5*time.Second)
	}
	<-released // the waiting writer is released with an error
}

// TestCoalescerDeadlines: the server's write deadlines do nothing (the
// coalescer bounds its sends itself); SetDeadline still bounds reads.
func TestCoalescerDeadlines(t *testing.T) {
	_, server := tcpPair(t)
	c := newCoalescer(server, time.Minute)
	if err := c.SetWriteDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatalf("write after a past write deadline: %v", err)
	}
	if err := c.SetDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past SetDeadline: %v, want a timeout", err)
	}
}

// TestCoalescerCloseCutsAStalledTLSSend: over TLS, as sluice uses it, a send
// stuck on a peer that reads nothing is cut within closeFlush of Close too
// (a TLS connection closed during a write closes its socket at once,
// without the alert that would wait for the write).
func TestCoalescerCloseCutsAStalledTLSSend(t *testing.T) {
	cert, err := tls.LoadX509KeyPair("../config/testdata/tls/a.crt", "../config/testdata/tls/a.key")
	if err != nil {
		t.Fatal(err)
	}
	client, server := tcpPairBuffers(t, 4096)
	under := &closeConn{Conn: server, closed: make(chan struct{})}
	ts := tls.Server(under, &tls.Config{Certificates: []tls.Certificate{cert}})
	tc := tls.Client(client, &tls.Config{InsecureSkipVerify: true})
	shaken := make(chan error, 1)
	go func() { shaken <- tc.Handshake() }()
	if err := ts.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-shaken; err != nil {
		t.Fatal(err)
	}
	c := newCoalescer(ts, time.Minute)
	released := stall(t, c)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-under.closed:
	case <-time.After(closeFlush + 5*time.Second):
		t.Fatalf("the socket was still open %v after Close", closeFlush+5*time.Second)
	}
	<-released
}

// stall writes to c, whose peer reads nothing over small socket buffers,
// until a send is stuck and the pending bound is nearly reached again: a
// chunk more than maxPending handed over means a batch of at least a chunk
// was taken to be sent, more than the socket buffers take. The returned
// channel closes when the writer, then held by the bound, gets an error.
func stall(t *testing.T, c *coalescer) <-chan struct{} {
	t.Helper()
	chunk := make([]byte, 16<<10)
	released := make(chan struct{})
	var handed atomic.Int64
	go func() {
		defer close(released)
		for {
			n, err := c.Write(chunk)
			handed.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		full := handed.Load() >= maxPending+int64(len(chunk)) && c.pend != nil && len(*c.pend) > maxPending-len(chunk)
		c.mu.Unlock()
		if full {
			return released
		}
		if time.Now().After(deadline) {
			t.Fatal("the writes never filled the pending bound")
		}
		runtime.Gosched()
	}
}
