// Package ratelimit owns the token buckets of the routes' rate limits: one
// bucket per key (a client address, a header value, or the whole route),
// refilled at a fixed rate and a fixed number of tokens deep.
//
// A bucket is one int64, its theoretical arrival time (the GCRA form of a
// token bucket): the moment at which it would be full again. Taking a token
// is an atomic load and a compare-and-swap; a refused request changes
// nothing, so it takes no token. A bucket that has refilled is the same as
// a new one, so buckets that are full can be forgotten without loss: that is
// how idle keys are evicted, and why memory stays bounded however many keys
// arrive (see MaxKeys).
//
// The package does no I/O and starts no goroutine; time is passed in, as
// nanoseconds on the clock of Nanos, so tests control it.
package ratelimit

import (
	"hash/maphash"
	"maps"
	"math"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// MaxKeys bounds the buckets one limiter keeps: shards times perShard.
// Only keys whose bucket is not full need keeping, so this is the number of
// keys a route can throttle at once; a bucket takes about 100 bytes with
// its place in the lock-free copy lookups read, so a limiter holds at most
// about 7 MiB. Past it the buckets closest to full
// are forgotten first (see shard.evict): under a flood of more keys than
// this, some keys get their burst back early rather than memory growing.
const MaxKeys = shards * perShard

const (
	shards   = 64
	perShard = 1024
	// sweepEvery is the longest time between two sweeps of a shard's full
	// buckets, done by the next insertion after it.
	sweepEvery = int64(10 * time.Second)
	// maxSpan bounds a bucket's interval and depth in nanoseconds (about
	// 73 years), so that no sum of times can overflow.
	maxSpan = int64(1) << 61
)

// Limiter is the token buckets of one route's rate limit.
type Limiter struct {
	// interval is the time one token takes to come back, in ns.
	interval int64
	// depth is the time a bucket takes to refill from empty, in ns:
	// interval times the bucket's depth in tokens.
	depth int64
	// keyed is false for a limiter with one bucket (key "route").
	keyed  bool
	single bucket
	shards [shards]shard
}

// New returns a limiter refilling perSecond tokens a second (greater than
// 0, fractions allowed) into buckets burst tokens deep (at least 1). keyed
// false gives one bucket for every request (the route key); Allow then
// ignores its key.
func New(perSecond float64, burst int, keyed bool) *Limiter {
	l := &Limiter{keyed: keyed}
	iv := math.Ceil(1e9 / perSecond) // rounded up: never above the rate
	if math.IsNaN(iv) || iv > float64(maxSpan) {
		iv = float64(maxSpan)
	}
	l.interval = max(int64(iv), 1)
	l.depth = maxSpan
	if burst < 1 {
		burst = 1
	}
	if int64(burst) < maxSpan/l.interval {
		l.depth = int64(burst) * l.interval
	}
	return l
}

// Allow takes a token from key's bucket at now (see Nanos) and reports
// whether there was one. When there was not, nothing is taken and wait is
// how long until there will be one.
func (l *Limiter) Allow(key uint64, now int64) (ok bool, wait time.Duration) {
	if !l.keyed {
		return l.take(&l.single, now)
	}
	s := &l.shards[key%shards]
	if r := s.read.Load(); r != nil {
		if b := (*r)[key]; b != nil {
			return l.take(b, now)
		}
	}
	return l.take(s.lookup(key, now), now)
}

// take takes a token from b at now.
func (l *Limiter) take(b *bucket, now int64) (bool, time.Duration) {
	for {
		tat := b.tat.Load()
		next := max(tat, now) + l.interval
		if over := next - now - l.depth; over > 0 {
			return false, time.Duration(over)
		}
		if b.tat.CompareAndSwap(tat, next) {
			return true, 0
		}
	}
}

// Len returns the number of buckets kept, for tests and the admin API.
func (l *Limiter) Len() int {
	if !l.keyed {
		return 1
	}
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// bucket is one key's token bucket: the time (ns, on the Nanos clock) at
// which it is full again; at or before now it is full.
type bucket struct {
	tat atomic.Int64
}

// shard is a part of a limiter's buckets, by key. Lookups read a snapshot
// of its map without a lock (one atomic load, and no write that other
// CPUs would have to see, so a hot key costs no more than its bucket's
// compare-and-swap); keys not in the snapshot are looked up, and added,
// under the lock.
type shard struct {
	// read is a copy of m, never changed once stored; nil before the
	// first key.
	read atomic.Pointer[map[uint64]*bucket]
	// A cache line of its own for read, which every lookup loads: the
	// writes under the lock below do not evict it from other CPUs.
	_  [56]byte
	mu sync.Mutex
	// m holds every bucket of the shard; under mu.
	m map[uint64]*bucket
	// misses counts the lookups under the lock since read was made;
	// read is made again once they pass half of len(m), so that copying
	// it costs a step or two per lookup.
	misses int
	// nextSweep is when the next insertion sweeps the full buckets out.
	nextSweep int64
	// peak is the most buckets held since the map was last made, to make
	// a smaller one once most have gone (Go maps do not shrink).
	peak int
	// scratch holds the times of the buckets while evicting.
	scratch []int64
}

// lookup returns key's bucket, adding a full one, after making room, if
// there is none; for a key that read does not have.
func (s *shard) lookup(key uint64, now int64) *bucket {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.misses++
	b := s.m[key]
	if b == nil {
		if s.m == nil {
			s.m = make(map[uint64]*bucket)
			s.nextSweep = now + sweepEvery
		}
		if len(s.m) >= perShard || now >= s.nextSweep {
			s.sweep(now)
		}
		if len(s.m) >= perShard {
			s.evict()
		}
		b = &bucket{}
		s.m[key] = b
		s.peak = max(s.peak, len(s.m))
	}
	// Keys forgotten since read was made are served their old buckets
	// from it until it is made again: the same as if they had been
	// forgotten a little later.
	if s.misses > len(s.m)/2 {
		s.publish()
	}
	return b
}

// publish makes read a copy of m.
func (s *shard) publish() {
	r := maps.Clone(s.m)
	s.read.Store(&r)
	s.misses = 0
}

// sweep forgets the buckets that are full at now: a new one is the same.
func (s *shard) sweep(now int64) {
	s.nextSweep = now + sweepEvery
	for k, b := range s.m {
		if b.tat.Load() <= now {
			delete(s.m, k)
		}
	}
	if s.peak >= 64 && len(s.m) < s.peak/4 {
		m := make(map[uint64]*bucket, 2*len(s.m))
		for k, b := range s.m {
			m[k] = b
		}
		s.m, s.peak = m, len(m)
	}
}

// evict forgets the buckets closest to full, down to three quarters of the
// shard's room, so that the next evictions are as many insertions away.
// A request already holding one of them takes its token from the
// forgotten bucket; its key starts again with a full one.
func (s *shard) evict() {
	const keep = perShard * 3 / 4
	s.scratch = s.scratch[:0]
	for _, b := range s.m {
		s.scratch = append(s.scratch, b.tat.Load())
	}
	slices.Sort(s.scratch)
	cut := s.scratch[len(s.scratch)-keep] // the earliest time kept
	for k, b := range s.m {
		if len(s.m) <= keep {
			break
		}
		if b.tat.Load() <= cut {
			delete(s.m, k)
		}
	}
	// Tokens taken meanwhile may have moved times past cut: make room
	// anyway.
	for k := range s.m {
		if len(s.m) < perShard {
			break
		}
		delete(s.m, k)
	}
}

// seed keys the hashes of this process: an attacker who cannot see them
// cannot choose values that share a bucket with someone else's.
var seed = maphash.MakeSeed()

// KeyBytes returns the key of a header value (or of none: nil and empty
// share a key). Long values cost no memory: only the hash is kept.
func KeyBytes(v []byte) uint64 { return maphash.Bytes(seed, v) }

// KeyAddr returns the key of a client address; an IPv4 address and its
// IPv4-mapped IPv6 form are one key.
func KeyAddr(a netip.Addr) uint64 {
	b := a.As16()
	return maphash.Bytes(seed, b[:])
}

// epoch is the zero of the Nanos clock.
var epoch = time.Now()

// Nanos returns t on the limiters' clock: nanoseconds since the process
// started, from the monotonic clock reading t carries (time.Now's).
func Nanos(t time.Time) int64 { return int64(t.Sub(epoch)) }

// RetryAfter returns wait as the value of a Retry-After field: whole
// seconds, rounded up, at least 1.
func RetryAfter(wait time.Duration) int64 {
	s := int64((wait + time.Second - 1) / time.Second)
	return max(s, 1)
}
