package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-proxy/sluice/internal/fairpoll"
	"github.com/sluice-proxy/sluice/internal/wire"
)

// readBufSize is the read buffer of an upstream connection. Response
// heads longer than it are read on in pieces, and bodies of any size are
// read past it into the caller's buffers. A connection holds one only while
// it reads a response: not while the request waits for the first byte of
// the answer, nor while it idles in its pool (see readFirst). Writes need
// no buffer of their own: each request is written from the caller's.
const readBufSize = 4 << 10

// PollInterval is how often a request waiting on a slow backend checks that
// its client is still there.
const PollInterval = 100 * time.Millisecond

// ErrClientGone is a client that closed its connection while its request
// waited on a backend, as the caller's gone check reported it.
var ErrClientGone = errors.New("client closed the connection")

// Conn is one upstream connection, used by one request at a time from Get
// or Dial to Release or Close.
type Conn struct {
	nc net.Conn
	// br is the read buffer while a response is read; nil from the end
	// of one response to the first byte of the next, except on TLS
	// connections, which keep theirs.
	br        *bufio.Reader
	src       source // what br reads from
	pool      *Pool
	reused    bool      // it served a request before this one
	written   bool      // a byte of this request was written
	started   bool      // a byte of a response to this request arrived
	expires   time.Time // when it must no longer be reused
	idleSince time.Time // when it was put back in the pool
	deadline  time.Time // read deadline currently set
	// writeDeadline is the write deadline currently set.
	writeDeadline time.Time

	raw      syscall.RawConn
	peek     func(fd uintptr) bool
	peekOpen bool

	// readFirst's state: a read attempt as a RawConn callback, made once
	// per connection so that a wait does not allocate.
	first    func(fd uintptr) bool
	scratch  *[]byte
	firstN   int
	firstErr error // the attempt's error, wrapped as net's own would be
	// queued is what readFirst writes before it waits: a request, or
	// what is left of it.
	queued []byte
	// queuedPause bounds the write of what the socket did not take of
	// queued at once.
	queuedPause time.Duration

	// fair is the connection's place in the transport's fairpoll.Poller,
	// when it has one: readFirst waits there, so that answers are taken in
	// the order they arrived.
	fair      *fairpoll.Waiter
	fairFirst func(fd uintptr) bool // first, asking to wait on fair instead of parking
	parked    bool                  // fairFirst's report that first asked to wait

	// stamp is how the first read takes the kernel's receive time with
	// the bytes, once TimeArrivals turned it on (nil before); arrived is
	// that time for this request's response (unix ns), 0 when unknown.
	stamp      *arrivalStamp
	stampAsked bool // TimeArrivals ran
	arrived    int64

	body Body
}

// source is the reader under a connection's read buffer: first the bytes
// of the read that found the response, then the connection.
type source struct {
	c   *Conn
	pre []byte
}

func (s *source) Read(p []byte) (int, error) {
	if len(s.pre) > 0 {
		n := copy(p, s.pre)
		s.pre = s.pre[n:]
		return n, nil
	}
	return s.c.nc.Read(p)
}

// readers holds the read buffers of connections that are not reading.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufSize) }}

// scratches holds the buffers of first reads.
var scratches = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

func newConn(p *Pool, nc net.Conn) *Conn {
	c := &Conn{nc: nc, pool: p}
	c.src.c = c
	c.body.c = c
	c.initPeek()
	if c.raw != nil {
		c.initFirst()
		if fp := p.t.poller.Load(); fp != nil {
			if _, tcp := nc.(*net.TCPConn); tcp {
				c.joinPoller(fp)
			}
		}
	} else {
		c.attach() // TLS reads go through the TLS connection
	}
	return c
}

// joinPoller adds the connection's socket to fp; the connection goes on
// waiting in Go's poller if it cannot.
func (c *Conn) joinPoller(fp *fairpoll.Poller) {
	if w, err := fp.AddConn(c.raw); err == nil {
		c.fair = w
		c.fairFirst = fairpoll.NoPark(c.first, &c.parked)
	}
}

// closeConn closes the socket, out of the fair poller first.
func (c *Conn) closeConn() {
	c.fair.Remove()
	c.nc.Close()
}

// setSocketDeadline sets the socket's read deadline, which a wait in the
// fair poller keeps too.
func (c *Conn) setSocketDeadline(t time.Time) error {
	c.fair.SetDeadline(t)
	return c.nc.SetReadDeadline(t)
}

// begin starts a request's use of c.
func (c *Conn) begin(reused bool) {
	c.reused, c.written, c.started = reused, false, false
	c.arrived = 0
}

// Reused reports whether c served a request before this one.
func (c *Conn) Reused() bool { return c.reused }

// Written reports whether any byte of this request went out on c: false
// when every write failed before the socket took anything, so that the
// backend cannot have seen the request.
func (c *Conn) Written() bool { return c.written }

// ResponseStarted reports whether any byte of a response to this request
// arrived on c.
func (c *Conn) ResponseStarted() bool { return c.started || c.br != nil && c.br.Buffered() > 0 }

// attach gives c a read buffer reading from c.src.
func (c *Conn) attach() {
	c.br = readers.Get().(*bufio.Reader)
	c.br.Reset(&c.src)
}

// detach returns c's empty read buffer to the pool, on a connection that
// can wait without one.
func (c *Conn) detach() {
	if c.br == nil || c.first == nil {
		return
	}
	c.br.Reset(nil)
	readers.Put(c.br)
	c.br = nil
}

// readFirst waits, under the read deadline set, for the first bytes of a
// response on a connection without a read buffer, then gives it one
// holding them. The read is made into a scratch buffer taken only for
// the read itself, so that a request waiting on its backend holds no
// buffer; a wait costs the same system calls as a buffered read would.
//
// A request queued on c is written first, in the same RawConn.Read call.
// Go's poller forgets the socket's readiness at the start of that call; the
// answer can only arrive after the write, so once all of it went out the
// wait may begin without a read attempt, which would find nothing (the
// backend cannot have answered yet), and one system call per request is
// saved. What could not be written at once is written by AwaitHead
// (errQueuedPartly), without a read buffer held meanwhile.
func (c *Conn) readFirst() error {
	c.firstN, c.firstErr = 0, nil
	for {
		if !c.fair.Live() {
			if err := c.raw.Read(c.first); err != nil {
				return err
			}
			break
		}
		c.parked = false
		if err := c.raw.Read(c.fairFirst); err != nil {
			return err
		}
		if !c.parked {
			break
		}
		if err := c.fair.Wait(); err != nil && err != fairpoll.ErrClosed {
			return err
		}
	}
	if c.firstErr != nil {
		return c.firstErr
	}
	if c.firstN == 0 {
		return io.EOF
	}
	c.started = true
	c.attach()
	c.src.pre = (*c.scratch)[:c.firstN]
	c.br.Peek(1) // moves what was read into br
	c.src.pre = nil
	scratches.Put(c.scratch)
	c.scratch = nil
	return nil
}

// initFirst prepares readFirst's read attempt.
func (c *Conn) initFirst() {
	c.first = func(fd uintptr) bool {
		if len(c.queued) > 0 {
			return c.writeQueued(fd)
		}
		c.scratch = scratches.Get().(*[]byte)
		for {
			n, err := c.readStamped(fd, *c.scratch)
			switch err {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				// Nothing yet: the buffer goes back while the request
				// waits.
				scratches.Put(c.scratch)
				c.scratch = nil
				return false
			case nil:
				c.firstN = n
			default:
				c.firstErr = os.NewSyscallError("read", err)
			}
			if n <= 0 {
				scratches.Put(c.scratch)
				c.scratch = nil
			}
			return true
		}
	}
}

// errQueuedPartly is readFirst's report that the queued request did not all
// go out at once: the rest, c.queued, is for AwaitHead to write.
var errQueuedPartly = errors.New("queued request written in part")

// Queue sets out, the request or its last part, to be written by the wait
// for the answer (AwaitHead), and reports whether it could: a connection
// that waits for its answers without a read buffer (not TLS) takes a
// request that is not empty. out must stay untouched until AwaitHead
// returns. What the socket does not take at once is written with pause
// as the bound of a blocked write (see Write).
func (c *Conn) Queue(out []byte, pause time.Duration) bool {
	if c.first == nil || c.br != nil || len(out) == 0 {
		return false
	}
	c.queued, c.queuedPause = out, pause
	return true
}

// writeQueued is readFirst's callback while a request is queued: it
// writes it, and asks to wait for the answer when all of it went out.
func (c *Conn) writeQueued(fd uintptr) bool {
	n, err := wire.WriteFD(fd, c.queued)
	if n > 0 {
		c.written = true
		c.queued = c.queued[n:]
	}
	switch {
	case err == syscall.EAGAIN:
		c.firstErr = errQueuedPartly
	case err != nil:
		c.queued = nil
		c.firstErr = &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", err)}
	default:
		return false // all of it: wait for the answer
	}
	return true
}

// Write writes p, a part of the request, to the backend. A write that
// blocks is bounded by pause: a backend that stops reading a request
// holds it for at most that long.
func (c *Conn) Write(p []byte, pause time.Duration) error {
	c.armWrite(pause)
	n, err := c.nc.Write(p)
	if n > 0 {
		c.written = true
	}
	return err
}

// AwaitHead waits for the response head and reads it into h, after the
// rest of a request queued on c went out, skipping interim 1xx responses
// (a 101 ends the wait when upgrade is set, and is a bad response
// otherwise). The wait ends after limit from now; meanwhile gone is
// asked every PollInterval whether the client left (ErrClientGone).
func (c *Conn) AwaitHead(h *Head, now time.Time, limit time.Duration, upgrade bool, gone func() bool) error {
	for {
		// The wait for the head is armed here, not deeper down in
		// readHead: setting a deadline takes about 1 KiB of stack, and
		// the request path fits in a 4 KiB goroutine stack only if that
		// happens this high up (await then finds it armed).
		if err := c.armWait(now, now.Add(limit)); err != nil {
			return err
		}
		err := c.readHead(h, now, limit, upgrade, gone)
		if err != errQueuedPartly {
			c.queued = nil
			return err
		}
		// The socket's buffer was full: the rest goes out in a write
		// that waits, and the wait for the head starts after it.
		rest := c.queued
		c.queued = nil
		if err := c.Write(rest, c.queuedPause); err != nil {
			return err
		}
		now = time.Now()
	}
}

// readHead reads the response head, skipping interim 1xx responses, within
// limit from now.
func (c *Conn) readHead(h *Head, now time.Time, limit time.Duration, upgrade bool, gone func() bool) error {
	if err := c.waitReadable(now, limit, gone); err != nil {
		return err
	}
	// The head has begun to arrive. Unless all of it is here, the rest of
	// it gets the same time.
	if !headBuffered(c.br) {
		if err := c.setReadDeadline(time.Now(), limit); err != nil {
			return err
		}
	}
	for {
		if err := h.read(c.br); err != nil {
			return err
		}
		if h.Status >= 200 {
			return nil
		}
		if h.Status == 101 {
			if upgrade {
				return nil
			}
			return ErrBadResponse // a switch the client did not ask for
		}
	}
}

// waitReadable waits until c has data to read or limit has passed (a
// timeout error), asking gone every PollInterval whether the client is
// still there. It consumes nothing, so it is safe in the middle of parsing.
func (c *Conn) waitReadable(now time.Time, limit time.Duration, gone func() bool) error {
	if c.br == nil {
		return c.await(now, limit, gone, c.readFirst)
	}
	if c.br.Buffered() > 0 {
		c.started = true
		return nil
	}
	return c.await(now, limit, gone, c.peekOne)
}

func (c *Conn) peekOne() error {
	_, err := c.br.Peek(1)
	if err == nil {
		c.started = true
	}
	return err
}

// await runs op, a read from c that consumes nothing when it times out,
// under read deadlines of at most PollInterval, until it ends for another
// reason than its deadline or limit has passed; between tries it asks gone
// whether the client has left (ErrClientGone then). A request waiting on a
// slow backend so learns within PollInterval that its client has left.
func (c *Conn) await(now time.Time, limit time.Duration, gone func() bool, op func() error) error {
	end := now.Add(limit)
	for {
		if err := c.armWait(now, end); err != nil {
			return err
		}
		err := op()
		if err == nil || !wire.IsTimeout(err) {
			return err
		}
		if now = time.Now(); !now.Before(end) {
			return err
		}
		if gone != nil && gone() {
			return ErrClientGone
		}
	}
}

// armWait sets c's read deadline for a wait that must end by end, to at
// most PollInterval from now. A deadline already set a little earlier (by
// at most an eighth of that span) and still ahead is kept: the wait then
// wakes a little early and is armed again, and a busy connection is spared
// a timer update on most requests.
func (c *Conn) armWait(now, end time.Time) error {
	span := min(end.Sub(now), PollInterval)
	d := now.Add(span)
	if cur := c.deadline; cur.After(now) && !cur.After(d) && d.Sub(cur) <= span/8 {
		return nil
	}
	c.deadline = d
	return c.setSocketDeadline(d)
}

// headBuffered reports whether a whole response head is in br's buffer.
func headBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.Contains(b, []byte("\r\n\r\n"))
}

// peerOpen reports whether the peer of an idle connection has neither closed
// it nor sent anything unexpected, with one non-blocking peek. It narrows the
// keep-alive race (a backend closing an idle connection just as the proxy
// reuses it) to the microseconds between this check and the write.
func (c *Conn) peerOpen() bool {
	if c.raw == nil {
		return true
	}
	// A read deadline left from the connection's last use has likely
	// passed, and would fail the peek before it is made.
	c.setSocketDeadline(time.Time{})
	c.deadline = time.Time{}
	c.peekOpen = false
	if err := c.raw.Read(c.peek); err != nil {
		return false
	}
	return c.peekOpen
}

// initPeek prepares peerOpen, once per connection, so that a check does not
// allocate.
func (c *Conn) initPeek() {
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	c.raw = raw
	c.peek = func(fd uintptr) bool {
		_, err := wire.PeekFD(fd)
		c.peekOpen = err == syscall.EAGAIN
		return true
	}
}

// setReadDeadline arms a read deadline of d from now (see wire.MoveDeadline).
func (c *Conn) setReadDeadline(now time.Time, d time.Duration) error {
	want := now.Add(d)
	if !wire.MoveDeadline(c.deadline, want, d) {
		return nil
	}
	c.deadline = want
	return c.setSocketDeadline(want)
}

// armWrite bounds a write to the backend that blocks by d (see
// wire.MoveDeadline).
func (c *Conn) armWrite(d time.Duration) {
	if d <= 0 {
		return
	}
	if want := time.Now().Add(d); wire.MoveDeadline(c.writeDeadline, want, d) {
		c.writeDeadline = want
		c.nc.SetWriteDeadline(want)
	}
}

// Release ends the use of c after a response whose head is h was read
// whole: back to its pool when the backend keeps the connection open
// (retired well before the backend's own Keep-Alive timeout), closed
// otherwise. now is about when the response head arrived.
func (c *Conn) Release(h *Head, now time.Time) {
	if h.CloseAfter {
		c.closeConn()
		return
	}
	var keep time.Duration
	if n := h.keepAlive; n > 0 {
		keep = time.Duration(n) * time.Second * 3 / 4
	}
	c.pool.put(c, now, keep)
}

// Close closes c; it is not reused.
func (c *Conn) Close() { c.closeConn() }

// DiscardShort ends a try whose response, with head h, will not be relayed:
// a body that is short and already here is read out and c goes back to its
// pool; anything else closes c.
func (c *Conn) DiscardShort(h *Head, method []byte, now time.Time) {
	if !h.Chunked && !h.CloseAfter {
		n := h.ContentLength
		if Bodyless(method, h.Status) {
			n = 0
		}
		if n >= 0 && int64(c.br.Buffered()) >= n {
			c.br.Discard(int(n))
			c.Release(h, now)
			return
		}
	}
	c.closeConn()
}

// Buffered returns the bytes read from the backend and not yet consumed;
// they stay in the buffer until Consume.
func (c *Conn) Buffered() []byte {
	if c.br == nil {
		return nil
	}
	b, _ := c.br.Peek(c.br.Buffered())
	return b
}

// Consume drops the first n buffered bytes (see Buffered).
func (c *Conn) Consume(n int) { c.br.Discard(n) }

// Hijack hands the connection over for a tunnel, with a reader that first
// gives the bytes the backend sent after its 101. c is not to be used or
// released after it; its deadlines are cleared.
func (c *Conn) Hijack() (net.Conn, io.Reader) {
	c.fair.Detach() // the tunnel reads in Go's poller
	c.fair = nil
	c.setSocketDeadline(time.Time{})
	c.nc.SetWriteDeadline(time.Time{})
	return c.nc, c.br
}
