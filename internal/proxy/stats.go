package proxy

import (
	"github.com/sluice-proxy/sluice/internal/stats"
)

// recordStats gives the finished request to the dashboard's meters of its
// route (requests matching no route are not metered there), with the
// backend that answered: the last one tried.
func (x *exchange) recordStats() {
	if x.route == nil {
		return
	}
	last := -1
	if n := len(x.tried); n > 0 {
		last = x.tried[n-1].Index
	}
	x.route.Stats.Request(last, x.rec.Status, uint8(x.word), x.rec.Duration)
}

// routeStats returns the dashboard's meters for the route named name whose
// backends have the URLs urls, carrying over those of the same route in
// prev (see stats.NewRoute).
func routeStats(prev *Runtime, name string, urls []string) *stats.Route {
	var old *stats.Route
	if prev != nil {
		for _, pr := range prev.Routes {
			if pr.Name == name {
				old = pr.Stats
				break
			}
		}
	}
	return stats.NewRoute(old, urls)
}
