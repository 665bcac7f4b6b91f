package balance

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/backend"
)

func backends(weights ...int) []*backend.Backend {
	var bs []*backend.Backend
	for i, w := range weights {
		bs = append(bs, backend.New(fmt.Sprintf("http://b%d", i), "", "", "", w, i))
	}
	return bs
}

// seeded returns a deterministic Rand for Options.
func seeded(seed uint64) func() uint64 {
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)).Uint64
}

// all returns every balancer over bs, by name.
func all(bs []*backend.Backend, o Options) map[string]Balancer {
	m := map[string]Balancer{}
	for _, name := range []string{RoundRobinName, LeastRequestName, EWMAName, HashName} {
		b, err := New(name, bs, o)
		if err != nil {
			panic(err)
		}
		m[name] = b
	}
	return m
}

// drive makes n picks with up to conc requests in flight at once (the
// oldest finishes as each new one starts), with keys from key, and returns
// how many each backend got.
func drive(bl Balancer, bs []*backend.Backend, n, conc int, key func(i int) Key) []int {
	got := make([]int, len(bs))
	var inFlight []*backend.Backend
	for i := 0; i < n; i++ {
		b := bl.Pick(key(i), nil)
		if b == nil {
			panic("no backend")
		}
		got[b.Index]++
		b.Acquire()
		inFlight = append(inFlight, b)
		if len(inFlight) > conc {
			inFlight[0].Release()
			inFlight = inFlight[1:]
		}
	}
	for _, b := range inFlight {
		b.Release()
	}
	return got
}

func noKey(int) Key { return Key{} }

// checkShares fails when a backend's share of the picks strays from its
// weight's share by more than tol (a fraction of the expected count).
func checkShares(t *testing.T, got []int, weights []int, tol float64) {
	t.Helper()
	total, wsum := 0, 0
	for i := range got {
		total += got[i]
		wsum += weights[i]
	}
	for i, g := range got {
		want := float64(total) * float64(weights[i]) / float64(wsum)
		if math.Abs(float64(g)-want) > tol*want {
			t.Fatalf("picks %v for weights %v: backend %d got %d, want %.0f ± %.0f%%", got, weights, i, g, want, tol*100)
		}
	}
}

// TestWeightsHonoured: each balancer's picks follow the weights: exactly
// for round_robin, within a bound for the random ones. ewma compares costs
// per unit of weight, so at no load the heavier of two equally fast
// backends always wins; its weights hold under load.
func TestWeightsHonoured(t *testing.T) {
	weights := []int{5, 3, 1, 1}
	tolerance := map[string]float64{RoundRobinName: 0.01, LeastRequestName: 0.1, EWMAName: 0.35, HashName: 0.2}
	for _, name := range []string{RoundRobinName, LeastRequestName, EWMAName, HashName} {
		for _, conc := range []int{0, 8, 32} {
			if name == EWMAName && conc == 0 {
				continue
			}
			t.Run(fmt.Sprintf("%s/in_flight_%d", name, conc), func(t *testing.T) {
				bs := backends(weights...)
				for _, b := range bs {
					b.ObserveLatency(time.Millisecond, time.Now()) // equal latencies for ewma
				}
				bl, _ := New(name, bs, Options{Rand: seeded(1)})
				key := noKey
				if name == HashName {
					key = func(i int) Key { return HashBytes(fmt.Sprint("key-", i)) }
				}
				checkShares(t, drive(bl, bs, 20000, conc, key), weights, tolerance[name])
			})
		}
	}
}

func TestRoundRobinSmooth(t *testing.T) {
	// nginx's smooth weighted round robin spreads the heavy backend out.
	rr := NewRoundRobin(backends(5, 1, 1), Options{})
	var seq []int
	for i := 0; i < 7; i++ {
		seq = append(seq, rr.Pick(Key{}, nil).Index)
	}
	if want := []int{0, 0, 1, 0, 2, 0, 0}; !slices.Equal(seq, want) {
		t.Fatalf("sequence %v, want %v", seq, want)
	}
}

// TestUnavailableAndTriedSkipped: every balancer passes over unhealthy
// and ejected backends and those already tried, and returns nil when
// nothing is left.
func TestUnavailableAndTriedSkipped(t *testing.T) {
	bs := backends(1, 1, 1, 1)
	bs[0].SetState(backend.Unhealthy, time.Now(), "test")
	bs[1].Eject(time.Now(), time.Hour)
	bs[1].SetState(backend.Ejected, time.Now(), "test")
	for name, bl := range all(bs, Options{Rand: seeded(2)}) {
		for i := 0; i < 200; i++ {
			key := HashBytes(fmt.Sprint(i))
			if b := bl.Pick(key, bs[3:]); b != bs[2] {
				t.Fatalf("%s picked %v with only backend 2 available and untried", name, b)
			}
			if b := bl.Pick(key, bs[2:]); b != nil {
				t.Fatalf("%s picked %s with every available backend tried", name, b.URL)
			}
		}
	}
}

// TestLoadAware: a backend with many requests in flight gets few new
// ones under least_request and ewma, a third under round_robin.
func TestLoadAware(t *testing.T) {
	for _, name := range []string{LeastRequestName, EWMAName} {
		t.Run(name, func(t *testing.T) {
			bs := backends(1, 1, 1)
			for i := 0; i < 20; i++ {
				bs[0].Acquire()
			}
			bl, _ := New(name, bs, Options{Rand: seeded(3)})
			got := make([]int, 3)
			for i := 0; i < 3000; i++ {
				got[bl.Pick(Key{}, nil).Index]++
			}
			if got[0] > 30 {
				t.Fatalf("the loaded backend got %d of 3000 picks (%v), want almost none", got[0], got)
			}
		})
	}
}

// TestEWMAAvoidsSlowBackend: a backend 200 times slower gets a small share
// under ewma, but at least one request every few seconds while the route
// has traffic, so that its recovery is seen; once it is fast again, it
// gets its share back.
func TestEWMAAvoidsSlowBackend(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { return now }
	bs := backends(1, 1, 1)
	e := NewEWMA(bs, Options{Rand: seeded(4), Now: clock})
	latency := []time.Duration{200 * time.Millisecond, time.Millisecond, time.Millisecond}
	got := make([]int, 3)
	lastSlow := now
	var longestGap time.Duration
	// 20 s of traffic at 100 requests a second, each answered with its
	// backend's latency.
	for i := 0; i < 2000; i++ {
		now = now.Add(10 * time.Millisecond)
		b := e.Pick(Key{}, nil)
		got[b.Index]++
		b.ObserveLatency(latency[b.Index], now)
		if b.Index == 0 {
			longestGap = max(longestGap, now.Sub(lastSlow))
			lastSlow = now
		}
	}
	if got[0] > 200 || got[0] == 0 {
		t.Fatalf("the slow backend got %d of 2000 picks (%v), want a small share but some", got[0], got)
	}
	if longestGap > 5*time.Second {
		t.Fatalf("the slow backend went %v without a request, want at most 5s", longestGap)
	}
	// It recovers: its latency is seen through the trickle, and its
	// share comes back as the EWMA (decay time 10 s) comes down: for a
	// 200-fold change, within two minutes at 8 requests in flight.
	latency[0] = time.Millisecond
	got = make([]int, 3)
	var inFlight []*backend.Backend
	for i := 0; i < 12000; i++ {
		now = now.Add(10 * time.Millisecond)
		b := e.Pick(Key{}, nil)
		if i >= 10000 {
			got[b.Index]++
		}
		b.Acquire()
		inFlight = append(inFlight, b)
		if len(inFlight) > 8 {
			inFlight[0].ObserveLatency(latency[inFlight[0].Index], now)
			inFlight[0].Release()
			inFlight = inFlight[1:]
		}
	}
	if got[0] < 500 {
		t.Fatalf("two minutes after recovering, the once slow backend got %d of the last 2000 picks (%v), want close to a third", got[0], got)
	}
}

// TestEWMAUnmeasuredCountsAsFastest: a new backend with no measurement is
// not starved behind measured ones, nor flooded.
func TestEWMAUnmeasuredCountsAsFastest(t *testing.T) {
	bs := backends(1, 1)
	bs[0].ObserveLatency(5*time.Millisecond, time.Now())
	e := NewEWMA(bs, Options{Rand: seeded(5)})
	got := make([]int, 2)
	for i := 0; i < 2000; i++ {
		got[e.Pick(Key{}, nil).Index]++
	}
	checkShares(t, got, []int{1, 1}, 0.1)
}

// TestHashSticky: a key goes to one backend, every time.
func TestHashSticky(t *testing.T) {
	bs := backends(1, 1, 1, 1, 1)
	h := NewHash(bs, Options{})
	for k := 0; k < 100; k++ {
		key := HashBytes(fmt.Sprint("user-", k))
		first := h.Pick(key, nil)
		for i := 0; i < 50; i++ {
			if b := h.Pick(key, nil); b != first {
				t.Fatalf("key %d went to %s, then to %s", k, first.URL, b.URL)
			}
		}
	}
}

// TestHashOnlyTheLeaversKeysMove: when one of n backends leaves, exactly
// the keys it held move, and they come back when it returns.
func TestHashOnlyTheLeaversKeysMove(t *testing.T) {
	for _, n := range []int{3, 10, 30} {
		t.Run(fmt.Sprint(n, "_backends"), func(t *testing.T) {
			weights := make([]int, n)
			for i := range weights {
				weights[i] = 1 + i%3
			}
			bs := backends(weights...)
			h := NewHash(bs, Options{})
			const keys = 5000
			before := make([]int, keys)
			for k := range before {
				before[k] = h.Pick(HashBytes(fmt.Sprint("k", k)), nil).Index
			}
			gone := n / 2
			bs[gone].SetState(backend.Unhealthy, time.Now(), "test")
			moved, held := 0, 0
			for k := range before {
				got := h.Pick(HashBytes(fmt.Sprint("k", k)), nil).Index
				if before[k] == gone {
					held++
					if got == gone {
						t.Fatalf("key %d still goes to the backend that left", k)
					}
					continue
				}
				if got != before[k] {
					moved++
				}
			}
			if moved != 0 || held == 0 {
				t.Fatalf("%d keys of other backends moved (want 0); the leaver held %d", moved, held)
			}
			bs[gone].SetState(backend.Healthy, time.Now(), "test")
			for k := range before {
				if got := h.Pick(HashBytes(fmt.Sprint("k", k)), nil).Index; got != before[k] {
					t.Fatalf("key %d went to %d after the backend came back, want %d as before", k, got, before[k])
				}
			}
		})
	}
}

// TestHashBoundedLoad: one hot key spills to the next backends once its
// own holds 1.25 times the route's mean load.
func TestHashBoundedLoad(t *testing.T) {
	bs := backends(1, 1, 1, 1)
	h := NewHash(bs, Options{})
	key := HashBytes("hot")
	for i := 0; i < 400; i++ {
		h.Pick(key, nil).Acquire()
		var total int64
		for _, b := range bs {
			total += b.InFlight()
		}
		bound := math.Ceil(loadFactor * float64(total) / float64(len(bs)))
		for _, b := range bs {
			if float64(b.InFlight()) > bound {
				t.Fatalf("after %d picks of one key, %s holds %d of %d in flight, over the bound %v", i+1, b.URL, b.InFlight(), total, bound)
			}
		}
	}
}

// TestHashWithoutKey: a request without the key is balanced as
// least_request.
func TestHashWithoutKey(t *testing.T) {
	bs := backends(1, 1, 1)
	for i := 0; i < 20; i++ {
		bs[1].Acquire()
	}
	h := NewHash(bs, Options{Rand: seeded(6)})
	got := make([]int, 3)
	for i := 0; i < 3000; i++ {
		got[h.Pick(Key{}, nil).Index]++
	}
	if got[1] > 30 {
		t.Fatalf("keyless picks %v: the loaded backend got %d, want almost none (least_request)", got, got[1])
	}
}

// TestSlowStartRamp: a backend that came back half a window ago gets
// about half its share, one that just came back a tenth, under every
// balancer; at the end of the window, its full share.
func TestSlowStartRamp(t *testing.T) {
	now := time.Unix(2_000_000, 0)
	clock := func() time.Time { return now }
	const window = 10 * time.Second
	for _, tt := range []struct {
		since time.Duration
		ramp  float64
	}{
		{0, 0.1},
		{window / 2, 0.5},
		{window, 1},
	} {
		for _, name := range []string{RoundRobinName, LeastRequestName, EWMAName, HashName} {
			t.Run(fmt.Sprintf("%s/%v", name, tt.since), func(t *testing.T) {
				bs := backends(1, 1, 1)
				for _, b := range bs {
					b.ObserveLatency(time.Millisecond, now)
				}
				bs[0].SetState(backend.Unhealthy, now.Add(-time.Minute), "test")
				bs[0].SetState(backend.Healthy, now.Add(-tt.since), "test") // came back
				bl, _ := New(name, bs, Options{SlowStart: window, Rand: seeded(7), Now: clock})
				key := noKey
				if name == HashName {
					key = func(i int) Key { return HashBytes(fmt.Sprint("key-", i)) }
				}
				conc := 0
				if name == EWMAName {
					conc = 16 // costs per unit of weight need load to tell
				}
				got := drive(bl, bs, 30000, conc, key)
				share := float64(got[0]) / 30000
				want := tt.ramp / (tt.ramp + 2)
				tol := 0.25*want + 0.01
				if name == EWMAName {
					tol = 0.6*want + 0.01
				}
				if math.Abs(share-want) > tol {
					t.Fatalf("picks %v: the ramping backend's share is %.3f, want about %.3f", got, share, want)
				}
			})
		}
	}
}

// TestAtStartFullWeight: backends there from the start are not ramped.
func TestAtStartFullWeight(t *testing.T) {
	bs := backends(1, 1)
	bl := NewRoundRobin(bs, Options{SlowStart: time.Hour})
	got := drive(bl, bs, 1000, 0, noKey)
	checkShares(t, got, []int{1, 1}, 0.01)
}

func benchPick(b *testing.B, bl Balancer, keyed bool) {
	keys := make([]Key, 1024)
	for i := range keys {
		keys[i] = HashBytes(fmt.Sprint("key-", i))
		keys[i].Ok = keyed
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var tried [4]*backend.Backend
		i := 0
		for pb.Next() {
			if bl.Pick(keys[i&1023], tried[:0]) == nil {
				b.Fatal("nil")
			}
			i++
		}
	})
}

func BenchmarkPick(b *testing.B) {
	for _, n := range []int{3, 30, 300} {
		weights := make([]int, n)
		for i := range weights {
			weights[i] = 1 + i%3
		}
		for _, name := range []string{RoundRobinName, LeastRequestName, EWMAName, HashName} {
			b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) {
				bs := backends(weights...)
				for _, be := range bs {
					be.ObserveLatency(time.Millisecond, time.Now())
				}
				bl, _ := New(name, bs, Options{})
				benchPick(b, bl, true)
			})
		}
		b.Run(fmt.Sprintf("rendezvous/%d", n), func(b *testing.B) {
			benchPick(b, newRendezvous(backends(weights...)), true)
		})
	}
}

// rendezvous is weighted rendezvous hashing, kept here only to measure its
// pick against the ring's (BenchmarkPick): it hashes the key once per
// backend, so its cost grows with the route.
type rendezvous struct{ backends []*backend.Backend }

func newRendezvous(bs []*backend.Backend) *rendezvous { return &rendezvous{bs} }

func (r *rendezvous) Pick(key Key, tried []*backend.Backend) *backend.Backend {
	var best *backend.Backend
	bestScore := math.Inf(-1)
	for i, b := range r.backends {
		if !eligible(b, tried) {
			continue
		}
		h := mix(key.Hash ^ uint64(i+1)*0x9e3779b97f4a7c15)
		u := (float64(h>>11) + 0.5) / (1 << 53)
		if s := -float64(weight(b)) / math.Log(u); s > bestScore {
			best, bestScore = b, s
		}
	}
	return best
}

// TestEWMAForgetsAStall: a busy backend (a sample every 0.1 ms) that
// stalled once is fast again in its latency figure within a few hundred
// samples, not after seconds: every sample moves the EWMA at least 1/32 of
// the way.
func TestEWMAForgetsAStall(t *testing.T) {
	bs := backends(1)
	now := time.Unix(3_000_000, 0)
	for i := 0; i < 100; i++ {
		now = now.Add(100 * time.Microsecond)
		bs[0].ObserveLatency(time.Millisecond, now)
	}
	bs[0].ObserveLatency(50*time.Millisecond, now) // one stall: the peak is taken at once
	if got := bs[0].Latency(now.UnixNano()); got < 49e6 {
		t.Fatalf("after a 50 ms sample the latency is %.1f ms, want the peak", got/1e6)
	}
	for i := 0; i < 300; i++ {
		now = now.Add(100 * time.Microsecond)
		bs[0].ObserveLatency(time.Millisecond, now)
	}
	if got := bs[0].Latency(now.UnixNano()); got > 2e6 {
		t.Fatalf("300 fast samples (30 ms) after a stall the latency is %.1f ms, want under 2 ms", got/1e6)
	}
}
