package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-proxy/sluice/internal/config"
	"github.com/sluice-proxy/sluice/internal/h1"
	"github.com/sluice-proxy/sluice/internal/metrics"
)

// ecdheAEAD are the TLS 1.2 cipher suites offered: ECDHE key exchange (forward
// secrecy) with an AEAD cipher (no CBC, no RC4, no static RSA). TLS 1.3's
// suites are all of this kind and not configurable.
var ecdheAEAD = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// The ALPN protocol names.
const (
	alpnH2    = "h2"
	alpnHTTP1 = "http/1.1"
)

// certSet is the certificates of one configuration, indexed for the choice
// by SNI. It is immutable.
type certSet struct {
	certs    []tls.Certificate
	exact    map[string]int // DNS name -> first certificate that has it
	wildcard map[string]int // "example.com" for *.example.com -> first one
}

func newCertSet(certs []tls.Certificate) *certSet {
	cs := &certSet{certs: certs, exact: map[string]int{}, wildcard: map[string]int{}}
	for i, c := range certs {
		if c.Leaf == nil {
			continue
		}
		for _, name := range c.Leaf.DNSNames {
			name = strings.ToLower(strings.TrimSuffix(name, "."))
			m := cs.exact
			if rest, ok := strings.CutPrefix(name, "*."); ok {
				m, name = cs.wildcard, rest
			}
			if _, dup := m[name]; !dup {
				m[name] = i
			}
		}
	}
	return cs
}

// pick chooses the certificate for the server name a client asked for: one
// with that DNS name, else one whose wildcard matches its first label, else
// the first.
func (cs *certSet) pick(serverName string) *tls.Certificate {
	name := strings.ToLower(strings.TrimSuffix(serverName, "."))
	if i, ok := cs.exact[name]; ok {
		return &cs.certs[i]
	}
	if dot := strings.IndexByte(name, '.'); dot > 0 {
		if i, ok := cs.wildcard[name[dot+1:]]; ok {
			return &cs.certs[i]
		}
	}
	return &cs.certs[0]
}

// tlsConfig returns the TLS configuration of the HTTPS listener for cfg;
// ticketKey encrypts its session tickets, the same across reloads so that
// a session resumes after one.
func tlsConfig(cfg *config.Config, ticketKey [32]byte) *tls.Config {
	t := cfg.TLS
	cs := newCertSet(t.Keys)
	tc := &tls.Config{
		MinVersion:   t.Version(),
		CipherSuites: ecdheAEAD,
		NextProtos:   []string{alpnHTTP1},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return cs.pick(hello.ServerName), nil
		},
	}
	if t.HTTP2 {
		tc.NextProtos = []string{alpnH2, alpnHTTP1}
	}
	if t.ClientCAs != nil {
		tc.ClientAuth = tls.RequireAndVerifyClientCert
		tc.ClientCAs = t.ClientCAs
	}
	tc.SetSessionTicketKeys([][32]byte{ticketKey})
	return tc
}

// edge is the HTTPS listener: it accepts TCP connections, does each TLS
// handshake on a goroutine of its own within timeouts.client_header, and
// hands the connection to the engine of the protocol ALPN chose: http/1.1
// to sluice's own engine (h1, marked TLS), h2 to the HTTP/2 server.
type edge struct {
	ln      net.Listener
	conf    atomic.Pointer[tls.Config] // new handshakes use the one in place
	ticket  [32]byte                   // the session ticket key, made at start
	timeout atomic.Int64               // of a handshake (a time.Duration)
	bridge  *h1.Server                 // the engine of the HTTP/2 streams
	engine  *h1.Server
	h2      *h2Server
	conns   *metrics.Conns

	closing atomic.Bool
	wg      sync.WaitGroup // the accept loop and the handshakes
	mu      sync.Mutex
	shaking map[net.Conn]struct{} // connections in their handshake
}

// buildEdge builds the HTTPS listener of cfg on s.tlsLn, when there is
// one: sluice's HTTP/1.1 engine for http/1.1 (marked TLS), and the HTTP/2
// server with the bridge engine for its streams (marked TLS and HTTP2).
// The HTTP/2 server is built even when tls.http2 is off, so that a reload
// may turn h2 on.
func (s *Server) buildEdge(cfg *config.Config) {
	if s.tlsLn == nil {
		return
	}
	engine := newEngine(cfg, s.handler)
	engine.OnPanic, engine.TLS, engine.Poller = s.panicked, true, s.poller
	bridge := newEngine(cfg, s.handler)
	bridge.OnPanic, bridge.TLS, bridge.HTTP2 = s.panicked, true, true
	// A stream's rendered head is held to max_header_bytes as any request
	// head is (newEngine): it is shorter than the header list it renders
	// (a request line for four pseudo-header fields, no 32 bytes a field),
	// so a list under the limit passes, and one over it gets the proxy's
	// 431.
	e := &edge{ln: s.tlsLn, engine: engine, bridge: bridge, conns: s.conns,
		h2: newH2Server(cfg, bridge, s.tlsLn.Addr()), shaking: map[net.Conn]struct{}{}}
	e.timeout.Store(int64(cfg.Timeouts.ClientHeader.D()))
	rand.Read(e.ticket[:])
	e.conf.Store(tlsConfig(cfg, e.ticket))
	s.edge = e
	s.handler.TLSPort = s.tlsLn.Addr().(*net.TCPAddr).Port
}

// TLSAddr returns the HTTPS listener's address, or nil when there is none.
func (s *Server) TLSAddr() net.Addr {
	if s.tlsLn == nil {
		return nil
	}
	return s.tlsLn.Addr()
}

// serveEdge starts serving the HTTPS listener.
func (s *Server) serveEdge() {
	if s.edge == nil {
		return
	}
	report := func(err error) {
		if err != nil {
			select {
			case s.serveErr <- err:
			default:
			}
		}
	}
	go func() { report(s.edge.serve()) }()
	go func() { report(s.edge.h2.serve()) }()
}

// reloadEdge takes what a reload may change of the tls section into cfg:
// the certificates, client_ca, min_version, http2 and redirect_http take
// effect for new handshakes and requests at once; tls.listen and
// max_concurrent_streams on restart, as the log says.
func (s *Server) reloadEdge(cfg *config.Config) {
	if cfg.TLS.Listen != s.cfg.TLS.Listen {
		s.log.Warn("tls.listen changed; it takes effect on restart", "running", s.cfg.TLS.Listen, "configured", cfg.TLS.Listen)
		cfg.TLS.Listen = s.cfg.TLS.Listen
	}
	if cfg.TLS.MaxConcurrentStreams != s.cfg.TLS.MaxConcurrentStreams {
		s.log.Warn("tls.max_concurrent_streams changed; it takes effect on restart",
			"running", s.cfg.TLS.MaxConcurrentStreams, "configured", cfg.TLS.MaxConcurrentStreams)
		cfg.TLS.MaxConcurrentStreams = s.cfg.TLS.MaxConcurrentStreams
	}
	if s.edge != nil && len(cfg.TLS.Keys) > 0 {
		s.edge.reload(cfg)
	}
}

// openConns returns the client connections open on both listeners (an
// HTTP/2 connection counts once, whatever its streams).
func (s *Server) openConns() int {
	n := s.engine.OpenConns()
	if s.edge != nil {
		n += s.edge.engine.OpenConns() + s.edge.h2.openConns()
	}
	return n
}

// drain drains the plain listener and the HTTPS listener together (see
// Shutdown) and returns ctx's error when they did not finish in time.
func (s *Server) drain(ctx context.Context) error {
	if s.edge == nil {
		return s.engine.Shutdown(ctx)
	}
	done := make(chan error, 1)
	go func() { done <- s.edge.shutdown(ctx) }()
	err := s.engine.Shutdown(ctx)
	return errors.Join(err, <-done)
}

// cutAll closes every client connection left and returns how many there
// were.
func (s *Server) cutAll() int {
	n := s.engine.CloseAll()
	if s.edge != nil {
		n += s.edge.closeAll()
	}
	return n
}

// serve accepts connections until close; it returns nil once closed.
func (e *edge) serve() error {
	e.wg.Add(1)
	defer e.wg.Done()
	return h1.AcceptLoop(e.ln, e.closing.Load, func(nc net.Conn) {
		// The TLS connection waits for its bytes where plain ones do.
		nc = e.engine.Socket(nc)
		e.mu.Lock()
		if e.closing.Load() {
			e.mu.Unlock()
			nc.Close()
			return
		}
		e.shaking[nc] = struct{}{}
		e.wg.Add(1)
		e.mu.Unlock()
		go e.handshake(nc)
	})
}

// handshake does the TLS handshake of nc, bounded by the handshake timeout,
// counts its result, and hands the connection on.
func (e *edge) handshake(nc net.Conn) {
	defer e.wg.Done()
	nc.SetDeadline(time.Now().Add(time.Duration(e.timeout.Load())))
	tc := tls.Server(nc, e.conf.Load())
	err := tc.Handshake()
	e.mu.Lock()
	delete(e.shaking, nc)
	closing := e.closing.Load()
	e.mu.Unlock()
	if err != nil || closing {
		if err != nil {
			e.conns.HandshakeFailed()
		}
		nc.Close()
		return
	}
	nc.SetDeadline(time.Time{})
	if tc.ConnectionState().NegotiatedProtocol == alpnH2 {
		e.conns.Secure(true)
		e.h2.hand(tc)
		return
	}
	e.conns.Secure(false)
	go e.engine.ServeConn(tc)
}

// reload puts the TLS configuration of cfg in place for new handshakes.
func (e *edge) reload(cfg *config.Config) { e.conf.Store(tlsConfig(cfg, e.ticket)) }

// close stops accepting and ends the handshakes in progress.
func (e *edge) close() {
	e.mu.Lock()
	e.closing.Store(true)
	e.ln.Close()
	for nc := range e.shaking {
		nc.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}

// shutdown closes the listener, then drains both engines as
// Server.Shutdown says: HTTP/2 connections get GOAWAY and finish their
// streams. It returns ctx's error when the drain did not finish in time.
func (e *edge) shutdown(ctx context.Context) error {
	e.close()
	h2err := make(chan error, 1)
	go func() { h2err <- e.h2.shutdown(ctx) }()
	err := e.engine.Shutdown(ctx)
	return errors.Join(err, <-h2err)
}

// closeAll cuts every connection left and returns how many there were.
func (e *edge) closeAll() int {
	return e.engine.CloseAll() + e.h2.closeAll()
}

// countingListener counts the plain listener's connections.
type countingListener struct {
	net.Listener
	conns *metrics.Conns
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.conns.Plain()
	}
	return c, err
}

// setLimits puts cfg's client-side limits in force on the HTTPS listener:
// the handshake's time, the HTTP/1.1 engine's limits, and the bridge
// engine's hold on a stream's rendered head.
func (e *edge) setLimits(cfg *config.Config) {
	e.timeout.Store(int64(cfg.Timeouts.ClientHeader.D()))
	l := engineLimits(cfg)
	e.engine.SetLimits(l)
	e.bridge.SetLimits(l)
}
