package health

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/backend"
	"github.com/sluice-proxy/sluice/internal/config"
	"go.uber.org/goleak"
)

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func activeConfig(interval time.Duration) config.ActiveHealth {
	return config.ActiveHealth{
		Path: "/health", Interval: config.Duration(interval), Timeout: config.Duration(100 * time.Millisecond),
		HealthyThreshold: 2, UnhealthyThreshold: 3,
		ExpectStatus: config.StatusRange{Text: "200-399", Ranges: [][2]int{{200, 399}}},
	}
}

func TestActiveChecks(t *testing.T) {
	defer goleak.VerifyNone(t)
	var status atomic.Int32
	status.Store(200)
	var agent atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		agent.Store(r.UserAgent())
		if r.URL.Path != "/health" {
			t.Errorf("probe to %s", r.URL.Path)
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	// A backend that never answers its probes: it must not delay the other.
	hang := make(chan struct{})
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer hanging.Close()
	defer close(hang)

	b := backend.New(srv.URL, "", srv.URL, "", 1, 0)
	h := backend.New(hanging.URL, "", hanging.URL, "", 1, 1)
	rec := &recorder{}
	a := NewActive(rec)
	defer a.Stop()
	a.Sync([]Target{{Route: "api", Backend: b, Config: activeConfig(20 * time.Millisecond)},
		{Route: "api", Backend: h, Config: activeConfig(20 * time.Millisecond)}})

	status.Store(500)
	start := time.Now()
	eventually(t, 2*time.Second, "backend unhealthy", func() bool { return b.State() == backend.Unhealthy })
	// 3 probes at 20ms ±10% (the first after half an interval): well within 0.5s.
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("took %v to mark the backend unhealthy", took)
	}
	if st := b.Status(); !strings.Contains(st.Reason, "active check failed 3 times: status 500") {
		t.Errorf("reason %q", st.Reason)
	}
	if ua, _ := agent.Load().(string); !strings.Contains(ua, "sluice") {
		t.Errorf("probe User-Agent %q does not name sluice", ua)
	}
	status.Store(200)
	eventually(t, 2*time.Second, "backend healthy again", func() bool { return b.State() == backend.Healthy })
	if st := b.Status(); st.Reason != "active check passed 2 times" {
		t.Errorf("reason %q", st.Reason)
	}
	eventually(t, 2*time.Second, "hanging backend unhealthy", func() bool { return h.State() == backend.Unhealthy })
	if st := h.Status(); !strings.Contains(st.Reason, "timeout") {
		t.Errorf("hanging backend's reason %q", st.Reason)
	}
}

func TestActiveFlappingDoesNotToggleOnEveryProbe(t *testing.T) {
	defer goleak.VerifyNone(t)
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 0 {
			w.WriteHeader(500)
		}
	}))
	defer srv.Close()
	b := backend.New(srv.URL, "", srv.URL, "", 1, 0)
	rec := &recorder{}
	a := NewActive(rec)
	a.Sync([]Target{{Route: "api", Backend: b, Config: activeConfig(10 * time.Millisecond)}})
	eventually(t, 2*time.Second, "20 probes", func() bool { return n.Load() >= 20 })
	a.Stop()
	if len(rec.reasons) != 0 || b.State() != backend.Healthy {
		t.Fatalf("alternating probes changed the state: %q", rec.reasons)
	}
}

func TestActiveSyncStopsRemovedProbers(t *testing.T) {
	defer goleak.VerifyNone(t)
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	b := backend.New(srv.URL, "", srv.URL, "", 1, 0)
	a := NewActive(&recorder{})
	a.Sync([]Target{{Route: "api", Backend: b, Config: activeConfig(5 * time.Millisecond)}})
	eventually(t, time.Second, "probes", func() bool { return hits.Load() >= 3 })
	a.Sync(nil)
	a.Stop()
}

// TestActiveTurnedOff: a backend that active checks marked unhealthy is
// healthy again once its route's checks are turned off (path ""): nothing
// would ever probe it back. An ejected one stays ejected.
func TestActiveTurnedOff(t *testing.T) {
	defer goleak.VerifyNone(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	defer srv.Close()
	b := backend.New(srv.URL, "", srv.URL, "", 1, 0)
	rec := &recorder{}
	a := NewActive(rec)
	defer a.Stop()
	a.Sync([]Target{{Route: "api", Backend: b, Config: activeConfig(10 * time.Millisecond)}})
	eventually(t, 2*time.Second, "backend unhealthy", func() bool { return b.State() == backend.Unhealthy })
	off := activeConfig(10 * time.Millisecond)
	off.Path = ""
	ejected := backend.New("http://127.0.0.1:1", "", "http://127.0.0.1:1", "", 1, 1)
	ejected.SetState(backend.Ejected, time.Now(), "test")
	a.Sync([]Target{{Route: "api", Backend: b, Config: off}, {Route: "api", Backend: ejected, Config: off}})
	if st := b.Status(); st.State != backend.Healthy || st.Reason != "active checks turned off" {
		t.Errorf("after the checks were turned off: %v %q, want healthy", st.State, st.Reason)
	}
	if ejected.State() != backend.Ejected {
		t.Errorf("an ejected backend became %v", ejected.State())
	}
	rec.mu.Lock()
	last := rec.reasons[len(rec.reasons)-1]
	rec.mu.Unlock()
	if !strings.HasSuffix(last, "unhealthy->healthy: active checks turned off") {
		t.Errorf("last transition %q, want the return to healthy", last)
	}
}
