package e2e

// The retry budget: under steady failing traffic retries stay within
// budget_percent of the requests plus budget_min_per_second, and a request
// refused a retry gets the last backend failure or retry_budget_exhausted.

import (
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// pacedGets sends GETs to url at rate per second for d from 4 workers and
// returns every answer.
func pacedGets(t testing.TB, url string, rate int, d time.Duration) []fetched {
	t.Helper()
	jobs := make(chan struct{})
	var mu sync.Mutex
	var out []fetched
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _ := newClient(t)
			for range jobs {
				var f fetched
				resp, err := c.Get(url)
				if err != nil {
					f.err = err
				} else {
					b, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					f = fetched{code: resp.StatusCode, body: string(b), err: err}
				}
				mu.Lock()
				out = append(out, f)
				mu.Unlock()
			}
		}()
	}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	end := time.After(d)
loop:
	for {
		select {
		case <-end:
			break loop
		case <-tick.C:
			select {
			case jobs <- struct{}{}:
			default: // every worker busy: skip this tick
			}
		}
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	return out
}

// TestRetryBudget: with every backend failing under steady traffic, retries
// stay within budget_percent of the requests plus budget_min_per_second per
// second; requests refused a retry get the last backend's own failure, or
// 503 retry_budget_exhausted when there was no backend response.
func TestRetryBudget(t *testing.T) {
	t.Parallel()
	logPath := filepath.Join(t.TempDir(), "access.log")
	f1, f2 := failingBackend(t, "f1"), failingBackend(t, "f2")
	ok := newBackend(t, "ok", nil)
	refused := refusedURL(t)
	p := start(t, fmt.Sprintf(`
access_log: %q
retry:
  attempts: 2
  backoff: 1ms
  budget_percent: 20
  budget_min_per_second: 3
%s
routes:
  - name: fail
    path_prefix: /fail
    backends: [%s, %s]
  - name: connect
    path_prefix: /connect
    backends: [%s, %s]
`, logPath, noEjection, f1.URL, f2.URL, refused, ok.URL))

	const dur = 3 * time.Second
	var failAnswers, connectAnswers []fetched
	began := time.Now()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); failAnswers = pacedGets(t, p.URL("/fail/x"), 150, dur) }()
	go func() { defer wg.Done(); connectAnswers = pacedGets(t, p.URL("/connect/x"), 100, dur) }()
	wg.Wait()
	secs := math.Ceil(time.Since(began).Seconds())
	budget := func(n int) float64 { return 0.20*float64(n) + 3*(secs+1) + 4 }

	// Route fail: every answer is a backend's own 503.
	n := len(failAnswers)
	if n < 150 {
		t.Fatalf("only %d requests in %v; the load is too thin to test the budget", n, dur)
	}
	wrong := 0
	for _, f := range failAnswers {
		if f.err != nil || f.code != 503 || (f.body != "f1" && f.body != "f2") {
			if wrong++; wrong <= 3 {
				t.Errorf("route fail answered %d %q %v, want a backend's own 503 (f1 or f2), also when the retry was refused", f.code, truncate(f.body, 120), f.err)
			}
		}
	}
	r := retriesOf(t, p, "fail")
	hits := f1.Count() + f2.Count()
	t.Logf("route fail: %d requests, %v retries (budget %.0f), %d backend tries", n, r, budget(n), hits)
	if r > budget(n) {
		t.Errorf("sluice_retries_total{route=fail} = %v for %d requests in %vs, over the budget 20%% + 3/s (%.0f)", r, n, secs, budget(n))
	}
	if r < 0.15*float64(n) {
		t.Errorf("sluice_retries_total{route=fail} = %v for %d requests: retries are allowed while under 20%% of requests, want about %.0f", r, n, 0.2*float64(n))
	}
	if float64(hits) != float64(n)+r {
		t.Errorf("backends saw %d tries, want requests + retries = %d + %v", hits, n, r)
	}

	// Route connect: a refused connect with the budget spent has no
	// backend response to return.
	m := len(connectAnswers)
	exhausted := 0
	wrong = 0
	for _, f := range connectAnswers {
		switch {
		case f.err == nil && f.code == 200 && f.body == "ok":
		case f.err == nil && f.code == 503 && strings.Contains(f.body, `"retry_budget_exhausted"`):
			exhausted++
		default:
			if wrong++; wrong <= 3 {
				t.Errorf("route connect answered %d %q %v, want 200 ok or 503 retry_budget_exhausted", f.code, truncate(f.body, 120), f.err)
			}
		}
	}
	rc := retriesOf(t, p, "connect")
	t.Logf("route connect: %d requests, %v retries (budget %.0f), %d retry_budget_exhausted", m, rc, budget(m), exhausted)
	if rc > budget(m) {
		t.Errorf("sluice_retries_total{route=connect} = %v for %d requests, over the budget (%.0f)", rc, m, budget(m))
	}
	if exhausted == 0 {
		t.Errorf("no retry_budget_exhausted among %d requests of which about half met a refused connect and %v were retried", m, rc)
	}
	if float64(ok.Count()) != float64(m-exhausted) {
		t.Errorf("ok saw %d requests, want %d (every answered request)", ok.Count(), m-exhausted)
	}
	ss, _ := scrape(t, p)
	if v, _ := metricValue(ss, "sluice_errors_total", "route", "connect", "error", "retry_budget_exhausted"); int(v) != exhausted {
		t.Errorf("sluice_errors_total{route=connect,error=retry_budget_exhausted} = %v, want %d", v, exhausted)
	}

	// The access log agrees with the backends and the metric.
	lines := retryLog(t, logPath, n+m)
	perRoute := map[string]struct{ lines, extra, exhausted int }{}
	for _, l := range lines {
		route, _ := l["route"].(string)
		a, _ := l["attempts"].(float64)
		s := perRoute[route]
		s.lines++
		s.extra += int(a) - 1
		if l["error"] == "retry_budget_exhausted" {
			s.exhausted++
			if a != 1 || l["status"] != 503.0 {
				t.Errorf("retry_budget_exhausted logged with attempts %v status %v, want 1 and 503", l["attempts"], l["status"])
			}
		}
		perRoute[route] = s
	}
	if s := perRoute["fail"]; s.lines != n || float64(s.extra) != r {
		t.Errorf("access log route fail: %d lines with %d retries, want %d and %v", s.lines, s.extra, n, r)
	}
	if s := perRoute["connect"]; s.lines != m || float64(s.extra) != rc || s.exhausted != exhausted {
		t.Errorf("access log route connect: %d lines, %d retries, %d retry_budget_exhausted; want %d, %v, %d", s.lines, s.extra, s.exhausted, m, rc, exhausted)
	}
}

// TestRetryBudgetExhaustedConnect: with no budget at all (0 % and no floor),
// a refused connect gets 503 retry_budget_exhausted, and nothing is retried.
func TestRetryBudgetExhaustedConnect(t *testing.T) {
	t.Parallel()
	ok := newBackend(t, "ok", nil)
	p := start(t, fmt.Sprintf(`
retry:
  budget_percent: 0
  budget_min_per_second: 0
%s
routes:
  - name: api
    path_prefix: /api
    backends: [%s, %s]
`, noEjection, refusedURL(t), ok.URL))

	exhausted := 0
	for i := 0; i < 6; i++ {
		resp, body := get(t, p.URL("/api/x"))
		if resp.StatusCode == 200 && string(body) == "ok" {
			continue
		}
		exhausted++
		checkProxyError(t, resp, body, 503, "retry_budget_exhausted")
	}
	if exhausted == 0 || ok.Count() != 6-exhausted {
		t.Errorf("%d of 6 GETs got retry_budget_exhausted and ok saw %d; want about 3 and the rest", exhausted, ok.Count())
	}
	if r := retriesOf(t, p, "api"); r != 0 {
		t.Errorf("sluice_retries_total = %v with no budget, want 0", r)
	}
}
