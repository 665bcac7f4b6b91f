package health

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/backend"
	"github.com/sluice-proxy/sluice/internal/config"
)

type recorder struct {
	mu      sync.Mutex
	reasons []string
}

func (r *recorder) Transition(route string, b *backend.Backend, from, to backend.State, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reasons = append(r.reasons, b.URL+" "+from.String()+"->"+to.String()+": "+reason)
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func passiveConfig() config.PassiveHealth {
	return config.PassiveHealth{
		ConsecutiveFailures: 3,
		FailureStatus:       config.StatusRange{Text: "500-599", Ranges: [][2]int{{500, 599}}},
		EjectionTime:        config.Duration(30 * time.Second),
		MaxEjectionTime:     config.Duration(5 * time.Minute),
		MaxEjectedPercent:   50,
	}
}

func newBackends(n int) []*backend.Backend {
	var bs []*backend.Backend
	for i := 0; i < n; i++ {
		bs = append(bs, backend.New("http://b"+string(rune('0'+i)), "", "", "", 1, i))
	}
	return bs
}

// fail reports n failures of b, as 502 responses.
func fail(p *Passive, b *backend.Backend, n int) {
	for i := 0; i < n; i++ {
		p.Observe(b, backend.OutcomeHTTPError, 502, false)
	}
}

// trial takes the half-open trial slot of b, as the proxy does with the
// backend a balancer chose.
func trial(t *testing.T, b *backend.Backend) {
	t.Helper()
	if !b.Available() || !b.Available() {
		t.Fatal("the ejected backend offers no trial after its ejection time (or asking took it)")
	}
	if ok, isTrial := b.Admit(); !ok || !isTrial {
		t.Fatalf("Admit = %v, %v on an ejected backend past its ejection time, want the trial", ok, isTrial)
	}
	if b.Available() {
		t.Fatal("the backend is still offered while its trial is in flight")
	}
	if ok, _ := b.Admit(); ok {
		t.Fatal("a second trial was allowed while one is in flight")
	}
}

func TestEjectAfterConsecutiveFailures(t *testing.T) {
	// The clock stands an hour back, so that the ejection has already ended
	// for Available, which reads the real time.
	c := &clock{t: time.Now().Add(-time.Hour)}
	rec := &recorder{}
	bs := newBackends(2)
	p := NewPassive("api", passiveConfig(), bs, rec, c.now)

	fail(p, bs[0], 2)
	p.Observe(bs[0], backend.OutcomeOK, 200, false) // a success resets the count
	fail(p, bs[0], 2)
	if bs[0].State() != backend.Healthy {
		t.Fatal("ejected before 3 consecutive failures")
	}
	fail(p, bs[0], 1)
	if bs[0].State() != backend.Ejected {
		t.Fatal("not ejected after 3 consecutive failures")
	}
	if got := bs[0].Status().EjectionTime; got != 30*time.Second {
		t.Fatalf("ejection time %v, want 30s", got)
	}
	if len(rec.reasons) != 1 || !strings.Contains(rec.reasons[0], "ejected after 3 consecutive 502") {
		t.Fatalf("transitions %q", rec.reasons)
	}

	// Half-open: one trial at a time; its failure ejects again, for twice as long.
	trial(t, bs[0])
	p.Observe(bs[0], backend.OutcomeReset, 0, true)
	if got := bs[0].Status().EjectionTime; got != time.Minute {
		t.Fatalf("second ejection time %v, want 1m", got)
	}
	trial(t, bs[0])
	p.Observe(bs[0], backend.OutcomeOK, 200, true)
	if bs[0].State() != backend.Healthy {
		t.Fatal("a successful trial did not bring the backend back")
	}
	for i := 0; i < 3; i++ {
		if ok, isTrial := bs[0].Admit(); !bs[0].Available() || !ok || isTrial {
			t.Fatal("a recovered backend is not available to every request")
		}
	}

	// Ejected again soon after: the doubling goes on.
	c.advance(time.Minute)
	fail(p, bs[0], 3)
	if got := bs[0].Status().EjectionTime; got != 2*time.Minute {
		t.Fatalf("third ejection time %v, want 2m", got)
	}
	trial(t, bs[0])
	p.Observe(bs[0], backend.OutcomeOK, 200, true)

	// Healthy for max_ejection_time after the last ejection ended: back to 30s.
	c.advance(5 * time.Minute)
	fail(p, bs[0], 3)
	if got := bs[0].Status().EjectionTime; got != 30*time.Second {
		t.Fatalf("ejection time after a long healthy period %v, want 30s", got)
	}
}

func TestEjectionTimeCapped(t *testing.T) {
	c := &clock{t: time.Now().Add(-time.Hour)}
	bs := newBackends(2)
	p := NewPassive("api", passiveConfig(), bs, &recorder{}, c.now)
	fail(p, bs[0], 3)
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 5 * time.Minute, 5 * time.Minute}
	for i, w := range want {
		trial(t, bs[0])
		p.Observe(bs[0], backend.OutcomeTimeout, 0, true)
		if got := bs[0].Status().EjectionTime; got != w {
			t.Fatalf("ejection %d: %v, want %v", i+2, got, w)
		}
	}
}

func TestNotEjectedWhileEjectionPending(t *testing.T) {
	c := &clock{t: time.Now()}
	bs := newBackends(2)
	p := NewPassive("api", passiveConfig(), bs, &recorder{}, c.now)
	fail(p, bs[0], 3)
	if bs[0].Available() {
		t.Fatal("an ejected backend is available before its ejection time passed")
	}
}

func TestMaxEjectedPercent(t *testing.T) {
	tests := []struct {
		name       string
		backends   int
		percent    int
		unhealthy  int // actively unhealthy backends, not counted
		failing    int
		maxEjected int
	}{
		{"4 backends 50% kill 3", 4, 50, 0, 3, 2},
		{"2 backends 0%: one can always go", 2, 0, 0, 2, 1},
		{"1 backend 50%: never", 1, 50, 0, 1, 0},
		{"10 backends 30%", 10, 30, 0, 10, 3},
		{"100% all", 3, 100, 0, 3, 3},
		{"unhealthy ones not counted", 4, 50, 1, 3, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := passiveConfig()
			cfg.MaxEjectedPercent = tt.percent
			bs := newBackends(tt.backends)
			for i := 0; i < tt.unhealthy; i++ {
				bs[len(bs)-1-i].SetState(backend.Unhealthy, time.Now(), "test")
			}
			p := NewPassive("api", cfg, bs, &recorder{}, nil)
			for i := 0; i < tt.failing && i < tt.backends-tt.unhealthy; i++ {
				fail(p, bs[i], 5)
			}
			ejected := 0
			for _, b := range bs {
				if b.State() == backend.Ejected {
					ejected++
				}
			}
			if ejected != tt.maxEjected {
				t.Fatalf("%d ejected, want %d", ejected, tt.maxEjected)
			}
		})
	}
}

func TestAbandonedTrialFreesSlot(t *testing.T) {
	c := &clock{t: time.Now().Add(-time.Hour)}
	bs := newBackends(2)
	p := NewPassive("api", passiveConfig(), bs, &recorder{}, c.now)
	fail(p, bs[0], 3)
	trial(t, bs[0])
	p.Abandon(bs[0], true) // the client left: says nothing of the backend
	if bs[0].State() != backend.Ejected {
		t.Fatal("an abandoned trial changed the state")
	}
	trial(t, bs[0])
}

func BenchmarkAvailable(b *testing.B) {
	bs := newBackends(1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !bs[0].Available() {
				b.Fatal("unavailable")
			}
		}
	})
}

func BenchmarkObserveSuccess(b *testing.B) {
	bs := newBackends(2)
	p := NewPassive("api", passiveConfig(), bs, &recorder{}, nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p.Observe(bs[0], backend.OutcomeOK, 200, false)
		}
	})
}
