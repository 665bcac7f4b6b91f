package ratelimit

import (
	"math/rand/v2"
	"testing"
)

// checkWindows fails t when some window of the admitted times holds more
// than burst + rate × its length: for admitted requests i..j, j-i+1 ≤
// burst + rate·(t_j - t_i).
func checkWindows(t *testing.T, rate float64, burst int, admitted []int64) {
	t.Helper()
	for i := range admitted {
		for j := i; j < len(admitted); j++ {
			n := float64(j - i + 1)
			window := float64(admitted[j]-admitted[i]) / 1e9
			if n > float64(burst)+rate*window+1e-9 {
				t.Fatalf("rate %v burst %d: %v admitted in the %v s from %d ns to %d ns, over %v",
					rate, burst, n, window, admitted[i], admitted[j], float64(burst)+rate*window)
			}
		}
	}
}

// FuzzAdmittedInAnyWindow: for any arrival sequence, the requests admitted
// in any window never exceed burst + rate × window, and a refusal's wait is
// exact.
func FuzzAdmittedInAnyWindow(f *testing.F) {
	f.Add(uint16(1000), uint8(3), []byte{0, 0, 0, 0, 0, 14, 14, 200, 0, 0, 0})
	f.Add(uint16(50), uint8(1), []byte{0, 1, 2, 3, 255, 255, 0, 0})
	f.Add(uint16(4999), uint8(19), make([]byte, 64))
	f.Fuzz(func(t *testing.T, centiRate uint16, burst uint8, gaps []byte) {
		rate := float64(centiRate%5000+1) / 100 // 0.01 to 50 a second
		depth := int(burst%20) + 1
		if len(gaps) > 300 {
			gaps = gaps[:300]
		}
		arrivals := make([]int64, len(gaps))
		now := int64(0)
		for i, g := range gaps {
			now += int64(g) * int64(g) * 37_000 // 0 to 2.4 s, mostly short
			arrivals[i] = now
		}
		checkWindows(t, rate, depth, admitWithWaits(t, rate, depth, arrivals))
	})
}

// admitWithWaits is admit, also checking each refusal's wait on a twin
// limiter fed the same admitted requests: at now+wait a token is there,
// 1 ns before it none is.
func admitWithWaits(t *testing.T, rate float64, burst int, arrivals []int64) []int64 {
	t.Helper()
	l := New(rate, burst, true)
	var admitted []int64
	for _, now := range arrivals {
		ok, wait := l.Allow(7, now)
		if ok {
			admitted = append(admitted, now)
			continue
		}
		if wait <= 0 {
			t.Fatalf("refused at %d with wait %v", now, wait)
		}
		tat := l.shards[7%shards].m[7].tat.Load()
		twin := New(rate, burst, true)
		twin.Allow(7, 0)
		twin.shards[7%shards].m[7].tat.Store(tat)
		if ok, _ := twin.Allow(7, now+int64(wait)-1); ok {
			t.Fatalf("refused at %d with wait %v, but a token was there 1 ns earlier", now, wait)
		}
		if ok, _ := twin.Allow(7, now+int64(wait)); !ok {
			t.Fatalf("refused at %d with wait %v, but no token was there then", now, wait)
		}
	}
	return admitted
}

// TestRandomArrivals is the fuzz property over random sequences, for plain
// go test runs.
func TestRandomArrivals(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		rate := []float64{0.5, 1, 3, 7.5, 100}[r.IntN(5)]
		depth := 1 + r.IntN(10)
		arrivals := make([]int64, 200)
		now := int64(0)
		for i := range arrivals {
			if r.IntN(3) > 0 { // bursts of simultaneous arrivals
				now += r.Int64N(int64(3e9 / rate))
			}
			arrivals[i] = now
		}
		admitted := admitWithWaits(t, rate, depth, arrivals)
		checkWindows(t, rate, depth, admitted)
		if len(admitted) == 0 {
			t.Fatal("nothing admitted")
		}
	}
}
