package proxy

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/sluice-proxy/sluice/internal/backend"
	"github.com/sluice-proxy/sluice/internal/balance"
	"github.com/sluice-proxy/sluice/internal/config"
	"github.com/sluice-proxy/sluice/internal/retry"
	"github.com/sluice-proxy/sluice/internal/upstream"
	"github.com/sluice-proxy/sluice/internal/wire"
)

// errTotalTimeout is retry.total_timeout spent before a response.
var errTotalTimeout error = totalTimeout{}

type totalTimeout struct{}

func (totalTimeout) Error() string   { return "retry.total_timeout spent" }
func (totalTimeout) Timeout() bool   { return true }
func (totalTimeout) Temporary() bool { return true }

// forward sends the request to a backend, and again when retry.Decide
// allows it, and relays the answer.
func (x *exchange) forward() {
	r := x.route
	p := r.Retry
	r.Budget.Request(x.rec.Time)
	x.deadline = x.rec.Time.Add(p.TotalTimeout)
	x.idempotent = p.Idempotent(x.method, x.head.idemKey) && !x.upgrade
	if x.hasBody() && p.Attempts > 1 && x.idempotent {
		if err := x.bufferBody(p.MaxBody); err != nil {
			x.sendFailed(err)
			return
		}
	}
	x.key = x.hashKey()
	b, trial := x.pick(nil)
	if b == nil {
		x.noBackend()
		return
	}
	fresh := false
	for {
		x.start(b, trial)
		err := x.try(fresh)
		x.noteLatency(err)
		if err == nil && !p.RetryStatus(x.resp.Status) {
			x.respond()
			return
		}
		x.judge(err)
		candidate := r.Balancer.Pick(x.key, x.tried)
		verdict, why := retry.Decide(x.facts(err, candidate))
		if verdict == retry.Retry {
			if b, trial = x.pick(candidate); b == nil {
				verdict, why = retry.Stop, "every available backend has been tried"
			}
		}
		x.debugDecision(verdict, why, err)
		if verdict == retry.Stop || verdict == retry.StopBudget {
			switch {
			case err == nil:
				x.respond() // the last failure is the backend's own response
			case verdict == retry.StopBudget:
				x.dropConn()
				x.fail(http.StatusServiceUnavailable, ErrRetryBudget, "a retry was needed for route "+r.Name+" but its retry budget is spent")
			default:
				x.sendFailed(err)
			}
			return
		}
		same := x.backend
		x.discard(err == nil)
		x.keepWholeBody()
		x.observe()
		r.Budget.Retry(time.Now())
		r.Metrics.Retry()
		r.Stats.Retry(same.Index)
		fresh = verdict == retry.Resend
		if fresh {
			x.resends++
			var ok bool
			if ok, trial = same.Admit(); ok {
				b = same
				continue
			}
			// The failure just observed ejected it: another one, then.
			if b, trial = x.pick(nil); b == nil {
				x.noBackend()
				return
			}
			fresh = false
		}
		if d := retry.Backoff(p.Backoff, x.nTried-x.resends, time.Until(x.deadline), nil); d > 0 {
			time.Sleep(d)
		}
	}
}

// pick chooses a backend not yet tried. The balancer picks among the
// available ones with no side effect (first, when given, is its pick
// already made); the chosen one is then admitted: an ejected backend only
// with its half-open trial, which one request at a time holds. One whose
// trial another request took meanwhile is passed over.
func (x *exchange) pick(first *backend.Backend) (*backend.Backend, bool) {
	avoid := x.tried
	b := first
	for {
		if b == nil {
			if b = x.route.Balancer.Pick(x.key, avoid); b == nil {
				return nil, false
			}
		}
		if ok, trial := b.Admit(); ok {
			return b, trial
		}
		avoid = append(slices.Clip(avoid), b) // rare: a copy, x.tried stays
		b = nil
	}
}

// noteLatency records, for a balancer that reads it (ewma), how long the
// try waited for its response head: its latency when the head came, the
// time spent when the wait timed out. The latency ends when the kernel
// received the answer's first bytes, when the connection knows it, so that
// the time this process took to get to them (its own backlog when it is
// busy) is not counted as the backend's; when the head was read otherwise.
func (x *exchange) noteLatency(err error) {
	if !x.route.trackLatency || x.now.IsZero() {
		return
	}
	if err == nil || wire.IsTimeout(err) && !isClientErr(err) {
		now := time.Now()
		end := now
		if err == nil && x.up != nil {
			if t := x.up.Arrived(); !t.Before(x.now) && t.Before(now) {
				end = t
			}
		}
		x.backend.ObserveLatency(end.Sub(x.now), now)
	}
}

// hashKey returns the request's key for the hash balancer: the client's
// address, a header's first value, a cookie's value or the cleaned path,
// hashed; none (Ok false) for another balancer, or when the header or
// cookie is missing or empty.
func (x *exchange) hashKey() balance.Key {
	switch x.route.hashKind {
	case config.HashClientIP:
		ip := x.rec.Client.As16()
		return balance.HashBytes(ip[:])
	case config.HashPath:
		return balance.HashBytes(x.path)
	case config.HashHeader:
		for _, f := range x.head.fields {
			if wire.EqualFold(f.Name, x.route.hashName) {
				if len(f.Value) == 0 {
					break
				}
				return balance.HashBytes(f.Value)
			}
		}
	case config.HashCookie:
		for _, f := range x.head.fields {
			if wire.EqualFold(f.Name, "cookie") {
				if v, ok := cookieValue(f.Value, x.route.hashName); ok {
					return balance.HashBytes(v)
				}
			}
		}
	}
	return balance.Key{}
}

// cookieValue returns the value of the cookie name in a Cookie header's
// value ("a=1; b=2"), and whether it is there with a value.
func cookieValue(v []byte, name string) ([]byte, bool) {
	for len(v) > 0 {
		var part []byte
		if i := bytes.IndexByte(v, ';'); i >= 0 {
			part, v = v[:i], v[i+1:]
		} else {
			part, v = v, nil
		}
		part = wire.TrimOWS(part)
		eq := bytes.IndexByte(part, '=')
		if eq < 0 || string(part[:eq]) != name {
			continue
		}
		val := part[eq+1:]
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = val[1 : len(val)-1]
		}
		return val, len(val) > 0
	}
	return nil, false
}

// judge records what the failed try came to, for passive health and the
// metrics: the backend's status, or the kind of failure.
func (x *exchange) judge(err error) {
	switch {
	case err == nil:
		x.status = x.resp.Status
		x.outcome = OutcomeOK
		if x.route.Passive.Failure(x.status) {
			x.outcome = OutcomeHTTPError
		}
	case !isClientErr(err):
		x.outcome = upstreamOutcome(err)
	}
}

// facts gathers what retry.Decide needs to know of the failed try; other
// is the backend a retry would go to, nil when none is left.
func (x *exchange) facts(err error, other *backend.Backend) retry.Facts {
	up := x.up
	now := time.Now()
	return retry.Facts{
		Retryable:     !isClientErr(err),
		Sent:          err == nil || up != nil && up.Written(),
		Reused:        up != nil && up.Reused(),
		ResponseBytes: err == nil || up != nil && up.ResponseStarted(),
		TimedOut:      err != nil && wire.IsTimeout(err),
		Resent:        x.resends > 0,
		Idempotent:    x.idempotent,
		BodyIntact:    x.bodyIntact(err),
		TriesLeft:     x.route.Retry.Attempts - (x.nTried - x.resends),
		TimeLeft:      x.deadline.Sub(now),
		OthersLeft:    other != nil,
		SameAvailable: x.backend.AvailableAgain(),
		BudgetOK:      x.route.Budget.Allow(now),
	}
}

// debugDecision logs a retry decision, when the debug level is on.
func (x *exchange) debugDecision(v retry.Verdict, why string, err error) {
	log := x.h.log
	if log == nil || !log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	failure := "status " + strconv.Itoa(x.status)
	if err != nil {
		failure = err.Error()
	}
	log.LogAttrs(context.Background(), slog.LevelDebug, "retry decision",
		slog.String("request_id", string(x.requestID)), slog.String("route", x.route.Name),
		slog.String("backend", x.backend.URL), slog.Int("try", x.nTried),
		slog.String("failure", failure), slog.String("verdict", v.String()), slog.String("why", why))
}

// start begins a try against b, which pick admitted (counting the request
// in flight to it); trial says whether it is b's half-open trial.
func (x *exchange) start(b *backend.Backend, trial bool) {
	x.backend = b
	x.trial = trial
	x.status, x.outcome = 0, ""
	x.tried = append(x.tried, b)
	x.nTried++
	x.rec.Backend = b.URL
	x.rec.Attempts = x.nTried
}

// discard ends a failed try whose answer will not be relayed (see
// upstream.Conn.DiscardShort).
func (x *exchange) discard(hasResponse bool) {
	up := x.up
	if up == nil {
		return
	}
	x.up = nil
	if hasResponse {
		up.DiscardShort(&x.resp, x.method, x.now)
		return
	}
	up.Close()
}

// dropConn closes the try's connection, if any.
func (x *exchange) dropConn() {
	if x.up != nil {
		x.up.Close()
		x.up = nil
	}
}

// try sends the request to x.backend and reads the response head into
// x.resp, within what is left of the total timeout; fresh asks for a new
// connection.
func (x *exchange) try(fresh bool) error {
	left := time.Until(x.deadline)
	if left <= 0 {
		return errTotalTimeout
	}
	err := x.send(fresh, left)
	if err != nil && wire.IsTimeout(err) && time.Until(x.deadline) <= 0 {
		return errTotalTimeout
	}
	return fromUpstream(err)
}

// hasBody reports whether the client sends a request body.
func (x *exchange) hasBody() bool { return x.head.chunked || x.head.contentLength > 0 }

// bodyIntact reports whether the request body can be sent again after the
// try failed with err: there is none, it is buffered, none of it was read
// (a connect failure comes before the body is read), or all of it went in
// the one write of the whole request, whose bytes are still at hand (see
// keepWholeBody).
func (x *exchange) bodyIntact(err error) bool {
	return !x.hasBody() || x.body != nil || x.up == nil && err != nil || x.wholeBody() != nil
}

// wholeBody returns the body of a request of declared length that went out
// whole in the one write that queued it, still in out's array, or nil.
func (x *exchange) wholeBody() []byte {
	n := x.head.contentLength
	if x.whole == 0 || x.head.chunked || n <= 0 || int64(x.whole) < n {
		return nil
	}
	return x.out[x.whole-int(n) : x.whole]
}

// keepWholeBody buffers the body of a request that went out whole in one
// write, before out is written over, so that the request can be sent
// again with it.
func (x *exchange) keepWholeBody() {
	if x.body != nil {
		return
	}
	if b := x.wholeBody(); b != nil {
		buf := retry.GetBuffer()
		*buf = append(*buf, b...)
		x.body = buf
	}
}

// send writes the request to a connection of the chosen backend and reads
// the response head into x.resp, in at most left. fresh asks for a new
// connection.
func (x *exchange) send(fresh bool, left time.Duration) error {
	r := x.route
	x.prepare()
	x.whole = 0
	pool := r.Pools[x.backend.Index]
	var up *upstream.Conn
	var err error
	if fresh {
		up, err = pool.Dial(min(r.UpstreamConnect, left))
	} else {
		up, err = pool.Get(x.rec.Time, min(r.UpstreamConnect, left))
	}
	if err != nil {
		return err
	}
	x.up = up
	x.writes = 0
	if x.hasBody() {
		err = x.writeBody(up)
	}
	if err != nil {
		return err
	}
	if x.writes == 0 {
		x.whole = len(x.out)
	}
	if up.Queue(x.out, r.UpstreamBody) {
		// Written by the wait for the answer.
		x.writes++
		x.out = x.out[:0] // the bytes stay, for keepWholeBody
	} else if err := x.flush(up); err != nil {
		return err
	}
	if r.trackLatency {
		up.TimeArrivals()
	}
	now := time.Now()
	x.now = now
	return up.AwaitHead(&x.resp, now, min(r.UpstreamHeader, x.deadline.Sub(now)), x.upgrade, x.gone)
}

// bufferBody reads the request body into a pooled buffer, up to max bytes,
// so that it can be sent again. A longer body keeps what was read as a
// prefix and is streamed. Nothing is sent upstream before the body is read,
// so a client that leaves meanwhile costs the backend nothing.
func (x *exchange) bufferBody(max int64) error {
	src := x.client.Body()
	buf := retry.GetBuffer()
	limit := min(max, x.route.MaxRequestBody)
	for {
		if len(*buf) == cap(*buf) {
			if int64(cap(*buf)) > limit {
				break
			}
			*buf = append(*buf, 0)[:len(*buf)]
		}
		n, err := src.Read((*buf)[len(*buf):cap(*buf)])
		*buf = (*buf)[:len(*buf)+n]
		if err == io.EOF {
			if !x.head.chunked && int64(len(*buf)) < x.head.contentLength {
				retry.PutBuffer(buf)
				return &clientError{ErrClientDisconnect, io.ErrUnexpectedEOF}
			}
			x.body = buf
			return nil
		}
		if err != nil {
			retry.PutBuffer(buf)
			return classifyClientRead(err)
		}
		if int64(len(*buf)) > limit {
			break
		}
	}
	if int64(len(*buf)) > x.route.MaxRequestBody {
		retry.PutBuffer(buf)
		return &clientError{ErrRequestTooLarge, errBodyTooLarge}
	}
	// Too long to buffer: stream it, starting with what was read.
	x.prefix = buf
	return nil
}
