package balance

import (
	"slices"
	"strconv"
	"sync/atomic"

	"github.com/sluice-proxy/sluice/internal/backend"
)

// ringBudget is about how many points a hash ring holds in all: a
// backend's share of them is its share of the route's weight (at least
// one), so that keys spread by weight.
const (
	ringBudget      = 1 << 16
	pointsPerWeight = 256
)

// loadFactor bounds a backend's load under hash: no more than 1.25 times
// the route's mean in-flight requests per backend.
const loadFactor = 1.25

// Hash is consistent hashing on a ring with virtual nodes, with bounded
// load: a key goes to the first backend clockwise from its point that is
// eligible and under 1.25 times the route's mean in-flight requests per
// backend. When a backend leaves, only the keys it held move (to the next
// backend on the ring); they come back when it returns. A request without
// a key is balanced as least_request. (A ring beats rendezvous hashing
// here: its pick is a binary search whatever the number of backends, where
// rendezvous hashes the key once per backend; see BenchmarkHashPick.)
type Hash struct {
	common
	points []point
	weight float64      // the route's total weight
	load   atomic.Int64 // requests in flight to the route's backends
	least  *LeastRequest
}

type point struct {
	hash uint64
	idx  uint16
}

// NewHash returns a hash balancer over backends. It makes the backends
// count their requests in flight in the route's total too.
func NewHash(backends []*backend.Backend, o Options) *Hash {
	h := &Hash{common: newCommon(backends, o), least: NewLeastRequest(backends, o)}
	total := 0
	var load int64
	for _, b := range backends {
		total += weight(b)
		b.ShareLoad(&h.load)
		load += b.InFlight()
	}
	// Backends a reload carried over may have requests in flight, which
	// will be released against this count.
	h.load.Store(load)
	h.weight = float64(total)
	per := float64(pointsPerWeight)
	if float64(total)*per > ringBudget {
		per = ringBudget / float64(total)
	}
	for i, b := range backends {
		n := int(float64(weight(b)) * per)
		if n < 1 {
			n = 1
		}
		for v := 0; v < n; v++ {
			// A point's place depends only on the backend's URL and the
			// point's number: the same in every process and config
			// generation.
			h.points = append(h.points, point{hash: HashBytes(b.URL + "#" + strconv.Itoa(v)).Hash, idx: uint16(i)})
		}
	}
	slices.SortFunc(h.points, func(a, b point) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return int(a.idx) - int(b.idx)
	})
	return h
}

// Pick implements Balancer.
func (h *Hash) Pick(key Key, tried []*backend.Backend) *backend.Backend {
	if !key.Ok || len(h.points) == 0 {
		return h.least.Pick(key, tried)
	}
	now := h.nowNanos(false)
	n := len(h.backends)
	// Capacity per unit of weight: 1.25 times the route's load, this
	// request included, over its weight; a backend may hold its weight's
	// share of that (at least one request).
	capacity := loadFactor * float64(h.load.Load()+1) / h.weight
	// A backend in slow start takes the keys whose fraction is under its
	// ramp, so that its keys come back to it gradually, and steadily.
	frac := float64(key.Hash>>11) / (1 << 53)
	// The first point at or after the key's, then clockwise; each backend
	// is judged once (a bitmap of the ones seen, on the stack, for routes
	// of up to 1024 backends).
	i, _ := slices.BinarySearchFunc(h.points, key.Hash, func(p point, k uint64) int {
		switch {
		case p.hash < k:
			return -1
		case p.hash > k:
			return 1
		}
		return 0
	})
	var seen [16]uint64
	judged := 0
	for step := 0; step < len(h.points) && judged < n; step++ {
		p := h.points[(i+step)%len(h.points)]
		if int(p.idx) < 1024 {
			word, bit := p.idx/64, uint64(1)<<(p.idx%64)
			if seen[word]&bit != 0 {
				continue
			}
			seen[word] |= bit
		}
		judged++
		b := h.backends[p.idx]
		if !eligible(b, tried) {
			continue
		}
		ramp := h.ramp(b, now)
		if ramp < 1 && frac >= ramp {
			continue
		}
		limit := capacity * float64(weight(b)) * ramp
		if limit < 1 {
			limit = 1
		}
		if float64(b.InFlight()) < limit {
			return b
		}
	}
	// Every eligible backend is at its bound: the least loaded.
	return h.least.Pick(key, tried)
}

// Interface guard.
var _ Balancer = (*Hash)(nil)
