package e2e

// Retries as docs/configuration.md describes them under "retry:": which requests may be
// retried, how many tries, the total timeout, replayable bodies; and that
// metrics and the access log agree with what the backends saw. The budget is
// in retry_budget_test.go.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// noEjection keeps passive health out of the way of tests about retries.
const noEjection = `
health:
  active:
    path: ""
  passive:
    consecutive_failures: 1000000
`

// retryLog reads the JSON access log at path, waiting up to 5 s until it has
// at least n lines.
func retryLog(t testing.TB, path string, n int) []map[string]any {
	t.Helper()
	var lines []map[string]any
	ok := poll(5*time.Second, func() bool {
		data, _ := os.ReadFile(path)
		lines = lines[:0]
		for _, l := range strings.Split(string(data), "\n") {
			if strings.TrimSpace(l) == "" {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("access log line is not JSON: %v: %q", err, l)
			}
			lines = append(lines, m)
		}
		return len(lines) >= n
	})
	if !ok {
		t.Fatalf("access log %s has %d lines, want >= %d", path, len(lines), n)
	}
	return lines
}

// logByID indexes access log lines by request_id.
func logByID(lines []map[string]any) map[string]map[string]any {
	m := map[string]map[string]any{}
	for _, l := range lines {
		if id, _ := l["request_id"].(string); id != "" {
			m[id] = l
		}
	}
	return m
}

// retriesOf returns sluice_retries_total{route}, 0 when absent.
func retriesOf(t testing.TB, p *proc, route string) float64 {
	t.Helper()
	ss, _ := scrape(t, p)
	v, _ := metricValue(ss, "sluice_retries_total", "route", route)
	return v
}

// failingBackend answers every request with 503 and its own name as body.
func failingBackend(t testing.TB, name string) *backend {
	return newBackend(t, name, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		w.WriteHeader(503)
		io.WriteString(w, name)
	})
}

// idsAt counts, per X-Request-Id, the requests a backend received.
func idsAt(b *backend) map[string]int {
	m := map[string]int{}
	for _, r := range b.Requests() {
		m[r.Header.Get("X-Request-Id")]++
	}
	return m
}

// TestRetryStatusGET: with one backend always 503 and one healthy, every GET
// succeeds, and the failing backend sees at most one try per request.
func TestRetryStatusGET(t *testing.T) {
	t.Parallel()
	logPath := filepath.Join(t.TempDir(), "access.log")
	ok := newBackend(t, "ok", nil)
	bad := failingBackend(t, "bad")
	p := start(t, fmt.Sprintf(`
access_log: %q
retry:
  backoff: 1ms
  budget_percent: 100
%s
routes:
  - name: api
    path_prefix: /api
    backends: [%s, %s]
`, logPath, noEjection, bad.URL, ok.URL))

	const n = 200
	var mu sync.Mutex
	var ids []string
	var wg sync.WaitGroup
	jobs := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _ := newClient(t)
			for i := range jobs {
				resp, err := c.Get(p.URL(fmt.Sprintf("/api/%d", i)))
				if err != nil {
					t.Errorf("GET %d: %v", i, err)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(body) != "ok" {
					t.Errorf("GET %d = %d %q, want 200 ok (the 503 retried on the other backend)", i, resp.StatusCode, body)
				}
				mu.Lock()
				ids = append(ids, resp.Header.Get("X-Request-Id"))
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()

	atOK, atBad := idsAt(ok), idsAt(bad)
	for id, k := range atBad {
		if k > 1 {
			t.Errorf("bad saw request %s %d times, want at most one try per request", id, k)
		}
	}
	for _, id := range ids {
		if atOK[id] != 1 {
			t.Errorf("ok saw request %s %d times, want exactly 1", id, atOK[id])
		}
	}
	if len(atOK) != n || bad.Count() > n || bad.Count() == 0 {
		t.Errorf("ok saw %d distinct requests, bad %d tries: want %d and between 1 and %d", len(atOK), bad.Count(), n, n)
	}
	if r := retriesOf(t, p, "api"); int(r) != bad.Count() {
		t.Errorf("sluice_retries_total = %v, but bad answered %d requests that were retried", r, bad.Count())
	}
	lines := logByID(retryLog(t, logPath, n))
	for _, id := range ids {
		l := lines[id]
		if l == nil {
			t.Errorf("no access log line for %s", id)
			continue
		}
		if want := float64(1 + atBad[id]); l["attempts"] != want || l["backend"] != ok.URL {
			t.Errorf("access log for %s: attempts %v backend %v, want %v and %s", id, l["attempts"], l["backend"], want, ok.URL)
		}
	}
}

// TestRetryPOST: a POST that reached a backend is not retried; a POST whose
// connect was refused is; a POST with Idempotency-Key is.
func TestRetryPOST(t *testing.T) {
	t.Parallel()
	logPath := filepath.Join(t.TempDir(), "access.log")
	bad1, ok1 := failingBackend(t, "bad1"), newBackend(t, "ok1", nil)
	ok2 := newBackend(t, "ok2", nil)
	bad3, ok3 := failingBackend(t, "bad3"), newBackend(t, "ok3", nil)
	refused := refusedURL(t)
	p := start(t, fmt.Sprintf(`
access_log: %q
retry:
  backoff: 1ms
  budget_percent: 100
  budget_min_per_second: 1000
%s
routes:
  - name: sent
    path_prefix: /sent
    backends: [%s, %s]
  - name: refused
    path_prefix: /refused
    backends: [%s, %s]
  - name: idem
    path_prefix: /idem
    backends: [%s, %s]
`, logPath, noEjection, bad1.URL, ok1.URL, refused, ok2.URL, bad3.URL, ok3.URL))
	c, _ := newClient(t)
	post := func(path, body string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", p.URL(path), strings.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	logged := 0

	t.Run("sent POST with 503 not retried", func(t *testing.T) {
		hitBad := 0
		for i := 0; i < 4; i++ {
			b0, o0 := bad1.Count(), ok1.Count()
			body := fmt.Sprintf("sent-%d", i)
			resp, got := post("/sent/x", body)
			db, do := bad1.Count()-b0, ok1.Count()-o0
			switch {
			case db == 1 && do == 0:
				hitBad++
				if resp.StatusCode != 503 || got != "bad1" {
					t.Errorf("POST %d reached bad1 only, answered %d %q; want bad1's own 503", i, resp.StatusCode, got)
				}
			case db == 0 && do == 1:
				if resp.StatusCode != 200 || got != "ok1" {
					t.Errorf("POST %d reached ok1 only, answered %d %q; want 200 ok1", i, resp.StatusCode, got)
				}
			default:
				t.Errorf("POST %d reached bad1 %d times and ok1 %d times, want exactly one try in all (a POST that was sent is not retried)", i, db, do)
			}
		}
		if hitBad == 0 {
			t.Errorf("no POST went to bad1 first; round robin over 2 backends should send half there")
		}
		if r := retriesOf(t, p, "sent"); r != 0 {
			t.Errorf("sluice_retries_total{route=sent} = %v, want 0", r)
		}
		logged += 4
	})

	t.Run("refused POST retried", func(t *testing.T) {
		for i := 0; i < 4; i++ {
			body := fmt.Sprintf("refused-%d", i)
			if resp, got := post("/refused/x", body); resp.StatusCode != 200 || got != "ok2" {
				t.Errorf("POST %d = %d %q, want 200 ok2 (a refused connect sent nothing, so it is retried)", i, resp.StatusCode, got)
			}
			if last := ok2.Last(t); string(last.Body) != body {
				t.Errorf("ok2 received body %q, want %q", last.Body, body)
			}
		}
		if ok2.Count() != 4 {
			t.Errorf("ok2 received %d POSTs, want 4", ok2.Count())
		}
		// Round robin sends half of them to the refused port first.
		if r := retriesOf(t, p, "refused"); r < 1 || r > 4 {
			t.Errorf("sluice_retries_total{route=refused} = %v, want 1-4 (about 2)", r)
		}
		logged += 4
	})

	t.Run("Idempotency-Key POST retried", func(t *testing.T) {
		for i := 0; i < 4; i++ {
			b0, o0 := bad3.Count(), ok3.Count()
			body, key := fmt.Sprintf("idem-%d", i), fmt.Sprintf("key-%d", i)
			resp, got := post("/idem/x", body, "Idempotency-Key", key)
			if resp.StatusCode != 200 || got != "ok3" {
				t.Errorf("POST %d = %d %q, want 200 ok3 (Idempotency-Key makes it retryable)", i, resp.StatusCode, got)
			}
			if db, do := bad3.Count()-b0, ok3.Count()-o0; db > 1 || do != 1 {
				t.Errorf("POST %d reached bad3 %d and ok3 %d times, want at most 1 and exactly 1", i, db, do)
			}
			if last := ok3.Last(t); string(last.Body) != body || last.Header.Get("Idempotency-Key") != key {
				t.Errorf("ok3 received body %q key %q, want %q %q", last.Body, last.Header.Get("Idempotency-Key"), body, key)
			}
		}
		if bad3.Count() == 0 {
			t.Errorf("no POST went to bad3 first")
		}
		if r := retriesOf(t, p, "idem"); int(r) != bad3.Count() {
			t.Errorf("sluice_retries_total{route=idem} = %v, want %d (bad3's tries)", r, bad3.Count())
		}
		for _, r := range bad3.Requests() {
			if !strings.HasPrefix(string(r.Body), "idem-") {
				t.Errorf("bad3 received body %q", r.Body)
			}
		}
		logged += 4
	})

	// The access log's attempts agree with the retries counted.
	lines := retryLog(t, logPath, logged)
	extra := map[string]float64{}
	for _, l := range lines {
		route, _ := l["route"].(string)
		a, _ := l["attempts"].(float64)
		extra[route] += a - 1
	}
	for _, route := range []string{"sent", "refused", "idem"} {
		if r := retriesOf(t, p, route); extra[route] != r {
			t.Errorf("route %s: access log attempts add up to %v retries, sluice_retries_total = %v", route, extra[route], r)
		}
	}
}

// TestRetryAttemptsLastFailure: attempts 3 over 5 failing backends makes
// exactly 3 tries, on 3 different backends, and the client gets the last
// backend's own failure.
func TestRetryAttemptsLastFailure(t *testing.T) {
	t.Parallel()
	logPath := filepath.Join(t.TempDir(), "access.log")
	var seq atomic.Int64
	type hit struct {
		seq     int64
		backend string
	}
	var mu sync.Mutex
	hits := map[string][]hit{} // by X-Request-Id
	var bs []*backend
	var urls []string
	for i := 0; i < 5; i++ {
		name := fmt.Sprintf("f%d", i)
		b := newBackend(t, name, func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			id := r.Header.Get("X-Request-Id")
			hits[id] = append(hits[id], hit{seq.Add(1), name})
			mu.Unlock()
			w.Header().Set("X-Backend", name)
			w.WriteHeader(503)
			io.WriteString(w, name)
		})
		bs = append(bs, b)
		urls = append(urls, b.URL)
	}
	p := start(t, fmt.Sprintf(`
access_log: %q
retry:
  attempts: 3
  backoff: 1ms
  budget_percent: 100
  budget_min_per_second: 1000
%s
routes:
  - name: api
    path_prefix: /api
    backends: [%s]
`, logPath, noEjection, strings.Join(urls, ", ")))

	const n = 10
	var ids []string
	urlOf := map[string]string{}
	for _, b := range bs {
		urlOf[b.Name] = b.URL
	}
	for i := 0; i < n; i++ {
		resp, body := get(t, p.URL("/api/x"))
		id := resp.Header.Get("X-Request-Id")
		ids = append(ids, id)
		mu.Lock()
		h := append([]hit(nil), hits[id]...)
		mu.Unlock()
		if len(h) != 3 {
			t.Errorf("request %d made %d tries %v, want exactly 3 (attempts: 3)", i, len(h), h)
			continue
		}
		names := map[string]bool{}
		last := h[0]
		for _, x := range h {
			names[x.backend] = true
			if x.seq > last.seq {
				last = x
			}
		}
		if len(names) != 3 {
			t.Errorf("request %d tried %v, want 3 different backends", i, h)
		}
		if resp.StatusCode != 503 || string(body) != last.backend || resp.Header.Get("X-Backend") != last.backend {
			t.Errorf("request %d = %d %q (X-Backend %q), want the last tried backend's own 503 %q", i, resp.StatusCode, body, resp.Header.Get("X-Backend"), last.backend)
		}
	}
	total := 0
	for _, b := range bs {
		total += b.Count()
	}
	if total != 3*n {
		t.Errorf("backends saw %d tries for %d requests, want %d", total, n, 3*n)
	}
	if r := retriesOf(t, p, "api"); r != 2*n {
		t.Errorf("sluice_retries_total = %v, want %d", r, 2*n)
	}
	lines := logByID(retryLog(t, logPath, n))
	for _, id := range ids {
		mu.Lock()
		h := hits[id]
		mu.Unlock()
		last := ""
		var max int64
		for _, x := range h {
			if x.seq > max {
				max, last = x.seq, x.backend
			}
		}
		if l := lines[id]; l == nil || l["attempts"] != 3.0 || l["backend"] != urlOf[last] || l["status"] != 503.0 {
			t.Errorf("access log for %s = %v, want attempts 3, status 503, backend %s", id, l, urlOf[last])
		}
	}
}

// TestRetryTotalTimeout: total_timeout bounds all tries together and cuts a
// hanging try short: 504 at total_timeout, not at upstream_header.
func TestRetryTotalTimeout(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	hang := func(name string) *backend {
		return newBackend(t, name, func(w http.ResponseWriter, r *http.Request) {
			g.wait(r)
			io.WriteString(w, name)
		})
	}
	h1, h2 := hang("h1"), hang("h2")
	p := start(t, fmt.Sprintf(`
timeouts:
  upstream_header: 10s
retry:
  attempts: 2
  total_timeout: 1s
  backoff: 1ms
  budget_percent: 100
%s
routes:
  - name: api
    path_prefix: /api
    backends: [%s, %s]
`, noEjection, h1.URL, h2.URL))

	c, tr := newClient(t)
	tr.DisableKeepAlives = true
	c.Timeout = 5 * time.Second
	for i := 0; i < 2; i++ {
		start := time.Now()
		resp, err := c.Get(p.URL("/api/x"))
		d := time.Since(start)
		if err != nil {
			t.Fatalf("GET %d: %v after %v", i, err, d)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		checkProxyError(t, resp, body, 504, "upstream_timeout")
		if d < time.Second-20*time.Millisecond || d > 1500*time.Millisecond {
			t.Errorf("GET %d: 504 after %v, want at total_timeout (1s), by 1.5s at the latest", i, d)
		}
	}
	if h1.Count()+h2.Count() < 2 {
		t.Errorf("the backends saw %d requests, want each GET to reach one", h1.Count()+h2.Count())
	}
}

// TestRetryBodies: a body over max_body is streamed and not retried; one
// under it is replayed, byte for byte, to the next backend.
func TestRetryBodies(t *testing.T) {
	t.Parallel()
	fa, fb := failingBackend(t, "fa"), failingBackend(t, "fb")
	fc, ok := failingBackend(t, "fc"), newBackend(t, "ok", nil)
	p := start(t, fmt.Sprintf(`
retry:
  backoff: 1ms
  max_body: 1MiB
  budget_percent: 100
  budget_min_per_second: 1000
%s
routes:
  - name: big
    path_prefix: /big
    backends: [%s, %s]
  - name: small
    path_prefix: /small
    backends: [%s, %s]
`, noEjection, fa.URL, fb.URL, fc.URL, ok.URL))
	rnd := rand.New(rand.NewSource(1))
	payload := func(n int) []byte {
		b := make([]byte, n)
		rnd.Read(b)
		return b
	}
	c, _ := newClient(t)
	put := func(path string, body []byte) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("PUT", p.URL(path), bytes.NewReader(body))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("PUT %s: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}

	t.Run("2 MiB streamed, not retried", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			body := payload(2 << 20)
			a0, b0 := fa.Count(), fb.Count()
			code, got := put("/big/x", body)
			da, db := fa.Count()-a0, fb.Count()-b0
			if da+db != 1 {
				t.Errorf("PUT %d of 2 MiB reached the backends %d times, want 1 (over max_body: not retried)", i, da+db)
				continue
			}
			from := fa
			if db == 1 {
				from = fb
			}
			if code != 503 || got != from.Name {
				t.Errorf("PUT %d = %d %q, want %s's own 503", i, code, got, from.Name)
			}
			if last := from.Last(t); !bytes.Equal(last.Body, body) {
				t.Errorf("%s received %d bytes, want the 2 MiB sent", from.Name, len(last.Body))
			}
		}
	})
	t.Run("100 KiB replayed", func(t *testing.T) {
		replayed := 0
		for i := 0; i < 3 && replayed == 0; i++ {
			body := payload(100 << 10)
			c0, o0 := fc.Count(), ok.Count()
			code, got := put("/small/x", body)
			if code != 200 || got != "ok" {
				t.Errorf("PUT %d = %d %q, want 200 ok", i, code, got)
			}
			if ok.Count()-o0 != 1 {
				t.Errorf("ok received %d requests for PUT %d, want 1", ok.Count()-o0, i)
				continue
			}
			if !bytes.Equal(ok.Last(t).Body, body) {
				t.Errorf("ok received %d bytes that differ from the %d sent", len(ok.Last(t).Body), len(body))
			}
			if fc.Count()-c0 == 1 {
				replayed++
				if !bytes.Equal(fc.Last(t).Body, body) {
					t.Errorf("fc received %d bytes that differ from the %d sent", len(fc.Last(t).Body), len(body))
				}
			}
		}
		if replayed == 0 {
			t.Errorf("no PUT went to the failing backend first in 3 tries")
		}
	})
}

// TestRetryNotAfterResponseStarted: once the first bytes of a response have
// reached the client, a failure is not retried: the client sees a cut.
//
// The backend sends headers and 100 bytes of the body, waits until the client
// has read them (at most 300 ms), then breaks the connection. A chunked
// response is passed on as it arrives, so its first bytes do reach the
// client. For responses that declare a length (/api/sized-*) the proxy may
// hold the first bytes back; if it still holds everything when the backend
// fails, it may retry or answer 502, but the client must get an answer: either
// a status and a cut, or a whole response.
func TestRetryNotAfterResponseStarted(t *testing.T) {
	t.Parallel()
	clientGotBytes := make(chan struct{}, 8)
	cutter := newBackend(t, "cutter", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", "cutter")
		if strings.HasPrefix(r.URL.Path, "/api/sized") {
			w.Header().Set("Content-Length", "1000")
		}
		w.WriteHeader(200)
		io.WriteString(w, strings.Repeat("c", 100))
		w.(http.Flusher).Flush()
		select {
		case <-clientGotBytes:
		case <-time.After(300 * time.Millisecond):
		}
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			if strings.HasSuffix(r.URL.Path, "-fin") {
				conn.Close()
			} else {
				resetConn(conn)
			}
		}
	})
	ok := newBackend(t, "ok", nil)
	p := start(t, fmt.Sprintf(`
retry:
  attempts: 3
  backoff: 1ms
  budget_percent: 100
  budget_min_per_second: 1000
%s
routes:
  - name: api
    path_prefix: /api
    backends: [%s, %s]
`, noEjection, cutter.URL, ok.URL))

	var retriable float64 // sized responses that never reached the client
	for _, path := range []string{"/api/chunked-rst", "/api/chunked-fin", "/api/sized-rst", "/api/sized-fin"} {
		t.Run(strings.TrimPrefix(path, "/api/"), func(t *testing.T) {
			sized := strings.HasPrefix(path, "/api/sized")
			cuts := 0
			for i := 0; i < 4; i++ {
				c0, o0 := cutter.Count(), ok.Count()
				c, tr := newClient(t)
				tr.DisableKeepAlives = true
				resp, err := c.Get(p.URL(path))
				dc, do := func() (int, int) { return cutter.Count() - c0, ok.Count() - o0 }()
				if err != nil {
					t.Errorf("GET #%d: no response at all (%v) after the backend broke the connection mid-body (cutter hit %d, ok %d); want a status and a cut, or a whole answer",
						i, err, dc, do)
					continue
				}
				if resp.Header.Get("X-Backend") != "cutter" {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					switch {
					case dc == 0 && do == 1 && resp.StatusCode == 200 && string(body) == "ok":
					case sized && dc == 1 && do == 1 && resp.StatusCode == 200 && string(body) == "ok":
						retriable++ // nothing had reached the client: a retry is allowed
					case sized && dc == 1 && do == 0 && resp.StatusCode == 502:
						checkProxyError(t, resp, body, 502, "upstream_error")
					default:
						t.Errorf("GET #%d = %d %q (cutter hit %d, ok %d)", i, resp.StatusCode, body, dc, do)
					}
					continue
				}
				cuts++
				first := make([]byte, 100)
				n, err := io.ReadFull(resp.Body, first)
				if err == nil {
					clientGotBytes <- struct{}{}
				} else if !sized {
					t.Errorf("GET #%d: reading the first 100 bytes of a chunked response: %v after %d", i, err, n)
				}
				rest, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil {
					t.Errorf("GET #%d: the response ended cleanly after %d more bytes (%q), want a cut", i, len(rest), truncate(string(rest), 50))
				}
				if strings.Trim(string(first[:n])+string(rest), "c") != "" {
					t.Errorf("GET #%d: the client received %q: another response was spliced in", i, truncate(string(first[:n])+string(rest), 80))
				}
				if dc, do := cutter.Count()-c0, ok.Count()-o0; dc != 1 || do != 0 {
					t.Errorf("GET #%d reached cutter %d and ok %d times, want 1 and 0 (no retry once the response started)", i, dc, do)
				}
			}
			if !sized && cuts == 0 {
				t.Errorf("no GET reached the client from the cutting backend")
			}
		})
	}
	if r := retriesOf(t, p, "api"); r != retriable {
		t.Errorf("sluice_retries_total = %v, want %v (only sized responses that had not reached the client may be retried)", r, retriable)
	}
}

// resetConn closes c with a TCP reset.
func resetConn(c net.Conn) {
	if tc, ok := c.(*tapConn); ok {
		c = tc.Conn
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}
