// Package h1 is the client side of the proxy listener: an HTTP/1.1 server
// engine that reads request heads, frames request bodies and carries the
// bytes of responses, and leaves the meaning of every header to its handler.
// One goroutine serves each connection, with no buffer held while the
// connection idles; the last write of a response and the wait for the next
// request share one call into Go's poller, so a keep-alive request costs no
// read that finds nothing.
package h1

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-proxy/sluice/internal/fairpoll"
)

// Handler serves the requests the engine reads.
type Handler interface {
	// Serve answers the request on c: it declares the body's framing
	// (SetBody), reads the body, and leaves the response in c.Out or
	// writes it with Flush and Write.
	Serve(c *Conn)
	// Refuse answers a request whose head could not be read: status is
	// 400 (malformed), 408 (too slow) or 431 (too large). The connection
	// closes after the answer.
	Refuse(c *Conn, status int, reason string)
}

// Server serves HTTP/1.x on a listener.
type Server struct {
	Handler Handler
	// MaxHeaderBytes bounds a request's head: request line, fields and the
	// empty line; longer heads get 431.
	MaxHeaderBytes int
	// HeaderTimeout bounds the reading of a head: from the accept for a
	// connection's first request, from its first byte for later ones. A
	// connection that sent part of a head in that time gets 408.
	HeaderTimeout time.Duration
	// IdleTimeout bounds the wait for a keep-alive connection's next
	// request, and how long one write to a client may stall.
	IdleTimeout time.Duration
	// TLS marks the connections as having come over TLS: their requests
	// have the scheme https (Conn.Secure).
	TLS bool
	// HTTP2 marks the connections as HTTP/2 streams, each carrying one
	// request rendered as HTTP/1.1 (Conn.ProtoName).
	HTTP2 bool
	// OnPanic, when set, is told of a panic while a connection was served,
	// with the value and the goroutine's stack. The engine recovers it and
	// closes that connection; every other connection goes on.
	OnPanic func(v any, stack []byte)
	// Poller, when set, is where plain TCP connections wait for their
	// next request, so that they are served in the order their requests
	// arrived (see package fairpoll); nil waits in Go's poller.
	Poller *fairpoll.Poller

	// live holds the limits in force once SetLimits has been called (a
	// reload); until then MaxHeaderBytes, HeaderTimeout and IdleTimeout.
	live atomic.Pointer[Limits]

	mu       sync.Mutex
	ln       net.Listener
	conns    map[*Conn]struct{}
	done     chan struct{} // closed when the last connection is gone after a shutdown
	draining atomic.Bool
}

// Serve accepts connections on ln until Shutdown, serving each on its own
// goroutine. It returns nil after a shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	s.ln = ln
	if s.conns == nil {
		s.conns = map[*Conn]struct{}{}
	}
	s.mu.Unlock()
	return AcceptLoop(ln, s.draining.Load, func(nc net.Conn) {
		if c := s.track(nc); c != nil {
			go c.serve()
		}
	})
}

// track adds a connection for nc to the open ones and returns it; during a
// shutdown it closes nc and returns nil.
func (s *Server) track(nc net.Conn) *Conn {
	c := newConn(s, nc)
	s.mu.Lock()
	if s.draining.Load() {
		s.mu.Unlock()
		nc.Close()
		return nil
	}
	if s.conns == nil {
		s.conns = map[*Conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	return c
}

// AcceptLoop accepts connections on ln and gives each to handle, on the
// calling goroutine, until Accept fails: it returns nil when stopped then
// reports true, and the error otherwise. A timeout or a temporary error
// (out of file descriptors and the like) is waited out with a backoff.
func AcceptLoop(ln net.Listener, stopped func() bool, handle func(net.Conn)) error {
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if stopped() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		handle(nc)
	}
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

// forget drops c from the open connections.
func (s *Server) forget(c *Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	if len(s.conns) == 0 && s.done != nil {
		close(s.done)
		s.done = nil
	}
	s.mu.Unlock()
}

// Shutdown stops accepting, closes the connections that wait for a
// request, and waits for the others to finish their request in flight
// (each closes after its response), or for ctx to end, which it returns.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
	}
	var done chan struct{}
	if len(s.conns) > 0 {
		done = make(chan struct{})
		s.done = done
	}
	idle := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		idle = append(idle, c)
	}
	s.mu.Unlock()
	for _, c := range idle {
		c.closeIfIdle()
	}
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CloseAll closes every open connection and returns how many there were.
func (s *Server) CloseAll() int {
	s.mu.Lock()
	conns := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.nc.Close()
	}
	return len(conns)
}

// Limits are the settings a running server takes anew (SetLimits): the
// fields of the same names.
type Limits struct {
	MaxHeaderBytes int
	HeaderTimeout  time.Duration
	IdleTimeout    time.Duration
}

// SetLimits puts l in force for every request read from now on, on
// connections open already too.
func (s *Server) SetLimits(l Limits) { s.live.Store(&l) }

// limits returns the limits in force.
func (s *Server) limits() *Limits {
	if l := s.live.Load(); l != nil {
		return l
	}
	s.live.CompareAndSwap(nil, &Limits{MaxHeaderBytes: s.MaxHeaderBytes, HeaderTimeout: s.HeaderTimeout, IdleTimeout: s.IdleTimeout})
	return s.live.Load()
}
