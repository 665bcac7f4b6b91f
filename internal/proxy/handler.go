// Package proxy owns the data path: one request's lifecycle from admission
// to the last byte of its response, as a fixed sequence of small phases on a
// per-request exchange (admit, pick, prepare, send, respond, fail, finish),
// with header hygiene, the upstream HTTP/1.1 client and its connection pools,
// streaming, and the mapping of failures to the SPEC's statuses. It parses no
// config and owns no goroutine that outlives a request (but the pool reaper
// of a Transport, which its owner closes).
package proxy

import (
	"errors"
	"log/slog"

	"github.com/sluice-proxy/sluice/internal/accesslog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Handler serves the proxy listener's requests on the current Runtime.
type Handler struct {
	rt atomic.Pointer[Runtime]

	// Log receives the proxy's own events (not the access log).
	Log *slog.Logger
	// AccessLog gets one line per request; nil for none.
	AccessLog atomic.Pointer[accesslog.Log]

	inFlight atomic.Int64
}

// NewHandler returns a handler serving rt.
func NewHandler(rt *Runtime, log *slog.Logger) *Handler {
	h := &Handler{Log: log}
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

// Serve is the fasthttp request handler.
func (h *Handler) Serve(ctx *fasthttp.RequestCtx) {
	h.inFlight.Add(1)
	x := exchangePool.Get().(*exchange)
	x.begin(h, ctx)
	if x.admit() {
		x.forward()
	}
	if !x.streaming {
		x.finish()
	}
}

// peerAddr returns the client's IP address.
func peerAddr(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
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

// HeaderReceived is the engine's hook between reading a request's headers
// and its body. The engine reads a first byte of a body of declared length
// before the handler runs, so for such a request it sets that read's time
// limit to the route's client_body. And when the declared length is over the
// route's limit, the answer (413) is due before any of the body: the engine
// is told there is no body (and no 100 Continue to send), the handler
// answers from the raw headers and closes the connection.
func (h *Handler) HeaderReceived(hdr *fasthttp.RequestHeader) fasthttp.RequestConfig {
	cfg := fasthttp.RequestConfig{MaxRequestBodySize: 1}
	cl := int64(hdr.ContentLength())
	if cl <= 0 {
		return cfg
	}
	r := h.rt.Load().bodyRoute(hdr)
	if r == nil {
		return cfg
	}
	cfg.ReadTimeout = r.ClientBody
	if cl > r.MaxRequestBody {
		hdr.SetContentLength(0)
		hdr.Del("Expect")
	}
	return cfg
}

// EngineError is the engine's error handler: it answers a request the
// engine could not read (headers over the limit, too slow, malformed) with
// the SPEC's JSON body and a fresh request ID, and records it like any
// other request, with route "".
func (h *Handler) EngineError(ctx *fasthttp.RequestCtx, err error) {
	status, word, msg := fasthttp.StatusBadRequest, ErrBadRequest, "malformed request"
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &small) || errors.Is(err, fasthttp.ErrSmallReadBuffer):
		status, word, msg = fasthttp.StatusRequestHeaderFieldsTooLarge, ErrHeadersTooLarge, "request headers are over the limit"
	case errors.As(err, &ne) && ne.Timeout():
		status, word, msg = fasthttp.StatusRequestTimeout, ErrClientTimeout, "the client was too slow sending its request"
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status, word, msg = fasthttp.StatusRequestEntityTooLarge, ErrRequestTooLarge, "request body is over the limit"
	}
	h.inFlight.Add(1)
	x := exchangePool.Get().(*exchange)
	x.begin(h, ctx)
	if x.rec.Time.IsZero() {
		x.rec.Time = time.Now()
	}
	x.method = append(x.method[:0], ctx.Request.Header.Method()...)
	x.rec.Method = x.method
	x.requestID = appendRequestID(x.requestID)
	x.rec.RequestID = x.requestID
	x.fail(status, word, msg)
	x.finish()
}
