package server

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/sluice-proxy/sluice/internal/config"
	"github.com/sluice-proxy/sluice/internal/h1"
	"github.com/sluice-proxy/sluice/internal/h2"
)

// h2Server serves the HTTPS listener's HTTP/2 connections with the
// standard library's HTTP/2 server, whose fixes (rapid reset, CONTINUATION
// floods) come with Go releases. Each connection reaches it through an
// h2.Guard: since the guard stands between the TLS connection and the
// server, the server sees a connection that is not a *tls.Conn, and serves
// it as HTTP/2 with prior knowledge (its Protocols allow that alone); TLS
// and ALPN are done by then. Each stream goes to an h2.Bridge, which
// serves it on the bridge engine, sluice's HTTP/1.1 engine with the proxy
// as its handler.
type h2Server struct {
	srv *http.Server
	// writeTimeout bounds each send to a client: one that takes nothing
	// of what is written to it for this long loses its connection.
	writeTimeout time.Duration
	queue        *connQueue
	bridge       *h1.Server
	// listSize is the server's SETTINGS_MAX_HEADER_LIST_SIZE.
	listSize int

	mu    sync.Mutex
	conns map[*h2.Guard]struct{}
}

// newH2Server makes the HTTP/2 server of cfg, its streams served on bridge.
func newH2Server(cfg *config.Config, bridge *h1.Server, addr net.Addr) *h2Server {
	h := &h2Server{bridge: bridge, queue: newConnQueue(addr), conns: map[*h2.Guard]struct{}{},
		writeTimeout: cfg.Timeouts.ClientIdle.D()}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	// The server takes header lists well over max_header_bytes, so that
	// the bridge engine, which holds a stream's rendered head to
	// max_header_bytes as it holds any request's, answers one over it with
	// the proxy's own 431 (logged and counted); past this the server
	// answers 431 itself, and past twice this it closes the connection.
	maxHeader := 4*int(cfg.Limits.MaxHeaderBytes) + 64<<10
	// Its SETTINGS_MAX_HEADER_LIST_SIZE is a little over that (RFC 9113's
	// 32 bytes a field, for ten fields).
	h.listSize = maxHeader + 320
	h.srv = &http.Server{
		Handler:           &h2.Bridge{Engine: bridge},
		Protocols:         &protos,
		ReadHeaderTimeout: cfg.Timeouts.ClientHeader.D(), // for the preface
		IdleTimeout:       cfg.Timeouts.ClientIdle.D(),
		MaxHeaderBytes:    maxHeader,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:      cfg.TLS.MaxConcurrentStreams,
			MaxDecoderHeaderTableSize: h2.HeaderTableSize,
			MaxReadFrameSize:          h2.MaxFrameSize,
			// The write timeout is the coalescer's (see hand).
		},
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, h2.ConnKey, c)
		},
		ConnState: func(c net.Conn, state http.ConnState) {
			if g, ok := c.(*h2.Guard); ok && (state == http.StateClosed || state == http.StateHijacked) {
				h.forget(g)
			}
		},
		// Its complaints about clients (protocol errors, resets) are not
		// sluice's events: the guard and the metrics tell those.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	return h
}

// serve serves the connections handed over until shutdown.
func (h *h2Server) serve() error {
	if err := h.srv.Serve(h.queue); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// hand gives the server a connection that negotiated h2, its reads
// guarded and its writes coalesced.
func (h *h2Server) hand(tc *tls.Conn) {
	g := h2.NewGuard(h2.Coalesce(tc, h.writeTimeout), h.listSize, h.srv.ReadHeaderTimeout)
	h.mu.Lock()
	h.conns[g] = struct{}{}
	h.mu.Unlock()
	if !h.queue.put(g) {
		h.forget(g)
		tc.Close()
	}
}

func (h *h2Server) forget(g *h2.Guard) {
	h.mu.Lock()
	delete(h.conns, g)
	h.mu.Unlock()
}

// openConns returns the HTTP/2 connections open.
func (h *h2Server) openConns() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// shutdown sends every connection GOAWAY and waits for their streams to
// finish, or for ctx to end.
func (h *h2Server) shutdown(ctx context.Context) error {
	err := h.srv.Shutdown(ctx)
	if err == nil {
		err = h.bridge.Shutdown(ctx)
	}
	return err
}

// closeAll cuts every connection left and returns how many there were.
func (h *h2Server) closeAll() int {
	h.mu.Lock()
	n := len(h.conns)
	h.mu.Unlock()
	h.srv.Close()
	h.bridge.CloseAll()
	return n
}

// connQueue is a net.Listener of connections accepted and handshaken
// elsewhere.
type connQueue struct {
	addr net.Addr
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// put hands c to Accept; false once the queue is closed.
func (q *connQueue) put(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.done:
		return false
	}
}

// Accept returns the next connection handed over.
func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

// Close makes Accept and put fail from now on.
func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

// Addr returns the HTTPS listener's address.
func (q *connQueue) Addr() net.Addr { return q.addr }
