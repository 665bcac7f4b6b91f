package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------
// A raw keep-alive client that can tell a cut response from a closed
// connection.

// byteCountReader counts the bytes read through it.
type byteCountReader struct {
	r io.Reader
	n int64
}

func (c *byteCountReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// kaConn is one HTTP/1.1 keep-alive client connection over raw TCP. Unlike
// http.Transport it never retries or redials behind the caller's back, so a
// connection closed by the server shows up, and it knows whether any byte of
// a response had arrived when an exchange failed.
type kaConn struct {
	addr  string
	c     net.Conn
	cr    *byteCountReader
	br    *bufio.Reader
	dials int // connections opened
}

// kaExchange is the outcome of one kaConn.do.
type kaExchange struct {
	resp    *http.Response
	body    []byte
	err     error
	dialErr bool // err is from dialing: nothing was sent
	partial bool // err came after some bytes of the response had arrived
}

// do sends req on the connection, dialing first when there is none, and
// reads the whole response. After an error or a response with Connection:
// close the connection is dropped; the next do dials again.
func (k *kaConn) do(req *http.Request) kaExchange {
	if k.c == nil {
		c, err := net.DialTimeout("tcp", k.addr, 5*time.Second)
		if err != nil {
			return kaExchange{err: err, dialErr: true}
		}
		k.c, k.dials = c, k.dials+1
		k.cr = &byteCountReader{r: c}
		k.br = bufio.NewReader(k.cr)
	}
	k.c.SetDeadline(time.Now().Add(15 * time.Second))
	before := k.cr.n
	buffered := k.br.Buffered()
	if err := req.Write(k.c); err != nil {
		k.drop()
		return kaExchange{err: fmt.Errorf("write: %w", err), partial: buffered > 0}
	}
	resp, err := http.ReadResponse(k.br, req)
	if err != nil {
		partial := buffered > 0 || k.cr.n > before
		k.drop()
		return kaExchange{err: fmt.Errorf("read response: %w", err), partial: partial}
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		k.drop()
		return kaExchange{resp: resp, body: body, err: fmt.Errorf("read body: %w", err), partial: true}
	}
	if resp.Close {
		k.drop()
	}
	return kaExchange{resp: resp, body: body}
}

func (k *kaConn) drop() {
	if k.c != nil {
		k.c.Close()
		k.c = nil
	}
}

// ---------------------------------------------------------------------------
// A light backend for load: no per-request recording.

// loadBackend is an httptest server that counts connections, live requests
// and GET /health probes, and answers with echoBody.
type loadBackend struct {
	*httptest.Server
	conns  atomic.Int64 // connections accepted
	reqs   atomic.Int64 // requests other than /health
	probes atomic.Int64 // requests for /health
}

// echoBody is what a loadBackend answers: the method, the request target and
// the request body, so that a client can tell its own answer.
func echoBody(method, target, body string) string {
	return method + " " + target + " " + body
}

// newLoadBackend starts a loadBackend. h, when not nil, answers requests
// other than /health instead of the echo.
func newLoadBackend(t testing.TB, h http.HandlerFunc) *loadBackend {
	t.Helper()
	lb := &loadBackend{}
	lb.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			lb.probes.Add(1)
			io.WriteString(w, "healthy")
			return
		}
		lb.reqs.Add(1)
		if h != nil {
			h(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		io.WriteString(w, echoBody(r.Method, r.RequestURI, string(body)))
	}))
	lb.Server.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			lb.conns.Add(1)
		}
	}
	lb.Server.Start()
	t.Cleanup(lb.Server.Close)
	return lb
}

// ---------------------------------------------------------------------------
// Metrics and reload helpers.

// metricOrZero returns the value of the series name with exactly labels (0 when absent).
func metricOrZero(t testing.TB, p *proc, name string, labels ...string) float64 {
	t.Helper()
	ss, _ := scrape(t, p)
	v, _ := metricValue(ss, name, labels...)
	return v
}

// reloadsOK returns sluice_config_reloads_total{result="ok"} (0 when absent).
func reloadsOK(t testing.TB, p *proc) float64 {
	return metricOrZero(t, p, "sluice_config_reloads_total", "result", "ok")
}

// postReload POSTs /reload and returns the status and the decoded body.
func postReload(t testing.TB, p *proc) (int, map[string]any, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Post(p.AdminURL("/reload"), "", nil)
	if err != nil {
		t.Fatalf("POST /reload: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(body, &m)
	return resp.StatusCode, m, string(body)
}

// reloadOK reloads the running process with cfg, by SIGHUP or POST /reload,
// and waits until the reload has been counted as ok: after it, new requests
// see cfg.
func reloadOK(t testing.TB, p *proc, cfg string, bySignal bool) {
	t.Helper()
	before := reloadsOK(t, p)
	p.Rewrite(cfg)
	if bySignal {
		p.Signal(syscall.SIGHUP)
		var n float64
		eventually(t, 10*time.Second, func() bool { n = reloadsOK(t, p); return n == before+1 },
			"sluice_config_reloads_total{result=\"ok\"} to go from %v to %v after SIGHUP (last %v)", before, before+1, n)
		return
	}
	code, m, body := postReload(t, p)
	if code != 200 || m["result"] != "ok" {
		t.Fatalf("POST /reload = %d %s, want 200 {\"result\":\"ok\"}", code, body)
	}
	if n := reloadsOK(t, p); n != before+1 {
		t.Errorf("sluice_config_reloads_total{result=\"ok\"} = %v after POST /reload, want %v", n, before+1)
	}
}

// goGoroutines returns sluice's go_goroutines.
func goGoroutines(t testing.TB, p *proc) int {
	t.Helper()
	ss, _ := scrape(t, p)
	v, ok := metricValue(ss, "go_goroutines")
	if !ok {
		t.Fatal("/metrics has no go_goroutines")
	}
	return int(v)
}

// ---------------------------------------------------------------------------
// Load.

// loadResult is what the load clients saw.
type loadResult struct {
	mu        sync.Mutex
	ok        int
	ids       []string // X-Request-Id of every complete, correct response
	failures  []string // wrong answers and failed exchanges, for messages
	nFailures int
	cuts      int // exchanges that failed after a response had started
	closed    int // exchanges that failed before any response byte
	dials     int
}

func (r *loadResult) fail(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nFailures++
	if len(r.failures) < 10 {
		r.failures = append(r.failures, fmt.Sprintf(format, args...))
	}
}

// runLoadClient sends GETs and small POSTs to /api on one kaConn until stop
// is closed, checking each answer. With tolerateClose a connection error
// before any response byte is counted in closed and the client dials again,
// stopping once dialing fails; without it every error is a failure.
func runLoadClient(addr string, w int, stop <-chan struct{}, tolerateClose bool, res *loadResult) {
	k := &kaConn{addr: addr}
	defer func() {
		k.drop()
		res.mu.Lock()
		res.dials += k.dials
		res.mu.Unlock()
	}()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		target := fmt.Sprintf("/api/c%d/%d?q=%d", w, i, i)
		var req *http.Request
		var body string
		if i%2 == 0 {
			req, _ = http.NewRequest("GET", "http://"+addr+target, nil)
		} else {
			body = fmt.Sprintf("payload-%d-%d", w, i)
			req, _ = http.NewRequest("POST", "http://"+addr+target, strings.NewReader(body))
		}
		ex := k.do(req)
		switch {
		case ex.err != nil && ex.dialErr && tolerateClose:
			return
		case ex.err != nil && ex.partial:
			res.mu.Lock()
			res.cuts++
			res.mu.Unlock()
			res.fail("%s %s: cut after the response started: %v", req.Method, target, ex.err)
			return
		case ex.err != nil && tolerateClose:
			res.mu.Lock()
			res.closed++
			res.mu.Unlock()
			continue // the connection was closed before any response byte
		case ex.err != nil:
			res.fail("%s %s: %v", req.Method, target, ex.err)
			k.drop()
			continue
		}
		want := echoBody(req.Method, target, body)
		if ex.resp.StatusCode != 200 || string(ex.body) != want {
			res.fail("%s %s = %d %q, want 200 %q", req.Method, target, ex.resp.StatusCode, truncate(string(ex.body), 200), want)
			continue
		}
		res.mu.Lock()
		res.ok++
		res.ids = append(res.ids, ex.resp.Header.Get("X-Request-Id"))
		res.mu.Unlock()
	}
}

// TestReloadUnderLoad: 32 keep-alive clients send GETs and POSTs for 5 s and
// one response streams for 3 s while 10 reloads, alternately by SIGHUP and
// POST /reload, swap between two configs that add and remove a route and a
// backend. No request may fail, the stream must arrive intact, and sluice's
// goroutines must come back to their level before the load.
func TestReloadUnderLoad(t *testing.T) {
	// Not parallel: a load test on two cores.
	a, b, c := newLoadBackend(t, nil), newLoadBackend(t, nil), newLoadBackend(t, nil)
	var streamWant bytes.Buffer
	for i := 0; i < 30; i++ {
		fmt.Fprintf(&streamWant, "chunk %02d %s\n", i, strings.Repeat("s", 64))
	}
	chunks := strings.SplitAfter(streamWant.String(), "\n")
	s := newLoadBackend(t, func(w http.ResponseWriter, r *http.Request) {
		f := w.(http.Flusher)
		for _, ch := range chunks {
			if ch == "" {
				continue
			}
			if _, err := io.WriteString(w, ch); err != nil {
				return
			}
			f.Flush()
			select {
			case <-time.After(100 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
	})

	// Both configs probe every backend actively, so probers start and stop
	// with the reloads too.
	common := `
health:
  active:
    path: /health
    interval: 200ms
`
	cfg1 := common + fmt.Sprintf(`
routes:
  - name: api
    path_prefix: /api
    backends: [%s]
  - name: stream
    path_prefix: /stream
    backends: [%s]
`, a.URL, s.URL)
	cfg2 := common + fmt.Sprintf(`
routes:
  - name: api
    path_prefix: /api
    backends: [%s, %s]
  - name: stream
    path_prefix: /stream
    backends: [%s]
  - name: extra
    path_prefix: /extra
    backends: [%s]
`, a.URL, b.URL, s.URL, c.URL)
	p := start(t, cfg1)

	// The baseline, once the probers have run.
	eventually(t, 5*time.Second, func() bool { return a.probes.Load() >= 2 && s.probes.Load() >= 2 },
		"the first active probes")
	base := goGoroutines(t, p)

	// The stream.
	type streamResult struct {
		code int
		body string
		err  error
	}
	streamDone := make(chan streamResult, 1)
	streamTr := &http.Transport{DisableCompression: true}
	defer streamTr.CloseIdleConnections()
	go func() {
		c := &http.Client{Transport: streamTr, Timeout: 20 * time.Second}
		resp, err := c.Get(p.URL("/stream/long"))
		if err != nil {
			streamDone <- streamResult{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		streamDone <- streamResult{code: resp.StatusCode, body: string(body), err: err}
	}()

	// The clients.
	const clients = 32
	res := &loadResult{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runLoadClient(p.Addr, w, stop, false, res)
		}()
	}
	loadStart := time.Now()

	// The reloads: 10 of them over the 5 s, alternating the trigger and
	// the config; the last one lands back on cfg1.
	for i := 0; i < 10; i++ {
		next := loadStart.Add(time.Duration(i)*450*time.Millisecond + 200*time.Millisecond)
		time.Sleep(time.Until(next)) // pacing, not waiting for a condition
		cfg := cfg2
		if i%2 == 1 {
			cfg = cfg1
		}
		reloadOK(t, p, cfg, i%2 == 0)
	}
	time.Sleep(time.Until(loadStart.Add(5 * time.Second)))
	close(stop)
	wg.Wait()

	sr := waitChan(t, streamDone, 20*time.Second, "the streamed response")
	if sr.err != nil || sr.code != 200 || sr.body != streamWant.String() {
		t.Errorf("streamed response across the reloads = %d, err %v, %d of %d bytes (intact: %v)",
			sr.code, sr.err, len(sr.body), streamWant.Len(), sr.body == streamWant.String())
	}

	res.mu.Lock()
	t.Logf("%d requests answered in 5 s by 32 clients across 10 reloads (%d connections; api backends got %d and %d)",
		res.ok, res.dials, a.reqs.Load(), b.reqs.Load())
	if res.nFailures > 0 {
		t.Errorf("%d of %d requests failed across reloads, want 0; first ones:\n  %s",
			res.nFailures, res.ok+res.nFailures, strings.Join(res.failures, "\n  "))
	}
	if res.dials != clients {
		t.Errorf("the 32 keep-alive clients opened %d connections, want 32: a reload closed client connections", res.dials)
	}
	res.mu.Unlock()
	if res.ok < clients {
		t.Errorf("only %d requests answered in 5 s", res.ok)
	}
	if b.reqs.Load() == 0 {
		t.Errorf("the backend added by the reloads got no request: cfg2 never served")
	}
	if c.probes.Load() == 0 {
		t.Errorf("the backend of the added route was never probed")
	}
	if n := reloadsOK(t, p); n != 10 {
		t.Errorf("sluice_config_reloads_total{result=\"ok\"} = %v, want 10", n)
	}
	if n := metricOrZero(t, p, "sluice_config_reloads_total", "result", "error"); n != 0 {
		t.Errorf("sluice_config_reloads_total{result=\"error\"} = %v, want 0", n)
	}

	// Goroutines back to the baseline: the clients' connections are closed;
	// pooled upstream connections are closed by the backends (an idle pool
	// is not a leak).
	for _, lb := range []*loadBackend{a, b, c, s} {
		lb.CloseClientConnections()
	}
	var n int
	t0 := time.Now()
	if !poll(30*time.Second, func() bool { n = goGoroutines(t, p); return n <= base+5 }) {
		t.Errorf("go_goroutines = %d 30 s after the load, want back within 5 of %d (before it)", n, base)
	} else {
		t.Logf("go_goroutines %d, baseline %d, back after %v", n, base, time.Since(t0).Round(time.Millisecond))
	}
}

// TestShutdownUnderLoad: SIGTERM while 32 keep-alive clients send requests.
// Every response that arrives is complete and correct, a connection is only
// ever closed between responses, every answered request is in the access
// log, and the process exits 0.
func TestShutdownUnderLoad(t *testing.T) {
	// Not parallel: a load test on two cores.
	var slow atomic.Int64
	a := newLoadBackend(t, func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		// One request in ten takes 100 ms: some are in flight at SIGTERM.
		if slow.Add(1)%10 == 0 {
			time.Sleep(100 * time.Millisecond)
		}
		io.WriteString(w, echoBody(r.Method, r.RequestURI, string(body)))
	})
	logPath := filepath.Join(t.TempDir(), "access.log")
	p := start(t, fmt.Sprintf("access_log: %q\n", logPath)+simpleRoute(a.URL))

	const clients = 32
	res := &loadResult{}
	never := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runLoadClient(p.Addr, w, never, true, res)
		}()
	}
	eventually(t, 10*time.Second, func() bool {
		res.mu.Lock()
		defer res.mu.Unlock()
		return res.ok >= 500
	}, "500 answered requests before SIGTERM")
	p.Signal(syscall.SIGTERM)
	code := p.Wait(20 * time.Second)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	waitChan(t, done, 20*time.Second, "the clients to stop once the listener refuses connections")

	if code != 0 {
		t.Errorf("exit code = %d, want 0", code)
	}
	res.mu.Lock()
	defer res.mu.Unlock()
	t.Logf("%d complete responses, %d connections closed between responses, %d connections", res.ok, res.closed, res.dials)
	if res.nFailures > 0 {
		t.Errorf("%d exchanges went wrong during shutdown (%d cut mid-response); first ones:\n  %s",
			res.nFailures, res.cuts, strings.Join(res.failures, "\n  "))
	}

	lines := readAccessLog(t, logPath)
	logged := map[string]int{}
	for _, l := range lines {
		id, _ := l["request_id"].(string)
		logged[id]++
		if l["status"] != 200.0 || l["error"] != "" {
			t.Errorf("access log line for a request during shutdown: status %v error %q, want 200 and none", l["status"], l["error"])
		}
	}
	missing := 0
	for _, id := range res.ids {
		if logged[id] != 1 {
			missing++
		}
	}
	if missing > 0 || len(lines) != res.ok {
		t.Errorf("access log has %d lines for %d answered requests; %d answered request IDs are not logged exactly once", len(lines), res.ok, missing)
	}
}
