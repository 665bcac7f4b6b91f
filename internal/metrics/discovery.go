package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Discovery counts service discovery's resolutions in
// sluice_discovery_resolutions_total{route,name,result}, result being "ok"
// (an answer, even an empty one) or "error" (a failure, which keeps the
// last addresses). A nil *Discovery counts nothing.
type Discovery struct {
	resolutions *prometheus.CounterVec

	mu      sync.Mutex
	watched map[[2]string]bool // the route and name pairs with series
}

// NewDiscovery returns the discovery counters, registered with reg (the
// instance's Registry).
func NewDiscovery(reg prometheus.Registerer) *Discovery {
	d := &Discovery{resolutions: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_discovery_resolutions_total",
		Help: "Resolutions of discovered backends' names, by result (ok: an answer, even an empty one; error: a failure, which keeps the last addresses).",
	}, []string{"route", "name", "result"}), watched: map[[2]string]bool{}}
	reg.MustRegister(d.resolutions)
	return d
}

// Watch makes the series of route and name exist, at 0, before their first
// resolution.
func (d *Discovery) Watch(route, name string) {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.watched[[2]string{route, name}] = true
	d.mu.Unlock()
	d.resolutions.WithLabelValues(route, name, "ok")
	d.resolutions.WithLabelValues(route, name, "error")
}

// Resolved counts one resolution of name for route.
func (d *Discovery) Resolved(route, name string, ok bool) {
	if d == nil {
		return
	}
	result := "error"
	if ok {
		result = "ok"
	}
	d.resolutions.WithLabelValues(route, name, result).Inc()
}

// Retain drops the series of the watched route and name pairs that are not
// in live: no configured backend resolves them any more.
func (d *Discovery) Retain(live map[[2]string]bool) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for p := range d.watched {
		if !live[p] {
			delete(d.watched, p)
			d.resolutions.DeletePartialMatch(prometheus.Labels{"route": p[0], "name": p[1]})
		}
	}
}
