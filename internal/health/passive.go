// Package health owns backend health: the active probers and the passive
// outlier detector. It is the only writer of health and ejection state, which
// the data path reads with atomic loads. It never touches a request or a
// response.
package health

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/sluice-proxy/sluice/internal/backend"
	"github.com/sluice-proxy/sluice/internal/config"
)

// Events receives every health transition, once, with its reason. The
// server logs them and counts them in metrics.
type Events interface {
	Transition(route string, b *backend.Backend, from, to backend.State, reason string)
}

// Clock returns the current time; tests inject their own.
type Clock func() time.Time

// Passive is the outlier detector of one route: it ejects backends that fail
// live traffic and brings them back after a successful half-open trial.
type Passive struct {
	route    string
	cfg      config.PassiveHealth
	backends []*backend.Backend
	events   Events
	now      Clock

	mu sync.Mutex // serialises ejection decisions of the route
}

// NewPassive returns the detector of a route's backends. now may be nil
// (time.Now).
func NewPassive(route string, cfg config.PassiveHealth, backends []*backend.Backend, events Events, now Clock) *Passive {
	if now == nil {
		now = time.Now
	}
	return &Passive{route: route, cfg: cfg, backends: backends, events: events, now: now}
}

// Failure reports whether a response status counts against a backend.
func (p *Passive) Failure(status int) bool { return p.cfg.FailureStatus.Contains(status) }

// Observe records the outcome of one try against b. status is the
// response's status when there was one (0 otherwise); trial says whether the
// try was b's half-open trial. A success costs one atomic load unless it
// ends an ejection.
func (p *Passive) Observe(b *backend.Backend, o backend.Outcome, status int, trial bool) {
	if o == backend.OutcomeOK {
		b.ResetFailures()
		if trial {
			p.recover(b)
		}
		return
	}
	n := b.AddFailure()
	what := string(o)
	if o == backend.OutcomeHTTPError {
		what = strconv.Itoa(status)
	}
	if trial {
		p.eject(b, "trial request after ejection failed: "+what, true)
		return
	}
	if n >= int64(p.cfg.ConsecutiveFailures) && b.State() == backend.Healthy {
		p.eject(b, fmt.Sprintf("ejected after %d consecutive %s", n, what), false)
	}
}

// Abandon frees b's trial slot when the trial request ended for a reason
// that says nothing of b (the client left, say).
func (p *Passive) Abandon(b *backend.Backend, trial bool) {
	if trial {
		b.EndTrial()
	}
}

// eject ejects b if the route's max_ejected_percent allows it (a failed
// trial always re-ejects).
func (p *Passive) eject(b *backend.Backend, reason string, again bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if !again {
		if b.State() != backend.Healthy || !p.mayEject() {
			return
		}
	}
	h := b.History()
	if !h.LastEnded.IsZero() && now.Sub(h.LastEnded) >= p.cfg.MaxEjectionTime.D() {
		h.Count = 0 // healthy long enough: start again at ejection_time
	}
	d := p.cfg.EjectionTime.D()
	for i := 0; i < h.Count && d < p.cfg.MaxEjectionTime.D(); i++ {
		d *= 2
	}
	if max := p.cfg.MaxEjectionTime.D(); d > max {
		d = max
	}
	h.Count++
	b.SetHistory(h)
	b.Eject(now, d)
	from := b.State()
	if b.SetState(backend.Ejected, now, reason+" (for "+d.String()+")") || again {
		p.events.Transition(p.route, b, from, backend.Ejected, reason+" (for "+d.String()+")")
	}
}

// mayEject reports whether one more backend may be ejected: the ejected
// share stays within max_ejected_percent, and one backend of two or more
// can always be ejected. Actively unhealthy backends are not counted.
func (p *Passive) mayEject() bool {
	ejected := 0
	for _, b := range p.backends {
		if b.State() == backend.Ejected {
			ejected++
		}
	}
	n := len(p.backends)
	return (ejected+1)*100 <= p.cfg.MaxEjectedPercent*n || ejected == 0 && n >= 2
}

// recover ends b's ejection after a successful trial.
func (p *Passive) recover(b *backend.Backend) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if b.State() != backend.Ejected {
		b.EndTrial()
		return
	}
	h := b.History()
	h.LastEnded = now
	b.SetHistory(h)
	b.SetState(backend.Healthy, now, "trial request after ejection succeeded")
	b.EndTrial()
	p.events.Transition(p.route, b, backend.Ejected, backend.Healthy, "trial request after ejection succeeded")
}
