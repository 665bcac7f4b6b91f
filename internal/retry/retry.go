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

// Facts are what is known when a try has failed.
type Facts struct {
	// Retryable: the failure is one that retries are for (a connect error,
	// a reset or a timeout before the response, a status in on_status).
	Retryable bool
	// ResponseStarted: some of the response already reached the client.
	ResponseStarted bool
	// Sent: some of the request may have reached the backend (false for a
	// connect failure).
	Sent bool
	// Idempotent: the method is in methods or the request has an
	// Idempotency-Key.
	Idempotent bool
	// BodyIntact: the request body can be sent again: there is none, it is
	// buffered, or none of it has been read from the client yet.
	BodyIntact bool
	// TriesLeft is attempts less the tries made.
	TriesLeft int
	// TimeLeft is what remains of total_timeout.
	TimeLeft time.Duration
	// BudgetOK: the retry budget allows one more retry.
	BudgetOK bool
}

// Verdict is the decision on a failed try.
type Verdict int

const (
	// Retry: send the request to another backend.
	Retry Verdict = iota
	// Stop: the failure goes to the client; a retry would not be safe or
	// useful.
	Stop
	// StopBudget: a retry was needed and safe, but the budget is spent.
	StopBudget
)

// Decide says whether a failed try may be retried, and why not when it may
// not. The budget is looked at last, so that it only refuses retries that
// would otherwise have happened.
func Decide(f Facts) (Verdict, string) {
	switch {
	case !f.Retryable:
		return Stop, "not a retryable failure"
	case f.ResponseStarted:
		return Stop, "the response has started"
	case f.TriesLeft <= 0:
		return Stop, "no attempts left"
	case f.TimeLeft <= 0:
		return Stop, "total_timeout spent"
	case !f.BodyIntact:
		return Stop, "the request body cannot be replayed"
	case f.Sent && !f.Idempotent:
		return Stop, "the request was sent and is not idempotent"
	case !f.BudgetOK:
		return StopBudget, "retry budget exhausted"
	}
	return Retry, ""
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
