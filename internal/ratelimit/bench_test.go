package ratelimit

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAllowHotKey is one key taken from by every CPU at once (one
// client sending everything); the rate is high enough that most requests
// are admitted.
func BenchmarkAllowHotKey(b *testing.B) {
	l := New(1e9, 1000, true)
	key := KeyAddr(netip.MustParseAddr("192.0.2.1"))
	start := Nanos(time.Now())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		now := start
		for pb.Next() {
			now += 1000
			l.Allow(key, now)
		}
	})
}

// BenchmarkAllowRoute is the route key: one bucket, no map.
func BenchmarkAllowRoute(b *testing.B) {
	l := New(1e9, 1000, false)
	start := Nanos(time.Now())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		now := start
		for pb.Next() {
			now += 1000
			l.Allow(0, now)
		}
	})
}

// BenchmarkAllowManyKeys cycles through 10,000 client addresses that stay
// in the limiter (the usual case: many clients, each back within its
// refill time); the key's hash is included.
func BenchmarkAllowManyKeys(b *testing.B) {
	addrs := make([]netip.Addr, 10_000)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	l := New(1e6, 1000, true)
	start := Nanos(time.Now())
	var next atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := next.Add(7919)
		now := start
		for pb.Next() {
			i++
			now += 100
			l.Allow(KeyAddr(addrs[i%uint64(len(addrs))]), now)
		}
	})
}

// BenchmarkAllowKeyFlood sends every request with a new key (an attacker
// rotating addresses or header values), far past MaxKeys: insertions,
// sweeps and evictions.
func BenchmarkAllowKeyFlood(b *testing.B) {
	l := New(1, 10, true)
	start := Nanos(time.Now())
	var next atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := next.Add(1) << 48
		for pb.Next() {
			i++
			l.Allow(i*0x9e3779b97f4a7c15, start+int64(i&(1<<48-1)))
		}
	})
	b.ReportMetric(float64(l.Len()), "keys")
}

// BenchmarkKeyAddr is the cost of a client_ip key.
func BenchmarkKeyAddr(b *testing.B) {
	a := netip.MustParseAddr("2001:db8::1")
	b.ReportAllocs()
	for b.Loop() {
		KeyAddr(a)
	}
}
