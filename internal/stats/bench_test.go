package stats

import (
	"testing"
	"time"
)

// BenchmarkRecord is what the request path pays for the dashboard on a
// proxied request: one try and the finished request.
func BenchmarkRecord(b *testing.B) {
	r := NewRoute(nil, []string{"http://a", "http://b", "http://c"})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Try(i%3, false)
		r.Request(i%3, 200, 0, 1200*time.Microsecond)
	}
}

// BenchmarkRecordParallel is BenchmarkRecord from every core at once on
// one route, the contended case.
func BenchmarkRecordParallel(b *testing.B) {
	r := NewRoute(nil, []string{"http://a", "http://b", "http://c"})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.Try(i%3, false)
			r.Request(i%3, 200, 0, 1200*time.Microsecond)
			i++
		}
	})
}

// BenchmarkFigures is one read of a route with ten backends, as /stats
// does for each route.
func BenchmarkFigures(b *testing.B) {
	urls := make([]string, 10)
	for i := range urls {
		urls[i] = "http://b" + string(rune('0'+i))
	}
	r := NewRoute(nil, urls)
	now := time.Now()
	for s := range Window {
		for i := range 100 {
			r.Try(i%10, false)
			r.Request(i%10, 200, 0, time.Duration(i)*time.Millisecond)
		}
		r.Sample(now.Add(time.Duration(s+1) * time.Second))
	}
	b.ReportAllocs()
	for b.Loop() {
		r.Figures(now.Add(61 * time.Second))
	}
}
