package balance

import (
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/backend"
)

func backends(weights ...int) []*backend.Backend {
	var bs []*backend.Backend
	for i, w := range weights {
		bs = append(bs, backend.New("http://b"+string(rune('a'+i)), "", "", "", w, i))
	}
	return bs
}

func counts(rr *RoundRobin, n int, tried []*backend.Backend) map[int]int {
	c := map[int]int{}
	for i := 0; i < n; i++ {
		b := rr.Pick(tried)
		if b == nil {
			c[-1]++
			continue
		}
		c[b.Index]++
	}
	return c
}

func TestRoundRobin(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		down    []int
		picks   int
		want    map[int]int
	}{
		{"even", []int{1, 1, 1}, nil, 300, map[int]int{0: 100, 1: 100, 2: 100}},
		{"weighted", []int{2, 1}, nil, 300, map[int]int{0: 200, 1: 100}},
		{"weights with gcd", []int{10, 5, 5}, nil, 400, map[int]int{0: 200, 1: 100, 2: 100}},
		{"skips unavailable evenly", []int{1, 1, 1}, []int{0}, 300, map[int]int{1: 150, 2: 150}},
		{"all down", []int{1, 1}, []int{0, 1}, 10, map[int]int{-1: 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs := backends(tt.weights...)
			for _, i := range tt.down {
				bs[i].SetState(backend.Unhealthy, time.Now(), "test")
			}
			got := counts(NewRoundRobin(bs), tt.picks, nil)
			for k, v := range tt.want {
				if got[k] != v {
					t.Fatalf("counts = %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestRoundRobinSmooth(t *testing.T) {
	// nginx's smooth weighted round robin spreads the heavy backend out.
	rr := NewRoundRobin(backends(5, 1, 1))
	var seq []int
	for i := 0; i < 7; i++ {
		seq = append(seq, rr.Pick(nil).Index)
	}
	want := []int{0, 0, 1, 0, 2, 0, 0}
	for i := range want {
		if seq[i] != want[i] {
			t.Fatalf("sequence %v, want %v", seq, want)
		}
	}
}

func TestRoundRobinTried(t *testing.T) {
	bs := backends(1, 1, 1)
	rr := NewRoundRobin(bs)
	for i := 0; i < 10; i++ {
		b := rr.Pick(bs[:2])
		if b != bs[2] {
			t.Fatalf("picked %v, want the untried backend", b.URL)
		}
	}
	if b := rr.Pick(bs); b != nil {
		t.Fatalf("picked %s with every backend tried", b.URL)
	}
}

func BenchmarkRoundRobinPick(b *testing.B) {
	bs := backends(1, 2, 3, 1)
	rr := NewRoundRobin(bs)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var tried [4]*backend.Backend
		for pb.Next() {
			if rr.Pick(tried[:0]) == nil {
				b.Fatal("nil")
			}
		}
	})
}
