package ratelimit

import (
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

const sec = int64(time.Second)

// step is one request of a scripted sequence: at now, key, the answer
// expected, and for a refusal the wait expected.
type step struct {
	at   time.Duration
	key  uint64
	ok   bool
	wait time.Duration
}

func TestBuckets(t *testing.T) {
	tests := []struct {
		name  string
		rate  float64
		burst int
		keyed bool
		steps []step
	}{
		{
			name: "fractional rate: one every 2 s", rate: 0.5, burst: 1, keyed: true,
			steps: []step{
				{at: 0, ok: true},
				{at: 0, wait: 2 * time.Second},
				{at: 1999 * time.Millisecond, wait: time.Millisecond},
				{at: 2 * time.Second, ok: true},
				{at: 2 * time.Second, wait: 2 * time.Second},
				{at: 10 * time.Second, ok: true}, // a long pause refills only to the depth
				{at: 10 * time.Second, wait: 2 * time.Second},
			},
		},
		{
			name: "burst then refill at the rate", rate: 10, burst: 3, keyed: true,
			steps: []step{
				{at: 0, ok: true}, {at: 0, ok: true}, {at: 0, ok: true},
				{at: 0, wait: 100 * time.Millisecond},
				{at: 50 * time.Millisecond, wait: 50 * time.Millisecond},
				{at: 100 * time.Millisecond, ok: true},
				{at: 100 * time.Millisecond, wait: 100 * time.Millisecond},
				{at: 300 * time.Millisecond, ok: true},
				{at: 300 * time.Millisecond, ok: true},
				{at: 300 * time.Millisecond, wait: 100 * time.Millisecond},
			},
		},
		{
			name: "a refusal takes no token", rate: 1, burst: 1, keyed: true,
			steps: []step{
				{at: 0, ok: true},
				{at: 100 * time.Millisecond, wait: 900 * time.Millisecond},
				{at: 200 * time.Millisecond, wait: 800 * time.Millisecond},
				{at: 900 * time.Millisecond, wait: 100 * time.Millisecond},
				{at: time.Second, ok: true},
			},
		},
		{
			name: "keys are independent", rate: 1, burst: 1, keyed: true,
			steps: []step{
				{at: 0, key: 1, ok: true},
				{at: 0, key: 1, wait: time.Second},
				{at: 0, key: 2, ok: true},
				{at: 0, key: 2, wait: time.Second},
			},
		},
		{
			name: "route: one bucket whatever the key", rate: 1, burst: 2, keyed: false,
			steps: []step{
				{at: 0, key: 1, ok: true},
				{at: 0, key: 2, ok: true},
				{at: 0, key: 3, wait: time.Second},
			},
		},
		{
			name: "a new bucket starts full", rate: 1, burst: 5, keyed: true,
			steps: []step{
				{at: time.Hour, key: 9, ok: true}, {at: time.Hour, key: 9, ok: true},
				{at: time.Hour, key: 9, ok: true}, {at: time.Hour, key: 9, ok: true},
				{at: time.Hour, key: 9, ok: true},
				{at: time.Hour, key: 9, wait: time.Second},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(tt.rate, tt.burst, tt.keyed)
			for i, s := range tt.steps {
				ok, wait := l.Allow(s.key, int64(s.at))
				if ok != s.ok || wait != s.wait {
					t.Fatalf("step %d (key %d at %v): Allow = %v, %v; want %v, %v", i, s.key, s.at, ok, wait, s.ok, s.wait)
				}
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		wait time.Duration
		want int64
	}{
		{0, 1},
		{time.Nanosecond, 1},
		{999 * time.Millisecond, 1},
		{time.Second, 1},
		{time.Second + time.Nanosecond, 2},
		{2 * time.Second, 2},
		{90 * time.Second, 90},
	}
	for _, tt := range tests {
		if got := RetryAfter(tt.wait); got != tt.want {
			t.Errorf("RetryAfter(%v) = %d, want %d", tt.wait, got, tt.want)
		}
	}
}

// TestExtremeRates checks that rates far outside what anyone configures
// neither overflow nor stop limiting.
func TestExtremeRates(t *testing.T) {
	slow := New(1e-12, 1000000, true) // one a ~31700 years, a deep bucket
	if ok, _ := slow.Allow(1, 0); !ok {
		t.Fatal("a new bucket of a slow limiter is not full")
	}
	for i := 0; i < 10; i++ {
		slow.Allow(1, 0)
	}
	fast := New(1e12, 1, true) // faster than the clock ticks
	ok1, _ := fast.Allow(1, 5)
	ok2, _ := fast.Allow(1, 5)
	ok3, _ := fast.Allow(1, 6)
	if !ok1 || ok2 || !ok3 {
		t.Errorf("1e12/s, burst 1: %v %v %v; want one a nanosecond", ok1, ok2, ok3)
	}
}

func TestKeys(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.1")
	if KeyAddr(v4) != KeyAddr(netip.AddrFrom16(v4.As16())) {
		t.Error("an IPv4 address and its IPv4-mapped form have different keys")
	}
	if KeyAddr(v4) == KeyAddr(netip.MustParseAddr("192.0.2.2")) {
		t.Error("two addresses share a key")
	}
	if KeyBytes(nil) != KeyBytes([]byte{}) {
		t.Error("a missing and an empty header value have different keys")
	}
	if KeyBytes([]byte("a")) == KeyBytes([]byte("b")) {
		t.Error("two header values share a key")
	}
}

// TestEvictionBoundsMemory floods a limiter with distinct keys, as an
// attacker rotating source addresses would: the buckets kept stay within
// MaxKeys while every key is active, fall to nothing once they have all
// refilled, and the heap does not grow with the flood.
func TestEvictionBoundsMemory(t *testing.T) {
	l := New(1, 10, true)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const flood = 3 * MaxKeys
	for i := range flood {
		now := int64(i) * 1000 // 1 ms of keys every µs: all still active
		if ok, _ := l.Allow(uint64(i)*0x9e3779b97f4a7c15, now); !ok {
			t.Fatalf("key %d refused: a new bucket must start full", i)
		}
		if i%100_000 == 0 && l.Len() > MaxKeys {
			t.Fatalf("after %d keys, %d buckets kept, over MaxKeys %d", i, l.Len(), MaxKeys)
		}
	}
	if n := l.Len(); n > MaxKeys || n < MaxKeys/2 {
		t.Errorf("after a flood of %d active keys, %d buckets kept; want at most MaxKeys %d, and most of it", flood, n, MaxKeys)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 16<<20 {
		t.Errorf("heap grew by %d MiB for a limiter of %d keys", grown>>20, MaxKeys)
	}
	t.Logf("%d keys kept, heap %+d KiB", l.Len(), (int64(after.HeapAlloc)-int64(before.HeapAlloc))>>10)

	// Once everything has refilled, the next insertions sweep the full
	// buckets out of each shard.
	later := int64(flood)*1000 + 11*sec + sweepEvery
	for i := range shards * 4 {
		l.Allow(uint64(i), later)
	}
	if n := l.Len(); n > shards*4 {
		t.Errorf("after every bucket refilled, %d kept; want only the %d new ones", n, shards*4)
	}
}

// TestEvictionKeepsTheBusiest checks that when a shard is full of active
// keys, the ones evicted are those closest to full: a key being throttled
// hard keeps its empty bucket.
func TestEvictionKeepsTheBusiest(t *testing.T) {
	l := New(1, 100, true)
	hot := uint64(shards * 7) // shard 0
	for range 100 {
		l.Allow(hot, 0)
	}
	if ok, _ := l.Allow(hot, 0); ok {
		t.Fatal("the hot key's bucket is not empty after its burst")
	}
	// Fill shard 0 with keys that took one token each: nearly full.
	for i := 1; i <= 4*perShard; i++ {
		l.Allow(uint64(i*shards), 0)
	}
	if ok, _ := l.Allow(hot, 0); ok {
		t.Error("the hot key was evicted (its bucket came back full) while nearly full ones were kept")
	}
}

func TestShardSize(t *testing.T) {
	if n := unsafe.Sizeof(shard{}); n%64 != 0 {
		t.Errorf("shard is %d bytes; make it a multiple of 64 so that two shards never share a cache line", n)
	}
}

// TestConcurrentHotKey has many goroutines take from one bucket at one
// instant: exactly burst of them get a token (run with -race).
func TestConcurrentHotKey(t *testing.T) {
	for _, keyed := range []bool{true, false} {
		l := New(1, 500, keyed)
		var allowed atomic.Int64
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 200 {
					if ok, _ := l.Allow(42, 1000); ok {
						allowed.Add(1)
					}
					if keyed {
						l.Allow(uint64(1_000_000+g*1000+i), 1000) // other keys meanwhile
					}
				}
			}()
		}
		wg.Wait()
		if got := allowed.Load(); got != 500 {
			t.Errorf("keyed %v: %d of 3200 concurrent requests allowed, want the burst, 500", keyed, got)
		}
	}
}

// TestNanos checks the clock: monotonic readings, zero near start.
func TestNanos(t *testing.T) {
	a := Nanos(time.Now())
	b := Nanos(time.Now())
	if a < 0 || b < a {
		t.Errorf("Nanos went %d then %d", a, b)
	}
}
