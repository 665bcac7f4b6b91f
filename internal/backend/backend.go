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
	// ServerName is, for a backend found by service discovery, the name it
	// was found under: the TLS server name of its https connections and
	// the Host of its active health checks. "" for a backend configured
	// with its own host, whose URL says both.
	ServerName string
	// Weight is the round-robin weight (1 or more).
	Weight int
	// Index is the backend's position in its route, in config order.
	Index int

	state        atomic.Int32
	ejectedUntil atomic.Int64 // unix nanoseconds; the trial may start then
	trial        atomic.Bool  // a half-open trial request is in flight
	inFlight     atomic.Int64
	maxInFlight  atomic.Int64 // the circuit breaker's limit; 0 for none
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
// not Full, and it is healthy, or it is ejected, its ejection time has
// passed and no trial request is in flight. It only reads: a balancer asks
// it of every candidate, and the one chosen is then taken with Admit. The
// healthy case without a circuit breaker is two atomic loads.
func (b *Backend) Available() bool { return !b.Full() && b.ready() }

// ready reports whether b's health lets it take a request: healthy, or
// ejected with its ejection time passed and no trial in flight.
func (b *Backend) ready() bool {
	s := State(b.state.Load())
	if s == Healthy {
		return true
	}
	return s == Ejected && !b.trial.Load() && time.Now().UnixNano() >= b.ejectedUntil.Load()
}

// AvailableAgain is Available as the holder of one of b's requests in
// flight sees it: whether b could take that request again once it is
// released (a resend on a fresh connection). It only reads.
func (b *Backend) AvailableAgain() bool {
	if limit := b.maxInFlight.Load(); limit > 0 && b.inFlight.Load() > limit {
		return false
	}
	return b.ready()
}

// Full reports whether b has as many requests in flight as its circuit
// breaker allows (see SetMaxInFlight); never without a limit. It only
// reads.
func (b *Backend) Full() bool {
	limit := b.maxInFlight.Load()
	return limit > 0 && b.inFlight.Load() >= limit
}

// SetMaxInFlight sets the circuit breaker's limit: how many requests b
// may have in flight; 0 for no limit. The route's build sets it, also on a
// backend carried over a reload.
func (b *Backend) SetMaxInFlight(n int64) { b.maxInFlight.Store(max(n, 0)) }

// Admit takes the backend a balancer chose for a request, and counts the
// request in flight (Release ends it). A healthy backend is taken as it is
// (trial false). An ejected one whose ejection time has passed is taken
// only with its half-open trial slot, which one request at a time holds
// (trial true) until the outcome is observed or the trial abandoned. ok is
// false, and nothing is taken, when another request holds the trial, when
// the backend is not available any more, or when it is Full: the circuit
// breaker's limit is checked and the request counted in one atomic step,
// so concurrent requests never take it past the limit.
func (b *Backend) Admit() (ok, trial bool) {
	switch State(b.state.Load()) {
	case Healthy:
		return b.take(), false
	case Ejected:
		if time.Now().UnixNano() >= b.ejectedUntil.Load() && b.trial.CompareAndSwap(false, true) {
			if b.take() {
				return true, true
			}
			b.trial.Store(false)
		}
	}
	return false, false
}

// take counts a request in flight unless that would pass the circuit
// breaker's limit.
func (b *Backend) take() bool {
	limit := b.maxInFlight.Load()
	if limit <= 0 {
		b.Acquire()
		return true
	}
	for {
		n := b.inFlight.Load()
		if n >= limit {
			return false
		}
		if b.inFlight.CompareAndSwap(n, n+1) {
			if b.routeLoad != nil {
				b.routeLoad.Add(1)
			}
			return true
		}
	}
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

// Acquire counts a request in flight to b, whatever its limit; Admit is
// the way a request takes b.
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

// latencyDecay is the decay time of the latency EWMA; minSampleWeight is
// the least weight a sample below the current value gets.
const (
	latencyDecay    = 10 * time.Second
	minSampleWeight = 1.0 / 32
)

// ObserveLatency adds a response-header latency measured at now to b's
// peak-EWMA: a sample above the current value replaces it at once (the
// peak), one below pulls it down with a weight that grows with the time
// since the last sample (decay time 10 s), and is at least 1/32.
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
			// The old value's weight decays with the time since the last
			// sample (decay time 10 s), but every sample moves the value
			// at least minSampleWeight of the way: a busy backend sampled
			// every fraction of a millisecond would otherwise keep one
			// stall's peak for seconds.
			w := min(math.Exp(-float64(t-b.latencyAt.Load())/float64(latencyDecay)), 1-minSampleWeight)
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
