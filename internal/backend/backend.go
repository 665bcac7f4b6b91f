// Package backend owns Backend: one upstream server of one route, with its
// address, weight and live state (health, ejection, in-flight requests). It
// records state and decides nothing: the health package is the only writer
// of health and ejection state, balancers read it with atomic loads.
package backend

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// State is a backend's health state.
type State int32

const (
	// Healthy backends take traffic.
	Healthy State = iota
	// Unhealthy backends failed active checks and take no traffic.
	Unhealthy
	// Ejected backends failed live traffic and take no traffic until their
	// ejection time has passed; then one trial request at a time.
	Ejected
)

// String returns the word for s that /backends shows (see
// docs/configuration.md, Admin endpoints).
func (s State) String() string {
	switch s {
	case Healthy:
		return "healthy"
	case Unhealthy:
		return "unhealthy"
	case Ejected:
		return "ejected"
	}
	return "unknown"
}

// Outcome is what one try against a backend came to, in the words of the
// outcome metric label (docs/configuration.md, Metrics), so that metrics,
// ejection and logs agree.
type Outcome string

// The outcomes of a try.
const (
	OutcomeOK           Outcome = "ok"
	OutcomeHTTPError    Outcome = "http_error"
	OutcomeConnectError Outcome = "connect_error"
	OutcomeTimeout      Outcome = "timeout"
	OutcomeReset        Outcome = "reset"
)

// Backend is one backend of one route. Its identity is the route name and the
// URL as configured; its live state survives a reload when both stay the same.
type Backend struct {
	// URL is the backend URL exactly as configured; it names the backend in
	// metrics, logs and the admin API.
	URL string
	// Addr is the host:port to dial.
	Addr string
	// Origin is scheme://host:port, where health probes go.
	Origin string
	// PathPrefix is the URL's path without a trailing slash ("" for none),
	// prepended to every forwarded path.
	PathPrefix string
	// Weight is the round-robin weight (1 or more).
	Weight int
	// Index is the backend's position in its route, in config order.
	Index int

	state        atomic.Int32
	ejectedUntil atomic.Int64 // unix nanoseconds; the trial may start then
	trial        atomic.Bool  // a half-open trial request is in flight
	inFlight     atomic.Int64
	failures     atomic.Int64 // consecutive live-traffic failures
	ejectionTime atomic.Int64 // length of the current ejection, ns

	// upSince is when the backend joined its route or came back to it
	// (unix ns), for slow start; 0 when it was there from the start.
	upSince atomic.Int64
	// latency is the peak-EWMA of response-header latency in ns (float64
	// bits), 0 until measured; latencyAt is when it was last updated.
	latency   atomic.Uint64
	latencyAt atomic.Int64
	// lastPicked is when a balancer last chose the backend (unix ns).
	lastPicked atomic.Int64
	// routeLoad, when set, counts the requests in flight to every backend
	// of the route, beside inFlight.
	routeLoad *atomic.Int64

	mu      sync.Mutex // guards since, reason and history
	since   time.Time
	reason  string
	history EjectionHistory
}

// New returns a healthy backend.
func New(url, addr, origin, pathPrefix string, weight, index int) *Backend {
	return &Backend{URL: url, Addr: addr, Origin: origin, PathPrefix: pathPrefix,
		Weight: weight, Index: index, since: time.Now()}
}

// Available reports whether the backend may take a request now: it is
// healthy, or it is ejected, its ejection time has passed and no trial
// request is in flight. It only reads: a balancer asks it of every
// candidate, and the one chosen is then taken with Admit. The healthy case
// is one atomic load.
func (b *Backend) Available() bool {
	s := State(b.state.Load())
	if s == Healthy {
		return true
	}
	return s == Ejected && !b.trial.Load() && time.Now().UnixNano() >= b.ejectedUntil.Load()
}

// Admit takes the backend a balancer chose for a request. A healthy
// backend is taken as it is (trial false). An ejected one whose ejection
// time has passed is taken only with its half-open trial slot, which one
// request at a time holds (trial true) until the outcome is observed or
// the trial abandoned; ok is false when another request holds it, or when
// the backend is not available any more.
func (b *Backend) Admit() (ok, trial bool) {
	switch State(b.state.Load()) {
	case Healthy:
		return true, false
	case Ejected:
		if time.Now().UnixNano() >= b.ejectedUntil.Load() && b.trial.CompareAndSwap(false, true) {
			return true, true
		}
	}
	return false, false
}

// State returns the current health state.
func (b *Backend) State() State { return State(b.state.Load()) }

// Status is a snapshot of a backend's state for the admin API.
type Status struct {
	State               State
	Since               time.Time
	Reason              string
	ConsecutiveFailures int64
	InFlight            int64
	EjectionTime        time.Duration
}

// Status returns a snapshot of b's state.
func (b *Backend) Status() Status {
	b.mu.Lock()
	since, reason := b.since, b.reason
	b.mu.Unlock()
	st := Status{State: b.State(), Since: since, Reason: reason,
		ConsecutiveFailures: b.failures.Load(), InFlight: b.inFlight.Load()}
	if st.State == Ejected {
		st.EjectionTime = time.Duration(b.ejectionTime.Load())
	}
	return st
}

// SetState records a transition to s at now with its reason; it returns
// false when s was already the state. Only the health package calls it.
// A return to Healthy starts the backend's slow start.
func (b *Backend) SetState(s State, now time.Time, reason string) bool {
	if State(b.state.Swap(int32(s))) == s {
		return false
	}
	if s == Healthy {
		b.upSince.Store(now.UnixNano())
	}
	b.mu.Lock()
	b.since, b.reason = now, reason
	b.mu.Unlock()
	return true
}

// Eject marks the backend ejected for d from now. Only the health package
// calls it.
func (b *Backend) Eject(now time.Time, d time.Duration) {
	b.ejectedUntil.Store(now.Add(d).UnixNano())
	b.ejectionTime.Store(int64(d))
	b.trial.Store(false)
}

// EndTrial frees the half-open trial slot.
func (b *Backend) EndTrial() { b.trial.Store(false) }

// Failures returns the count of consecutive live-traffic failures.
func (b *Backend) Failures() int64 { return b.failures.Load() }

// AddFailure counts a live-traffic failure and returns the new count.
func (b *Backend) AddFailure() int64 { return b.failures.Add(1) }

// ResetFailures clears the failure count; it writes only when needed, so a
// healthy backend's success costs one atomic load.
func (b *Backend) ResetFailures() {
	if b.failures.Load() != 0 {
		b.failures.Store(0)
	}
}

// CopyState gives b the health state of old, the same backend in the
// previous config generation.
func (b *Backend) CopyState(old *Backend) {
	old.mu.Lock()
	b.since, b.reason, b.history = old.since, old.reason, old.history
	old.mu.Unlock()
	b.state.Store(old.state.Load())
	b.ejectedUntil.Store(old.ejectedUntil.Load())
	b.ejectionTime.Store(old.ejectionTime.Load())
	b.failures.Store(old.failures.Load())
	b.upSince.Store(old.upSince.Load())
	b.latency.Store(old.latency.Load())
	b.latencyAt.Store(old.latencyAt.Load())
}

// Acquire counts a request in flight to b.
func (b *Backend) Acquire() {
	b.inFlight.Add(1)
	if b.routeLoad != nil {
		b.routeLoad.Add(1)
	}
}

// Release ends a request counted by Acquire.
func (b *Backend) Release() {
	b.inFlight.Add(-1)
	if b.routeLoad != nil {
		b.routeLoad.Add(-1)
	}
}

// ShareLoad makes b count its requests in flight in load too, the route's
// total; it is called once, before b takes requests.
func (b *Backend) ShareLoad(load *atomic.Int64) { b.routeLoad = load }

// Joined starts b's slow start at now: it joined its route (a reload or
// discovery added it).
func (b *Backend) Joined(now time.Time) { b.upSince.Store(now.UnixNano()) }

// UpSince returns when b joined its route or came back to it (unix ns), 0
// when it has been there since the process started.
func (b *Backend) UpSince() int64 { return b.upSince.Load() }

// Picked records that a balancer chose b at now (unix ns).
func (b *Backend) Picked(now int64) { b.lastPicked.Store(now) }

// LastPicked returns when a balancer last chose b (unix ns), 0 for never.
func (b *Backend) LastPicked() int64 { return b.lastPicked.Load() }

// latencyDecay is the decay time of the latency EWMA.
const latencyDecay = 10 * time.Second

// ObserveLatency adds a response-header latency measured at now to b's
// peak-EWMA: a sample above the current value replaces it at once (the
// peak), one below pulls it down with a weight that grows with the time
// since the last sample (decay time 10 s).
func (b *Backend) ObserveLatency(d time.Duration, now time.Time) {
	rtt := float64(d)
	if rtt < 1 {
		rtt = 1
	}
	t := now.UnixNano()
	for {
		bits := b.latency.Load()
		old := math.Float64frombits(bits)
		next := rtt
		if old > 0 && rtt < old {
			w := math.Exp(-float64(t-b.latencyAt.Load()) / float64(latencyDecay))
			next = old*w + rtt*(1-w)
		}
		if b.latency.CompareAndSwap(bits, math.Float64bits(next)) {
			b.latencyAt.Store(t)
			return
		}
	}
}

// Latency returns b's latency EWMA decayed to now (unix ns), in ns; 0
// when it has not been measured. Reading changes nothing.
func (b *Backend) Latency(now int64) float64 {
	v := math.Float64frombits(b.latency.Load())
	if v == 0 {
		return 0
	}
	if dt := now - b.latencyAt.Load(); dt > 0 {
		v *= math.Exp(-float64(dt) / float64(latencyDecay))
	}
	return v
}

// InFlight returns the number of requests in flight to b.
func (b *Backend) InFlight() int64 { return b.inFlight.Load() }

// EjectionHistory is what the outlier detector remembers of a backend's past
// ejections: how many in a row, and when the last one ended.
type EjectionHistory struct {
	Count     int
	LastEnded time.Time
}

// History returns b's ejection history.
func (b *Backend) History() EjectionHistory {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.history
}

// SetHistory records b's ejection history. Only the health package calls it.
func (b *Backend) SetHistory(h EjectionHistory) {
	b.mu.Lock()
	b.history = h
	b.mu.Unlock()
}
