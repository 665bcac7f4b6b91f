package balance

import (
	"testing"

	"github.com/sluice-proxy/sluice/internal/backend"
)

// TestFullBackendsPassedOver checks that every balancer, keyed or not,
// on a first try and on a retry, passes over a backend at its circuit
// breaker's limit, and finds nothing when every backend is.
func TestFullBackendsPassedOver(t *testing.T) {
	keys := map[string]Key{"no key": {}, "key": HashBytes("user-7")}
	for name := range all(backends(1, 1, 1), Options{}) {
		for kname, key := range keys {
			t.Run(name+"/"+kname, func(t *testing.T) {
				bs := backends(1, 1, 1)
				bl := all(bs, Options{Rand: seeded(3)})[name]
				for _, b := range bs {
					b.SetMaxInFlight(2)
				}
				// b0 full, b1 with one of two: only b1 and b2 may be picked.
				for range 2 {
					if ok, _ := bs[0].Admit(); !ok {
						t.Fatal("Admit refused below the limit")
					}
				}
				bs[1].Admit()
				for range 50 {
					if b := bl.Pick(key, nil); b == nil || b == bs[0] {
						t.Fatalf("picked %v, want b1 or b2 while b0 is full", url(b))
					}
					if b := bl.Pick(key, []*backend.Backend{bs[2]}); b != bs[1] {
						t.Fatalf("retry after b2 picked %v, want b1", url(b))
					}
				}
				bs[1].Admit()
				bs[2].Admit()
				bs[2].Admit()
				if b := bl.Pick(key, nil); b != nil {
					t.Fatalf("picked %v with every backend full, want none", url(b))
				}
				bs[0].Release()
				if b := bl.Pick(key, nil); b != bs[0] {
					t.Fatalf("picked %v once b0 had room, want b0", url(b))
				}
			})
		}
	}
}

func url(b *backend.Backend) string {
	if b == nil {
		return "nothing"
	}
	return b.URL
}
