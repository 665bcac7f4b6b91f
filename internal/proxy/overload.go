package proxy

import (
	"net/http"
	"strings"

	"github.com/sluice-proxy/sluice/internal/backend"
	"github.com/sluice-proxy/sluice/internal/config"
	"github.com/sluice-proxy/sluice/internal/metrics"
	"github.com/sluice-proxy/sluice/internal/ratelimit"
	"github.com/sluice-proxy/sluice/internal/wire"
)

// The error words of overload protection, beside the others (errors.go).
const (
	ErrRateLimited       = metrics.ErrRateLimited
	ErrBackendOverloaded = metrics.ErrBackendOverloaded
)

// overload is a route's overload protection, resolved when the runtime is
// built: its rate limiter and what the limiter keys on, and the messages
// of its refusals (made once, so that a flood of refusals allocates
// nothing).
type overload struct {
	// limit is the route's rate limiter, nil when rate_limit is off. It
	// carries over a reload that keeps the route's name and its rate_limit
	// settings, so that a reload hands no client a fresh burst.
	limit *ratelimit.Limiter
	// keyKind is config.RateKeyClientIP, RateKeyHeader or RateKeyRoute;
	// keyHeader is the header's name for RateKeyHeader, lower-cased.
	keyKind, keyHeader string
	limitedMsg         string
	overloadedMsg      string
}

// newOverload resolves the overload protection of r, built from rc, and
// sets its backends' circuit breaker limit. The limiter of prev's route of
// the same name is kept when its rate_limit is the same.
func newOverload(prev *Runtime, r *Route, rc *config.Route) overload {
	for _, b := range r.Backends {
		b.SetMaxInFlight(int64(rc.CircuitBreaker.MaxRequestsPerBackend))
	}
	o := overload{
		overloadedMsg: "every healthy backend of route " + r.Name + " is at its limit of requests in flight",
	}
	rl := rc.RateLimit
	if !rl.On() {
		return o
	}
	o.keyKind, o.keyHeader, _ = config.ParseRateKey(rl.Key) // validated by config
	o.keyHeader = strings.ToLower(o.keyHeader)
	o.limitedMsg = "rate limit of route " + r.Name + " reached"
	if prev != nil {
		for j, pr := range prev.Routes {
			if pr.Name == r.Name && pr.overload.limit != nil && prev.Config.Routes[j].RateLimit == rl {
				o.limit = pr.overload.limit
				return o
			}
		}
	}
	o.limit = ratelimit.New(rl.RequestsPerSecond, rl.Depth(), o.keyKind != config.RateKeyRoute)
	return o
}

// allowRate takes a token of the route's rate limit for the request, and
// answers 429 with Retry-After and returns false when there is none.
func (x *exchange) allowRate() bool {
	r := x.route
	l := r.overload.limit
	if l == nil {
		return true
	}
	ok, wait := l.Allow(x.rateKey(), ratelimit.Nanos(x.rec.Time))
	if ok {
		return true
	}
	r.Metrics.RateLimited()
	x.retryAfter = ratelimit.RetryAfter(wait)
	x.fail(http.StatusTooManyRequests, ErrRateLimited, r.overload.limitedMsg)
	return false
}

// rateKey returns the request's key for the route's rate limit: its
// client's address, or its first value of the key header (missing and
// empty are one key); 0 for the route key, whose limiter has one bucket.
func (x *exchange) rateKey() uint64 {
	switch x.route.overload.keyKind {
	case config.RateKeyClientIP:
		return ratelimit.KeyAddr(x.rec.Client)
	case config.RateKeyHeader:
		for _, f := range x.head.fields {
			if wire.EqualFold(f.Name, x.route.overload.keyHeader) {
				return ratelimit.KeyBytes(f.Value)
			}
		}
		return ratelimit.KeyBytes(nil)
	}
	return 0
}

// noBackend answers a request for which no backend could be picked: 503
// backend_overloaded when a healthy backend was passed over for being at
// its circuit breaker's limit, else 503 no_healthy_backend. Either way no
// backend was tried, so none has its health judged.
func (x *exchange) noBackend() {
	r := x.route
	for _, b := range r.Backends {
		if b.Full() && b.State() == backend.Healthy {
			x.fail(http.StatusServiceUnavailable, ErrBackendOverloaded, r.overload.overloadedMsg)
			return
		}
	}
	x.fail(http.StatusServiceUnavailable, ErrNoHealthyBackend, "route "+r.Name+" has no healthy backend")
}
