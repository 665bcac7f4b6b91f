package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRouteRecorders(t *testing.T) {
	m := New(func() float64 { return 3 })
	r := m.Route("api", []string{"http://a", "http://b"})
	r.Request([]byte("GET"), 200, 0.01)
	r.Request([]byte("GET"), 200, 0.01)
	r.Request([]byte("BREW"), 418, 0.01)
	r.Upstream(1, "http_error")
	r.Error(ErrNoHealthyBackend)
	r.Retry()
	m.Reload(false)
	m.SetHealthy("api", "http://a", false)
	m.Ejected("api", "http://a")
	want := `
# HELP sluice_requests_total Client requests, by route, method and the status sent to the client.
# TYPE sluice_requests_total counter
sluice_requests_total{code="200",method="GET",route="api"} 2
sluice_requests_total{code="418",method="OTHER",route="api"} 1
`
	if err := testutil.CollectAndCompare(m.requests, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if v := testutil.ToFloat64(m.upstream.WithLabelValues("api", "http://b", "http_error")); v != 1 {
		t.Errorf("upstream http_error = %v", v)
	}
	if v := testutil.ToFloat64(m.errors.WithLabelValues("api", "no_healthy_backend")); v != 1 {
		t.Errorf("errors = %v", v)
	}
	if v := testutil.ToFloat64(m.retries.WithLabelValues("api")); v != 1 {
		t.Errorf("retries = %v", v)
	}
	if v := testutil.ToFloat64(m.reloads.WithLabelValues("error")); v != 1 {
		t.Errorf("reloads = %v", v)
	}
	if v := testutil.ToFloat64(m.healthy.WithLabelValues("api", "http://a")); v != 0 {
		t.Errorf("healthy = %v", v)
	}
	if n, err := testutil.GatherAndCount(m.Registry, "sluice_inflight_requests", "go_goroutines", "process_cpu_seconds_total"); err != nil || n != 3 {
		t.Errorf("gathered %d of inflight, go_ and process_ metrics: %v", n, err)
	}
	var nilRoute *Route
	nilRoute.Request([]byte("GET"), 200, 1) // a nil route records nothing and does not panic
}

// BenchmarkRequest is what metrics add to one request: the request counter
// and duration, and one upstream outcome.
func BenchmarkRequest(b *testing.B) {
	m := New(func() float64 { return 0 })
	r := m.Route("api", []string{"http://a"})
	method := []byte("GET")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Request(method, 200, 0.0012)
			r.Upstream(0, "ok")
		}
	})
}
