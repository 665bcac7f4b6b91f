package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReloadKeepsHealthState: a backend ejected before a reload is still
// ejected after it, with the same since and ejection_time; a backend present
// in both configs keeps its since; the prober of a removed backend stops and
// one starts for an added backend. Both triggers are used: POST /reload
// removes Y and adds Z, SIGHUP puts Y back and removes Z.
func TestReloadKeepsHealthState(t *testing.T) {
	t.Parallel()
	// E passes its probes but fails live traffic: it gets ejected, and
	// active checks cannot mark it unhealthy instead.
	e := newLoadBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		io.WriteString(w, "E fails")
	})
	x, y, z := newLoadBackend(t, nil), newLoadBackend(t, nil), newLoadBackend(t, nil)
	cfg := func(backends ...string) string {
		return fmt.Sprintf(`
routes:
  - name: r
    path_prefix: /r
    retry:
      attempts: 1
    health:
      active:
        path: /health
        interval: 100ms
      passive:
        consecutive_failures: 1
        ejection_time: 2m
    backends: [%s]
`, strings.Join(backends, ", "))
	}
	p := start(t, cfg(e.URL, x.URL, y.URL))

	for i := 0; i < 3 && e.reqs.Load() == 0; i++ {
		get(t, p.URL(fmt.Sprintf("/r/%d", i)))
	}
	if e.reqs.Load() != 1 {
		t.Fatalf("backend E got %d live requests in 3 round-robin picks, want 1", e.reqs.Load())
	}
	var before map[string]backendState
	eventually(t, 5*time.Second, func() bool {
		before = backendStates(t, p)["r"]
		return before[e.URL].State == "ejected"
	}, "backend E to be ejected after its failure")
	eventually(t, 5*time.Second, func() bool { return y.probes.Load() >= 2 && x.probes.Load() >= 2 },
		"the probers of X and Y to run")
	if before[x.URL].State != "healthy" || before[x.URL].Since == "" {
		t.Fatalf("backend X before the reload = %+v, want healthy with a since", before[x.URL])
	}

	checkKept := func(t *testing.T, after map[string]backendState) {
		t.Helper()
		if got, want := after[e.URL], before[e.URL]; got.State != "ejected" || got.Since != want.Since || got.EjectionTime != want.EjectionTime {
			t.Errorf("ejected backend E after reload = %+v, want still ejected with since %q and ejection_time %q (as before: %+v)",
				got, want.Since, want.EjectionTime, want)
		}
		if got, want := after[x.URL], before[x.URL]; got.State != "healthy" || got.Since != want.Since {
			t.Errorf("backend X after reload = %+v, want healthy with the same since %q", got, want.Since)
		}
		// The ejected backend gets no live traffic on the new config either.
		from := e.reqs.Load()
		for i := 0; i < 4; i++ {
			if resp, body := get(t, p.URL(fmt.Sprintf("/r/after/%d", i))); resp.StatusCode != 200 {
				t.Errorf("GET /r/after/%d = %d %q, want 200 from a healthy backend", i, resp.StatusCode, body)
			}
		}
		if n := e.reqs.Load() - from; n != 0 {
			t.Errorf("the ejected backend got %d live requests after the reload, want 0", n)
		}
		ss, _ := scrape(t, p)
		if v, ok := metricValue(ss, "sluice_backend_healthy", "route", "r", "backend", e.URL); !ok || v != 0 {
			t.Errorf("sluice_backend_healthy for E after reload = %v (present %v), want 0", v, ok)
		}
	}
	// checkProbers waits until the added backend has been probed a few
	// times, then checks that the removed one got at most the probe that
	// was already on its way, and nothing more over further intervals.
	checkProbers := func(t *testing.T, added, removed *loadBackend, removedAt int64) {
		t.Helper()
		addedFrom := added.probes.Load()
		eventually(t, 5*time.Second, func() bool { return added.probes.Load() >= addedFrom+3 },
			"the added backend to be probed (it has %d probes)", added.probes.Load())
		n1 := removed.probes.Load()
		if n1 > removedAt+1 {
			t.Errorf("the removed backend got %d probes after the reload, want at most 1 (one in flight)", n1-removedAt)
		}
		eventually(t, 5*time.Second, func() bool { return added.probes.Load() >= addedFrom+8 },
			"more probes of the added backend")
		if n2 := removed.probes.Load(); n2 != n1 {
			t.Errorf("the removed backend is still probed: %d more probes over 5 intervals", n2-n1)
		}
	}

	t.Run("POST /reload removes Y and adds Z", func(t *testing.T) {
		reloadOK(t, p, cfg(e.URL, x.URL, z.URL), false)
		yAt := y.probes.Load()
		after := backendStates(t, p)["r"]
		if _, ok := after[y.URL]; ok {
			t.Errorf("removed backend Y still listed in /backends")
		}
		if got := after[z.URL]; got.State != "healthy" {
			t.Errorf("added backend Z = %+v, want healthy (backends start healthy)", got)
		}
		checkKept(t, after)
		checkProbers(t, z, y, yAt)
	})
	t.Run("SIGHUP puts Y back and removes Z", func(t *testing.T) {
		reloadOK(t, p, cfg(e.URL, x.URL, y.URL), true)
		zAt := z.probes.Load()
		after := backendStates(t, p)["r"]
		if _, ok := after[z.URL]; ok {
			t.Errorf("removed backend Z still listed in /backends")
		}
		if got := after[y.URL]; got.State != "healthy" {
			t.Errorf("re-added backend Y = %+v, want healthy", got)
		}
		checkKept(t, after)
		checkProbers(t, y, z, zAt)
	})
}

// TestReloadKeepsConnections: reloads, by either trigger, between configs
// that add and remove a route and a backend, close neither the client's
// keep-alive connection nor the pooled upstream connection to a backend
// present in both.
func TestReloadKeepsConnections(t *testing.T) {
	t.Parallel()
	a, b, c := newLoadBackend(t, nil), newLoadBackend(t, nil), newLoadBackend(t, nil)
	cfg1 := fmt.Sprintf(`
routes:
  - name: api
    path_prefix: /api
    backends: [%s]
`, a.URL)
	// cfg2 adds backend B to route api, and the routes only and extra.
	cfg2 := fmt.Sprintf(`
routes:
  - name: api
    path_prefix: /api
    backends: [%s, %s]
  - name: only
    path_prefix: /api/only
    backends: [%s]
  - name: extra
    path_prefix: /extra
    backends: [%s]
`, a.URL, b.URL, a.URL, c.URL)
	// In cfg1 /api/only goes to route api (A only); in cfg2 to route only
	// (A only): every request of the test reaches A.
	p := start(t, cfg1)

	k := &kaConn{addr: p.Addr}
	defer k.drop()
	send := func(t *testing.T, i int) {
		t.Helper()
		target := fmt.Sprintf("/api/only/%d", i)
		req, _ := http.NewRequest("GET", "http://"+p.Addr+target, nil)
		ex := k.do(req)
		if ex.err != nil {
			t.Fatalf("GET %s on the kept connection: %v", target, ex.err)
		}
		if ex.resp.StatusCode != 200 || string(ex.body) != echoBody("GET", target, "") {
			t.Fatalf("GET %s = %d %q", target, ex.resp.StatusCode, ex.body)
		}
		if ex.resp.Close {
			t.Errorf("GET %s: response says Connection: close", target)
		}
	}
	for i := 0; i < 3; i++ {
		send(t, i)
	}
	upstream := a.conns.Load()
	t.Logf("3 sequential requests opened %d upstream connection(s) to A", upstream)

	for i := 0; i < 6; i++ {
		cfg, routes := cfg2, "with route extra"
		if i%2 == 1 {
			cfg, routes = cfg1, "without route extra"
		}
		bySignal := i%2 == 0
		trigger := map[bool]string{true: "SIGHUP", false: "POST /reload"}[bySignal]
		t.Run(fmt.Sprintf("%d %s %s", i+1, trigger, routes), func(t *testing.T) {
			reloadOK(t, p, cfg, bySignal)
			// The new config is live.
			resp, _ := get(t, p.URL("/extra/x"))
			if wantExtra := i%2 == 0; (resp.StatusCode == 200) != wantExtra {
				t.Errorf("GET /extra/x after the reload = %d, want route extra present: %v", resp.StatusCode, wantExtra)
			}
			send(t, 100+i)
			send(t, 200+i)
			if k.dials != 1 {
				t.Errorf("the client connection was replaced: %d dials, want 1", k.dials)
			}
			if n := a.conns.Load(); n != upstream {
				t.Errorf("backend A accepted %d new connections after the reload, want 0 (pooled connections are kept)", n-upstream)
			}
		})
	}
}

// TestReloadListenChangeNeedsRestart: a reload that changes listen or
// admin.listen applies the rest of the config, logs that those changes need
// a restart, and the old listeners keep serving.
func TestReloadListenChangeNeedsRestart(t *testing.T) {
	t.Parallel()
	a, b := newBackend(t, "a", nil), newBackend(t, "b", nil)
	p := start(t, simpleRoute(a.URL))
	addrs := freeAddrs(t, 2)
	newListen, newAdmin := addrs[0], addrs[1]
	restartLines := func() []string {
		var out []string
		for _, l := range strings.Split(p.Stderr(), "\n") {
			if strings.Contains(strings.ToLower(l), "restart") {
				out = append(out, l)
			}
		}
		return out
	}

	steps := []struct {
		name, cfg, field string
		bySignal         bool
	}{
		{"listen by SIGHUP", fmt.Sprintf("listen: %q\n", newListen) + fmt.Sprintf(`
routes:
  - name: api
    path_prefix: /api
    backends: [%s]
  - name: new
    path_prefix: /new
    backends: [%s]
`, a.URL, b.URL), "listen", true},
		{"admin.listen by POST /reload", fmt.Sprintf("admin:\n  listen: %q\n", newAdmin) + fmt.Sprintf(`
routes:
  - name: api
    path_prefix: /api
    backends: [%s]
  - name: new2
    path_prefix: /new2
    backends: [%s]
`, a.URL, b.URL), "admin", false},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			n := len(restartLines())
			reloadOK(t, p, st.cfg, st.bySignal)
			newPrefix := map[bool]string{true: "/new/x", false: "/new2/x"}[st.bySignal]
			if resp, body := get(t, p.URL(newPrefix)); resp.StatusCode != 200 || string(body) != "b" {
				t.Errorf("GET %s on the old listener = %d %q, want 200 b (the rest of the config applies)", newPrefix, resp.StatusCode, body)
			}
			if resp, _ := get(t, p.AdminURL("/backends")); resp.StatusCode != 200 {
				t.Errorf("the old admin listener answers %d, want it to keep serving", resp.StatusCode)
			}
			for _, addr := range []string{newListen, newAdmin} {
				if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
					c.Close()
					t.Errorf("something listens on %s: a listen change took effect without a restart", addr)
				}
			}
			var lines []string
			eventually(t, 5*time.Second, func() bool { lines = restartLines(); return len(lines) > n },
				"a log line saying the %s change needs a restart", st.field)
			if l := lines[len(lines)-1]; !strings.Contains(l, st.field) {
				t.Errorf("the restart log line does not name %s: %s", st.field, l)
			} else {
				t.Logf("logged: %s", l)
			}
		})
	}
}

// TestReloadInvalidReportsFieldPaths: an invalid config sent by SIGHUP and by
// POST /reload leaves the old routes serving, counts two errors, and the
// admin call lists each problem with its field path.
func TestReloadInvalidReportsFieldPaths(t *testing.T) {
	t.Parallel()
	a := newBackend(t, "a", nil)
	p := start(t, simpleRoute(a.URL))
	// Two problems: a bad duration and a backend scheme.
	p.Rewrite(`
timeouts:
  upstream_header: 5 parsecs
routes:
  - name: api
    path_prefix: /api
    backends: ["ftp://127.0.0.1:21"]
`)
	wantPaths := []string{"timeouts.upstream_header", "routes[0].backends[0]"}
	errorsCount := func() float64 { return metricOrZero(t, p, "sluice_config_reloads_total", "result", "error") }

	p.Signal(syscall.SIGHUP)
	eventually(t, 5*time.Second, func() bool { return errorsCount() == 1 },
		"sluice_config_reloads_total{result=\"error\"} to count the SIGHUP")
	if p.Exited() {
		t.Fatal("sluice exited on an invalid SIGHUP reload")
	}
	if resp, body := get(t, p.URL("/api/x")); resp.StatusCode != 200 || string(body) != "a" {
		t.Errorf("after an invalid SIGHUP: %d %q, want the old route (200 a)", resp.StatusCode, body)
	}
	stderr := p.Stderr()
	for _, path := range wantPaths {
		if !strings.Contains(stderr, path) {
			t.Errorf("the log does not report the problem at %s:\n%s", path, truncate(stderr, 2000))
		}
	}

	resp, body := do(t, "POST", p.AdminURL("/reload"), "")
	if resp.StatusCode != 400 {
		t.Errorf("POST /reload with an invalid config = %d, want 400", resp.StatusCode)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
		t.Errorf("POST /reload Content-Type = %q, want application/json", resp.Header.Get("Content-Type"))
	}
	var r struct {
		Result string   `json:"result"`
		Errors []string `json:"errors"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("POST /reload body %q: %v", body, err)
	}
	if r.Result != "error" || len(r.Errors) != len(wantPaths) {
		t.Errorf("POST /reload = %s, want {\"result\":\"error\",\"errors\":[...]} with %d problems", body, len(wantPaths))
	}
	for _, path := range wantPaths {
		found := false
		for _, e := range r.Errors {
			if strings.HasPrefix(e, path) {
				found = true
			}
		}
		if !found {
			t.Errorf("no error starts with the field path %s: %q", path, r.Errors)
		}
	}
	if n := errorsCount(); n != 2 {
		t.Errorf("sluice_config_reloads_total{result=\"error\"} = %v, want 2 (SIGHUP and POST)", n)
	}
	if n := reloadsOK(t, p); n != 0 {
		t.Errorf("sluice_config_reloads_total{result=\"ok\"} = %v, want 0", n)
	}
	if resp, body := get(t, p.URL("/api/y")); resp.StatusCode != 200 || string(body) != "a" {
		t.Errorf("after an invalid POST /reload: %d %q, want the old route (200 a)", resp.StatusCode, body)
	}
}
