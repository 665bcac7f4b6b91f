package upstream

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// checkAfter is how long a connection may sit idle before the pool checks
// that the backend has not closed it.
const checkAfter = 5 * time.Millisecond

// maxIdlePerBackend bounds the idle connections kept per backend address.
const maxIdlePerBackend = 1024

// dialSlots bounds the dialing goroutines of one pool, and dialSlotWait how
// long a dial waits for one of them before it dials on its own goroutine.
const (
	dialSlots    = 32
	dialSlotWait = 250 * time.Millisecond
)

// Pool keeps the idle keep-alive connections to one backend address. It is
// shared by every route and every config generation that names the address,
// so a reload keeps the pooled connections of backends that remain.
type Pool struct {
	t           *Transport
	addr        string
	tls         *tls.Config // nil for http backends
	idleTimeout time.Duration

	slots chan struct{} // a token per dial in progress

	mu     sync.Mutex
	idle   []*Conn // most recently used last
	closed bool
}

func newPool(t *Transport, addr string) *Pool {
	return &Pool{t: t, addr: addr, idleTimeout: t.idleTimeout, slots: make(chan struct{}, dialSlots)}
}

// DialError is a failure to connect: nothing of the request was sent.
type DialError struct{ Err error }

func (e *DialError) Error() string { return "connect: " + e.Err.Error() }
func (e *DialError) Unwrap() error { return e.Err }

// Get returns an idle connection that is still open, or dials a new one
// within connectTimeout. now is the time of the request, which is close
// enough for judging idle connections. A connection idle for a moment
// only is taken as it is: a backend closing it that soon is rare, and the
// caller learns from Reused and ResponseStarted whether a failure of it
// may be sent again. Longer idle ones are checked with a peek first.
func (p *Pool) Get(now time.Time, connectTimeout time.Duration) (*Conn, error) {
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
		if now.Before(c.expires) && (now.Sub(c.idleSince) < checkAfter || c.peerOpen()) {
			c.begin(true)
			return c, nil
		}
		c.closeConn()
	}
	return p.Dial(connectTimeout)
}

// Dial opens a fresh connection. Connecting (and the TLS handshake) runs on
// a goroutine of its own while the request waits: those call chains are
// deep, and run on the request's goroutine they would grow its stack to
// 8 KiB for the rest of the client connection's life, where the request
// path itself fits in 4 KiB. At most dialSlots such goroutines of a pool
// run at once, so that a burst of new client connections does not take a
// deep stack each. A dial that finds every slot taken waits for one, for
// at most dialSlotWait; then it dials on the request's own goroutine, so
// that dials stuck on a slow or lossy backend never hold up the others.
func (p *Pool) Dial(connectTimeout time.Duration) (*Conn, error) {
	var (
		nc  net.Conn
		err error
	)
	if p.takeSlot(min(dialSlotWait, connectTimeout)) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			nc, err = p.connect(connectTimeout)
		}()
		<-done
		<-p.slots
	} else {
		nc, err = p.connect(connectTimeout)
	}
	if err != nil {
		return nil, &DialError{err}
	}
	c := newConn(p, nc)
	c.begin(false)
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

// connect dials p's address within connectTimeout and, for an https
// backend, completes the TLS handshake within another.
func (p *Pool) connect(connectTimeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: connectTimeout}
	nc, err := d.Dial("tcp", p.addr)
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
	hctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		nc.Close()
		return nil, err
	}
	return tc, nil
}

// put returns c to the pool, as of now, for reuse until keepAlive has
// passed (the backend's own Keep-Alive timeout less a margin, or the pool's
// idle timeout when shorter or unknown).
func (p *Pool) put(c *Conn, now time.Time, keepAlive time.Duration) {
	idle := p.idleTimeout
	if keepAlive > 0 && keepAlive < idle {
		idle = keepAlive
	}
	if idle <= 0 || c.br != nil && c.br.Buffered() > 0 {
		c.closeConn()
		return
	}
	c.detach()
	c.idleSince = now
	c.expires = c.idleSince.Add(idle)
	p.mu.Lock()
	if p.closed || len(p.idle) >= maxIdlePerBackend {
		p.mu.Unlock()
		c.closeConn()
		return
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// reap closes idle connections whose time has passed.
func (p *Pool) reap(now time.Time) {
	p.mu.Lock()
	keep := p.idle[:0]
	var expired []*Conn
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
		c.closeConn()
	}
}

// close closes every idle connection and refuses new ones.
func (p *Pool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range idle {
		c.closeConn()
	}
}

// IdleCount returns the number of idle connections.
func (p *Pool) IdleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}
