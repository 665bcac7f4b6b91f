// Package backend owns Backend: one upstream server of one route, with its
// address, weight and live state (health, in-flight requests). It records
// state and decides nothing: the health package writes health, balancers read
// it with atomic loads.
package backend

import (
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
	// ejection time has passed.
	Ejected
)

// String returns the SPEC's word for s.
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

// Backend is one backend of one route. Its identity is the route name and the
// URL as configured; its live state survives a reload when both stay the same.
type Backend struct {
	// URL is the backend URL exactly as configured; it names the backend in
	// metrics, logs and the admin API.
	URL string
	// Addr is the host:port to dial.
	Addr string
	// HostPort is the origin's authority, used for health probes.
	Origin string
	// PathPrefix is the URL's path without a trailing slash ("" for none),
	// prepended to every forwarded path.
	PathPrefix string
	// Weight is the round-robin weight (1 or more).
	Weight int
	// Index is the backend's position in its route, in config order.
	Index int

	state    atomic.Int32
	inFlight atomic.Int64
	since    atomic.Int64 // unix nanoseconds of the last transition
}

// New returns a healthy backend.
func New(url, addr, origin, pathPrefix string, weight, index int) *Backend {
	b := &Backend{URL: url, Addr: addr, Origin: origin, PathPrefix: pathPrefix, Weight: weight, Index: index}
	b.since.Store(time.Now().UnixNano())
	return b
}

// Available reports whether the backend may take a request now. It is an
// atomic load, safe on the hot path.
func (b *Backend) Available() bool { return State(b.state.Load()) == Healthy }

// State returns the current health state.
func (b *Backend) State() State { return State(b.state.Load()) }

// SetState records a transition to s; it returns false when s was already the
// state. Only the health package calls it.
func (b *Backend) SetState(s State, now time.Time) bool {
	if State(b.state.Swap(int32(s))) == s {
		return false
	}
	b.since.Store(now.UnixNano())
	return true
}

// Since returns the time of the last state transition.
func (b *Backend) Since() time.Time { return time.Unix(0, b.since.Load()) }

// Acquire counts a request in flight to b.
func (b *Backend) Acquire() { b.inFlight.Add(1) }

// Release ends a request counted by Acquire.
func (b *Backend) Release() { b.inFlight.Add(-1) }

// InFlight returns the number of requests in flight to b.
func (b *Backend) InFlight() int64 { return b.inFlight.Load() }
