// Package proxy owns the data path: one request's lifecycle from admission
// to the last byte of its response, as a fixed sequence of small phases on a
// per-request exchange (admit, pick, prepare, send, respond, fail, finish),
// with header hygiene, the upstream HTTP/1.1 client and its connection pools,
// streaming, and the mapping of failures to the documented statuses (docs/configuration.md). It parses no
// config and owns no goroutine that outlives a request (but the pool reaper
// of a Transport, which its owner closes).
package proxy

import (
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/sluice-proxy/sluice/internal/accesslog"
	"github.com/sluice-proxy/sluice/internal/h1"
)

// Handler serves the proxy listener's requests on the current Runtime.
type Handler struct {
	rt atomic.Pointer[Runtime]

	// log receives the proxy's own events (not the access log): retry
	// decisions at debug level.
	log *slog.Logger
	// AccessLog gets one line per request; it holds nil for none.
	AccessLog accesslog.Holder
	// TLSPort is the HTTPS listener's port, 0 when there is none; set
	// before the listeners serve. The plain listener's requests are
	// redirected to it when tls.redirect_http is on.
	TLSPort int

	inFlight atomic.Int64
}

// NewHandler returns a handler serving rt, logging its own events to log.
func NewHandler(rt *Runtime, log *slog.Logger) *Handler {
	h := &Handler{log: log}
	h.rt.Store(rt)
	return h
}

// Store puts rt in place for new requests; requests in flight finish on the
// runtime they started with.
func (h *Handler) Store(rt *Runtime) { h.rt.Store(rt) }

// Runtime returns the runtime new requests use.
func (h *Handler) Runtime() *Runtime { return h.rt.Load() }

// InFlight returns the number of requests being served, streamed responses
// included.
func (h *Handler) InFlight() int64 { return h.inFlight.Load() }

var exchangePool = sync.Pool{New: func() any { return new(exchange) }}

// Serve serves one request of the proxy listener. A panic on the way is
// the engine's to recover (it closes this connection only); on its way out
// the exchange gives back what it holds (see abandon) and is not reused.
func (h *Handler) Serve(c *h1.Conn) {
	h.inFlight.Add(1)
	x := exchangePool.Get().(*exchange)
	x.begin(h, c)
	done := false
	defer func() {
		if !done {
			x.abandon()
		}
	}()
	if x.admit() {
		x.forward()
	}
	x.finish()
	done = true
}

// trusted reports whether ip is in one of prefixes.
func trusted(prefixes []netip.Prefix, ip netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Refuse answers a request the engine could not read (headers over the
// limit, too slow, malformed) with the JSON error body and a fresh request
// ID, and records it like any other request, with route "".
func (h *Handler) Refuse(c *h1.Conn, status int, reason string) {
	word := ErrBadRequest
	switch status {
	case 431:
		word = ErrHeadersTooLarge
	case 408:
		word = ErrClientTimeout
	}
	h.inFlight.Add(1)
	x := exchangePool.Get().(*exchange)
	x.begin(h, c)
	x.method = append(x.method[:0], c.Method...)
	x.rec.Method = x.method
	x.requestID = appendRequestID(x.requestID)
	x.rec.RequestID = x.requestID
	x.fail(status, word, reason)
	x.finish()
}
