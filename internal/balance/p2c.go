package balance

import (
	"sync/atomic"

	"github.com/sluice-proxy/sluice/internal/backend"
)

// draws bounds the random draws a power-of-two-choices pick makes before
// it looks at every backend instead (when few are eligible).
const draws = 16

// p2c is the power of two choices: two distinct eligible backends drawn at
// random in proportion to their weights, and the one of lower cost wins (a
// tie at random). least_request and ewma differ only in the cost.
type p2c struct {
	common
	cum   []uint64 // cumulative weights, for weighted draws
	total uint64
}

func newP2C(backends []*backend.Backend, o Options) p2c {
	p := p2c{common: newCommon(backends, o), cum: make([]uint64, len(backends))}
	for i, b := range backends {
		p.total += uint64(weight(b))
		p.cum[i] = p.total
	}
	return p
}

// draw returns a backend drawn in proportion to its weight.
func (p *p2c) draw() *backend.Backend {
	r := p.rnd() % p.total
	lo, hi := 0, len(p.cum)-1
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if p.cum[mid] > r {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return p.backends[lo]
}

// pick runs the two choices with cost, which is compared per unit of
// weight (and of slow-start ramp) by the caller's function.
func (p *p2c) pick(tried []*backend.Backend, now int64, cost func(b *backend.Backend, now int64) float64) *backend.Backend {
	if len(p.backends) == 0 {
		return nil
	}
	var a, c *backend.Backend
	for i := 0; i < draws && c == nil; i++ {
		b := p.draw()
		if b == a || !eligible(b, tried) || !p.admits(b, now) {
			continue
		}
		if a == nil {
			a = b
		} else {
			c = b
		}
	}
	if c == nil {
		return p.best(tried, now, cost)
	}
	// A tie (at no load, typically) goes to the first drawn: it was drawn
	// in proportion to its weight (and ramp), so that weights hold when
	// nothing else tells the two apart.
	if cost(c, now) < cost(a, now) {
		return c
	}
	return a
}

// best returns the eligible backend of lowest cost, looking at every one:
// for when random draws find fewer than two. Ties go to each in
// proportion to its weight and ramp (a weighted reservoir draw).
func (p *p2c) best(tried []*backend.Backend, now int64, cost func(b *backend.Backend, now int64) float64) *backend.Backend {
	var best *backend.Backend
	var bestCost, tied float64
	for _, b := range p.backends {
		if !eligible(b, tried) {
			continue
		}
		c := cost(b, now)
		w := float64(weight(b)) * p.ramp(b, now)
		switch {
		case best == nil || c < bestCost:
			best, bestCost, tied = b, c, w
		case c == bestCost:
			tied += w
			if float64(p.rnd()>>11)/(1<<53)*tied < w {
				best = b
			}
		}
	}
	return best
}

// perWeight divides v by b's weight scaled by its slow-start ramp.
func (p *p2c) perWeight(v float64, b *backend.Backend, now int64) float64 {
	return v / (float64(weight(b)) * p.ramp(b, now))
}

// LeastRequest picks, of two backends drawn at random in proportion to
// weight, the one with fewer requests in flight per unit of weight.
type LeastRequest struct {
	p2c
	cost func(b *backend.Backend, now int64) float64
}

// NewLeastRequest returns a least_request balancer over backends.
func NewLeastRequest(backends []*backend.Backend, o Options) *LeastRequest {
	l := &LeastRequest{p2c: newP2C(backends, o)}
	l.cost = func(b *backend.Backend, now int64) float64 {
		return l.perWeight(float64(b.InFlight()), b, now)
	}
	return l
}

// Pick implements Balancer.
func (l *LeastRequest) Pick(_ Key, tried []*backend.Backend) *backend.Backend {
	return l.pick(tried, l.nowNanos(false), l.cost)
}

// trickleEvery is the longest a backend goes without a request under ewma
// while its route has traffic, so that its recovery is seen; trickleCheck
// is how often a pick looks for such a backend.
const (
	trickleEvery = 4 * 1e9
	trickleCheck = 100 * 1e6
)

// fastestRefresh is how often the route's fastest measured latency, which
// unmeasured backends count as, is worked out again.
const fastestRefresh = 100 * 1e6

// EWMA picks, of two backends drawn at random in proportion to weight, the
// one of lower peak-EWMA latency times requests in flight plus one, per
// unit of weight. A backend without a measurement counts as the route's
// fastest measured one. A backend not chosen for trickleEvery gets the
// next request, so that a slow one that recovered is seen to.
type EWMA struct {
	p2c
	cost        func(b *backend.Backend, now int64) float64
	nextTrickle atomic.Int64
	nextFastest atomic.Int64
	fastest     atomic.Pointer[backend.Backend] // of lowest measured latency
}

// NewEWMA returns an ewma balancer over backends.
func NewEWMA(backends []*backend.Backend, o Options) *EWMA {
	e := &EWMA{p2c: newP2C(backends, o)}
	e.cost = func(b *backend.Backend, now int64) float64 {
		lat := b.Latency(now)
		if lat == 0 {
			if f := e.fastest.Load(); f != nil {
				lat = f.Latency(now)
			}
			if lat == 0 {
				lat = 1 // nothing measured yet: requests in flight decide
			}
		}
		return e.perWeight(lat*float64(b.InFlight()+1), b, now)
	}
	return e
}

// Pick implements Balancer.
func (e *EWMA) Pick(_ Key, tried []*backend.Backend) *backend.Backend {
	now := e.nowNanos(true)
	if next := e.nextFastest.Load(); now >= next && e.nextFastest.CompareAndSwap(next, now+fastestRefresh) {
		e.refreshFastest(now)
	}
	if next := e.nextTrickle.Load(); now >= next && e.nextTrickle.CompareAndSwap(next, now+trickleCheck) {
		if b := e.starved(tried, now); b != nil {
			b.Picked(now)
			return b
		}
	}
	b := e.pick(tried, now, e.cost)
	if b != nil {
		b.Picked(now)
	}
	return b
}

// refreshFastest finds the backend of lowest measured latency.
func (e *EWMA) refreshFastest(now int64) {
	var fastest *backend.Backend
	var min float64
	for _, b := range e.backends {
		if l := b.Latency(now); l > 0 && (fastest == nil || l < min) {
			fastest, min = b, l
		}
	}
	e.fastest.Store(fastest)
}

// starved returns an eligible backend not chosen for trickleEvery, or nil.
func (e *EWMA) starved(tried []*backend.Backend, now int64) *backend.Backend {
	for _, b := range e.backends {
		if last := b.LastPicked(); last != 0 && now-last >= trickleEvery && eligible(b, tried) {
			return b
		}
	}
	return nil
}

// Interface guards.
var (
	_ Balancer = (*LeastRequest)(nil)
	_ Balancer = (*EWMA)(nil)
)
