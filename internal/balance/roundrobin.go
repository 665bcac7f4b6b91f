// Package balance owns the load-balancing policies. A Balancer picks one of a
// route's backends; Pick does no I/O, no logging, no locking and no
// allocation.
package balance

import (
	"sync/atomic"

	"github.com/sluice-proxy/sluice/internal/backend"
)

// Balancer picks a backend for a request.
type Balancer interface {
	// Pick returns an available backend that is not in tried, or nil when
	// there is none.
	Pick(tried []*backend.Backend) *backend.Backend
}

// maxSchedule bounds the precomputed schedule of a weighted route.
const maxSchedule = 1 << 16

// RoundRobin is smooth weighted round robin (the sequence nginx produces,
// e.g. a a b a c a a for weights 5, 1, 1), made lock-free by computing one
// cycle of the sequence when the route is built: a pick is one atomic add
// and an index into the cycle. Unavailable or already tried backends are
// skipped by moving on along the cycle.
type RoundRobin struct {
	backends []*backend.Backend
	schedule []uint16 // indexes into backends; one full cycle
	next     atomic.Uint64
}

// NewRoundRobin returns a round robin over backends (at most 65535), using
// their weights.
func NewRoundRobin(backends []*backend.Backend) *RoundRobin {
	return &RoundRobin{backends: backends, schedule: smoothSchedule(backends)}
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

func weight(b *backend.Backend) int {
	if b.Weight < 1 {
		return 1
	}
	return b.Weight
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Pick implements Balancer.
func (r *RoundRobin) Pick(tried []*backend.Backend) *backend.Backend {
	n := uint64(len(r.schedule))
	if n == 0 {
		return nil
	}
	start := r.next.Add(1) - 1
	for i := uint64(0); i < n; i++ {
		b := r.backends[r.schedule[(start+i)%n]]
		if b.Available() && !contains(tried, b) {
			if i > 0 {
				// Skipped entries were not served; move the cursor past the
				// chosen one so the next pick does not land on it again.
				r.next.Add(i)
			}
			return b
		}
	}
	return nil
}

func contains(tried []*backend.Backend, b *backend.Backend) bool {
	for _, t := range tried {
		if t == b {
			return true
		}
	}
	return false
}

// Interface guard.
var _ Balancer = (*RoundRobin)(nil)
