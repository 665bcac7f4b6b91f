// Package balance owns the load-balancing policies. A Balancer picks one of
// a route's backends among those available (healthy, or ejected with their
// half-open trial free) and not yet tried for the request. Picks do no I/O,
// no logging, no locking and no allocation, and change no backend's state:
// taking the chosen backend (its trial) is the caller's next step. The
// figures they read (requests in flight, latency) are atomics the request
// lifecycle updates.
package balance

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/sluice-proxy/sluice/internal/backend"
)

// Balancer picks a backend for a request.
type Balancer interface {
	// Pick returns an available backend that is not in tried, or nil when
	// there is none. key is the request's hash key; balancers other than
	// hash ignore it.
	Pick(key Key, tried []*backend.Backend) *backend.Backend
}

// Key is a request's hash key, hashed: Ok is false when the request has
// none (the header or cookie is missing).
type Key struct {
	Hash uint64
	Ok   bool
}

// HashBytes hashes a key's bytes (FNV-1a, then a finaliser that spreads
// the bits): stable across processes, so that every sluice instance of a
// fleet sends a key to the same backend.
func HashBytes[S ~string | ~[]byte](s S) Key {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return Key{Hash: mix(h), Ok: true}
}

// mix is splitmix64's finaliser.
func mix(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// Options are what every balancer shares.
type Options struct {
	// SlowStart ramps up the weight of a backend that joined or came back
	// (backend.UpSince), from a tenth, over this time; 0 for none.
	SlowStart time.Duration
	// Rand returns random bits; nil for math/rand/v2's. Tests inject
	// their own.
	Rand func() uint64
	// Now returns the time; nil for time.Now.
	Now func() time.Time
}

// Names of the balancers, as a route's balancer key takes them.
const (
	RoundRobinName   = "round_robin"
	LeastRequestName = "least_request"
	EWMAName         = "ewma"
	HashName         = "hash"
)

// New returns the balancer called name over backends (in config order, at
// most 65535).
func New(name string, backends []*backend.Backend, o Options) (Balancer, error) {
	switch name {
	case RoundRobinName, "":
		return NewRoundRobin(backends, o), nil
	case LeastRequestName:
		return NewLeastRequest(backends, o), nil
	case EWMAName:
		return NewEWMA(backends, o), nil
	case HashName:
		return NewHash(backends, o), nil
	}
	return nil, fmt.Errorf("unknown balancer %q", name)
}

// common is what every balancer holds: the backends, their weights and the
// slow-start ramp.
type common struct {
	backends  []*backend.Backend
	slowStart int64 // ns
	rnd       func() uint64
	now       func() time.Time
}

func newCommon(backends []*backend.Backend, o Options) common {
	c := common{backends: backends, slowStart: int64(o.SlowStart), rnd: o.Rand, now: o.Now}
	if c.rnd == nil {
		c.rnd = rand.Uint64
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

// nowNanos returns the time as unix ns when a balancer needs it (slow
// start on, or always), 0 otherwise.
func (c *common) nowNanos(always bool) int64 {
	if always || c.slowStart > 0 {
		return c.now().UnixNano()
	}
	return 0
}

// ramp returns b's slow-start factor at now (unix ns): its share of the
// window since it came back, at least a tenth, 1 once the window has
// passed or when slow start is off.
func (c *common) ramp(b *backend.Backend, now int64) float64 {
	if c.slowStart <= 0 {
		return 1
	}
	up := b.UpSince()
	if up == 0 || now-up >= c.slowStart {
		return 1
	}
	f := float64(now-up) / float64(c.slowStart)
	if f < 0.1 {
		return 0.1
	}
	return f
}

// admits reports whether b, drawn in proportion to its full weight, is
// kept: with probability ramp(b), which scales its share by its slow
// start.
func (c *common) admits(b *backend.Backend, now int64) bool {
	f := c.ramp(b, now)
	return f >= 1 || float64(c.rnd()>>11)/(1<<53) < f
}

// weight returns b's weight (at least 1).
func weight(b *backend.Backend) int {
	if b.Weight < 1 {
		return 1
	}
	return b.Weight
}

// eligible reports whether b may take the request: available and not
// tried.
func eligible(b *backend.Backend, tried []*backend.Backend) bool {
	return b.Available() && !contains(tried, b)
}

func contains(tried []*backend.Backend, b *backend.Backend) bool {
	for _, t := range tried {
		if t == b {
			return true
		}
	}
	return false
}
