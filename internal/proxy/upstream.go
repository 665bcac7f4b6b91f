package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// DefaultIdleTimeout is how long an idle upstream connection is kept. It is
// below the keep-alive timeouts backends commonly use (Node.js and Apache
// close after 5 s), so the proxy, not the backend, retires idle connections.
const DefaultIdleTimeout = 4 * time.Second

// checkAfter is how long a connection may sit idle before the pool checks
// that the backend has not closed it.
const checkAfter = 5 * time.Millisecond

// maxIdlePerBackend bounds the idle connections kept per backend address.
const maxIdlePerBackend = 1024

// upstreamReadBuf is the read buffer of an upstream connection. Response
// heads longer than it are read on in pieces, and bodies of any size are
// read past it into 64 KiB copy buffers. A connection holds one only while
// it reads a response: not while the request waits for the first byte of
// the answer, nor while it idles in its pool (see readFirst). Writes need
// no buffer of their own: each request is written from the exchange's
// buffer.
const upstreamReadBuf = 4 << 10

// Pool keeps the idle keep-alive connections to one backend address. It is
// shared by every route and every config generation that names the address,
// so a reload keeps the pooled connections of backends that remain.
type Pool struct {
	addr        string
	tls         *tls.Config // nil for http backends
	idleTimeout time.Duration

	slots chan struct{} // a token per dial in progress

	mu     sync.Mutex
	idle   []*upConn // most recently used last
	closed bool
}

// newPool returns an empty pool for addr.
func newPool(addr string, idleTimeout time.Duration) *Pool {
	return &Pool{addr: addr, idleTimeout: idleTimeout, slots: make(chan struct{}, dialSlots)}
}

// upConn is one upstream connection.
type upConn struct {
	nc net.Conn
	// br is the read buffer while a response is read; nil from the end
	// of one response to the first byte of the next, except on TLS
	// connections, which keep theirs.
	br        *bufio.Reader
	src       upSource // what br reads from
	pool      *Pool
	reused    bool      // it served a request before this one
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
}

// upSource is the reader under an upstream connection's read buffer: first
// the bytes of the read that found the response, then the connection.
type upSource struct {
	c   *upConn
	pre []byte
}

func (s *upSource) Read(p []byte) (int, error) {
	if len(s.pre) > 0 {
		n := copy(p, s.pre)
		s.pre = s.pre[n:]
		return n, nil
	}
	return s.c.nc.Read(p)
}

// readers holds the read buffers of connections that are not reading.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, upstreamReadBuf) }}

// scratches holds the buffers of first reads.
var scratches = sync.Pool{New: func() any { b := make([]byte, upstreamReadBuf); return &b }}

// attach gives c a read buffer reading from c.src.
func (c *upConn) attach() {
	c.br = readers.Get().(*bufio.Reader)
	c.br.Reset(&c.src)
}

// detach returns c's empty read buffer to the pool, on a connection that
// can wait without one.
func (c *upConn) detach() {
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
// saved. What could not be written at once is written by the caller
// (errQueuedPartly), without a read buffer held meanwhile.
func (c *upConn) readFirst() error {
	c.firstN, c.firstErr = 0, nil
	if err := c.raw.Read(c.first); err != nil {
		return err
	}
	if c.firstErr != nil {
		return c.firstErr
	}
	if c.firstN == 0 {
		return io.EOF
	}
	c.attach()
	c.src.pre = (*c.scratch)[:c.firstN]
	c.br.Peek(1) // moves what was read into br
	c.src.pre = nil
	scratches.Put(c.scratch)
	c.scratch = nil
	return nil
}

// initFirst prepares readFirst's read attempt.
func (c *upConn) initFirst() {
	c.first = func(fd uintptr) bool {
		if len(c.queued) > 0 {
			return c.writeQueued(fd)
		}
		c.scratch = scratches.Get().(*[]byte)
		for {
			n, err := syscall.Read(int(fd), *c.scratch)
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
// go out at once: the rest, c.queued, is for the caller to write.
var errQueuedPartly = errors.New("queued request written in part")

// queue sets out to be written by the next readFirst, and reports whether
// it could: a connection that waits for its answers with readFirst (no
// read buffer held, not TLS) takes a request that is not empty.
func (c *upConn) queue(out []byte) bool {
	if c.first == nil || c.br != nil || len(out) == 0 {
		return false
	}
	c.queued = out
	return true
}

// writeQueued is readFirst's callback while a request is queued: it
// writes it, and asks to wait for the answer when all of it went out.
func (c *upConn) writeQueued(fd uintptr) bool {
	for {
		n, err := syscall.Write(int(fd), c.queued)
		if n > 0 {
			c.queued = c.queued[n:]
		}
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN || err == nil && len(c.queued) > 0:
			c.firstErr = errQueuedPartly
		case err != nil:
			c.queued = nil
			c.firstErr = &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", err)}
		default:
			return false // all of it: wait for the answer
		}
		return true
	}
}

// dialError is a failure to connect: nothing of the request was sent.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connect: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// get returns an idle connection that is still open, or dials a new one
// within connectTimeout. now is the time of the request, which is close
// enough for judging idle connections.
func (p *Pool) get(ctx context.Context, now time.Time, connectTimeout time.Duration) (*upConn, error) {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		// A connection idle for a moment only is taken as it is: a
		// backend closing it that soon is rare, and a request it fails
		// before any response byte is sent again when it can be (see
		// exchange.send). Longer idle ones are checked first.
		if now.Before(c.expires) && (now.Sub(c.idleSince) < checkAfter || c.peerOpen()) {
			c.reused = true
			return c, nil
		}
		c.nc.Close()
	}
	return p.dial(ctx, connectTimeout)
}

// dial opens a fresh connection. Connecting (and the TLS handshake) runs on
// a goroutine of its own while the request waits: those call chains are
// deep, and run on the request's goroutine they would grow its stack to
// 8 KiB for the rest of the client connection's life, where the request
// path itself fits in 4 KiB. At most dialSlots such goroutines of a pool
// run at once, so that a burst of new client connections does not take a
// deep stack each. A dial that finds every slot taken waits for one, for
// at most dialSlotWait; then it dials on the request's own goroutine, so
// that dials stuck on a slow or lossy backend never hold up the others.
func (p *Pool) dial(ctx context.Context, connectTimeout time.Duration) (*upConn, error) {
	var (
		nc  net.Conn
		err error
	)
	if p.takeSlot(min(dialSlotWait, connectTimeout)) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			nc, err = p.connect(ctx, connectTimeout)
		}()
		<-done
		<-p.slots
	} else {
		nc, err = p.connect(ctx, connectTimeout)
	}
	if err != nil {
		return nil, &dialError{err}
	}
	c := &upConn{nc: nc, pool: p}
	c.src.c = c
	c.initPeek()
	if c.raw != nil {
		c.initFirst()
	} else {
		c.attach() // TLS reads go through the TLS connection
	}
	return c, nil
}

// takeSlot takes one of p's dial slots, waiting at most wait for one to
// free up, and reports whether it got one.
func (p *Pool) takeSlot(wait time.Duration) bool {
	select {
	case p.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case p.slots <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

// dialSlots bounds the dialing goroutines of one pool, and dialSlotWait how
// long a dial waits for one of them before it dials on its own goroutine.
const (
	dialSlots    = 32
	dialSlotWait = 250 * time.Millisecond
)

// connect dials p's address within connectTimeout and, for an https
// backend, completes the TLS handshake within another.
func (p *Pool) connect(ctx context.Context, connectTimeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: connectTimeout}
	nc, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	if p.tls == nil {
		return nc, nil
	}
	tc := tls.Client(nc, p.tls)
	hctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		nc.Close()
		return nil, err
	}
	return tc, nil
}

// put returns c to the pool, as of now, for reuse until keepAlive has passed (the
// backend's own Keep-Alive timeout less a margin, or the pool's idle timeout
// when shorter or unknown).
func (p *Pool) put(c *upConn, now time.Time, keepAlive time.Duration) {
	idle := p.idleTimeout
	if keepAlive > 0 && keepAlive < idle {
		idle = keepAlive
	}
	if idle <= 0 || c.br != nil && c.br.Buffered() > 0 {
		c.nc.Close()
		return
	}
	c.detach()
	c.idleSince = now
	c.expires = c.idleSince.Add(idle)
	p.mu.Lock()
	if p.closed || len(p.idle) >= maxIdlePerBackend {
		p.mu.Unlock()
		c.nc.Close()
		return
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// reap closes idle connections whose time has passed.
func (p *Pool) reap(now time.Time) {
	p.mu.Lock()
	keep := p.idle[:0]
	var expired []*upConn
	for _, c := range p.idle {
		if now.Before(c.expires) {
			keep = append(keep, c)
		} else {
			expired = append(expired, c)
		}
	}
	for i := len(keep); i < len(p.idle); i++ {
		p.idle[i] = nil
	}
	p.idle = keep
	p.mu.Unlock()
	for _, c := range expired {
		c.nc.Close()
	}
}

// close closes every idle connection and refuses new ones.
func (p *Pool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range idle {
		c.nc.Close()
	}
}

// idleCount returns the number of idle connections.
func (p *Pool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// peerOpen reports whether the peer of an idle connection has neither closed
// it nor sent anything unexpected, with one non-blocking peek. It narrows the
// keep-alive race (a backend closing an idle connection just as the proxy
// reuses it) to the microseconds between this check and the write.
func (c *upConn) peerOpen() bool {
	if c.raw == nil {
		return true
	}
	// A read deadline left from the connection's last use has likely
	// passed, and would fail the peek before it is made.
	c.nc.SetReadDeadline(time.Time{})
	c.deadline = time.Time{}
	c.peekOpen = false
	if err := c.raw.Read(c.peek); err != nil {
		return false
	}
	return c.peekOpen
}

// initPeek prepares peerOpen, once per connection, so that a check does not
// allocate.
func (c *upConn) initPeek() {
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
		var buf [1]byte
		_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		c.peekOpen = errors.Is(err, syscall.EAGAIN)
		return true
	}
}

// setReadDeadline arms a read deadline of d from now (see moveDeadline).
func (c *upConn) setReadDeadline(now time.Time, d time.Duration) error {
	want := now.Add(d)
	if !moveDeadline(c.deadline, want, d) {
		return nil
	}
	c.deadline = want
	return c.nc.SetReadDeadline(want)
}

// armWrite bounds a write to the backend that blocks: a backend that stops
// reading a request holds it for at most d (upstream_body, the pause limit
// of the exchange's other direction; see moveDeadline).
func (c *upConn) armWrite(d time.Duration) {
	if d <= 0 {
		return
	}
	if want := time.Now().Add(d); moveDeadline(c.writeDeadline, want, d) {
		c.writeDeadline = want
		c.nc.SetWriteDeadline(want)
	}
}

// moveDeadline reports whether a deadline set at cur must move to want, d
// from now: when it is unset, later than want, or earlier by more than an
// eighth of d. Keeping one a little early spares a timer update on most
// reads and writes of a busy connection.
func moveDeadline(cur, want time.Time, d time.Duration) bool {
	return cur.IsZero() || cur.After(want) || want.Sub(cur) >= d/8
}

// Transport owns the connection pools of every backend address.
type Transport struct {
	mu          sync.Mutex
	pools       map[string]*Pool
	idleTimeout time.Duration
	stop        chan struct{}
	done        chan struct{}
}

// NewTransport returns a transport and starts its reaper, which closes idle
// connections as their time passes. Close stops it.
func NewTransport(idleTimeout time.Duration) *Transport {
	if idleTimeout <= 0 {
		idleTimeout = DefaultIdleTimeout
	}
	t := &Transport{pools: map[string]*Pool{}, idleTimeout: idleTimeout,
		stop: make(chan struct{}), done: make(chan struct{})}
	go t.reapLoop()
	return t
}

// Pool returns the pool of scheme://addr, creating it on first use. An
// https pool speaks TLS, verifying the backend's certificate for its host
// name with the system's roots.
func (t *Transport) Pool(scheme, addr string) *Pool {
	key := scheme + "://" + addr
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.pools[key]
	if p == nil {
		p = newPool(addr, t.idleTimeout)
		if scheme == "https" {
			host, _, _ := net.SplitHostPort(addr)
			p.tls = &tls.Config{ServerName: host, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}
		}
		t.pools[key] = p
	}
	return p
}

// Retain closes and forgets the pools whose address is not in keep; a
// reload calls it with the addresses of the new config.
func (t *Transport) Retain(keep map[string]bool) {
	t.mu.Lock()
	var drop []*Pool
	for addr, p := range t.pools {
		if !keep[addr] {
			drop = append(drop, p)
			delete(t.pools, addr)
		}
	}
	t.mu.Unlock()
	for _, p := range drop {
		p.close()
	}
}

func (t *Transport) reapLoop() {
	defer close(t.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case now := <-tick.C:
			t.mu.Lock()
			pools := make([]*Pool, 0, len(t.pools))
			for _, p := range t.pools {
				pools = append(pools, p)
			}
			t.mu.Unlock()
			for _, p := range pools {
				p.reap(now)
			}
		}
	}
}

// Close stops the reaper and closes every idle connection.
func (t *Transport) Close() {
	close(t.stop)
	<-t.done
	t.Retain(nil)
}
