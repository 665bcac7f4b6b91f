package e2e

// Health checks as docs/configuration.md describes them under "health:" and "GET /backends":
// helpers for /backends, active checks, and the /backends report. Passive
// checks are in health_passive_test.go.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------
// Helpers for GET /backends.

// healthEntry is one backend of one route in GET /backends.
type healthEntry struct {
	URL                 string `json:"url"`
	State               string `json:"state"`
	Since               string `json:"since"`
	Reason              string `json:"reason"`
	ConsecutiveFailures int    `json:"consecutive_failures"`
	InFlight            int    `json:"in_flight"`
	EjectionTime        string `json:"ejection_time"`
}

// healthRoute is one route in GET /backends.
type healthRoute struct {
	Name     string        `json:"name"`
	Backends []healthEntry `json:"backends"`
}

// adminHTTP polls the admin listener; without keep-alives it leaves no
// goroutine behind for goleak.
var adminHTTP = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// fetchHealthBody returns the raw body of GET /backends.
func fetchHealthBody(t testing.TB, p *proc) []byte {
	t.Helper()
	resp, err := adminHTTP.Get(p.AdminURL("/backends"))
	if err != nil {
		t.Fatalf("GET /backends: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /backends = %d %q (%v)", resp.StatusCode, truncate(string(body), 300), err)
	}
	return body
}

// fetchHealth returns GET /backends decoded.
func fetchHealth(t testing.TB, p *proc) []healthRoute {
	t.Helper()
	body := fetchHealthBody(t, p)
	var got struct {
		Routes []healthRoute `json:"routes"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("/backends is not the documented JSON: %v\n%s", err, body)
	}
	return got.Routes
}

// healthOf returns the /backends entry of url under route.
func healthOf(t testing.TB, p *proc, route, url string) healthEntry {
	t.Helper()
	for _, r := range fetchHealth(t, p) {
		if r.Name != route {
			continue
		}
		for _, b := range r.Backends {
			if b.URL == url {
				return b
			}
		}
	}
	t.Fatalf("/backends has no backend %s under route %s", url, route)
	return healthEntry{}
}

// waitState polls /backends until url under route is in state and returns
// the entry and when the state was first seen.
func waitState(t testing.TB, p *proc, route, url, state string, timeout time.Duration) (healthEntry, time.Time) {
	t.Helper()
	var e healthEntry
	var at time.Time
	eventually(t, timeout, func() bool {
		e = healthOf(t, p, route, url)
		at = time.Now()
		return e.State == state
	}, "route %s backend %s to be %s (last %+v)", route, url, state, &e)
	return e, at
}

// backendMetric returns the value of a {route, backend} series, failing when
// it is absent.
func backendMetric(t testing.TB, ss []sample, name, route, url string) float64 {
	t.Helper()
	v, ok := metricValue(ss, name, "route", route, "backend", url)
	if !ok {
		t.Errorf("no series %s{route=%q,backend=%q}", name, route, url)
	}
	return v
}

// checkMetricsAgree asserts that sluice_backend_healthy is 1 exactly for the
// backends /backends reports healthy, and that sluice_backend_ejections_total
// has the wanted values (url -> count; absent urls want 0).
func checkMetricsAgree(t testing.TB, p *proc, ejections map[string]map[string]float64) {
	t.Helper()
	routes := fetchHealth(t, p)
	ss, _ := scrape(t, p)
	for _, r := range routes {
		for _, b := range r.Backends {
			want := 0.0
			if b.State == "healthy" {
				want = 1
			}
			if v := backendMetric(t, ss, "sluice_backend_healthy", r.Name, b.URL); v != want {
				t.Errorf("sluice_backend_healthy{route=%s,backend=%s} = %v, but /backends says %s", r.Name, b.URL, v, b.State)
			}
			wantEj := ejections[r.Name][b.URL]
			if v, _ := metricValue(ss, "sluice_backend_ejections_total", "route", r.Name, "backend", b.URL); v != wantEj {
				t.Errorf("sluice_backend_ejections_total{route=%s,backend=%s} = %v, want %v", r.Name, b.URL, v, wantEj)
			}
		}
	}
}

// nonProbe counts the requests a backend received outside path probePath.
func nonProbe(b *backend, probePath string) int {
	n := 0
	for _, r := range b.Requests() {
		if r.Path != probePath {
			n++
		}
	}
	return n
}

// probeHandler answers probePath with 500 while sick is set and 200
// otherwise, and every other path with 200 and the backend's name.
func probeHandler(name, probePath string, sick *atomic.Bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == probePath {
			if sick != nil && sick.Load() {
				w.WriteHeader(500)
			}
			return
		}
		io.WriteString(w, name)
	}
}

// ---------------------------------------------------------------------------
// Active checks.

// TestHealthActiveLeavesAndReturns: a backend whose /health turns 500 leaves
// the rotation after unhealthy_threshold probes and comes back after
// healthy_threshold passes once it recovers.
func TestHealthActiveLeavesAndReturns(t *testing.T) {
	t.Parallel()
	var sick atomic.Bool
	a := newBackend(t, "a", probeHandler("a", "/health", nil))
	b := newBackend(t, "b", probeHandler("b", "/health", &sick))
	c := newBackend(t, "c", probeHandler("c", "/health", nil))
	const interval = 100 * time.Millisecond
	p := start(t, `
health:
  active:
    path: /health
    interval: 100ms
    timeout: 1s
    healthy_threshold: 2
    unhealthy_threshold: 3
`+simpleRoute(a.URL, b.URL, c.URL))

	checkShare := func(phase string, want map[string]int) {
		t.Helper()
		got := share(t, p, 60)
		for name, w := range want {
			if !within(got[name], w, 1) {
				t.Errorf("%s: backend %s answered %d of 60, want %d (±1); all %v", phase, name, got[name], w, got)
			}
		}
	}
	checkShare("all healthy", map[string]int{"a": 20, "b": 20, "c": 20})
	eventually(t, 3*time.Second, func() bool { return b.Count()-nonProbe(b, "/health") >= 2 },
		"backend b to be probed at /health")

	// Leave: 3 failed probes, 100 ms apart (±jitter), so about 200-300 ms
	// after the flip; 1 s leaves 700 ms of slack.
	sick.Store(true)
	flip := time.Now()
	e, seen := waitState(t, p, "api", b.URL, "unhealthy", 5*time.Second)
	if d := seen.Sub(flip); d > 3*interval+700*time.Millisecond {
		t.Errorf("b became unhealthy %v after /health turned 500, want within interval x unhealthy_threshold (300ms) + 700ms", d)
	} else if d < 2*interval*9/10-20*time.Millisecond {
		t.Errorf("b became unhealthy %v after /health turned 500: sooner than 3 consecutive failed probes 100ms apart allow", d)
	}
	if e.Reason == "" {
		t.Errorf("unhealthy backend has an empty reason: %+v", e)
	}
	if e.EjectionTime != "0s" {
		t.Errorf("unhealthy (not ejected) backend has ejection_time %q, want 0s", e.EjectionTime)
	}
	if since, err := time.Parse(time.RFC3339, e.Since); err != nil {
		t.Errorf("since %q is not RFC 3339: %v", e.Since, err)
	} else if since.Before(flip.Add(-time.Second)) || since.After(time.Now().Add(time.Second)) {
		t.Errorf("since = %v, want the time of the transition (about %v)", since, seen)
	}
	checkMetricsAgree(t, p, nil)
	before := nonProbe(b, "/health")
	checkShare("b unhealthy", map[string]int{"a": 30, "b": 0, "c": 30})
	if n := nonProbe(b, "/health") - before; n != 0 {
		t.Errorf("unhealthy backend b received %d requests of live traffic, want 0", n)
	}

	// Return: 2 passing probes.
	sick.Store(false)
	flip = time.Now()
	e, seen = waitState(t, p, "api", b.URL, "healthy", 5*time.Second)
	if d := seen.Sub(flip); d > 2*interval+700*time.Millisecond {
		t.Errorf("b became healthy %v after /health recovered, want within interval x healthy_threshold (200ms) + 700ms", d)
	}
	if e.Reason == "" {
		t.Errorf("backend back to healthy has an empty reason (the account of its last transition): %+v", e)
	}
	checkMetricsAgree(t, p, nil)
	checkShare("b recovered", map[string]int{"a": 20, "b": 20, "c": 20})
}

// TestHealthFlappingBackend: a backend whose /health alternates between good
// and bad every 100 ms never gives unhealthy_threshold (3) failures in a row,
// so its state must not follow each probe.
func TestHealthFlappingBackend(t *testing.T) {
	t.Parallel()
	epoch := time.Now()
	var good, bad atomic.Int64
	flap := newBackend(t, "flap", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			if (time.Since(epoch)/(100*time.Millisecond))%2 == 1 {
				bad.Add(1)
				w.WriteHeader(500)
				return
			}
			good.Add(1)
			return
		}
		io.WriteString(w, "flap")
	})
	steady := newBackend(t, "steady", probeHandler("steady", "/health", nil))
	p := start(t, `
health:
  active:
    path: /health
    interval: 100ms
    timeout: 1s
    healthy_threshold: 2
    unhealthy_threshold: 3
`+simpleRoute(flap.URL, steady.URL))

	var states []string
	last := ""
	end := time.Now().Add(3 * time.Second)
	for time.Now().Before(end) {
		s := healthOf(t, p, "api", flap.URL).State
		if s != last {
			states = append(states, s)
			last = s
		}
		time.Sleep(10 * time.Millisecond)
	}
	transitions := len(states) - 1
	if good.Load() < 5 || bad.Load() < 5 {
		t.Fatalf("flapping backend answered %d good and %d bad probes in 3 s, want both >= 5 (are probes running every 100ms?)", good.Load(), bad.Load())
	}
	if transitions > 2 {
		t.Errorf("flapping backend changed state %d times in 3 s (%d good, %d bad probes): %v; want few or none with healthy_threshold 2, unhealthy_threshold 3",
			transitions, good.Load(), bad.Load(), states)
	}
	t.Logf("probes: %d good, %d bad; states seen: %v", good.Load(), bad.Load(), states)
}

// TestHealthProbes: probes name sluice in User-Agent, a route's health.active
// path overrides the top-level one, and the same backend URL under two routes
// is probed at each route's path and keeps one state per route.
func TestHealthProbes(t *testing.T) {
	t.Parallel()
	// x passes /ready-a, fails /ready-b.
	x := newBackend(t, "x", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ready-b":
			w.WriteHeader(500)
		case "/ready-a", "/health":
		default:
			io.WriteString(w, "x")
		}
	})
	y := newBackend(t, "y", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ready-b", "/health":
		default:
			io.WriteString(w, "y")
		}
	})
	p := start(t, fmt.Sprintf(`
health:
  active:
    path: /health
    interval: 100ms
    timeout: 1s
    healthy_threshold: 1
    unhealthy_threshold: 2
routes:
  - name: a
    path_prefix: /a
    health:
      active:
        path: /ready-a
    backends: [%[1]s]
  - name: b
    path_prefix: /b
    health:
      active:
        path: /ready-b
    backends: [%[1]s, %[2]s]
  - name: c
    path_prefix: /c
    backends: [%[2]s]
`, x.URL, y.URL))

	waitState(t, p, "b", x.URL, "unhealthy", 5*time.Second)
	probes := func(b *backend, path string) int {
		n := 0
		for _, r := range b.Requests() {
			if r.Path == path {
				n++
			}
		}
		return n
	}
	// Let both x probers run a few more rounds: route a's x must stay
	// healthy although the same URL fails route b's checks.
	n := probes(x, "/ready-a")
	eventually(t, 3*time.Second, func() bool { return probes(x, "/ready-a") >= n+3 && probes(y, "/health") >= 2 },
		"more probes of x at /ready-a and of y at /health")
	if e := healthOf(t, p, "a", x.URL); e.State != "healthy" {
		t.Errorf("route a's %s = %+v, want healthy: its own checks at /ready-a pass (health state is per route and backend)", x.URL, e)
	}
	if e := healthOf(t, p, "b", y.URL); e.State != "healthy" {
		t.Errorf("route b's %s = %+v, want healthy", y.URL, e)
	}
	if n := probes(x, "/health"); n != 0 {
		t.Errorf("x was probed %d times at the top-level path /health; both its routes override it", n)
	}
	if probes(y, "/ready-b") == 0 {
		t.Errorf("y was never probed at route b's path /ready-b")
	}
	if probes(x, "/ready-b") < 2 {
		t.Errorf("x was probed %d times at route b's path /ready-b, want >= 2", probes(x, "/ready-b"))
	}
	for _, b := range []*backend{x, y} {
		for _, r := range b.Requests() {
			switch r.Path {
			case "/health", "/ready-a", "/ready-b":
				if ua := r.Header.Get("User-Agent"); !strings.Contains(strings.ToLower(ua), "sluice") {
					t.Errorf("probe of %s%s has User-Agent %q, want one naming sluice", b.Name, r.Path, ua)
					return
				}
			}
		}
	}

	// Traffic follows the per-route state.
	for i := 0; i < 4; i++ {
		if resp, body := get(t, p.URL("/a/x")); resp.StatusCode != 200 || string(body) != "x" {
			t.Errorf("GET /a/x = %d %q, want 200 from x (healthy under route a)", resp.StatusCode, body)
		}
		if resp, body := get(t, p.URL("/b/x")); resp.StatusCode != 200 || string(body) != "y" {
			t.Errorf("GET /b/x = %d %q, want 200 from y (x is unhealthy under route b)", resp.StatusCode, body)
		}
	}
	checkMetricsAgree(t, p, nil)
}

// TestHealthBackendsReport: GET /backends shows every documented field with
// the documented meaning, in config order, and the metrics agree with it.
func TestHealthBackendsReport(t *testing.T) {
	t.Parallel()
	var failing atomic.Bool
	failing.Store(true)
	hold := newGate(t)
	sick := newBackend(t, "sick", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			w.WriteHeader(500)
			return
		}
		io.WriteString(w, "sick")
	})
	flaky := newBackend(t, "flaky", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			return
		}
		w.WriteHeader(500)
	})
	fine := newBackend(t, "fine", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/z/hold" {
			hold.wait(r)
		}
		io.WriteString(w, "fine")
	})
	twice := newBackend(t, "twice", func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(503)
			return
		}
		io.WriteString(w, "twice")
	})
	begin := time.Now()
	p := start(t, fmt.Sprintf(`
retry:
  attempts: 1
health:
  active:
    path: ""
routes:
  - name: zeta
    path_prefix: /z
    health:
      active:
        path: /health
        interval: 100ms
        timeout: 1s
        unhealthy_threshold: 1
      passive:
        consecutive_failures: 3
        ejection_time: 30s
        max_ejected_percent: 100
    backends: [%s, %s, %s]
  - name: alpha
    path_prefix: /a
    health:
      passive:
        consecutive_failures: 5
    backends: [%s]
`, sick.URL, flaky.URL, fine.URL, twice.URL))

	waitState(t, p, "zeta", sick.URL, "unhealthy", 5*time.Second)
	for i := 0; i < 20 && healthOf(t, p, "zeta", flaky.URL).State != "ejected"; i++ {
		get(t, p.URL("/z/x"))
	}
	waitState(t, p, "zeta", flaky.URL, "ejected", time.Second)
	for i := 0; i < 2; i++ {
		if resp, _ := get(t, p.URL("/a/x")); resp.StatusCode != 503 {
			t.Fatalf("GET /a/x = %d, want twice's own 503 (attempts: 1)", resp.StatusCode)
		}
	}
	held := fetchAsync(t, p.URL("/z/hold"))
	eventually(t, 5*time.Second, func() bool { return healthOf(t, p, "zeta", fine.URL).InFlight == 1 },
		"fine's in_flight to be 1 while a request is held")

	// Every documented key is present, with the documented types.
	var raw struct {
		Routes []struct {
			Name     string           `json:"name"`
			Backends []map[string]any `json:"backends"`
		} `json:"routes"`
	}
	body := fetchHealthBody(t, p)
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatalf("/backends: %v\n%s", err, body)
	}
	for _, r := range raw.Routes {
		for _, b := range r.Backends {
			for _, k := range []string{"url", "state", "since", "reason", "ejection_time"} {
				if _, ok := b[k].(string); !ok {
					t.Errorf("route %s backend %v: %q = %#v, want a string", r.Name, b["url"], k, b[k])
				}
			}
			for _, k := range []string{"consecutive_failures", "in_flight"} {
				if _, ok := b[k].(float64); !ok {
					t.Errorf("route %s backend %v: %q = %#v, want a number", r.Name, b["url"], k, b[k])
				}
			}
		}
	}

	routes := fetchHealth(t, p)
	type want struct {
		url, state, ejection string
		fails, inFlight      int // -1: not checked
		transitioned         bool
	}
	wants := []struct {
		route    string
		backends []want
	}{
		{"zeta", []want{
			{sick.URL, "unhealthy", "0s", 0, 0, true},
			{flaky.URL, "ejected", "30s", -1, 0, true},
			{fine.URL, "healthy", "0s", 0, 1, false},
		}},
		{"alpha", []want{
			{twice.URL, "healthy", "0s", 2, 0, false},
		}},
	}
	if len(routes) != len(wants) {
		t.Fatalf("/backends has %d routes, want %d:\n%s", len(routes), len(wants), body)
	}
	now := time.Now()
	for i, wr := range wants {
		r := routes[i]
		if r.Name != wr.route || len(r.Backends) != len(wr.backends) {
			t.Errorf("route %d = %s with %d backends, want %s with %d (config order)", i, r.Name, len(r.Backends), wr.route, len(wr.backends))
			continue
		}
		for j, w := range wr.backends {
			e := r.Backends[j]
			if e.URL != w.url || e.State != w.state || e.EjectionTime != w.ejection ||
				(w.fails >= 0 && e.ConsecutiveFailures != w.fails) || e.InFlight != w.inFlight {
				t.Errorf("route %s backend %d = %+v, want url %s, state %s, ejection_time %s, consecutive_failures %d, in_flight %d",
					r.Name, j, e, w.url, w.state, w.ejection, w.fails, w.inFlight)
			}
			since, err := time.Parse(time.RFC3339, e.Since)
			if err != nil {
				t.Errorf("route %s backend %s: since %q is not RFC 3339: %v", r.Name, e.URL, e.Since, err)
				continue
			}
			if since.After(now.Add(time.Second)) {
				t.Errorf("route %s backend %s: since %v is in the future", r.Name, e.URL, since)
			}
			if w.transitioned {
				if since.Before(begin.Add(-time.Second)) {
					t.Errorf("route %s backend %s is %s since %v, before the test began (%v)", r.Name, e.URL, e.State, since, begin)
				}
				if e.Reason == "" {
					t.Errorf("route %s backend %s is %s with an empty reason", r.Name, e.URL, e.State)
				}
			}
		}
	}
	checkMetricsAgree(t, p, map[string]map[string]float64{"zeta": {flaky.URL: 1}})

	hold.open()
	if f := waitChan(t, held, 5*time.Second, "the held request"); f.code != 200 {
		t.Errorf("held request = %d %q %v", f.code, f.body, f.err)
	}
	// A success resets the count of consecutive failures.
	failing.Store(false)
	if resp, _ := get(t, p.URL("/a/x")); resp.StatusCode != 200 {
		t.Errorf("GET /a/x = %d, want 200", resp.StatusCode)
	}
	eventually(t, 2*time.Second, func() bool {
		e := healthOf(t, p, "alpha", twice.URL)
		return e.ConsecutiveFailures == 0 && e.State == "healthy"
	}, "a success to reset consecutive_failures to 0")
	if e := healthOf(t, p, "zeta", fine.URL); e.InFlight != 0 {
		t.Errorf("fine's in_flight = %d after the held request finished, want 0", e.InFlight)
	}
}
