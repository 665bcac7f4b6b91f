package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/sluice-proxy/sluice/internal/config"
	"github.com/sluice-proxy/sluice/internal/metrics"
)

// minDelay is the shortest time between two resolutions of a name, whatever
// its records' TTL.
const minDelay = time.Second

// Options configure a Watcher.
type Options struct {
	// Log gets a line when a name's set changes, when its resolution
	// starts failing and when it recovers; each failure after the first
	// is logged at debug level only.
	Log *slog.Logger
	// Metrics counts the resolutions; nil counts nothing.
	Metrics *metrics.Discovery
	// Changed is called after a set changed, from the Watcher's own
	// goroutine, one call at a time; changes that come while it runs are
	// folded into one more call.
	Changed func()
	// ResolvConf is the file the system's resolvers are read from when
	// discovery.resolvers is empty; "" means ResolvConf.
	ResolvConf string
}

// Watcher runs one resolver loop per discovered backend of the running
// configuration and keeps the endpoints each found. Sync starts and stops
// the loops; Stop ends them all.
type Watcher struct {
	log     *slog.Logger
	metrics *metrics.Discovery
	changed func()
	conf    string
	// sleep waits d or until ctx is done, and reports whether d passed;
	// tests replace it to see and drive the schedule.
	sleep func(ctx context.Context, d time.Duration) bool

	mu       sync.Mutex
	res      *Resolver       // the resolver the loops use
	refresh  config.Duration // the refresh the loops use
	loops    map[Key]*loop
	sets     Sets
	stopped  bool
	kick     chan struct{} // a set changed; one pending signal at most
	stop     chan struct{} // closed by Stop
	wg       sync.WaitGroup
	notifier bool // the goroutine that calls changed runs
}

// loop is the resolver goroutine of one discovered backend.
type loop struct {
	target
	cancel context.CancelFunc
}

// NewWatcher returns a Watcher with no loops; Sync starts them.
func NewWatcher(o Options) *Watcher {
	w := &Watcher{log: o.Log, metrics: o.Metrics, changed: o.Changed, conf: o.ResolvConf,
		sleep: sleep, loops: map[Key]*loop{}, sets: Sets{},
		kick: make(chan struct{}, 1), stop: make(chan struct{})}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if w.conf == "" {
		w.conf = ResolvConf
	}
	if w.changed == nil {
		w.changed = func() {}
	}
	return w
}

// Sync makes the running loops those of cfg's discovered backends: the
// loop of a backend still configured (same route name, URL and discovery
// kind) keeps running and its set; new ones start, resolving at once;
// those of backends gone stop and their sets go. A change of the
// resolvers (of the discovery section, or of resolv.conf when it is
// empty) or of the refresh restarts every loop with the new settings,
// keeping the sets. It does not wait for DNS, nor for stopped loops to
// return.
func (w *Watcher) Sync(cfg *config.Config) {
	want := targets(cfg)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	if len(want) == 0 {
		for k, l := range w.loops {
			l.cancel()
			delete(w.loops, k)
			delete(w.sets, k)
		}
		w.forgetSeries()
		return
	}
	res := w.resolver(cfg.Discovery.Resolvers)
	restart := w.res == nil || !w.res.same(res) || cfg.Discovery.Refresh != w.refresh
	if restart {
		w.res, w.refresh = res, cfg.Discovery.Refresh
	}
	for k, l := range w.loops {
		t, keep := want[k]
		if keep && t == l.target && !restart {
			continue
		}
		l.cancel()
		delete(w.loops, k)
		if !keep || t != l.target {
			delete(w.sets, k)
		}
	}
	for k, t := range want {
		if _, ok := w.loops[k]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		l := &loop{target: t, cancel: cancel}
		w.loops[k] = l
		w.metrics.Watch(t.Route, t.name)
		w.wg.Add(1)
		go w.run(ctx, l, w.res, w.refresh.D())
	}
	w.forgetSeries()
	if !w.notifier {
		w.notifier = true
		w.wg.Add(1)
		go w.notify()
	}
}

// resolver returns the resolver that asks resolvers (discovery.resolvers),
// or the system's ones when there are none.
func (w *Watcher) resolver(resolvers []string) *Resolver {
	if len(resolvers) == 0 {
		return SystemResolver(w.conf)
	}
	servers := make([]string, 0, len(resolvers))
	for _, s := range resolvers {
		if a, err := config.ResolverAddr(s); err == nil { // validated by config
			servers = append(servers, a)
		}
	}
	return NewResolver(servers)
}

// forgetSeries drops the resolution counters of the route and name pairs
// no loop resolves any more; w.mu is held.
func (w *Watcher) forgetSeries() {
	live := map[[2]string]bool{}
	for _, l := range w.loops {
		live[[2]string{l.Route, l.name}] = true
	}
	w.metrics.Retain(live)
}

// Sets returns the endpoints found so far for the backends of the last
// Sync; a backend not resolved yet has no entry.
func (w *Watcher) Sets() Sets {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(Sets, len(w.sets))
	for k, eps := range w.sets {
		out[k] = eps
	}
	return out
}

// Stop ends every loop and the goroutine that reports changes, and waits
// for them to return. Sync does nothing afterwards.
func (w *Watcher) Stop() {
	w.mu.Lock()
	if !w.stopped {
		w.stopped = true
		for k, l := range w.loops {
			l.cancel()
			delete(w.loops, k)
		}
		close(w.stop)
	}
	w.mu.Unlock()
	w.wg.Wait()
}

// notify calls changed after each kick, until Stop.
func (w *Watcher) notify() {
	defer w.wg.Done()
	for {
		select {
		case <-w.stop:
			return
		case <-w.kick:
			w.callChanged()
		}
	}
}

// callChanged calls changed, containing a panic to the one call.
func (w *Watcher) callChanged() {
	defer func() {
		if r := recover(); r != nil {
			w.log.Error("applying discovered backends panicked; the running ones stay", "event", "discovery", "panic", fmt.Sprint(r))
		}
	}()
	w.changed()
}

// run is one backend's resolver loop: resolve, record, wait, until ctx is
// done.
func (w *Watcher) run(ctx context.Context, l *loop, res *Resolver, refresh time.Duration) {
	defer w.wg.Done()
	defer func() {
		if r := recover(); r != nil {
			w.log.Error("service discovery stopped after a panic; the last addresses stay until a reload",
				"event", "discovery", "route", l.Route, "name", l.name, "panic", fmt.Sprint(r))
		}
	}()
	st := &loopState{}
	for {
		var (
			a   Answer
			err error
		)
		if l.kind == config.DiscoverySRV {
			a, err = res.LookupSRV(ctx, l.name)
		} else {
			a, err = res.LookupHost(ctx, l.name)
		}
		if ctx.Err() != nil {
			return
		}
		d := w.record(l, st, a, err, refresh)
		if !w.sleep(ctx, d) {
			return
		}
	}
}

// loopState is what a loop remembers between two resolutions.
type loopState struct {
	failures int  // failed resolutions in a row
	resolved bool // an answer has come since the loop started
}

// record takes the outcome of one resolution: it stores the set an answer
// gives, counts and logs, and returns when to resolve again.
func (w *Watcher) record(l *loop, st *loopState, a Answer, err error, refresh time.Duration) time.Duration {
	var eps, old []Endpoint
	had, changed := false, false
	if err == nil {
		eps = normalise(a.Endpoints)
	}
	w.mu.Lock()
	if w.loops[l.Key] != l { // stopped or replaced by Sync meanwhile
		w.mu.Unlock()
		return refresh
	}
	w.metrics.Resolved(l.Route, l.name, err == nil)
	if err == nil {
		old, had = w.sets[l.Key]
		changed = !slices.Equal(old, eps)
		w.sets[l.Key] = eps
	}
	w.mu.Unlock()

	if err != nil {
		st.failures++
		next := nextResolution(a, err, st.failures, refresh)
		if st.failures == 1 {
			w.log.Warn("service discovery failed; the last addresses found stay", "event", "discovery",
				"route", l.Route, "name", l.name, "error", err.Error(), "retry_in", next.String())
		} else if w.log.Enabled(context.Background(), slog.LevelDebug) {
			w.log.Debug("service discovery failed again", "event", "discovery",
				"route", l.Route, "name", l.name, "error", err.Error(), "failures", st.failures, "retry_in", next.String())
		}
		return next
	}
	next := nextResolution(a, nil, 0, refresh)
	if st.failures > 0 {
		w.log.Info("service discovery recovered", "event", "discovery", "route", l.Route, "name", l.name,
			"failures", st.failures)
	}
	st.failures = 0
	if changed || !st.resolved && !had {
		w.log.Info("discovered backends changed", "event", "discovery", "route", l.Route, "name", l.name,
			"backend", l.URL, "addresses", describe(eps), "added", count(eps, old), "removed", count(old, eps),
			"next_in", next.String())
	} else if w.log.Enabled(context.Background(), slog.LevelDebug) {
		w.log.Debug("discovered backends unchanged", "event", "discovery", "route", l.Route, "name", l.name,
			"addresses", len(eps), "next_in", next.String())
	}
	st.resolved = true
	if changed {
		select {
		case w.kick <- struct{}{}:
		default: // a call is pending already and will read the new set
		}
	}
	return next
}

// nextResolution returns how long to wait before resolving a name again,
// after an answer a or a failure err (the failures-th in a row): the
// answer's TTL, at least a second, but at most refresh; after an answer
// without records, its negative-caching time when it had one, else
// refresh; after a failure, a second, doubling with each failure in a
// row, at most refresh.
func nextResolution(a Answer, err error, failures int, refresh time.Duration) time.Duration {
	refresh = max(refresh, minDelay)
	switch {
	case err != nil:
		return min(minDelay<<min(max(failures-1, 0), 16), refresh)
	case len(a.Endpoints) == 0 && a.TTL <= 0:
		return refresh
	default:
		return min(max(a.TTL, minDelay), refresh)
	}
}

// describe lists endpoints for the log: "10.0.0.1", "[fd00::1]:8080".
func describe(eps []Endpoint) []string {
	out := make([]string, len(eps))
	for i, e := range eps {
		switch {
		case e.Port == 0:
			out[i] = e.Addr.String()
		default:
			out[i] = fmt.Sprintf("%s weight %d", netip.AddrPortFrom(e.Addr, e.Port), e.Weight)
		}
	}
	return out
}

// count returns how many of a are not in b.
func count(a, b []Endpoint) int {
	n := 0
	for _, e := range a {
		if !slices.Contains(b, e) {
			n++
		}
	}
	return n
}

// sleep waits d, or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
