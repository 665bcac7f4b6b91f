package e2e

// Overload protection as docs/configuration.md describes it under
// rate_limit and circuit_breaker: 429 rate_limited with Retry-After from a
// token bucket per key, and 503 backend_overloaded at once when every
// healthy backend is at max_requests_per_backend.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// clientFrom returns a keep-alive client whose connections come from the
// loopback address ip (any 127.0.0.0/8 address is local on Linux).
func clientFrom(t testing.TB, ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// send does a GET of url with c and header pairs, and returns the response
// and its body.
func send(t testing.TB, c *http.Client, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	return resp, body
}

// statuses sends the requests and returns their statuses in order.
func statuses(t testing.TB, c *http.Client, url string, n int, hdr ...string) []int {
	t.Helper()
	var got []int
	for range n {
		resp, _ := send(t, c, url, hdr...)
		got = append(got, resp.StatusCode)
	}
	return got
}

func TestRateLimitBurstThen429(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	logPath := filepath.Join(t.TempDir(), "access.log")
	p := start(t, fmt.Sprintf("access_log: %q\n", logPath)+simpleRoute(b.URL)+
		"    rate_limit: {requests_per_second: 0.5, burst: 3}\n")
	c := clientFrom(t, "127.0.0.1")

	if got := statuses(t, c, p.URL("/api/x"), 3); fmt.Sprint(got) != "[200 200 200]" {
		t.Fatalf("the burst of 3 got %v, want 200 each", got)
	}
	resp, body := send(t, c, p.URL("/api/x"))
	refusedAt := time.Now()
	checkProxyError(t, resp, body, 429, "rate_limited")
	// A token comes back every 2 s; the burst took well under a second.
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || ra != 2 {
		t.Fatalf("Retry-After = %q, want 2 (whole seconds until the next token)", resp.Header.Get("Retry-After"))
	}
	if n := b.Count(); n != 3 {
		t.Errorf("backend got %d requests, want 3: a refused request reached it", n)
	}

	// The refusals take no token, and the token comes back within the
	// Retry-After.
	var ok time.Time
	refusals := 1
	eventually(t, 5*time.Second, func() bool {
		resp, _ := send(t, c, p.URL("/api/x"))
		if resp.StatusCode == 429 {
			refusals++
			return false
		}
		ok = time.Now()
		return resp.StatusCode == 200
	}, "a request to be admitted again")
	if wait := ok.Sub(refusedAt); wait > time.Duration(ra)*time.Second+200*time.Millisecond || wait < time.Second {
		t.Errorf("admitted again %v after the refusal with Retry-After %d; want within it, and past 1 s", wait, ra)
	}
	if n := b.Count(); n != 4 {
		t.Errorf("backend got %d requests, want 4", n)
	}
	if v := metricOrZero(t, p, "sluice_rate_limited_total", "route", "api"); int(v) != refusals {
		t.Errorf("sluice_rate_limited_total{route=api} = %v, want %d", v, refusals)
	}
	if v := metricOrZero(t, p, "sluice_errors_total", "route", "api", "error", "rate_limited"); int(v) != refusals {
		t.Errorf("sluice_errors_total{route=api,error=rate_limited} = %v, want %d", v, refusals)
	}
	if v := metricOrZero(t, p, "sluice_requests_total", "route", "api", "method", "GET", "code", "429"); int(v) != refusals {
		t.Errorf("sluice_requests_total{code=429} = %v, want %d", v, refusals)
	}
	lines := accessLines(t, logPath, 4+refusals)
	l := lines[3]
	if l["status"] != float64(429) || l["error"] != "rate_limited" || l["backend"] != "" || l["route"] != "api" || l["attempts"] != float64(0) {
		t.Errorf("access log line of the refusal = %v, want status 429, error rate_limited, route api, no backend, 0 attempts", l)
	}
}

// TestRateLimitRefillRate measures the refill over 2 s of requests sent as
// fast as one client can: admitted = burst + rate × elapsed, within 15%.
func TestRateLimitRefillRate(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	const rate, burst = 12.5, 5
	p := start(t, simpleRoute(b.URL)+fmt.Sprintf("    rate_limit: {requests_per_second: %v, burst: %d}\n", rate, burst))
	c := clientFrom(t, "127.0.0.1")
	admitted, refused := 0, 0
	begin := time.Now()
	for time.Since(begin) < 2*time.Second {
		switch resp, _ := send(t, c, p.URL("/api/x")); resp.StatusCode {
		case 200:
			admitted++
		case 429:
			refused++
		default:
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	elapsed := time.Since(begin).Seconds()
	want := burst + rate*elapsed
	t.Logf("%d admitted and %d refused in %.2f s; want %.1f admitted", admitted, refused, elapsed, want)
	if float64(admitted) < want*0.85 || float64(admitted) > want*1.15 {
		t.Errorf("%d admitted in %.2f s at %v/s with burst %d, want %.1f within 15%%", admitted, elapsed, rate, burst, want)
	}
	if refused < 10*admitted {
		t.Errorf("only %d refused beside %d admitted: the client did not press hard enough to measure", refused, admitted)
	}
	if b.Count() != admitted {
		t.Errorf("backend got %d requests, %d admitted", b.Count(), admitted)
	}
}

// TestRateLimitKeys: client addresses and header values have buckets of
// their own; the route key shares one among everyone.
func TestRateLimitKeys(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	slow := "{requests_per_second: 0.01, burst: 2"
	p := start(t, peerRoutes(
		peerRoute{name: "ip", backends: []string{b.URL}, extra: "    rate_limit: " + slow + "}"},
		peerRoute{name: "hdr", backends: []string{b.URL}, extra: "    rate_limit: " + slow + ", key: \"header:X-Api-Key\"}"},
		peerRoute{name: "all", backends: []string{b.URL}, extra: "    rate_limit: " + slow + ", key: route}"},
	))
	one, two := clientFrom(t, "127.0.0.1"), clientFrom(t, "127.0.0.2")

	t.Run("client_ip", func(t *testing.T) {
		if got := statuses(t, one, p.URL("/ip"), 3); fmt.Sprint(got) != "[200 200 429]" {
			t.Errorf("127.0.0.1 got %v, want [200 200 429]", got)
		}
		if got := statuses(t, two, p.URL("/ip"), 3); fmt.Sprint(got) != "[200 200 429]" {
			t.Errorf("127.0.0.2 after 127.0.0.1 spent its bucket got %v, want its own [200 200 429]", got)
		}
	})
	t.Run("header", func(t *testing.T) {
		if got := statuses(t, one, p.URL("/hdr"), 3, "X-Api-Key", "alpha"); fmt.Sprint(got) != "[200 200 429]" {
			t.Errorf("key alpha got %v, want [200 200 429]", got)
		}
		if got := statuses(t, one, p.URL("/hdr"), 2, "X-Api-Key", "beta"); fmt.Sprint(got) != "[200 200]" {
			t.Errorf("key beta from the same client got %v, want its own bucket", got)
		}
		if got := statuses(t, two, p.URL("/hdr"), 1, "X-Api-Key", "alpha"); fmt.Sprint(got) != "[429]" {
			t.Errorf("key alpha from another address got %v, want alpha's spent bucket", got)
		}
		if got := statuses(t, one, p.URL("/hdr"), 2); fmt.Sprint(got) != "[200 200]" {
			t.Errorf("no key got %v, want the keyless bucket's 2", got)
		}
		if got := statuses(t, two, p.URL("/hdr"), 1, "X-Api-Key", ""); fmt.Sprint(got) != "[429]" {
			t.Errorf("an empty key got %v, want the keyless bucket, spent", got)
		}
	})
	t.Run("route", func(t *testing.T) {
		got := append(statuses(t, one, p.URL("/all"), 1, "X-Api-Key", "a"), statuses(t, two, p.URL("/all"), 2, "X-Api-Key", "b")...)
		if fmt.Sprint(got) != "[200 200 429]" {
			t.Errorf("two clients with two keys got %v, want one bucket of 2 between them", got)
		}
	})
	for route, want := range map[string]int{"ip": 2, "hdr": 3, "all": 1} {
		if v := metricOrZero(t, p, "sluice_rate_limited_total", "route", route); int(v) != want {
			t.Errorf("sluice_rate_limited_total{route=%s} = %v, want %d", route, v, want)
		}
	}
}

// TestRateLimitOverride: a route's rate_limit keys override the top
// level's, one by one; requests_per_second 0 turns the limit off.
func TestRateLimitOverride(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	p := start(t, "rate_limit: {requests_per_second: 0.01, burst: 1}\n"+peerRoutes(
		peerRoute{name: "inherits", backends: []string{b.URL}},
		peerRoute{name: "deeper", backends: []string{b.URL}, extra: "    rate_limit: {burst: 3}"},
		peerRoute{name: "free", backends: []string{b.URL}, extra: "    rate_limit: {requests_per_second: 0}"},
	))
	c := clientFrom(t, "127.0.0.1")
	for _, tt := range []struct {
		route string
		n     int
		want  string
	}{
		{"inherits", 3, "[200 429 429]"},
		{"deeper", 4, "[200 200 200 429]"},
		{"free", 5, "[200 200 200 200 200]"},
	} {
		if got := statuses(t, c, p.URL("/"+tt.route), tt.n); fmt.Sprint(got) != tt.want {
			t.Errorf("route %s got %v, want %s", tt.route, got, tt.want)
		}
	}
}

// TestRateLimitClientBehindProxies: key client_ip is the access log's
// client: X-Forwarded-For believed only from trusted_proxies, read from
// the right past the trusted hops; a forgery from an untrusted address is
// ignored.
func TestRateLimitClientBehindProxies(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	logPath := filepath.Join(t.TempDir(), "access.log")
	p := start(t, fmt.Sprintf("access_log: %q\ntrusted_proxies: [127.0.0.1, 10.0.0.0/8]\n", logPath)+
		simpleRoute(b.URL)+"    rate_limit: {requests_per_second: 0.01, burst: 1}\n")
	trustedPeer, untrustedPeer := clientFrom(t, "127.0.0.1"), clientFrom(t, "127.0.0.3")
	steps := []struct {
		name   string
		c      *http.Client
		xff    string
		status int
		client string // the access log's client
	}{
		{"behind one trusted hop", trustedPeer, "192.0.2.1", 200, "192.0.2.1"},
		{"same client through a chain of trusted hops", trustedPeer, "192.0.2.1, 10.1.2.3", 429, "192.0.2.1"},
		{"a forged element left of the client is ignored", trustedPeer, "203.0.113.9, 192.0.2.1, 10.1.2.3", 429, "192.0.2.1"},
		{"another client", trustedPeer, "192.0.2.2, 10.1.2.3", 200, "192.0.2.2"},
		{"an untrusted hop is the client", trustedPeer, "192.0.2.1, 198.51.100.4, 10.1.2.3", 200, "198.51.100.4"},
		{"untrusted peer: its forgery is ignored", untrustedPeer, "192.0.2.77", 200, "127.0.0.3"},
		{"untrusted peer: another forgery, the same bucket", untrustedPeer, "192.0.2.78", 429, "127.0.0.3"},
		{"every hop trusted: the peer", trustedPeer, "10.9.9.9", 200, "127.0.0.1"},
	}
	for _, s := range steps {
		if resp, body := send(t, s.c, p.URL("/api/x"), "X-Forwarded-For", s.xff); resp.StatusCode != s.status {
			t.Errorf("%s: %d %q, want %d", s.name, resp.StatusCode, body, s.status)
		}
	}
	lines := accessLines(t, logPath, len(steps))
	for i, s := range steps {
		if got := lines[i]["client"]; got != s.client {
			t.Errorf("%s: access log client %v, want %s", s.name, got, s.client)
		}
	}
}

// TestRateLimitReloadKeepsBuckets: a reload that leaves a route's name and
// rate_limit as they were keeps its buckets (no fresh burst for anyone);
// one that changes the rate_limit starts afresh.
func TestRateLimitReloadKeepsBuckets(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	limited := simpleRoute(b.URL) + "    rate_limit: {requests_per_second: 0.01, burst: 2}\n"
	p := start(t, limited)
	c := clientFrom(t, "127.0.0.1")
	if got := statuses(t, c, p.URL("/api/x"), 3); fmt.Sprint(got) != "[200 200 429]" {
		t.Fatalf("before the reload: %v, want [200 200 429]", got)
	}
	reloadOK(t, p, "timeouts: {upstream_header: 7s}\n"+limited, false)
	if got := statuses(t, c, p.URL("/api/x"), 1); fmt.Sprint(got) != "[429]" {
		t.Errorf("after a reload that kept the route: %v, want [429] (the bucket carried over)", got)
	}
	reloadOK(t, p, simpleRoute(b.URL)+"    rate_limit: {requests_per_second: 0.01, burst: 1}\n", true)
	if got := statuses(t, c, p.URL("/api/x"), 2); fmt.Sprint(got) != "[200 429]" {
		t.Errorf("after a reload that changed the limit: %v, want a new bucket of 1, [200 429]", got)
	}
}

// busyBackend is a backend whose requests wait until released (or until
// the test ends), counting those waiting.
type busyBackend struct {
	*backend
	mu      sync.Mutex
	waiting int
	release chan struct{}
	// releaseAll lets every request waiting, and every later one, go on.
	releaseAll func()
}

func newBusyBackend(t *testing.T, name string) *busyBackend {
	h := &busyBackend{release: make(chan struct{})}
	h.backend = newBackend(t, name, func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.waiting++
		h.mu.Unlock()
		select {
		case <-h.release:
		case <-r.Context().Done():
		}
		w.Header().Set("X-Backend", name)
		io.WriteString(w, name)
	})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(h.release) }) }) // before the server closes
	h.releaseAll = func() { once.Do(func() { close(h.release) }) }
	return h
}

func (h *busyBackend) Waiting() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.waiting
}

// TestCircuitBreaker: with max_requests_per_backend 2 and two backends held
// busy, the third and fourth requests go to whichever backend has room, the
// fifth gets 503 backend_overloaded at once, nothing counts against the
// backends' health (one failure would eject them here), and the 503 is not
// retried.
func TestCircuitBreaker(t *testing.T) {
	t.Parallel()
	a, b := newBusyBackend(t, "a"), newBusyBackend(t, "b")
	logPath := filepath.Join(t.TempDir(), "access.log")
	p := start(t, fmt.Sprintf("access_log: %q\n", logPath)+`
health: {active: {path: ""}, passive: {consecutive_failures: 1}}
retry: {attempts: 3, on_status: [502, 503, 504]}
circuit_breaker: {max_requests_per_backend: 2}
`+simpleRoute(a.URL, b.URL))

	type answer struct {
		code int
		body string
		err  error
	}
	answers := make(chan answer, 4)
	c := clientFrom(t, "127.0.0.1")
	for range 4 {
		go func() {
			resp, err := c.Get(p.URL("/api/slow"))
			if err != nil {
				answers <- answer{err: err}
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answers <- answer{code: resp.StatusCode, body: string(body)}
		}()
	}
	eventually(t, 5*time.Second, func() bool { return a.Waiting()+b.Waiting() == 4 },
		"4 requests to reach the backends (a has %d, b %d)", a.Waiting(), b.Waiting())
	if a.Waiting() != 2 || b.Waiting() != 2 {
		t.Errorf("a holds %d and b %d, want 2 each: a full backend was not passed over", a.Waiting(), b.Waiting())
	}

	// The fifth finds both at the limit.
	c5 := clientFrom(t, "127.0.0.1")
	send(t, c5, p.URL("/api/warm")) // a 503 too, but it opens the connection
	begin := time.Now()
	resp, body := send(t, c5, p.URL("/api/fifth"))
	took := time.Since(begin)
	checkProxyError(t, resp, body, 503, "backend_overloaded")
	t.Logf("503 backend_overloaded in %v", took)
	if took > 50*time.Millisecond {
		t.Errorf("the fifth request took %v, want under 50 ms: it must not wait", took)
	}
	if a.Waiting()+b.Waiting() != 4 {
		t.Errorf("the backends got %d requests, want 4: the overloaded ones reached a backend", a.Waiting()+b.Waiting())
	}
	for _, be := range []*busyBackend{a, b} {
		if e := healthOf(t, p, "api", be.URL); e.State != "healthy" || e.ConsecutiveFailures != 0 || e.InFlight != 2 {
			t.Errorf("/backends %s: %+v, want healthy, 0 failures, 2 in flight", be.URL, e)
		}
	}
	if v := metricOrZero(t, p, "sluice_errors_total", "route", "api", "error", "backend_overloaded"); v != 2 {
		t.Errorf("sluice_errors_total{error=backend_overloaded} = %v, want 2", v)
	}
	if v := metricOrZero(t, p, "sluice_retries_total", "route", "api"); v != 0 {
		t.Errorf("sluice_retries_total = %v, want 0: an overloaded answer is not retried", v)
	}

	a.releaseAll()
	b.releaseAll()
	for range 4 {
		if ans := waitChan(t, answers, 5*time.Second, "a held request's answer"); ans.err != nil || ans.code != 200 {
			t.Errorf("a held request got %d %q %v, want 200", ans.code, ans.body, ans.err)
		}
	}
	// With room again, requests flow; the backends never left.
	if got := statuses(t, c5, p.URL("/api/after"), 2); fmt.Sprint(got) != "[200 200]" {
		t.Errorf("after the release: %v, want [200 200]", got)
	}
	lines := accessLines(t, logPath, 8)
	overloaded := 0
	for _, l := range lines {
		if l["error"] == "backend_overloaded" {
			overloaded++
			if l["status"] != float64(503) || l["backend"] != "" {
				t.Errorf("access log line %v, want status 503 and no backend", l)
			}
		}
	}
	if overloaded != 2 {
		t.Errorf("%d access log lines with backend_overloaded, want 2", overloaded)
	}
}

// TestCircuitBreakerOneEach: with max_requests_per_backend 1, a second
// request while the first is held goes to the other backend, a third gets
// 503 at once, and a request finishing makes room at once.
func TestCircuitBreakerOneEach(t *testing.T) {
	t.Parallel()
	a, b := newBusyBackend(t, "a"), newBusyBackend(t, "b")
	p := start(t, simpleRoute(a.URL, b.URL)+"    circuit_breaker: {max_requests_per_backend: 1}\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 2)
	c := clientFrom(t, "127.0.0.1")
	get := func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", p.URL("/api/held"), nil)
		resp, err := c.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		done <- err
	}
	go get()
	eventually(t, 5*time.Second, func() bool { return a.Waiting()+b.Waiting() == 1 }, "the first request to reach a backend")
	go get()
	eventually(t, 5*time.Second, func() bool { return a.Waiting() == 1 && b.Waiting() == 1 },
		"the second request to reach the other backend (a %d, b %d)", a.Waiting(), b.Waiting())
	resp, body := send(t, clientFrom(t, "127.0.0.1"), p.URL("/api/third"))
	checkProxyError(t, resp, body, 503, "backend_overloaded")

	a.releaseAll()
	waitChan(t, done, 5*time.Second, "a request to finish")
	// a has room again: the next request goes there.
	resp, body = send(t, clientFrom(t, "127.0.0.1"), p.URL("/api/fourth"))
	if resp.StatusCode != 200 || string(body) != "a" {
		t.Errorf("after a finished: %d %q, want 200 from a", resp.StatusCode, body)
	}
	b.releaseAll()
	waitChan(t, done, 5*time.Second, "the other request to finish")
}
