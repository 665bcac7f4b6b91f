package stats

import "math/bits"

// Latency is counted in a histogram of microseconds with exact buckets
// below 16 µs and four buckets per power of two above, up to 2^28 µs
// (about 4.5 minutes); longer requests count in the last bucket. A
// percentile read from it is within 15% of the true value, which is
// what a dashboard needs, and finding a request's bucket is one bits.Len64.
const (
	exactBuckets = 16
	subBuckets   = 4
	// Buckets is the number of latency buckets.
	Buckets = exactBuckets + subBuckets*24
)

// bucket returns the latency bucket of us microseconds.
func bucket(us uint64) int {
	if us < exactBuckets {
		return int(us)
	}
	e := bits.Len64(us) // 5 or more: us has its top bit at e-1
	i := exactBuckets + (e-5)*subBuckets + int(us>>(e-3))&(subBuckets-1)
	if i >= Buckets {
		return Buckets - 1
	}
	return i
}

// bounds returns the microseconds bucket i covers: [lo, hi).
func bounds(i int) (lo, hi float64) {
	if i < exactBuckets {
		return float64(i), float64(i + 1)
	}
	e := (i-exactBuckets)/subBuckets + 5
	sub := uint64((i - exactBuckets) % subBuckets)
	return float64((4 + sub) << (e - 3)), float64((5 + sub) << (e - 3))
}

// percentile returns the q-quantile (0 < q <= 1) of the counts h, in
// microseconds, interpolated linearly within its bucket, and false when h
// counts nothing.
func percentile(h []uint64, q float64) (float64, bool) {
	var total uint64
	for _, c := range h {
		total += c
	}
	if total == 0 {
		return 0, false
	}
	rank := q * float64(total)
	var cum float64
	for i, c := range h {
		if c == 0 {
			continue
		}
		if cum+float64(c) >= rank {
			lo, hi := bounds(i)
			return lo + (hi-lo)*(rank-cum)/float64(c), true
		}
		cum += float64(c)
	}
	lo, _ := bounds(len(h) - 1)
	return lo, true
}
