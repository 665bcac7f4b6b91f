package stats

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestBucketBounds(t *testing.T) {
	t.Parallel()
	_, hiMax := bounds(Buckets - 1)
	for _, v := range []uint64{0, 1, 15, 16, 17, 19, 20, 31, 32, 100, 999, 1000, 12345, 1e6, 3e7, 1<<28 - 1} {
		i := bucket(v)
		lo, hi := bounds(i)
		if float64(v) < lo || float64(v) >= hi {
			t.Errorf("bucket(%d) = %d covering [%v, %v), which misses it", v, i, lo, hi)
		}
	}
	for i := 1; i < Buckets; i++ {
		_, prevHi := bounds(i - 1)
		lo, hi := bounds(i)
		if lo != prevHi || hi <= lo {
			t.Errorf("bucket %d covers [%v, %v) after one ending at %v: not contiguous", i, lo, hi, prevHi)
		}
	}
	if got := bucket(1 << 40); got != Buckets-1 {
		t.Errorf("bucket(2^40) = %d, want the last bucket %d", got, Buckets-1)
	}
	if hiMax < 2.6e8 {
		t.Errorf("the buckets end at %v µs, want at least 260 s", hiMax)
	}
}

func TestPercentileAccuracy(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tt := range []struct {
		name string
		draw func() uint64
	}{
		{"uniform 0.1-10ms", func() uint64 { return 100 + rng.Uint64N(9900) }},
		{"exponential mean 2ms", func() uint64 { return uint64(rng.ExpFloat64() * 2000) }},
		{"bimodal 1ms and 200ms", func() uint64 {
			if rng.IntN(100) < 3 {
				return 200000 + rng.Uint64N(1000)
			}
			return 1000 + rng.Uint64N(100)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := make([]uint64, Buckets)
			var vs []float64
			for range 20000 {
				v := tt.draw()
				h[bucket(v)]++
				vs = append(vs, float64(v))
			}
			slices.Sort(vs)
			for _, q := range []float64{0.5, 0.99} {
				want := vs[int(math.Ceil(q*float64(len(vs))))-1]
				got, ok := percentile(h, q)
				if !ok || math.Abs(got-want) > 0.15*want+1 {
					t.Errorf("p%v = %v µs, exact %v µs: off by more than 15%%", q*100, got, want)
				}
			}
		})
	}
	if _, ok := percentile(make([]uint64, Buckets), 0.5); ok {
		t.Error("percentile of an empty histogram reports a value")
	}
}

// TestWindow records into a route at known times and reads its figures:
// sums over the last minute, the per-second series, percentiles, the
// status classes and error words, and what falls out of the window.
func TestWindow(t *testing.T) {
	t.Parallel()
	// t0 is taken before the route is made, so that the first second is
	// at most a second long however the test is scheduled.
	t0 := time.Now()
	r := NewRoute(nil, []string{"http://a", "http://b"})
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

	// Second 1: 10 requests to a at 2 ms, 1 try failed on b and retried.
	for range 10 {
		r.Try(0, false)
		r.Request(0, 200, 0, 2*time.Millisecond)
	}
	r.Try(1, true)
	r.Retry(1)
	r.Try(0, false)
	r.Request(0, 200, 0, 3*time.Millisecond)
	r.Sample(at(1))
	// Second 2: 4 requests answered 503 by b, with error word 7; b ejected.
	for range 4 {
		r.Try(1, true)
		r.Request(1, 503, 7, 100*time.Millisecond)
	}
	r.Ejected("http://b")
	r.Sample(at(2))
	// Part of second 3: a 404 without a backend.
	r.Request(-1, 404, 2, time.Millisecond)

	f := r.Figures(at(2.5))
	if f.Requests != 16 || f.Total != 16 || f.Errors != 4 || f.Retries != 1 || f.Ejections != 1 {
		t.Errorf("route: requests %d total %d errors %d retries %d ejections %d, want 16 16 4 1 1",
			f.Requests, f.Total, f.Errors, f.Retries, f.Ejections)
	}
	if f.Seconds < 2.4 || f.Seconds > 2.5 || math.Abs(f.RPS-16/f.Seconds) > 1e-9 {
		t.Errorf("route: seconds %v rps %v, want about 2.5 and 16 over it", f.Seconds, f.RPS)
	}
	if math.Abs(f.ErrorRate-4.0/16) > 1e-9 {
		t.Errorf("route error rate = %v, want 0.25", f.ErrorRate)
	}
	if f.P50 < 1.7 || f.P50 > 2.3 || f.P99 < 85 || f.P99 > 115 {
		t.Errorf("route p50 %v ms p99 %v ms, want about 2 and 100", f.P50, f.P99)
	}
	if f.Codes != [6]uint64{0, 0, 11, 0, 1, 4} {
		t.Errorf("route codes = %v, want 11 2xx, 1 4xx, 4 5xx", f.Codes)
	}
	if f.Words[7] != 4 || f.Words[2] != 1 {
		t.Errorf("route words 7 and 2 = %d %d, want 4 1", f.Words[7], f.Words[2])
	}
	last := Window - 1
	if f.SeriesRPS[last] != 4 || f.SeriesRPS[last-1] < 11 || f.SeriesRPS[last-1] > 11.5 || !math.IsNaN(f.SeriesRPS[last-2]) {
		t.Errorf("route series rps ends %v, want NaN 11 4", f.SeriesRPS[last-2:])
	}
	if p := f.SeriesP99[last]; p < 85 || p > 115 {
		t.Errorf("route series p99 of second 2 = %v ms, want about 100", p)
	}

	a, b := f.Backends[0], f.Backends[1]
	if a.Requests != 11 || a.Errors != 0 || !(a.P99 >= 2 && a.P99 <= 3.4) {
		t.Errorf("backend a: requests %d errors %d p99 %v, want 11 0 about 3", a.Requests, a.Errors, a.P99)
	}
	if b.Requests != 5 || b.Errors != 5 || b.Retries != 1 || b.Ejections != 1 || b.EjectionsTotal != 1 || b.ErrorRate != 1 {
		t.Errorf("backend b: %+v", b)
	}

	// A minute later the first two seconds are out of the window, but
	// still in the totals.
	for s := 3; s <= 61; s++ {
		r.Sample(at(float64(s)))
	}
	f = r.Figures(at(61.5))
	if f.Requests != 1 || f.Total != 16 || f.Errors != 0 || !math.IsNaN(f.Backends[1].ErrorRate) {
		t.Errorf("a minute later: requests %d total %d errors %d, want 1 16 0", f.Requests, f.Total, f.Errors)
	}
	r.Sample(at(62))
	f = r.Figures(at(62.5))
	if f.Requests != 0 || !math.IsNaN(f.P99) || !math.IsNaN(f.ErrorRate) || f.RPS != 0 {
		t.Errorf("after the window: requests %d p99 %v error rate %v rps %v, want 0 NaN NaN 0", f.Requests, f.P99, f.ErrorRate, f.RPS)
	}
	if math.Abs(f.Seconds-59.5) > 0.05 {
		t.Errorf("window = %v s, want about 59.5", f.Seconds)
	}
}

// TestNewRouteCarriesOver checks that a reload keeps the figures of the
// route and of the backends it keeps, and starts new backends empty.
func TestNewRouteCarriesOver(t *testing.T) {
	t.Parallel()
	old := NewRoute(nil, []string{"http://a", "http://b"})
	old.Try(0, false)
	old.Try(1, true)
	old.Request(1, 200, 0, time.Millisecond)
	r := NewRoute(old, []string{"http://b", "http://c"})
	f := r.Figures(time.Now())
	if f.Total != 1 || f.Backends[0].Total != 1 || f.Backends[0].Errors != 1 || f.Backends[1].Total != 0 {
		t.Errorf("after the reload: route total %d, b total %d errors %d, c total %d; want 1 1 1 0",
			f.Total, f.Backends[0].Total, f.Backends[0].Errors, f.Backends[1].Total)
	}
	// The old generation's requests in flight record into the same meters.
	old.Try(1, false)
	if got := r.Figures(time.Now()).Backends[0].Total; got != 2 {
		t.Errorf("b's total after a try on the old generation = %d, want 2", got)
	}
}

func TestNilRoute(t *testing.T) {
	t.Parallel()
	var r *Route
	r.Request(0, 200, 1, time.Second)
	r.Try(0, true)
	r.Retry(0)
	r.Ejected("http://a")
	r.Sample(time.Now())
	if f := r.Figures(time.Now()); f.Backends != nil {
		t.Errorf("nil route figures = %+v", f)
	}
	r = NewRoute(nil, []string{"http://a"})
	r.Request(5, 200, 200, time.Second) // out of range: ignored, not a panic
	r.Try(-1, true)
	r.Retry(9)
	r.Ejected("http://nobody")
}

// TestConcurrentRecording records from many goroutines while a sampler
// and a reader run (under -race), and checks that no count is lost.
func TestConcurrentRecording(t *testing.T) {
	t.Parallel()
	r := NewRoute(nil, []string{"http://a"})
	const workers, each = 8, 5000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		now := time.Now()
		for {
			select {
			case <-stop:
				return
			default:
			}
			now = now.Add(time.Second)
			r.Sample(now)
			r.Figures(now)
		}
	}()
	for range workers {
		wg.Go(func() {
			for range each {
				r.Try(0, false)
				r.Request(0, 200, 0, time.Millisecond)
			}
		})
	}
	wg.Wait()
	close(stop)
	sampler.Wait()
	f := r.Figures(time.Now().Add(time.Hour))
	if f.Total != workers*each || f.Backends[0].Total != workers*each {
		t.Errorf("totals %d and %d, want %d", f.Total, f.Backends[0].Total, workers*each)
	}
}

// TestRecordingDoesNotAllocate holds the request path to its promise.
func TestRecordingDoesNotAllocate(t *testing.T) {
	r := NewRoute(nil, []string{"http://a", "http://b"})
	if n := testing.AllocsPerRun(1000, func() {
		r.Try(1, true)
		r.Retry(1)
		r.Try(0, false)
		r.Request(0, 502, 7, 1500*time.Microsecond)
	}); n != 0 {
		t.Errorf("recording a request allocates %v times, want 0", n)
	}
}

func TestTransitions(t *testing.T) {
	t.Parallel()
	var l Transitions
	if got := l.Recent(); len(got) != 0 {
		t.Fatalf("empty log has %d transitions", len(got))
	}
	for i := range TransitionsKept + 5 {
		l.Add(Transition{Reason: string(rune('a' + i))})
	}
	got := l.Recent()
	if len(got) != TransitionsKept || got[0].Reason != string(rune('a'+TransitionsKept+4)) || got[len(got)-1].Reason != "f" {
		t.Errorf("recent = %d transitions, newest %q, oldest %q; want %d, %q, %q",
			len(got), got[0].Reason, got[len(got)-1].Reason, TransitionsKept, string(rune('a'+TransitionsKept+4)), "f")
	}
}
