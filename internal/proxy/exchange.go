package proxy

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"
	"unsafe"

	"github.com/sluice-proxy/sluice/internal/accesslog"
	"github.com/sluice-proxy/sluice/internal/backend"
	"github.com/sluice-proxy/sluice/internal/balance"
	"github.com/sluice-proxy/sluice/internal/h1"
	"github.com/sluice-proxy/sluice/internal/metrics"
	"github.com/sluice-proxy/sluice/internal/retry"
	"github.com/sluice-proxy/sluice/internal/route"
	"github.com/sluice-proxy/sluice/internal/upstream"
	"github.com/sluice-proxy/sluice/internal/wire"
)

// exchange carries one request through its phases. Exchanges are pooled.
// Its two connections are the client's (client, served by the h1 engine)
// and the backend's for the current try (up, from the upstream package).
type exchange struct {
	h       *Handler
	client  *h1.Conn
	rt      *Runtime
	route   *Route
	rec     accesslog.Entry
	log     *accesslog.Log // held from begin to finish (see accesslog.Holder)
	word    metrics.ErrorWord
	outcome Outcome // the last try's outcome, "" when no backend answered

	head      requestHead
	method    []byte // request method (copy)
	target    []byte // request target as received (copy)
	path      string // cleaned path, for routing and forwarding
	query     []byte // query with its "?", or nil
	host      []byte // authority to send as Host
	requestID []byte
	tried     []*backend.Backend // backends tried, in order; backed by triedBuf
	triedBuf  [8]*backend.Backend
	nTried    int // tries made, resends included
	key       balance.Key
	resends   int // tries that were resends after a reused connection failed

	backend *backend.Backend
	trial   bool // the try is the backend's half-open trial
	status  int  // the backend's status for this try, 0 when none
	up      *upstream.Conn
	resp    upstream.Head
	out     []byte // the upstream request head
	writes  int    // writes made on the try's connection
	whole   int    // the whole request was queued at once: its length in out

	idempotent bool // the request may be sent more than once

	body     *[]byte   // the whole request body, buffered for replay; nil when streamed
	prefix   *[]byte   // the first bytes of a streamed body, read while trying to buffer it
	deadline time.Time // end of retry.total_timeout
	now      time.Time // when the last response head was awaited

	// gone asks the client's connection whether the client left; made
	// once per pooled exchange, so that a wait does not allocate.
	gone func() bool

	upgrade  bool   // the client asks for a protocol upgrade the proxy carries
	tunneled bool   // the connection became a tunnel: its byte counts are the tunnel's
	errBody  []byte // the body of the proxy's own error answer
	// retryAfter is the Retry-After of the proxy's own error answer, in
	// seconds; 0 for none.
	retryAfter int64
}

func (x *exchange) begin(h *Handler, c *h1.Conn) {
	x.h, x.client, x.rt = h, c, h.rt.Load()
	x.log = h.AccessLog.Acquire()
	x.route, x.backend, x.up, x.nTried, x.resends = nil, nil, nil, 0, 0
	x.tried = x.triedBuf[:0]
	x.rec = accesslog.Entry{Time: c.Time, Client: c.RemoteIP(), Proto: c.ProtoName()}
	x.word = metrics.NoError
	x.requestID = x.requestID[:0]
	x.target, x.query, x.host, x.path = x.target[:0], nil, nil, ""
	x.body, x.prefix, x.upgrade, x.tunneled = nil, nil, false, false
	x.retryAfter = 0
	if x.gone == nil {
		x.gone = func() bool { return x.client.PeerGone() }
	}
}

// admit validates the request, gives it its ID and matches its route. It
// answers the request itself and returns false when it must not be
// forwarded.
func (x *exchange) admit() bool {
	c := x.client
	x.method = append(x.method[:0], c.Method...)
	x.rec.Method = x.method
	x.target = append(x.target, c.Target...)
	x.rec.Path = x.target

	proto := c.Proto
	// HTTP/1.x with x above 1 is processed as HTTP/1.1 (RFC 9112 2.3).
	http11 := string(proto[:7]) == "HTTP/1." && proto[7] >= '1'
	if !http11 && string(proto) != "HTTP/1.0" {
		x.requestID = idOrNew(x.requestID, scanRequestID(c.Header))
		x.rec.RequestID = x.requestID
		c.SetClose()
		x.fail(http.StatusBadRequest, ErrBadRequest, "HTTP version not supported")
		return false
	}
	herr := parseRequestHead(&x.head, c.Header, http11)
	id := x.head.requestID
	if herr != nil {
		// The head was read whole: a valid X-Request-Id in it is kept on
		// the error too, wherever it stands.
		id = scanRequestID(c.Header)
	}
	x.requestID = idOrNew(x.requestID, id)
	x.rec.RequestID = x.requestID
	if herr != nil {
		c.SetClose()
		x.fail(herr.status, ErrBadRequest, herr.reason)
		return false
	}
	x.rec.Client = x.clientAddr()
	c.SetBody(x.head.contentLength, x.head.chunked, x.head.expect)
	if !x.head.keepAlive(http11) {
		c.SetClose()
	}
	method := x.rec.Method
	if !wire.IsToken(method) {
		c.SetClose()
		x.fail(http.StatusBadRequest, ErrBadRequest, "invalid method")
		return false
	}
	if x.redirects() && (string(method) == "CONNECT" || string(x.target) == "*") {
		// Every request is redirected, these too; their targets name no
		// path, so they go to the root.
		x.host = x.head.host
		x.redirect(rootPath)
		return false
	}
	if string(method) == "CONNECT" {
		x.fail(http.StatusMethodNotAllowed, ErrMethodNotAllowed, "CONNECT is not supported")
		return false
	}
	if !x.parseTarget() {
		return false
	}
	if x.redirects() {
		x.redirect(x.rec.Path)
		return false
	}
	x.route = x.match()
	if x.route == nil {
		x.fail(http.StatusNotFound, ErrNoRoute, "no route matches "+x.path)
		return false
	}
	x.rec.Route = x.route.Name
	if !x.allowRate() {
		return false
	}
	c.Body().SetTimeout(x.route.ClientBody)
	x.upgrade = x.head.wantsUpgrade()
	if x.head.contentLength > x.route.MaxRequestBody {
		c.SetClose()
		x.fail(http.StatusRequestEntityTooLarge, ErrRequestTooLarge,
			"request body of "+strconv.FormatInt(x.head.contentLength, 10)+" bytes is over the limit of "+
				strconv.FormatInt(x.route.MaxRequestBody, 10))
		return false
	}
	return true
}

// parseTarget splits the request target into path and query and finds the
// authority, answering targets the proxy does not forward.
func (x *exchange) parseTarget() bool {
	t := x.target
	x.host = x.head.host
	if bytes.IndexByte(t, '#') >= 0 {
		x.fail(http.StatusBadRequest, ErrBadRequest, "a request target may not hold a fragment")
		return false
	}
	for _, c := range t {
		if c <= ' ' || c >= 0x7f {
			x.fail(http.StatusBadRequest, ErrBadRequest, "invalid character in the request target")
			return false
		}
	}
	switch {
	case len(t) > 0 && t[0] == '/':
	case string(t) == "*":
		if string(x.rec.Method) == "OPTIONS" {
			out := appendStatusLine(x.client.Begin(), http.StatusOK, nil)
			x.client.Out = x.endHead(appendContentLength(out, 0), false)
			x.rec.Status = http.StatusOK
			return false
		}
		x.fail(http.StatusBadRequest, ErrBadRequest, "the * target is only for OPTIONS")
		return false
	case hasSchemePrefix(t):
		// absolute-form: routed by its path; its authority replaces Host.
		var auth []byte
		auth, t = splitAbsolute(t)
		if len(auth) == 0 || !validHost(auth) {
			x.fail(http.StatusBadRequest, ErrBadRequest, "invalid authority in the request target")
			return false
		}
		x.host = auth
		x.rec.Path = t // the access log has the target's path and query
	default:
		x.fail(http.StatusBadRequest, ErrBadRequest, "unsupported request target form")
		return false
	}
	p := t
	if q := bytes.IndexByte(t, '?'); q >= 0 {
		p, x.query = t[:q], t[q:]
	}
	if len(p) == 0 {
		x.path = "/" // "http://h" and "http://h?q" have the path "/"
	} else {
		x.path = route.CleanPath(unsafe.String(unsafe.SliceData(p), len(p)))
	}
	return true
}

// splitAbsolute splits an absolute-form target into its authority and its
// path and query.
func splitAbsolute(t []byte) (authority, rest []byte) {
	t = t[bytes.IndexByte(t, ':')+3:]
	end := bytes.IndexAny(t, "/?")
	if end < 0 {
		end = len(t)
	}
	return t[:end], t[end:]
}

func hasSchemePrefix(t []byte) bool {
	return len(t) > 7 && wire.EqualFold(t[:7], "http://") || len(t) > 8 && wire.EqualFold(t[:8], "https://")
}

// match finds the route, or nil.
func (x *exchange) match() *Route {
	r := x.rt.Table.Match(unsafe.String(unsafe.SliceData(x.host), len(x.host)), x.path)
	if r == nil {
		return nil
	}
	return x.rt.Routes[r.Index]
}

// prepare writes the upstream request head into x.out.
func (x *exchange) prepare() {
	out := x.out[:0]
	out = append(out, x.rec.Method...)
	out = append(out, ' ')
	out = x.route.AppendForwarded(out, x.path, x.backend.PathPrefix)
	out = append(out, x.query...)
	out = append(out, " HTTP/1.1\r\n"...)
	// Host goes on as the client sent it, an empty one too; an HTTP/1.0
	// request without one gets an empty one, as HTTP/1.1 requires of a
	// request whose target has no authority (RFC 9112 section 3.2).
	out = appendField(out, "Host", x.host)
	for _, f := range x.head.fields {
		if requestFieldDropped(f.Name, x.head.connection) {
			if wire.EqualFold(f.Name, "te") && wire.HasToken(f.Value, "trailers") {
				out = append(out, "TE: trailers\r\n"...)
			}
			continue
		}
		out = appendField(out, f.Name, f.Value)
	}
	if x.upgrade {
		out = appendField(out, "Connection", []byte("Upgrade"))
		out = appendField(out, "Upgrade", x.head.upgrade)
	}
	peer := x.client.RemoteIP()
	out = appendForwarding(out, x.head.fields, peer, trusted(x.rt.Trusted, peer), x.host, x.client.Secure())
	out = appendField(out, "X-Request-Id", x.requestID)
	switch {
	case x.body != nil:
		out = append(out, "Content-Length: "...)
		out = strconv.AppendInt(out, int64(len(*x.body)), 10)
		out = append(out, '\r', '\n')
	case x.head.chunked:
		out = append(out, "Transfer-Encoding: chunked\r\n"...)
	case x.head.contentLength >= 0:
		out = append(out, "Content-Length: "...)
		out = strconv.AppendInt(out, x.head.contentLength, 10)
		out = append(out, '\r', '\n')
	}
	x.out = append(out, '\r', '\n')
}

// sendFailed answers a try that got no response head.
func (x *exchange) sendFailed(err error) {
	x.dropConn()
	var ce *clientError
	if errors.As(err, &ce) {
		x.client.SetClose()
		switch ce.word {
		case ErrRequestTooLarge:
			x.fail(http.StatusRequestEntityTooLarge, ce.word, "request body is over the limit of "+
				strconv.FormatInt(x.route.MaxRequestBody, 10)+" bytes")
		case ErrClientTimeout:
			x.fail(http.StatusRequestTimeout, ce.word, "the client was too slow sending its body")
		case ErrClientDisconnect:
			// Nothing can be sent: the client is gone. 499 is what nginx
			// logs for it.
			x.word = ce.word
			x.rec.Status = 499
		default:
			x.fail(http.StatusBadRequest, ErrBadRequest, "malformed request body")
		}
		return
	}
	x.outcome = upstreamOutcome(err)
	switch x.outcome {
	case OutcomeTimeout:
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "write" {
			x.fail(http.StatusGatewayTimeout, ErrUpstreamTimeout,
				"backend "+x.backend.URL+" stopped reading the request")
			return
		}
		x.fail(http.StatusGatewayTimeout, ErrUpstreamTimeout,
			"backend "+x.backend.URL+" sent no response headers in time")
	case OutcomeConnectError:
		x.fail(http.StatusBadGateway, ErrUpstream, "cannot connect to backend "+x.backend.URL)
	default:
		x.fail(http.StatusBadGateway, ErrUpstream, "backend "+x.backend.URL+" failed: "+err.Error())
	}
}

// fail answers with the JSON error body, once.
func (x *exchange) fail(status int, word metrics.ErrorWord, message string) {
	x.rec.Status = status
	x.word = word
	x.rec.BytesOut = int64(x.writeError(status, word, message))
}

// observe reports the try's outcome to passive health, once. Tries that
// ended for the client's reasons (it left, it was too slow, its body was
// malformed or too large) say nothing about the backend and are not counted.
func (x *exchange) observe() {
	b := x.backend
	if b == nil {
		return
	}
	if x.outcome == "" || isClientWord(x.word) {
		x.route.Passive.Abandon(b, x.trial)
	} else {
		x.route.Passive.Observe(b, x.outcome, x.status, x.trial)
	}
	if x.outcome != "" {
		x.route.Metrics.Upstream(b.Index, string(x.outcome))
		x.route.Stats.Try(b.Index, x.outcome != OutcomeOK)
	}
	b.Release()
	x.backend = nil
}

func isClientWord(w metrics.ErrorWord) bool {
	switch w {
	case ErrClientDisconnect, ErrClientTimeout, ErrBadRequest, ErrRequestTooLarge:
		return true
	}
	return false
}

// finish records the request, once, and recycles the exchange.
func (x *exchange) finish() {
	x.observe()
	retry.PutBuffer(x.body)
	retry.PutBuffer(x.prefix)
	if cap(x.out) > 128<<10 {
		x.out = nil // a big upload's staging: don't keep it pooled
	}
	x.rec.Duration = time.Since(x.rec.Time)
	if !x.tunneled {
		// What the client sent of its body, however the request ended:
		// a 413, a 408 or a client that left count what did arrive.
		x.rec.BytesIn = x.client.Body().Count()
	}
	m := x.rt.NoRoute
	if x.route != nil {
		m = x.route.Metrics
	}
	m.Request(x.rec.Method, x.rec.Status, x.rec.Duration.Seconds())
	m.Error(x.word)
	x.recordStats()
	x.rec.Error = x.word.String()
	x.log.Write(&x.rec)
	x.log.Release()
	h := x.h
	x.h, x.client, x.rt, x.route, x.backend, x.up, x.log = nil, nil, nil, nil, nil, nil, nil
	exchangePool.Put(x)
	h.inFlight.Add(-1)
}

// abandon ends an exchange that a panic cut short: the try's connection is
// closed, not pooled; the backend's in-flight count and any trial it held
// are given back without an outcome; the request stops counting as in
// flight. The exchange itself is dropped, not pooled: what it held may be
// half-changed.
func (x *exchange) abandon() {
	x.dropConn()
	if b := x.backend; b != nil {
		x.route.Passive.Abandon(b, x.trial)
		b.Release()
		x.backend = nil
	}
	x.log.Release()
	x.h.inFlight.Add(-1)
}
