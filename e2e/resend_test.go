package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// newHalfHeadPeer starts a backend that answers the first request of each
// connection with 200 "ok" and, on a reused connection, reads the request,
// sends the start of a response head and closes: the response began, so
// the proxy must not take the failure for the keep-alive race.
func newHalfHeadPeer(t testing.TB) *peer {
	return newPeer(t, func(c *peerConn) {
		for n := 0; ; n++ {
			req, err := c.readHead()
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			c.emit(peerEvent{Kind: "served", Method: req.Method, Path: req.URL.Path, Reused: n > 0})
			if n > 0 {
				c.write("HTTP/1.1 200 OK\r\nContent-")
				return
			}
			if c.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") != nil {
				return
			}
		}
	})
}

// newRaceCloserPeer starts a backend that answers the first request of a
// connection with 200 "ok" and closes a reused connection after reading
// its request, without answering: the keep-alive race as the proxy sees it.
// Each request read is a "served" event with its body as Path.
func newRaceCloserPeer(t testing.TB) *peer {
	return newPeer(t, func(c *peerConn) {
		for n := 0; ; n++ {
			req, err := c.readHead()
			if err != nil {
				return
			}
			body, _ := io.ReadAll(req.Body)
			c.emit(peerEvent{Kind: "served", Method: req.Method, Path: string(body), N: int64(len(body)), Reused: n > 0})
			if n > 0 {
				c.Conn.Close()
				return
			}
			if c.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") != nil {
				return
			}
		}
	})
}

// accessLines reads the JSON lines of an access log file, waiting until
// it holds at least n.
func accessLines(t testing.TB, path string, n int) []map[string]any {
	t.Helper()
	var lines []map[string]any
	eventually(t, 5*time.Second, func() bool {
		lines = lines[:0]
		f, err := os.Open(path)
		if err != nil {
			return false
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				lines = append(lines, m)
			}
		}
		return len(lines) >= n
	}, "the access log did not get %d lines", n)
	return lines
}

// TestPartialHeadPOSTReachesBackendOnce: a bodyless POST sent on a reused
// connection whose backend answers part of a head and closes is not sent
// again (with retry.attempts 1: no retry is allowed, and the response had
// begun), gets 502, and counts as a failure of that backend.
func TestPartialHeadPOSTReachesBackendOnce(t *testing.T) {
	t.Parallel()
	be := newHalfHeadPeer(t)
	logPath := filepath.Join(t.TempDir(), "access.log")
	p := start(t, fmt.Sprintf("access_log: %q\nretry:\n  attempts: 1\n%s", logPath,
		peerRoutes(peerRoute{name: "half", backends: []string{be.URL}})))
	c, _ := newClient(t)

	if code, body, err := kaSend(c, "GET", p.URL("/half/first"), ""); err != nil || code != 200 || body != "ok" {
		t.Fatalf("first request: %d %q %v, want 200 ok", code, body, err)
	}
	be.next(t, "served", 5*time.Second)

	req, _ := http.NewRequest("POST", p.URL("/half/post"), http.NoBody)
	req.ContentLength = 0
	req.Header.Set("Content-Length", "0")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 502 {
		t.Errorf("POST whose response head was cut: %d, want 502", resp.StatusCode)
	}
	if ev := be.next(t, "served", 5*time.Second); ev.Method != "POST" || !ev.Reused {
		t.Fatalf("the backend saw %+v, want the POST on the reused connection", ev)
	}
	if ev, ok := be.tryNext("served", 300*time.Millisecond); ok {
		t.Fatalf("the POST reached the backend a second time: %+v", ev)
	}
	if v := metricOrZero(t, p, "sluice_retries_total", "route", "half"); v != 0 {
		t.Errorf("sluice_retries_total = %v, want 0", v)
	}
	if v := metricOrZero(t, p, "sluice_upstream_requests_total", "route", "half", "backend", be.URL, "outcome", "reset"); v != 1 {
		t.Errorf("upstream reset outcomes of the backend = %v, want 1 (the cut counts against it)", v)
	}
	lines := accessLines(t, logPath, 2)
	if got := lines[1]["attempts"]; got != 1.0 {
		t.Errorf("access log attempts of the POST = %v, want 1", got)
	}
}

// TestPartialHeadGETIsARetry: an idempotent request whose response head
// was cut on a reused connection is not resent to that backend on a fresh
// connection (a response had begun), but it is retried, within attempts,
// on another backend, and that retry is counted like any other.
func TestPartialHeadGETIsARetry(t *testing.T) {
	t.Parallel()
	half := newHalfHeadPeer(t)
	good := newBackend(t, "good", nil)
	logPath := filepath.Join(t.TempDir(), "access.log")
	p := start(t, fmt.Sprintf("access_log: %q\nretry:\n  attempts: 2\n  backoff: 0s\n%s", logPath,
		peerRoutes(peerRoute{name: "mix", backends: []string{half.URL, good.URL}})))
	c, _ := newClient(t)

	// Round robin: the half-head peer, then the good one; then the
	// half-head peer again, on its pooled connection.
	for i, want := range []string{"ok", "good", "good"} {
		code, body, err := kaSend(c, "GET", p.URL(fmt.Sprintf("/mix/%d", i)), "")
		if err != nil || code != 200 || body != want {
			t.Fatalf("GET #%d: %d %q %v, want 200 %q", i, code, truncate(body, 100), err, want)
		}
	}
	half.next(t, "served", 5*time.Second)
	if ev := half.next(t, "served", 5*time.Second); !ev.Reused || ev.Path != "/mix/2" {
		t.Fatalf("the half-head peer saw %+v, want GET /mix/2 on its reused connection", ev)
	}
	if ev, ok := half.tryNext("served", 300*time.Millisecond); ok {
		t.Fatalf("the cut GET was sent to the same backend again: %+v", ev)
	}
	if v := metricOrZero(t, p, "sluice_retries_total", "route", "mix"); v != 1 {
		t.Errorf("sluice_retries_total = %v, want 1", v)
	}
	lines := accessLines(t, logPath, 3)
	if got := lines[2]["attempts"]; got != 2.0 {
		t.Errorf("access log attempts of the retried GET = %v, want 2", got)
	}
	if got := lines[2]["backend"]; got != good.URL {
		t.Errorf("access log backend of the retried GET = %v, want %s", got, good.URL)
	}
}

// TestKeepAliveResendIsCounted: the resend after the keep-alive race (a
// reused connection closed before any response byte) needs no retry
// attempt, but it is a retry for sluice_retries_total and the access log,
// and the failure counts against the backend.
func TestKeepAliveResendIsCounted(t *testing.T) {
	t.Parallel()
	closer := newRaceCloserPeer(t)
	logPath := filepath.Join(t.TempDir(), "access.log")
	p := start(t, fmt.Sprintf("access_log: %q\nretry:\n  attempts: 1\n%s", logPath,
		peerRoutes(peerRoute{name: "race", backends: []string{closer.URL}})))
	c, _ := newClient(t)
	for i := 0; i < 2; i++ {
		if code, body, err := kaSend(c, "GET", p.URL("/race/x"), ""); err != nil || code != 200 || body != "ok" {
			t.Fatalf("GET #%d: %d %q %v, want 200 ok", i, code, body, err)
		}
	}
	if v := metricOrZero(t, p, "sluice_retries_total", "route", "race"); v != 1 {
		t.Errorf("sluice_retries_total = %v, want 1 (the resend)", v)
	}
	if v := metricOrZero(t, p, "sluice_upstream_requests_total", "route", "race", "backend", closer.URL, "outcome", "reset"); v != 1 {
		t.Errorf("reset outcomes = %v, want 1", v)
	}
	lines := accessLines(t, logPath, 2)
	if got := lines[1]["attempts"]; got != 2.0 {
		t.Errorf("access log attempts of the resent GET = %v, want 2", got)
	}
	if got := lines[1]["status"]; got != 200.0 {
		t.Errorf("access log status of the resent GET = %v, want 200", got)
	}
}

// TestEjectionEndingDuringRetriesGetsItsTrial: backend A fails a request
// and is ejected for a short time; that request is retried on backend B,
// which takes longer than the ejection and fails too. The retry decision
// made after A's ejection ended must not take A's half-open trial (A was
// already tried): later requests must be able to send A its trial, and a
// good one brings it back.
func TestEjectionEndingDuringRetriesGetsItsTrial(t *testing.T) {
	t.Parallel()
	var aCalls, bCalls counter
	a := newBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if aCalls.add() == 1 {
			w.WriteHeader(502)
			return
		}
		io.WriteString(w, "a")
	})
	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		if bCalls.add() == 1 {
			time.Sleep(400 * time.Millisecond) // the behaviour under test: outlasts A's ejection
			w.WriteHeader(502)
			return
		}
		io.WriteString(w, "b")
	})
	p := start(t, `
retry:
  attempts: 3
  backoff: 0s
  on_status: [502]
health:
  active:
    path: ""
  passive:
    consecutive_failures: 1
    ejection_time: 100ms
    max_ejection_time: 100ms
    max_ejected_percent: 100
`+peerRoutes(peerRoute{name: "trial", backends: []string{a.URL, b.URL}}))

	resp, _ := get(t, p.URL("/trial/first"))
	if resp.StatusCode != 502 {
		t.Fatalf("first request: %d, want 502 (A and B both failed)", resp.StatusCode)
	}
	// A's ejection has ended: a request reaches it as its trial, and it
	// is healthy again; requests are answered by both backends after.
	seen := map[string]bool{}
	eventually(t, 5*time.Second, func() bool {
		resp, body := get(t, p.URL("/trial/x"))
		if resp.StatusCode == 200 {
			seen[string(body)] = true
		}
		return seen["a"] && seen["b"]
	}, "backend A never got its trial back after its ejection ended during another request's retries (seen %v)", seen)
	for _, st := range routeBackends(t, p, "trial") {
		if st.State != "healthy" {
			t.Errorf("backend %s is %s after its successful trial, want healthy", st.URL, st.State)
		}
	}
}

// counter counts calls across a backend's handler goroutines.
type counter struct{ n atomic.Int64 }

func (c *counter) add() int64 { return c.n.Add(1) }
