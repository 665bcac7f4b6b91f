package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRateLimitedAndOverloadWords(t *testing.T) {
	m := New(func() float64 { return 0 })
	r := m.Route("api", []string{"http://a"})
	r.RateLimited()
	r.RateLimited()
	r.Error(ErrRateLimited)
	r.Error(ErrBackendOverloaded)
	if v := testutil.ToFloat64(m.limited.WithLabelValues("api")); v != 2 {
		t.Errorf("sluice_rate_limited_total{route=api} = %v, want 2", v)
	}
	for _, w := range []string{"rate_limited", "backend_overloaded"} {
		if v := testutil.ToFloat64(m.errors.WithLabelValues("api", w)); v != 1 {
			t.Errorf("sluice_errors_total{route=api,error=%s} = %v, want 1", w, v)
		}
	}
	if ErrRateLimited.String() != "rate_limited" || ErrBackendOverloaded.String() != "backend_overloaded" {
		t.Errorf("words %q %q", ErrRateLimited, ErrBackendOverloaded)
	}
	// Requests that match no route are never rate limited: no series.
	m.Route("", nil).RateLimited()
	if n := testutil.CollectAndCount(m.limited); n != 1 {
		t.Errorf("sluice_rate_limited_total has %d series, want 1 (route api only)", n)
	}
}
