package upstream

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/fairpoll"
	"github.com/sluice-proxy/sluice/internal/wire"
)

func TestPeerOpen(t *testing.T) {
	p, c, server := dialTestPool(t)
	if !c.peerOpen() {
		t.Fatal("an open idle connection was reported closed")
	}
	server.Close()
	deadline := time.Now().Add(2 * time.Second)
	for c.peerOpen() {
		if time.Now().After(deadline) {
			t.Fatal("a connection the peer closed is still reported open")
		}
		time.Sleep(time.Millisecond)
	}
	// A connection idle for longer than checkAfter is checked, and one the
	// peer closed is never handed out again.
	p.put(c, time.Now(), 0)
	c.idleSince = time.Now().Add(-time.Second)
	c2, err := p.Get(time.Now(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.nc.Close()
	if c2 == c || c2.Reused() {
		t.Fatal("the pool reused a connection its peer had closed")
	}
}

// TestPooledConnectionReusedAfterDeadline: a connection whose last read
// deadline has passed while it sat idle is still reused.
func TestPooledConnectionReusedAfterDeadline(t *testing.T) {
	p, _ := testPool(t)
	c, err := p.Dial(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.nc.Close()
	c.setSocketDeadline(time.Now().Add(time.Millisecond))
	p.put(c, time.Now(), 0)
	c.idleSince = time.Now().Add(-time.Second)
	time.Sleep(5 * time.Millisecond) // the behaviour under test: the deadline passes
	c2, err := p.Get(time.Now(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c2 != c {
		t.Fatal("an open idle connection was not reused because its old deadline had passed")
	}
}

// TestDialSlots: a dial waits for one of the pool's dial slots, and when
// none frees up within dialSlotWait it dials anyway, on its own goroutine;
// either way the slots end as they were.
func TestDialSlots(t *testing.T) {
	p, _ := testPool(t)
	for range dialSlots {
		p.slots <- struct{}{}
	}
	t0 := time.Now()
	c, err := p.Dial(5 * time.Second)
	if err != nil {
		t.Fatalf("dial with every slot taken: %v, want a connection (dialed without a slot)", err)
	}
	c.nc.Close()
	if d := time.Since(t0); d < dialSlotWait || d > dialSlotWait+time.Second {
		t.Errorf("dial with every slot taken returned after %v, want after waiting %v for a slot", d, dialSlotWait)
	}
	if n := len(p.slots); n != dialSlots {
		t.Errorf("%d slots taken after a dial without one, want %d", n, dialSlots)
	}

	// A slot freed while the dial waits lets it through on a goroutine of
	// its own, without waiting out dialSlotWait, and the slot comes back
	// after.
	go func() {
		time.Sleep(dialSlotWait / 5) // the event under test: a slot frees up meanwhile
		<-p.slots
	}()
	t0 = time.Now()
	c, err = p.Dial(5 * time.Second)
	if err != nil {
		t.Fatalf("dial after a slot freed: %v", err)
	}
	c.nc.Close()
	if d := time.Since(t0); d >= dialSlotWait {
		t.Errorf("dial took %v, want it through as soon as a slot freed (before dialSlotWait, %v)", d, dialSlotWait)
	}
	if n := len(p.slots); n != dialSlots-1 {
		t.Errorf("%d slots taken after the dial, want %d (the dial gives its slot back)", n, dialSlots-1)
	}

	// A short connect timeout bounds the wait for a slot too.
	t0 = time.Now()
	p.slots <- struct{}{}
	c, err = p.Dial(10 * time.Millisecond)
	if err != nil {
		t.Fatalf("dial with a 10ms connect timeout: %v", err)
	}
	c.nc.Close()
	if d := time.Since(t0); d >= dialSlotWait {
		t.Errorf("dial with a 10ms connect timeout waited %v for a slot, want at most the timeout", d)
	}
}

// TestReadFirst: a connection waits for a response without a read buffer,
// takes one holding the first bytes when they come, reads on through it,
// and gives it back when it returns to its pool.
func TestReadFirst(t *testing.T) {
	p, c, server := dialTestPool(t)
	if c.br != nil {
		t.Fatal("a fresh connection holds a read buffer before any response")
	}

	// Nothing arrives: the wait ends at the deadline, holding nothing.
	c.setSocketDeadline(time.Now().Add(30 * time.Millisecond))
	if err := c.readFirst(); !wire.IsTimeout(err) {
		t.Fatalf("readFirst with nothing sent = %v, want a timeout", err)
	}
	if c.br != nil || c.scratch != nil {
		t.Fatal("a wait that timed out kept a buffer")
	}

	head := "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
	go func() {
		time.Sleep(20 * time.Millisecond)
		io.WriteString(server, head)
	}()
	c.setSocketDeadline(time.Now().Add(5 * time.Second))
	if err := c.readFirst(); err != nil {
		t.Fatalf("readFirst: %v", err)
	}
	if c.br == nil || c.br.Buffered() != len(head) {
		t.Fatalf("after the first read the buffer holds %v bytes, want the %d of the head", c.br, len(head))
	}
	if c.scratch != nil {
		t.Error("the scratch buffer was kept after the first read")
	}
	got, _ := c.br.Peek(len(head))
	if string(got) != head {
		t.Fatalf("buffered %q, want %q", got, head)
	}
	c.br.Discard(len(head))
	io.WriteString(server, "hello")
	body := make([]byte, 5)
	if _, err := io.ReadFull(c.br, body); err != nil || string(body) != "hello" {
		t.Fatalf("reading on through the buffer = %q, %v; want hello", body, err)
	}

	p.put(c, time.Now(), 0)
	if c.br != nil {
		t.Error("an idle pooled connection still holds its read buffer")
	}

	// The backend closes: the wait ends with EOF.
	c2, err := p.Get(time.Now(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	server.Close()
	c2.setSocketDeadline(time.Now().Add(5 * time.Second))
	if err := c2.readFirst(); !errors.Is(err, io.EOF) {
		t.Errorf("readFirst after the backend closed = %v, want EOF", err)
	}
}

// testPool returns a pool for a local listener, and the connections the
// listener accepts, in order; everything is closed at cleanup.
func testPool(t *testing.T) (*Pool, <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			select {
			case accepted <- c:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	tr := NewTransport(time.Minute)
	t.Cleanup(tr.Close)
	if inFairPoller {
		fp, err := fairpoll.New()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fp.Close() })
		tr.UsePoller(fp)
	}
	return tr.Pool("http", ln.Addr().String(), ""), accepted
}

// inFairPoller makes testPool's connections wait in a fair poller, as
// sluice's do (TestInFairPoller).
var inFairPoller bool

// TestInFairPoller runs the tests of waits for an answer with connections
// that wait in a fairpoll.Poller rather than in Go's poller.
func TestInFairPoller(t *testing.T) {
	inFairPoller = true
	defer func() { inFairPoller = false }()
	for name, test := range map[string]func(*testing.T){
		"ReadFirst": TestReadFirst, "ReadFirstWritesQueued": TestReadFirstWritesQueued,
		"ResponseStartedOnPartialHead": TestResponseStartedOnPartialHead, "AwaitHeadClientGone": TestAwaitHeadClientGone,
		"PooledConnectionReusedAfterDeadline": TestPooledConnectionReusedAfterDeadline,
		"ArrivedIsReceiveTime":                TestArrivedIsReceiveTime,
	} {
		t.Run(name, test)
	}
}

// TestFairPollerJoined: with a poller, a dialed plain connection waits in
// it; one hijacked for a tunnel leaves it.
func TestFairPollerJoined(t *testing.T) {
	inFairPoller = true
	defer func() { inFairPoller = false }()
	_, c, _ := dialTestPool(t)
	if !c.fair.Live() {
		t.Fatal("a plain connection of a transport with a poller does not wait in it")
	}
	c.Hijack()
	if c.fair.Live() {
		t.Fatal("a hijacked connection still waits in the poller")
	}
}

// dialTestPool dials a connection of a testPool and returns the pool, the
// connection and the listener's side of it, all closed at cleanup.
func dialTestPool(t *testing.T) (*Pool, *Conn, net.Conn) {
	t.Helper()
	p, accepted := testPool(t)
	c, err := p.Dial(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.nc.Close() })
	return p, c, <-accepted
}

// TestReadFirstWritesQueued: a request queued on a connection goes out in
// readFirst's call, which then waits for the answer; one that does not fit
// the socket's buffer is handed back, in part, for the caller to write.
func TestReadFirstWritesQueued(t *testing.T) {
	_, c, server := dialTestPool(t)

	req := "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	head := "HTTP/1.1 204 No Content\r\n\r\n"
	got := make(chan string, 1)
	go func() {
		b := make([]byte, len(req))
		io.ReadFull(server, b)
		got <- string(b)
		io.WriteString(server, head)
	}()
	if !c.Queue([]byte(req), time.Second) {
		t.Fatal("a fresh connection did not take a queued request")
	}
	c.setSocketDeadline(time.Now().Add(5 * time.Second))
	if err := c.readFirst(); err != nil {
		t.Fatalf("readFirst with a request queued: %v", err)
	}
	if r := <-got; r != req {
		t.Fatalf("the backend read %q, want %q", r, req)
	}
	if len(c.queued) != 0 {
		t.Errorf("%d bytes still queued after the write", len(c.queued))
	}
	if b, _ := c.br.Peek(c.br.Buffered()); string(b) != head {
		t.Fatalf("buffered %q, want the answer %q", b, head)
	}
	c.br.Discard(len(head))
	if c.Queue([]byte(req), time.Second) {
		t.Fatal("a connection holding its read buffer took a queued request")
	}
	c.detach() // as its pool does

	// The backend reads nothing: a big request fills the socket's buffers
	// and what is left comes back.
	c.nc.(*net.TCPConn).SetWriteBuffer(4 << 10)
	big := bytes.Repeat([]byte("x"), 8<<20)
	if !c.Queue(big, time.Second) {
		t.Fatal("the connection did not take a queued request")
	}
	if err := c.readFirst(); err != errQueuedPartly {
		t.Fatalf("readFirst with %d bytes queued to a backend that reads nothing = %v, want errQueuedPartly", len(big), err)
	}
	sent := len(big) - len(c.queued)
	if sent == 0 || len(c.queued) == 0 {
		t.Fatalf("%d bytes went out and %d are left, want some of each", sent, len(c.queued))
	}
	if c.scratch != nil {
		t.Error("a write that did not finish took a read buffer")
	}

	// The backend goes away without reading what it was sent, which
	// resets the connection: the next write fails, as a write.
	server.Close()
	if !c.Queue([]byte(req), time.Second) {
		t.Fatal("the connection did not take a queued request")
	}
	err := c.readFirst()
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "write" {
		t.Errorf("readFirst writing to a closed backend = %v, want a write error", err)
	}
}
