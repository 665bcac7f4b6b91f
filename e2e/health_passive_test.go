package e2e

// Passive health: ejection by live-traffic failures, trials after the
// ejection time, max_ejected_percent, the answer when no backend is left,
// and client faults that must not count against a backend.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestHealthPassiveEjectionAndTrial: 502s from live traffic eject a backend
// after consecutive_failures; while ejected it gets nothing; after
// ejection_time one request at a time tries it; a failed trial ejects it
// again for twice as long, a good one makes it healthy.
func TestHealthPassiveEjectionAndTrial(t *testing.T) {
	t.Parallel()
	const (
		modeOK int32 = iota
		modeFail
		modeHold
	)
	var mode atomic.Int32
	mode.Store(modeFail)
	arrived := make(chan struct{}, 64)
	release := make(chan int, 1)
	good := newBackend(t, "good", nil)
	bad := newBackend(t, "bad", func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case modeFail:
			w.WriteHeader(502)
			io.WriteString(w, "bad-fail")
		case modeHold:
			arrived <- struct{}{}
			select {
			case code := <-release:
				w.WriteHeader(code)
				io.WriteString(w, "bad-trial")
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		default:
			io.WriteString(w, "bad")
		}
	})
	p := start(t, `
retry:
  attempts: 1
health:
  active:
    path: ""
  passive:
    consecutive_failures: 3
    ejection_time: 1s
    max_ejection_time: 1m
`+simpleRoute(good.URL, bad.URL))
	c, _ := newClient(t)
	getOne := func() (int, string) {
		resp, err := c.Get(p.URL("/api/x"))
		if err != nil {
			t.Errorf("GET: %v", err)
			return 0, ""
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(body)
	}

	// Three 502s in a row from bad eject it.
	var ejectSent time.Time
	for i := 0; bad.Count() < 3; i++ {
		if i > 20 {
			t.Fatalf("bad received %d requests out of 20", bad.Count())
		}
		sent := time.Now()
		code, body := getOne()
		if code != 200 && !(code == 502 && body == "bad-fail") {
			t.Fatalf("GET = %d %q, want good's 200 or bad's own 502 (attempts: 1)", code, body)
		}
		ejectSent = sent
	}
	e, _ := waitState(t, p, "api", bad.URL, "ejected", 900*time.Millisecond)
	if e.EjectionTime != "1s" || e.Reason == "" {
		t.Errorf("after 3 failures bad = %+v, want ejection_time 1s and a reason", e)
	}
	checkMetricsAgree(t, p, map[string]map[string]float64{"api": {bad.URL: 1}})

	// noTraffic sends requests until ends and checks that bad gets none.
	noTraffic := func(phase string, until time.Time) {
		t.Helper()
		n := bad.Count()
		for sent := 0; time.Now().Before(until); sent++ {
			if code, body := getOne(); code != 200 || body != "good" {
				t.Errorf("%s: GET = %d %q, want 200 from good", phase, code, body)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		if d := bad.Count() - n; d != 0 {
			t.Errorf("%s: the ejected backend received %d requests, want 0", phase, d)
		}
	}
	// trial waits for the one trial request after the ejection time and
	// checks that, while it is held, concurrent requests go elsewhere. It
	// returns the channel that will carry the trial's answer.
	trial := func(phase string, notBefore time.Time) <-chan fetched {
		t.Helper()
		mode.Store(modeHold)
		before := bad.Count()
		var pending []<-chan fetched
		deadline := time.After(4 * time.Second)
	wait:
		for {
			pending = append(pending, fetchAsync(t, p.URL("/api/x")))
			select {
			case <-arrived:
				break wait
			case <-deadline:
				t.Fatalf("%s: no trial request reached the ejected backend within 4s", phase)
			case <-time.After(20 * time.Millisecond):
			}
		}
		if at := time.Now(); at.Before(notBefore) {
			t.Errorf("%s: the trial request arrived %v before the ejection time was over", phase, notBefore.Sub(at))
		}
		if e := healthOf(t, p, "api", bad.URL); e.InFlight != 1 {
			t.Errorf("%s: during the trial bad's in_flight = %d, want 1", phase, e.InFlight)
		}
		// While the trial is held, concurrent requests go to good.
		for i := 0; i < 20; i++ {
			pending = append(pending, fetchAsync(t, p.URL("/api/x")))
		}
		type answer struct {
			i int
			f fetched
		}
		answers := make(chan answer, len(pending))
		for i, ch := range pending {
			go func() { answers <- answer{i, <-ch} }() // fetchAsync always answers within 10s
		}
		// All but the held trial answer, from good.
		answered := map[int]bool{}
		timeout := time.After(3 * time.Second)
	collect:
		for len(answered) < len(pending)-1 {
			select {
			case a := <-answers:
				answered[a.i] = true
				if a.f.err != nil || a.f.code != 200 || a.f.body != "good" {
					t.Errorf("%s: a request during the trial = %d %q %v, want 200 from good", phase, a.f.code, a.f.body, a.f.err)
				}
			case <-timeout:
				break collect
			}
		}
		var unanswered []int
		for i := range pending {
			if !answered[i] {
				unanswered = append(unanswered, i)
			}
		}
		if n := bad.Count() - before; n != 1 || len(unanswered) != 1 {
			t.Fatalf("%s: bad received %d requests during its trial and %d requests are unanswered, want exactly 1 (one trial at a time)", phase, n, len(unanswered))
		}
		trialAnswer := make(chan fetched, 1)
		go func() { trialAnswer <- (<-answers).f }() // the only one left
		return trialAnswer
	}

	// While ejected: no traffic until shortly before the ejection time
	// (measured from when the third failing request was sent) is over.
	noTraffic("first ejection", ejectSent.Add(850*time.Millisecond))
	answer := trial("first trial", ejectSent.Add(time.Second-50*time.Millisecond))
	// The trial fails: ejected again, for twice as long.
	mode.Store(modeFail)
	released := time.Now()
	release <- 502
	if f := waitChan(t, answer, 5*time.Second, "the trial's answer"); f.code != 502 || f.body != "bad-trial" {
		t.Errorf("failed trial answered %d %q %v, want bad's own 502", f.code, f.body, f.err)
	}
	e, _ = waitState(t, p, "api", bad.URL, "ejected", time.Second)
	if e.EjectionTime != "2s" {
		t.Errorf("after a failed trial bad = %+v, want ejected with ejection_time 2s (doubled)", e)
	}
	checkMetricsAgree(t, p, map[string]map[string]float64{"api": {bad.URL: 2}})

	noTraffic("second ejection", released.Add(1850*time.Millisecond))
	answer = trial("second trial", released.Add(2*time.Second-50*time.Millisecond))
	mode.Store(modeOK)
	release <- 200
	if f := waitChan(t, answer, 5*time.Second, "the trial's answer"); f.code != 200 || f.body != "bad-trial" {
		t.Errorf("good trial answered %d %q %v, want bad's own 200", f.code, f.body, f.err)
	}
	e, _ = waitState(t, p, "api", bad.URL, "healthy", time.Second)
	if e.EjectionTime != "0s" || e.ConsecutiveFailures != 0 || e.Reason == "" {
		t.Errorf("after a good trial bad = %+v, want healthy, ejection_time 0s, consecutive_failures 0, a reason", e)
	}
	checkMetricsAgree(t, p, map[string]map[string]float64{"api": {bad.URL: 2}})
	got := share(t, p, 20)
	if !within(got["bad"], 10, 1) {
		t.Errorf("after recovery bad answered %d of 20, want 10 (±1): %v", got["bad"], got)
	}
}

// TestHealthMaxEjectedPercent: of 4 backends with max_ejected_percent 50,
// at most 2 are ejected when 3 refuse connections, and traffic still flows.
func TestHealthMaxEjectedPercent(t *testing.T) {
	t.Parallel()
	var bs []*backend
	for _, n := range []string{"b0", "b1", "b2", "b3"} {
		bs = append(bs, newBackend(t, n, nil))
	}
	p := start(t, `
retry:
  attempts: 4
  backoff: 1ms
  budget_percent: 100
  budget_min_per_second: 1000
health:
  active:
    path: ""
  passive:
    consecutive_failures: 2
    ejection_time: 1m
    max_ejected_percent: 50
`+simpleRoute(bs[0].URL, bs[1].URL, bs[2].URL, bs[3].URL))
	share(t, p, 8) // every backend has served; connections are pooled

	for _, b := range bs[:3] {
		b.Close()
		if !listenerClosed(b.Listener.Addr().String()) {
			t.Fatalf("%s still accepts connections after Close", b.Name)
		}
	}
	c, _ := newClient(t)
	failures := 0
	for i := 0; i < 60; i++ {
		resp, err := c.Get(p.URL("/api/x"))
		if err != nil {
			t.Fatalf("GET %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "b3" {
			failures++
			if failures <= 3 {
				t.Errorf("GET %d = %d %q, want 200 from b3 (attempts 4 reach the live backend)", i, resp.StatusCode, body)
			}
		}
	}
	var ejected []string
	routes := fetchHealth(t, p)
	if len(routes) != 1 || len(routes[0].Backends) != 4 {
		t.Fatalf("/backends = %+v, want one route with 4 backends", routes)
	}
	for _, e := range routes[0].Backends {
		if e.State == "ejected" {
			ejected = append(ejected, e.URL)
		}
		if e.URL == bs[3].URL && e.State != "healthy" {
			t.Errorf("the live backend is %+v, want healthy", e)
		}
	}
	if len(ejected) > 2 {
		t.Errorf("%d of 4 backends ejected with max_ejected_percent 50: %v; want at most 2\n%+v", len(ejected), ejected, routes)
	}
	if len(ejected) < 2 {
		t.Errorf("only %d of 4 backends ejected although 3 refuse connections and 2 of 4 is within 50%%: %+v", len(ejected), routes)
	}
	want := map[string]float64{}
	for _, u := range ejected {
		want[u] = 1
	}
	checkMetricsAgree(t, p, map[string]map[string]float64{"api": want})
}

// countingBackend is a TCP server that counts accepted connections and
// answers every request with a fixed 503, then closes.
type countingBackend struct {
	URL   string
	conns atomic.Int64
	mu    sync.Mutex
	paths []string
}

func newCountingBackend(t testing.TB) *countingBackend {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cb := &countingBackend{URL: "http://" + l.Addr().String()}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			cb.conns.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				cb.mu.Lock()
				cb.paths = append(cb.paths, req.URL.Path)
				cb.mu.Unlock()
				io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndown")
			}()
		}
	}()
	t.Cleanup(func() { l.Close(); wg.Wait() })
	return cb
}

// requests counts the requests received outside path skip.
func (cb *countingBackend) requests(skip string) int {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	n := 0
	for _, p := range cb.paths {
		if p != skip {
			n++
		}
	}
	return n
}

// TestHealthAllDownFast: when every backend of a route is ejected or
// unhealthy, the proxy answers 503 no_healthy_backend at once, without
// dialling any of them.
func TestHealthAllDownFast(t *testing.T) {
	t.Parallel()
	ej1, ej2 := newCountingBackend(t), newCountingBackend(t)
	sick1, sick2 := newCountingBackend(t), newCountingBackend(t)
	p := start(t, fmt.Sprintf(`
health:
  active:
    path: ""
routes:
  - name: ejected
    path_prefix: /ejected
    health:
      passive:
        consecutive_failures: 1
        ejection_time: 1m
        max_ejected_percent: 100
    backends: [%s, %s]
  - name: unhealthy
    path_prefix: /unhealthy
    health:
      active:
        path: /health
        interval: 100ms
        timeout: 1s
        unhealthy_threshold: 1
    backends: [%s, %s]
`, ej1.URL, ej2.URL, sick1.URL, sick2.URL))

	for i := 0; i < 10 && (healthOf(t, p, "ejected", ej1.URL).State != "ejected" || healthOf(t, p, "ejected", ej2.URL).State != "ejected"); i++ {
		get(t, p.URL("/ejected/x"))
	}
	waitState(t, p, "ejected", ej1.URL, "ejected", time.Second)
	waitState(t, p, "ejected", ej2.URL, "ejected", time.Second)
	waitState(t, p, "unhealthy", sick1.URL, "unhealthy", 5*time.Second)
	waitState(t, p, "unhealthy", sick2.URL, "unhealthy", 5*time.Second)

	c, _ := newClient(t)
	for _, route := range []string{"ejected", "unhealthy"} {
		conns := ej1.conns.Load() + ej2.conns.Load()
		reqs := sick1.requests("/health") + sick2.requests("/health")
		for i := 0; i < 5; i++ {
			start := time.Now()
			resp, err := c.Get(p.URL("/" + route + "/x"))
			if err != nil {
				t.Fatalf("%s: %v", route, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			d := time.Since(start)
			checkProxyError(t, resp, body, 503, "no_healthy_backend")
			if d > 100*time.Millisecond {
				t.Errorf("%s: 503 no_healthy_backend took %v, want it at once (< 100ms)", route, d)
			}
		}
		if route == "ejected" {
			if n := ej1.conns.Load() + ej2.conns.Load() - conns; n != 0 {
				t.Errorf("ejected backends accepted %d connections while the route answered no_healthy_backend, want 0", n)
			}
		} else if n := sick1.requests("/health") + sick2.requests("/health") - reqs; n != 0 {
			t.Errorf("unhealthy backends received %d requests besides probes while the route answered no_healthy_backend, want 0", n)
		}
	}
}

// TestHealthClientFaultsDoNotCount: malformed chunked bodies and clients that
// vanish mid-upload are the client's fault and never count against a backend,
// even with consecutive_failures 1.
func TestHealthClientFaultsDoNotCount(t *testing.T) {
	t.Parallel()
	// The backends answer 500 when they could not read a whole body, so
	// that a miscounted client fault ejects them.
	h := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if _, err := io.Copy(io.Discard, r.Body); err != nil {
				w.WriteHeader(500)
				return
			}
			io.WriteString(w, name)
		}
	}
	b1, b2 := newStreamBackend(t, "b1", h("b1")), newStreamBackend(t, "b2", h("b2"))
	p := start(t, `
health:
  active:
    path: ""
  passive:
    consecutive_failures: 1
    ejection_time: 1m
`+simpleRoute(b1.URL, b2.URL))

	head := "POST /api/up HTTP/1.1\r\nHost: e2e.test\r\nTransfer-Encoding: chunked\r\n\r\n"
	malformed := []struct{ first, rest string }{
		{"zz\r\nhello\r\n0\r\n\r\n", ""},                   // size is not hex
		{"5\r\nhello\r\n", "zz\r\n"},                       // bad size after a good chunk
		{"3\r\nhello\r\n0\r\n\r\n", ""},                    // data longer than its size
		{"5\r\nhello\r\n", "5\r\nhelloXX\r\n0\r\n"},        // no CRLF after the data
		{"10000000000000000000\r\n", ""},                   // size overflows
		{"5\r\nhello\r\n", "-5\r\nhello\r\n0\r\n\r\n"},     // negative size
		{"5\r\nhello\r\n", "5;a\rb\r\nworld\r\n0\r\n\r\n"}, // bare CR in a chunk extension
		{"5\r\nhello\r\n", "0\r\nX: a\r\n b\r\n\r\n"},      // obs-fold in trailers
	}
	type outcome struct {
		i    int
		resp string
	}
	var mu sync.Mutex
	var bad []outcome
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				var r rawResult
				if i < 500 {
					m := malformed[i%len(malformed)]
					r = rawExchange(p.Addr, head+m.first, m.rest, time.Duration(i%3)*5*time.Millisecond)
					if r.Resp != nil && r.Resp.StatusCode == 400 {
						continue
					}
				} else {
					abandonUpload(p.Addr, i%2 == 0)
					continue
				}
				mu.Lock()
				bad = append(bad, outcome{i, r.String()})
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < 600; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	for i, o := range bad {
		if i == 5 {
			t.Errorf("... %d requests in all did not get 400", len(bad))
			break
		}
		t.Errorf("malformed chunked request %d (%q) got %s, want 400", o.i, malformed[o.i%len(malformed)], o.resp)
	}

	// Let every abandoned request finish on both sides.
	eventually(t, 10*time.Second, func() bool {
		ss, _ := scrape(t, p)
		if v, _ := metricValue(ss, "sluice_inflight_requests"); v != 0 {
			return false
		}
		for _, e := range fetchHealth(t, p)[0].Backends {
			if e.InFlight != 0 {
				return false
			}
		}
		return true
	}, "no request in flight after the client faults")
	for i := 0; i < 4; i++ {
		if resp, body := do(t, "POST", p.URL("/api/ok"), "fine"); resp.StatusCode != 200 {
			t.Errorf("a good POST after the client faults = %d %q, want 200", resp.StatusCode, body)
		}
	}
	for _, e := range fetchHealth(t, p)[0].Backends {
		if e.State != "healthy" || e.ConsecutiveFailures != 0 {
			t.Errorf("after 500 malformed bodies and 100 abandoned uploads %s = %+v, want healthy with 0 consecutive failures", e.URL, e)
		}
	}
	checkMetricsAgree(t, p, nil)
}

// abandonUpload starts a 1 MiB upload, sends 64 KiB of it, and goes away:
// with a reset when rst is set, else with a FIN.
func abandonUpload(addr string, rst bool) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "PUT /api/up HTTP/1.1\r\nHost: e2e.test\r\nContent-Length: 1048576\r\n\r\n")
	c.Write(make([]byte, 64<<10))
	time.Sleep(10 * time.Millisecond)
	if tc, ok := c.(*net.TCPConn); ok && rst {
		tc.SetLinger(0)
	}
	c.Close()
}
