package balance

import (
	"sync/atomic"

	"github.com/sluice-proxy/sluice/internal/backend"
)

// maxSchedule bounds the precomputed schedule of a weighted route.
const maxSchedule = 1 << 16

// RoundRobin is smooth weighted round robin (the sequence nginx produces,
// e.g. a a b a c a a for weights 5, 1, 1), made lock-free by computing one
// cycle of the sequence when the route is built: a pick is one atomic add
// and an index into the cycle. Unavailable or already tried backends are
// skipped by moving on along the cycle; one in slow start is kept with the
// probability of its ramp.
type RoundRobin struct {
	common
	schedule []uint16 // indexes into backends; one full cycle
	next     atomic.Uint64
}

// NewRoundRobin returns a round robin over backends (at most 65535), using
// their weights.
func NewRoundRobin(backends []*backend.Backend, o Options) *RoundRobin {
	return &RoundRobin{common: newCommon(backends, o), schedule: smoothSchedule(backends)}
}

// smoothSchedule computes one cycle of smooth weighted round robin, with the
// weights divided by their greatest common divisor and the cycle capped at
// maxSchedule picks.
func smoothSchedule(backends []*backend.Backend) []uint16 {
	g, total := 0, 0
	for _, b := range backends {
		g = gcd(g, weight(b))
	}
	if g == 0 {
		return nil
	}
	for _, b := range backends {
		total += weight(b) / g
	}
	if total > maxSchedule {
		total = maxSchedule
	}
	current := make([]int, len(backends))
	schedule := make([]uint16, 0, total)
	sum := 0
	for _, b := range backends {
		sum += weight(b) / g
	}
	for len(schedule) < total {
		best := -1
		for i, b := range backends {
			current[i] += weight(b) / g
			if best < 0 || current[i] > current[best] {
				best = i
			}
		}
		current[best] -= sum
		schedule = append(schedule, uint16(best))
	}
	return schedule
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Pick implements Balancer.
func (r *RoundRobin) Pick(_ Key, tried []*backend.Backend) *backend.Backend {
	n := uint64(len(r.schedule))
	if n == 0 {
		return nil
	}
	now := r.nowNanos(false)
	start := r.next.Add(1) - 1
	var fallback *backend.Backend // one in slow start that lost its draw
	for i := uint64(0); i < n; i++ {
		b := r.backends[r.schedule[(start+i)%n]]
		if !eligible(b, tried) {
			continue
		}
		if !r.admits(b, now) {
			if fallback == nil {
				fallback = b
			}
			continue
		}
		if i > 0 {
			// Skipped entries were not served; move the cursor past the
			// chosen one so the next pick does not land on it again.
			r.next.Add(i)
		}
		return b
	}
	return fallback
}

// Interface guard.
var _ Balancer = (*RoundRobin)(nil)
