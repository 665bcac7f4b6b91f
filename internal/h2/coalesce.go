package h2

import (
	"net"
	"runtime"
	"sync"
	"time"
)

// The coalescer's bounds.
const (
	// maxPending is the most a coalescer holds unsent: a Write that would
	// go past it waits for the send in progress, so that a client that
	// reads slowly holds the server back as an unbuffered connection
	// would (its flow control, and its limit on queued control frames).
	maxPending = 64 << 10
	// closeFlush is the longest a closed coalescer keeps its connection
	// open for what it still holds (a GOAWAY, typically) to go out.
	closeFlush = time.Second
)

// coalescer is the write side of a client's HTTP/2 connection. The server
// flushes whenever its queue of frames runs dry, and with one stream's
// response arriving at a time that is once for a response's HEADERS and
// again for its DATA: two TLS records and two system calls for every
// response. A coalescer takes what the server writes into a buffer and
// sends it from a goroutine of its own, which first lets the goroutines
// that are ready run: the responses they finish meanwhile go out in the
// same send, as an event loop writes what one pass over its ready
// connections produced.
//
// Sends are bounded by timeout each: a client that takes nothing for that
// long loses its connection (the first failed send is every later Write's
// error). The server's own write deadlines are superseded by it.
type coalescer struct {
	net.Conn
	timeout time.Duration

	mu       sync.Mutex
	sent     sync.Cond // a send began or ended
	pend     *[]byte   // written, not yet sent; nil when none (pooled)
	sending  bool      // a goroutine is sending (or about to)
	err      error     // sticky: the send that failed, or the close
	closed   bool
	deadline time.Time // the write deadline now set on Conn; flusher's own
}

var pendPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// Coalesce returns nc, a client's HTTP/2 connection, with its writes
// coalesced, each send bounded by timeout (0 for none).
func Coalesce(nc net.Conn, timeout time.Duration) net.Conn { return newCoalescer(nc, timeout) }

func newCoalescer(nc net.Conn, timeout time.Duration) *coalescer {
	c := &coalescer{Conn: nc, timeout: timeout}
	c.sent.L = &c.mu
	return c
}

// Write takes p to be sent; it waits only when maxPending is held unsent.
func (c *coalescer) Write(p []byte) (int, error) {
	c.mu.Lock()
	for c.err == nil && c.sending && c.pend != nil && len(*c.pend)+len(p) > maxPending {
		c.sent.Wait() // until the pending bytes are taken to be sent: bounded, as a send is (timeout)
	}
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return 0, err
	}
	if c.pend == nil {
		c.pend = pendPool.Get().(*[]byte)
	}
	*c.pend = append(*c.pend, p...)
	start := !c.sending
	c.sending = true
	c.mu.Unlock()
	if start {
		go c.flush(true)
	}
	return len(p), nil
}

// flush sends what is pending until nothing is, and closes the connection
// when the coalescer was closed meanwhile. yield lets the goroutines that
// are ready run first, to add theirs.
func (c *coalescer) flush(yield bool) {
	if yield {
		runtime.Gosched()
	}
	c.mu.Lock()
	for c.pend != nil && (c.err == nil || c.closed && c.err == net.ErrClosed) {
		b := c.pend
		c.pend = nil
		closing := c.closed
		c.sent.Broadcast() // room again for writers held by the bound
		c.mu.Unlock()
		err := c.send(*b, closing)
		putPend(b)
		c.mu.Lock()
		if err != nil && c.err == nil {
			c.err = err
		}
		if err != nil {
			break
		}
	}
	if c.pend != nil {
		putPend(c.pend) // never to be sent
		c.pend = nil
	}
	c.sending = false
	closed := c.closed
	c.sent.Broadcast()
	c.mu.Unlock()
	if closed {
		c.Conn.Close()
	}
}

// send writes b, within timeout (and within closeFlush once closing).
func (c *coalescer) send(b []byte, closing bool) error {
	var dl time.Time
	if c.timeout > 0 {
		dl = time.Now().Add(c.timeout)
	}
	if closing {
		if limit := time.Now().Add(closeFlush); dl.IsZero() || limit.Before(dl) {
			dl = limit
		}
	}
	// Set only when it moves by more than a hundredth of the timeout:
	// setting a deadline costs more than the send of a small response.
	if dl.IsZero() != c.deadline.IsZero() || dl.Sub(c.deadline) > c.timeout/100 || closing {
		if err := c.Conn.SetWriteDeadline(dl); err != nil {
			return err
		}
		c.deadline = dl
	}
	_, err := c.Conn.Write(b)
	return err
}

func putPend(b *[]byte) {
	if cap(*b) > 4*maxPending {
		return
	}
	*b = (*b)[:0]
	pendPool.Put(b)
}

// Close closes the connection once what was written before has gone out,
// within closeFlush; it does not wait for that. Writes fail from now on.
func (c *coalescer) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.closed = true
	if c.err == nil {
		c.err = net.ErrClosed
	}
	switch {
	case c.sending:
		// The sending goroutine closes it when it is done; a send stuck
		// past closeFlush is cut.
		c.mu.Unlock()
		time.AfterFunc(closeFlush, func() { c.Conn.Close() })
		return nil
	case c.pend != nil:
		c.sending = true
		c.mu.Unlock()
		go c.flush(false)
		return nil
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

// SetWriteDeadline does nothing: each send is bounded by the coalescer's
// timeout instead, since a Write only hands its bytes over.
func (c *coalescer) SetWriteDeadline(time.Time) error { return nil }

// SetDeadline sets the read deadline; see SetWriteDeadline for writes.
func (c *coalescer) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }
