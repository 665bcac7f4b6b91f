// Package retry owns the retry policy: the decision whether a failed try may
// be sent again, the backoff between tries, the retry budget that keeps
// retries from multiplying load when many backends fail at once, and the
// pool of replay buffers. It is pure code and knows nothing of routing.
package retry

import (
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sluice-proxy/sluice/internal/config"
)

// Policy is a route's retry settings, resolved once when the route is built.
type Policy struct {
	Attempts     int
	TotalTimeout time.Duration
	Backoff      time.Duration
	MaxBody      int64
	onStatus     [600]bool
	methods      []string
}

// NewPolicy resolves cfg.
func NewPolicy(cfg config.Retry) *Policy {
	p := &Policy{Attempts: cfg.Attempts, TotalTimeout: cfg.TotalTimeout.D(), Backoff: cfg.Backoff.D(), MaxBody: int64(cfg.MaxBody)}
	for _, c := range cfg.OnStatus {
		if c >= 0 && c < 600 {
			p.onStatus[c] = true
		}
	}
	for _, m := range cfg.Methods {
		p.methods = append(p.methods, strings.ToUpper(m))
	}
	return p
}

// RetryStatus reports whether a response status asks for a retry.
func (p *Policy) RetryStatus(code int) bool { return code >= 0 && code < 600 && p.onStatus[code] }

// Idempotent reports whether a request may be sent again after it reached
// a backend: its method is in methods, or it carries an Idempotency-Key.
func (p *Policy) Idempotent(method []byte, hasIdempotencyKey bool) bool {
	return hasIdempotencyKey || slices.Contains(p.methods, string(method))
}

// Facts are what is known when a try has failed: everything Decide needs,
// gathered by the caller; Decide looks at nothing else.
type Facts struct {
	// Retryable: the failure is one that retries are for (a connect error,
	// a reset or a timeout before the response, a status in on_status);
	// false for the client's own failures.
	Retryable bool
	// Sent: a byte of the request may have reached the backend (false for
	// a connect failure, or when every write failed before the socket
	// took anything).
	Sent bool
	// Reused: the try's connection had served a request before.
	Reused bool
	// ResponseBytes: a byte of a response arrived from the backend.
	ResponseBytes bool
	// TimedOut: the try failed because a limit passed.
	TimedOut bool
	// Resent: the request was already sent again once after a reused
	// connection failed.
	Resent bool
	// Idempotent: the method is in methods or the request has an
	// Idempotency-Key.
	Idempotent bool
	// BodyIntact: the request body can be sent again: there is none, it is
	// buffered, or none of it has been read from the client yet.
	BodyIntact bool
	// TriesLeft is attempts less the tries made (resends not counted).
	TriesLeft int
	// TimeLeft is what remains of total_timeout.
	TimeLeft time.Duration
	// OthersLeft: a backend not yet tried is available.
	OthersLeft bool
	// SameAvailable: the backend just tried may still take requests.
	SameAvailable bool
	// BudgetOK: the retry budget allows one more retry.
	BudgetOK bool
}

// Verdict is the decision on a failed try.
type Verdict int

const (
	// Retry: send the request to another backend.
	Retry Verdict = iota
	// Resend: send the request again to the same backend on a fresh
	// connection: a reused connection failed before any response byte,
	// which is the keep-alive race (the backend closed the idle
	// connection as it was reused), not the backend's failure.
	Resend
	// Stop: the failure goes to the client; a retry would not be safe or
	// useful.
	Stop
	// StopBudget: a retry was needed and safe, but the budget is spent.
	StopBudget
)

// String names the verdict for the debug log.
func (v Verdict) String() string {
	switch v {
	case Retry:
		return "retry"
	case Resend:
		return "resend"
	case StopBudget:
		return "stop_budget"
	}
	return "stop"
}

// Decide says whether a failed try may be sent again, and where, with the
// reason; it is the only place that decides it. It is asked only before
// any of the response went to the client. A request reaches a backend
// again only when that is safe: the body can be replayed, and, unless it is idempotent, no
// byte of it can have reached the backend (as Go's transport decides).
// After a reused connection failed before any response byte, the same
// backend gets it once more on a fresh connection, whatever attempts says
// (the connection failed, not the backend); other retries go to a backend
// not yet tried, within attempts. The budget is looked at last, so that
// it only refuses retries that would otherwise have happened; a resend is
// a retry for it too.
func Decide(f Facts) (Verdict, string) {
	switch {
	case !f.Retryable:
		return Stop, "not a retryable failure"
	case f.TimeLeft <= 0:
		return Stop, "total_timeout spent"
	case !f.BodyIntact:
		return Stop, "the request body cannot be replayed"
	case f.Sent && !f.Idempotent:
		return Stop, "the request may have reached the backend and is not idempotent"
	}
	v, why := Retry, "another backend"
	switch {
	case f.Reused && !f.ResponseBytes && !f.TimedOut && !f.Resent && f.SameAvailable:
		v, why = Resend, "a reused connection failed before any response byte"
	case f.TriesLeft <= 0:
		return Stop, "no attempts left"
	case !f.OthersLeft:
		return Stop, "every available backend has been tried"
	}
	if !f.BudgetOK {
		return StopBudget, "retry budget exhausted"
	}
	return v, why
}

// Backoff returns the pause before retry number n (1 for the first retry):
// full jitter, a uniform random duration in [0, base*2^(n-1)), cut to
// timeLeft.
func Backoff(base time.Duration, n int, timeLeft time.Duration, rnd func(int64) int64) time.Duration {
	if base <= 0 {
		return 0
	}
	ceiling := base
	for i := 1; i < n && ceiling < time.Hour; i++ {
		ceiling *= 2
	}
	if rnd == nil {
		rnd = rand.Int64N
	}
	d := time.Duration(rnd(int64(ceiling)))
	if d > timeLeft {
		d = timeLeft
	}
	return d
}

// bufferPool holds replay buffers, so that buffering a body does not
// allocate per request.
var bufferPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// GetBuffer returns an empty buffer from the pool.
func GetBuffer() *[]byte {
	b := bufferPool.Get().(*[]byte)
	*b = (*b)[:0]
	return b
}

// PutBuffer returns b to the pool. Buffers grown past 4 MiB are dropped, so
// that one large body does not pin its memory.
func PutBuffer(b *[]byte) {
	if b == nil || cap(*b) > 4<<20 {
		return
	}
	bufferPool.Put(b)
}
