package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// accessLogKeys are the keys of every access log line (docs/configuration.md, Access log).
var accessLogKeys = []string{"time", "request_id", "client", "method", "path", "route", "backend", "status",
	"bytes_in", "bytes_out", "duration_ms", "attempts", "error"}

// numericLogKeys are the access log keys that hold numbers.
var numericLogKeys = map[string]bool{"status": true, "bytes_in": true, "bytes_out": true, "duration_ms": true, "attempts": true}

// readAccessLog parses every line of the access log file at path; a line
// that is not a JSON object fails the test.
func readAccessLog(t testing.TB, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var lines []map[string]any
	for _, l := range strings.SplitAfter(string(data), "\n") {
		if l == "" {
			continue
		}
		if !strings.HasSuffix(l, "\n") {
			// A line being written: not complete yet.
			break
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("access log line is not a JSON object: %v: %q", err, l)
		}
		lines = append(lines, m)
	}
	return lines
}

// checkLogLineShape asserts that line has every key with the right JSON
// type, an RFC 3339 time within [from, to], and a loopback client.
func checkLogLineShape(t testing.TB, line map[string]any, from, to time.Time) {
	t.Helper()
	for _, k := range accessLogKeys {
		v, ok := line[k]
		if !ok {
			t.Errorf("line %v lacks key %q", line, k)
			continue
		}
		if numericLogKeys[k] {
			if n, ok := v.(float64); !ok || n < 0 {
				t.Errorf("line %v: %s = %#v, want a non-negative number", line["request_id"], k, v)
			}
		} else if _, ok := v.(string); !ok {
			t.Errorf("line %v: %s = %#v, want a string", line["request_id"], k, v)
		}
	}
	ts, _ := line["time"].(string)
	tm, err := time.Parse(time.RFC3339, ts)
	if err != nil {
		t.Errorf("line %v: time %q is not RFC 3339: %v", line["request_id"], ts, err)
	} else if tm.Before(from.Add(-time.Second)) || tm.After(to.Add(time.Second)) {
		t.Errorf("line %v: time %s is outside the test's run [%s, %s]", line["request_id"], ts, from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano))
	}
	if c, _ := line["client"].(string); c != "127.0.0.1" && !strings.HasPrefix(c, "127.0.0.1:") {
		t.Errorf("line %v: client = %q, want 127.0.0.1 (the peer address)", line["request_id"], c)
	}
}

// TestAccessLogEveryField sends one request of each kind (success with a
// query, a client request ID, an uncleaned path, no route, too large, a
// refused backend, a retried request) and checks the file has exactly one
// complete line for each, matched by X-Request-Id.
func TestAccessLogEveryField(t *testing.T) {
	t.Parallel()
	good := newBackend(t, "good", nil) // answers "good"
	// The retry route's first request, whichever backend gets it, answers
	// 503 and is retried on the other; which one answered 200 is recorded.
	var mu sync.Mutex
	first := true
	var retryOK string
	flaky := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			if first {
				first = false
				w.WriteHeader(503)
				io.WriteString(w, "unavailable")
				return
			}
			retryOK = name
			io.WriteString(w, "flaky-"+name)
		}
	}
	r1, r2 := newBackend(t, "r1", flaky("r1")), newBackend(t, "r2", flaky("r2"))
	refused := refusedURL(t)
	logPath := filepath.Join(t.TempDir(), "access.log")
	from := time.Now()
	p := start(t, fmt.Sprintf(`
access_log: %q
retry:
  budget_percent: 100
  backoff: 1ms
routes:
  - name: api
    path_prefix: /api
    backends: [%s]
  - name: small
    path_prefix: /small
    limits:
      max_request_body: 10
    backends: [%s]
  - name: down
    path_prefix: /down
    retry:
      attempts: 1
    backends: [%s]
  - name: retry
    path_prefix: /retry
    health:
      passive:
        consecutive_failures: 1000
    backends: [%s, %s]
`, logPath, good.URL, good.URL, refused, r1.URL, r2.URL))

	type sent struct {
		name string
		id   string         // X-Request-Id of the response
		want map[string]any // expected values of some keys
	}
	var reqs []sent
	send := func(name, method, path, body string, wantStatus int, want map[string]any, hdr ...string) {
		t.Helper()
		resp, got := do(t, method, p.URL(path), body, hdr...)
		if resp.StatusCode != wantStatus {
			t.Fatalf("%s: %s %s = %d %q, want %d", name, method, path, resp.StatusCode, got, wantStatus)
		}
		id := resp.Header.Get("X-Request-Id")
		if id == "" {
			t.Fatalf("%s: response has no X-Request-Id", name)
		}
		want["method"] = method
		want["status"] = float64(wantStatus)
		want["bytes_out"] = float64(len(got))
		want["request_id"] = id
		reqs = append(reqs, sent{name, id, want})
	}

	send("success with query", "POST", "/api/x?q=1&r=%41", "hello", 200, map[string]any{
		"path": "/api/x?q=1&r=%41", "route": "api", "backend": good.URL,
		"bytes_in": 5.0, "attempts": 1.0, "error": "",
	})
	send("client request id", "GET", "/api/id", "", 200, map[string]any{
		"path": "/api/id", "route": "api", "backend": good.URL,
		"bytes_in": 0.0, "attempts": 1.0, "error": "",
	}, "X-Request-Id", "client-chosen-id-42")
	if reqs[len(reqs)-1].id != "client-chosen-id-42" {
		t.Errorf("a valid client X-Request-Id was not kept: got %q", reqs[len(reqs)-1].id)
	}
	send("no route", "GET", "/nowhere?x=1", "", 404, map[string]any{
		"path": "/nowhere?x=1", "route": "", "backend": "", "error": "no_route",
	})
	send("too large", "POST", "/small/x", strings.Repeat("z", 100), 413, map[string]any{
		"path": "/small/x", "route": "small", "backend": "", "error": "request_too_large",
	})
	send("refused backend", "GET", "/down/x", "", 502, map[string]any{
		"path": "/down/x", "route": "down", "backend": refused, "attempts": 1.0,
		"bytes_in": 0.0, "error": "upstream_error",
	})
	send("retried", "GET", "/retry/x", "", 200, map[string]any{
		"path": "/retry/x", "route": "retry", "attempts": 2.0, "bytes_in": 0.0, "error": "",
	})
	mu.Lock()
	reqs[len(reqs)-1].want["backend"] = map[string]string{"r1": r1.URL, "r2": r2.URL}[retryOK]
	mu.Unlock()

	// The path exactly as received: not cleaned, not re-encoded.
	raw := rawDo(t, p.Addr, rawReq("GET /api/./a%20b//c?x=%41&y HTTP/1.1", "Host: test.example"))
	if raw.Resp == nil || raw.Resp.StatusCode != 200 {
		t.Fatalf("raw request: %v", raw)
	}
	rawID := raw.Resp.Header.Get("X-Request-Id")
	reqs = append(reqs, sent{"raw target", rawID, map[string]any{
		"request_id": rawID, "method": "GET", "path": "/api/./a%20b//c?x=%41&y", "route": "api",
		"backend": good.URL, "status": 200.0, "bytes_in": 0.0, "bytes_out": float64(len(raw.Body)),
		"attempts": 1.0, "error": "",
	}})

	// A streamed body cut at the limit: bytes_in counts what did arrive
	// (8, then 8 more, over the 10 allowed).
	big := rawDo(t, p.Addr, rawReq("POST /small/chunked HTTP/1.1", "Host: test.example", "Transfer-Encoding: chunked")+
		"8\r\nzzzzzzzz\r\n8\r\nzzzzzzzz\r\n0\r\n\r\n")
	if big.Resp == nil || big.Resp.StatusCode != 413 {
		t.Fatalf("chunked body over the limit: %v", big)
	}
	bigID := big.Resp.Header.Get("X-Request-Id")
	reqs = append(reqs, sent{"streamed too large", bigID, map[string]any{
		"request_id": bigID, "method": "POST", "path": "/small/chunked", "route": "small",
		"status": 413.0, "bytes_in": 16.0, "error": "request_too_large",
	}})

	var lines []map[string]any
	eventually(t, 5*time.Second, func() bool {
		lines = readAccessLog(t, logPath)
		return len(lines) >= len(reqs)
	}, "%d access log lines in %s", len(reqs))
	to := time.Now()
	if len(lines) != len(reqs) {
		t.Errorf("access log has %d lines for %d requests", len(lines), len(reqs))
	}
	byID := map[string][]map[string]any{}
	for _, l := range lines {
		id, _ := l["request_id"].(string)
		byID[id] = append(byID[id], l)
		checkLogLineShape(t, l, from, to)
	}
	for _, r := range reqs {
		ls := byID[r.id]
		if len(ls) != 1 {
			t.Errorf("%s: %d access log lines with request_id %q, want 1", r.name, len(ls), r.id)
			continue
		}
		for k, v := range r.want {
			if ls[0][k] != v {
				t.Errorf("%s: %s = %#v, want %#v\n  line: %v", r.name, k, ls[0][k], v, ls[0])
			}
		}
	}
}

// TestAccessLogNoLossOnShutdown: every request answered before SIGTERM has
// its line in the file once the process has exited.
func TestAccessLogNoLossOnShutdown(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	logPath := filepath.Join(t.TempDir(), "access.log")
	p := start(t, fmt.Sprintf("access_log: %q\n", logPath)+simpleRoute(b.URL))

	const workers, perWorker = 8, 60
	var mu sync.Mutex
	ids := map[string]bool{}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, tr := newClient(t)
			defer tr.CloseIdleConnections()
			for i := 0; i < perWorker; i++ {
				resp, err := c.Get(p.URL(fmt.Sprintf("/api/w%d/%d", w, i)))
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("status %d", resp.StatusCode)
					return
				}
				mu.Lock()
				ids[resp.Header.Get("X-Request-Id")] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("request failed: %v", err)
	}
	// SIGTERM right after the last response: lines still buffered must be
	// written before the process exits.
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(15 * time.Second); code != 0 {
		t.Errorf("exit code = %d, want 0", code)
	}
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Errorf("the access log ends with a partial line: %q", truncate(string(data[max(0, len(data)-200):]), 200))
	}
	lines := readAccessLog(t, logPath)
	if len(lines) != workers*perWorker {
		t.Errorf("access log has %d lines after shutdown, want %d (one per request)", len(lines), workers*perWorker)
	}
	seenIDs := map[string]int{}
	for _, l := range lines {
		id, _ := l["request_id"].(string)
		seenIDs[id]++
	}
	missing := 0
	for id := range ids {
		if seenIDs[id] != 1 {
			missing++
		}
	}
	if missing > 0 || len(ids) != workers*perWorker {
		t.Errorf("%d of %d request IDs do not appear exactly once in the access log (%d distinct IDs returned)", missing, len(ids), len(ids))
	}
}
