// Package stats owns the live figures of the admin dashboard: for each
// route and each of its backends, requests, errors, retries, ejections and
// latency over the last minute, in one-second steps.
//
// The request path only adds to counters that never shrink, with atomic
// adds: no lock, no allocation, no clock read (the caller has the
// request's duration already). Once a second a sampler (the server's)
// moves each counter's growth into a ring of per-second differences; a
// reader sums the ring, under a lock the request path never takes, to get
// the figures of the last minute and the per-second series of the
// sparklines. The counters sit beside the Prometheus metrics the proxy
// records at the same points; these are kept apart because a dashboard
// needs windows and percentiles, which Prometheus leaves to its server.
package stats

import (
	"time"
)

// Route holds the meters of one route and of each of its backends. A
// route's meters outlive a reload that keeps its name (see NewRoute), as
// its backends' health does. The recording methods are safe for
// concurrent use and do nothing on a nil Route.
type Route struct {
	route    *meter
	backends []*meter // by the backend's index in its route
	urls     []string
}

// NewRoute returns the meters of a route whose backends have the URLs
// urls, in config order. The route's meter and the meters of backends
// whose URL prev also has are carried over from prev (the same route in
// the previous config generation; nil for none), so that a reload does
// not empty the dashboard.
func NewRoute(prev *Route, urls []string) *Route {
	now := time.Now()
	r := &Route{urls: append([]string(nil), urls...), backends: make([]*meter, len(urls))}
	if prev != nil {
		r.route = prev.route
	} else {
		r.route = newMeter(routeFields, now)
	}
	for i, u := range urls {
		if prev != nil {
			if j := prev.index(u); j >= 0 {
				r.backends[i] = prev.backends[j]
				continue
			}
		}
		r.backends[i] = newMeter(backendFields, now)
	}
	return r
}

// index returns the position of the backend with URL u, or -1.
func (r *Route) index(u string) int {
	for i, v := range r.urls {
		if v == u {
			return i
		}
	}
	return -1
}

// Request records a finished client request of the route: the status sent
// to the client, its error word's number (0 for none), and its duration
// from arrival to the last byte of the response. backend is the index of
// the backend that answered (the last one tried), or -1 when none was
// tried; its latency is recorded too.
func (r *Route) Request(backend, status int, word uint8, d time.Duration) {
	if r == nil {
		return
	}
	var us uint64
	if d > 0 {
		us = uint64(d / time.Microsecond)
	}
	b := bucket(us)
	m := r.route
	m.add(fLatency + b)
	class := status / 100
	if class < 1 || class > 5 {
		class = 0
	}
	// A route's requests and errors are the sums of its status classes,
	// not counters of their own: two adds fewer on the busiest lines.
	m.add(fCodes + class)
	if word != 0 && word < MaxWords {
		m.add(fWords + int(word))
	}
	if uint(backend) < uint(len(r.backends)) {
		r.backends[backend].add(fLatency + b)
	}
}

// Try records one try sent to the backend at index, and whether it
// failed (any outcome but ok).
func (r *Route) Try(backend int, failed bool) {
	if r == nil || uint(backend) >= uint(len(r.backends)) {
		return
	}
	m := r.backends[backend]
	m.add(fRequests)
	if failed {
		m.add(fErrors)
	}
}

// Retry records a retry of the route after a try that failed on the
// backend at index.
func (r *Route) Retry(backend int) {
	if r == nil {
		return
	}
	r.route.add(fRetries)
	if uint(backend) < uint(len(r.backends)) {
		r.backends[backend].add(fRetries)
	}
}

// Ejected records a passive ejection of the backend with URL url.
func (r *Route) Ejected(url string) {
	if r == nil {
		return
	}
	r.route.add(fEjections)
	if i := r.index(url); i >= 0 {
		r.backends[i].add(fEjections)
	}
}

// Sample closes the current second of every meter of the route. The
// server calls it once a second; windows and series are made of what the
// samples hold.
func (r *Route) Sample(now time.Time) {
	if r == nil {
		return
	}
	r.route.sample(now)
	for _, m := range r.backends {
		m.sample(now)
	}
}

// RouteFigures are the figures of a route and of each of its backends, in
// config order.
type RouteFigures struct {
	Figures
	Backends []Figures
}

// Figures returns the route's figures at now.
func (r *Route) Figures(now time.Time) RouteFigures {
	if r == nil {
		return RouteFigures{}
	}
	rf := RouteFigures{Figures: r.route.figures(now), Backends: make([]Figures, len(r.backends))}
	for i, m := range r.backends {
		rf.Backends[i] = m.figures(now)
	}
	return rf
}
