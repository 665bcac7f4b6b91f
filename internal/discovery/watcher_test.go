package discovery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-proxy/sluice/internal/config"
	"github.com/sluice-proxy/sluice/internal/discovery/dnstest"
	"github.com/sluice-proxy/sluice/internal/metrics"
)

func TestNextResolution(t *testing.T) {
	refresh := 30 * time.Second
	fail := errors.New("timeout")
	some := []Endpoint{ep("10.0.0.1", 0, 0)}
	tests := []struct {
		name     string
		a        Answer
		err      error
		failures int
		refresh  time.Duration
		want     time.Duration
	}{
		{name: "TTL below refresh", a: Answer{Endpoints: some, TTL: 5 * time.Second}, want: 5 * time.Second},
		{name: "TTL above refresh", a: Answer{Endpoints: some, TTL: time.Hour}, want: refresh},
		{name: "TTL 0 counts as 1s", a: Answer{Endpoints: some}, want: time.Second},
		{name: "TTL below 1s counts as 1s", a: Answer{Endpoints: some, TTL: 300 * time.Millisecond}, want: time.Second},
		{name: "empty without negative TTL", a: Answer{}, want: refresh},
		{name: "empty with negative TTL", a: Answer{TTL: 4 * time.Second}, want: 4 * time.Second},
		{name: "empty with a long negative TTL", a: Answer{TTL: time.Hour}, want: refresh},
		{name: "first failure", err: fail, failures: 1, want: time.Second},
		{name: "third failure", err: fail, failures: 3, want: 4 * time.Second},
		{name: "many failures: at most refresh", err: fail, failures: 40, want: refresh},
		{name: "refresh short", err: fail, failures: 9, refresh: 2 * time.Second, want: 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := refresh
			if tt.refresh > 0 {
				r = tt.refresh
			}
			if got := nextResolution(tt.a, tt.err, tt.failures, r); got != tt.want {
				t.Errorf("nextResolution = %v, want %v", got, tt.want)
			}
		})
	}
}

// schedule drives a Watcher's loops: each loop, after a resolution, hands
// the delay it chose to delays and waits for the test to let it go on.
type schedule struct {
	delays  chan time.Duration
	release chan struct{}
}

func newSchedule(w *Watcher) *schedule {
	s := &schedule{delays: make(chan time.Duration), release: make(chan struct{})}
	w.sleep = func(ctx context.Context, d time.Duration) bool {
		select {
		case s.delays <- d:
		case <-ctx.Done():
			return false
		}
		select {
		case <-s.release:
			return true
		case <-ctx.Done():
			return false
		}
	}
	return s
}

// next waits for a resolution and returns the delay its loop chose.
func (s *schedule) next(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-s.delays:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("no resolution within 10s")
		return 0
	}
}

// again lets the waiting loop resolve again and waits for that resolution.
func (s *schedule) again(t *testing.T) time.Duration {
	t.Helper()
	s.release <- struct{}{}
	return s.next(t)
}

// counter reads sluice_discovery_resolutions_total from reg; -1 when the
// series does not exist.
func counter(t *testing.T, reg *prometheus.Registry, route, name, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sluice_discovery_resolutions_total" {
			continue
		}
		for _, m := range mf.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["route"] == route && labels["name"] == name && labels["result"] == result {
				return m.Counter.GetValue()
			}
		}
	}
	return -1
}

func discoveryConfig(t *testing.T, resolver string, backends string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(fmt.Appendf(nil, "discovery: {resolvers: [%q], refresh: 20s}\nroutes: [{name: api, path_prefix: /, backends: [%s]}]\n", resolver, backends))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestWatcherFollowsTheAnswers(t *testing.T) {
	s := dnstest.Start(t)
	s.Set("api.test.", dns.TypeA, "api.test. 5 IN A 127.0.0.2", "api.test. 5 IN A 127.0.0.3")
	reg := prometheus.NewRegistry()
	var changes atomic.Int32
	w := NewWatcher(Options{Metrics: metrics.NewDiscovery(reg), Changed: func() { changes.Add(1) }})
	defer w.Stop()
	sched := newSchedule(w)
	key := Key{Route: "api", URL: "http://api.test:8080"}
	cfg := discoveryConfig(t, s.Addr, `{url: "http://api.test:8080", discovery: dns}`)
	w.Sync(cfg)
	set := func() []Endpoint { return w.Sets()[key] }
	waitChanges := func(n int32) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for changes.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("Changed called %d times, want %d", changes.Load(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}

	if d := sched.next(t); d != 5*time.Second {
		t.Errorf("delay after a 5s TTL = %v", d)
	}
	if got := set(); !slices.Equal(got, []Endpoint{ep("127.0.0.2", 0, 0), ep("127.0.0.3", 0, 0)}) {
		t.Fatalf("set = %v", got)
	}
	waitChanges(1)

	// Records change: the set follows.
	s.Set("api.test.", dns.TypeA, "api.test. 60 IN A 127.0.0.3", "api.test. 60 IN A 127.0.0.4")
	if d := sched.again(t); d != 20*time.Second {
		t.Errorf("delay after a 60s TTL with refresh 20s = %v", d)
	}
	if got := set(); !slices.Equal(got, []Endpoint{ep("127.0.0.3", 0, 0), ep("127.0.0.4", 0, 0)}) {
		t.Fatalf("set = %v", got)
	}
	waitChanges(2)

	// The same answer again changes nothing.
	sched.again(t)
	if n := changes.Load(); n != 2 {
		t.Errorf("Changed called %d times after an unchanged answer, want 2", n)
	}

	// A failure keeps the set and is counted; the retry comes sooner.
	s.Fail("api.test.", dns.TypeA, dns.RcodeServerFailure)
	if d := sched.again(t); d != time.Second {
		t.Errorf("delay after a failure = %v, want 1s", d)
	}
	if d := sched.again(t); d != 2*time.Second {
		t.Errorf("delay after a second failure = %v, want 2s", d)
	}
	if got := set(); len(got) != 2 {
		t.Errorf("set after failures = %v, want the last one kept", got)
	}
	if got := counter(t, reg, "api", "api.test", "error"); got != 2 {
		t.Errorf("error count = %v, want 2", got)
	}

	// NXDOMAIN is an answer: the set empties.
	s.Remove("api.test.")
	if d := sched.again(t); d != 20*time.Second {
		t.Errorf("delay after NXDOMAIN without SOA = %v, want refresh", d)
	}
	if got, ok := w.Sets()[key]; !ok || len(got) != 0 {
		t.Errorf("set after NXDOMAIN = %v (present %v), want empty", got, ok)
	}
	waitChanges(3)
	if got := counter(t, reg, "api", "api.test", "ok"); got != 4 {
		t.Errorf("ok count = %v, want 4", got)
	}
}

func TestWatcherSync(t *testing.T) {
	s := dnstest.Start(t)
	s.Set("a.test.", dns.TypeA, "a.test. 5 IN A 10.0.0.1")
	s.Set("b.test.", dns.TypeA, "b.test. 5 IN A 10.0.0.2")
	reg := prometheus.NewRegistry()
	w := NewWatcher(Options{Metrics: metrics.NewDiscovery(reg)})
	defer w.Stop()
	sched := newSchedule(w)
	ka := Key{Route: "api", URL: "http://a.test"}
	kb := Key{Route: "api", URL: "http://b.test"}

	w.Sync(discoveryConfig(t, s.Addr, `{url: "http://a.test", discovery: dns}, "http://10.0.0.9"`))
	sched.next(t)
	if len(w.Sets()[ka]) != 1 {
		t.Fatalf("sets = %v", w.Sets())
	}

	// A reload that keeps a.test keeps its loop (no new resolution) and
	// its set; b.test starts at once.
	w.Sync(discoveryConfig(t, s.Addr, `{url: "http://a.test", discovery: dns}, {url: "http://b.test", discovery: dns}`))
	sched.next(t)
	sets := w.Sets()
	if len(sets[ka]) != 1 || len(sets[kb]) != 1 {
		t.Fatalf("sets after adding b = %v", sets)
	}
	select {
	case d := <-sched.delays:
		t.Fatalf("a second resolution (delay %v) after a reload that kept a.test", d)
	case <-time.After(50 * time.Millisecond):
	}

	// A reload without a.test stops its loop, drops its set and series.
	w.Sync(discoveryConfig(t, s.Addr, `{url: "http://b.test", discovery: dns}`))
	if _, ok := w.Sets()[ka]; ok {
		t.Errorf("set of a.test kept after it left the config")
	}
	if got := counter(t, reg, "api", "a.test", "ok"); got != -1 {
		t.Errorf("series of a.test kept after it left the config (%v)", got)
	}
	if got := counter(t, reg, "api", "b.test", "ok"); got != 1 {
		t.Errorf("ok count of b.test = %v, want 1", got)
	}

	// A change of the resolvers restarts the loops, keeping the sets.
	other := dnstest.Start(t)
	other.Set("b.test.", dns.TypeA, "b.test. 5 IN A 10.0.0.3")
	w.Sync(discoveryConfig(t, other.Addr, `{url: "http://b.test", discovery: dns}`))
	if got := w.Sets()[kb]; !slices.Equal(got, []Endpoint{ep("10.0.0.2", 0, 0)}) {
		t.Errorf("set of b.test right after the resolvers changed = %v, want the last one", got)
	}
	sched.next(t)
	if got := w.Sets()[kb]; !slices.Equal(got, []Endpoint{ep("10.0.0.3", 0, 0)}) {
		t.Errorf("set of b.test from the new resolver = %v", got)
	}

	// No discovered backend: no loop.
	w.Sync(discoveryConfig(t, s.Addr, `"http://10.0.0.9"`))
	if len(w.Sets()) != 0 {
		t.Errorf("sets = %v, want none", w.Sets())
	}
}

func TestWatcherStartDoesNotWait(t *testing.T) {
	w := NewWatcher(Options{})
	sched := newSchedule(w)
	cfg := discoveryConfig(t, deadServer(t), `{url: "http://api.test", discovery: dns}`)
	start := time.Now()
	w.Sync(cfg)
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Sync took %v with a silent resolver", d)
	}
	// Stop returns even while a query waits for its timeout.
	start = time.Now()
	w.Stop()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Stop took %v", d)
	}
	select {
	case d := <-sched.delays:
		t.Errorf("a resolution was recorded (delay %v) after Stop", d)
	default:
	}
	w.Sync(cfg) // after Stop: nothing starts
}

func TestWatcherChangedPanics(t *testing.T) {
	s := dnstest.Start(t)
	s.Set("api.test.", dns.TypeA, "api.test. 5 IN A 127.0.0.2")
	calls := make(chan struct{}, 4)
	w := NewWatcher(Options{Changed: func() { calls <- struct{}{}; panic("bug") }})
	defer w.Stop()
	sched := newSchedule(w)
	w.Sync(discoveryConfig(t, s.Addr, `{url: "http://api.test", discovery: dns}`))
	sched.next(t)
	<-calls
	s.Set("api.test.", dns.TypeA, "api.test. 5 IN A 127.0.0.3")
	sched.again(t)
	select {
	case <-calls: // the goroutine survived the first panic
	case <-time.After(5 * time.Second):
		t.Fatal("Changed not called after a panic in the previous call")
	}
}
