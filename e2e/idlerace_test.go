package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// kaSend sends method url with body on c and returns the status and body, or
// an error.
func kaSend(c *http.Client, method, url, body string) (int, string, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestUpstreamIdleCloseRaceGET: 500 sequential GETs through one keep-alive
// client to a backend that closes every connection idle for 50 ms, with pauses
// straddling that instant. A pooled connection the backend closed while idle
// must never turn into a 502.
func TestUpstreamIdleCloseRaceGET(t *testing.T) {
	t.Parallel()
	be := newKeepAlivePeer(t, 50*time.Millisecond, "")
	p := start(t, simpleRoute(be.URL))
	c, _ := newClient(t)
	pauses := []time.Duration{0, 30, 45, 50, 55, 70}
	var fails []string
	for i := 0; i < 500; i++ {
		time.Sleep(pauses[i%len(pauses)] * time.Millisecond) // the behaviour under test: the pause
		code, body, err := kaSend(c, "GET", p.URL(fmt.Sprintf("/api/get-%d", i)), "")
		if err != nil || code != 200 || body != "ok" {
			fails = append(fails, fmt.Sprintf("#%d after %v: %d %q %v", i, pauses[i%len(pauses)]*time.Millisecond, code, truncate(body, 100), err))
		}
	}
	if len(fails) > 0 {
		t.Errorf("%d of 500 GETs failed, want none, e.g. %q", len(fails), fails[:min(5, len(fails))])
	}
	t.Logf("backend: %d connections, %d closed idle, %d requests served", be.Accepts(), be.count("idle-close"), be.count("served"))
}

// TestUpstreamIdleCloseRacePOST: POSTs with small bodies through one
// keep-alive client, some sent on a pooled connection still open, and some
// only once the backend has been seen closing that pooled connection while
// idle. A POST is not retried once sent, but a pooled connection the backend
// had already closed has taken no byte of the request: the proxy must use a
// fresh connection, not answer 502, and the backend must see each POST once.
func TestUpstreamIdleCloseRacePOST(t *testing.T) {
	t.Parallel()
	const n = 150
	// The backend's idle limit leaves the "10ms later" step a wide margin
	// on a loaded machine (the race detector, tests in parallel): a pause
	// that stretched past the limit would make that step the race it is
	// not meant to be.
	be := newKeepAlivePeer(t, 150*time.Millisecond, "")
	p := start(t, simpleRoute(be.URL))
	c, _ := newClient(t)
	var fails []string
	for i := 0; i < n; i++ {
		step := "at once"
		switch i % 3 {
		case 1:
			step = "10ms later"
			time.Sleep(10 * time.Millisecond) // the behaviour under test: a pause under the backend's idle limit
		case 2:
			step = "after the backend closed the idle connection"
			conn := be.lastServedConn()
			if _, ok := be.waitFor(2*time.Second, func(ev peerEvent) bool {
				return ev.Kind == "idle-close" && ev.Conn == conn
			}); !ok {
				t.Fatalf("#%d: the backend did not close its idle connection %d", i, conn)
			}
		}
		body := fmt.Sprintf("payload-%d", i)
		code, got, err := kaSend(c, "POST", p.URL(fmt.Sprintf("/api/post-%d", i)), body)
		if err != nil || code != 200 || got != "ok" {
			fails = append(fails, fmt.Sprintf("#%d %s: %d %q %v", i, step, code, truncate(got, 100), err))
		}
	}
	if len(fails) > 0 {
		t.Errorf("%d of %d POSTs failed, want none, e.g. %q", len(fails), n, fails[:min(5, len(fails))])
	}
	if got := be.count("served"); got != n {
		t.Errorf("the backend served %d POSTs, want %d (each exactly once)", got, n)
	}
	t.Logf("backend: %d connections, %d closed idle, %d requests served", be.Accepts(), be.count("idle-close"), be.count("served"))
}

// TestUpstreamKeepAliveTimeoutHint: a backend that answers with
// "Keep-Alive: timeout=1" may close a connection idle for a second or more,
// so the proxy must not send a request on one: POSTs after pauses of 1.1 s
// and 1.2 s must go out on fresh connections. (The backend really closes
// after 1.5 s, so reuse shows instead of failing by chance.)
func TestUpstreamKeepAliveTimeoutHint(t *testing.T) {
	t.Parallel()
	be := newKeepAlivePeer(t, 1500*time.Millisecond, "Keep-Alive: timeout=1\r\nConnection: keep-alive\r\n")
	p := start(t, simpleRoute(be.URL))
	c, _ := newClient(t)
	pauses := []time.Duration{0, 300, 900, 1100, 1200}
	var sent int
	for round := 0; round < 2; round++ {
		for _, pause := range pauses {
			time.Sleep(pause * time.Millisecond) // the behaviour under test: the pause
			code, got, err := kaSend(c, "POST", p.URL("/api/hint"), "payload")
			sent++
			if err != nil || code != 200 || got != "ok" {
				t.Errorf("POST after %v idle: %d %q %v, want 200 ok", pause*time.Millisecond, code, truncate(got, 100), err)
			}
		}
	}
	served, reused := 0, 0
	var longest time.Duration
	for _, ev := range be.drain() {
		if ev.Kind != "served" {
			continue
		}
		served++
		if ev.Reused {
			reused++
			longest = max(longest, ev.Idle)
		}
		if ev.Reused && ev.Idle > 1050*time.Millisecond {
			t.Errorf("the proxy sent a request on a connection idle for %v, past the backend's Keep-Alive: timeout=1", ev.Idle.Round(time.Millisecond))
		}
	}
	if served != sent {
		t.Errorf("the backend served %d requests, want %d", served, sent)
	}
	t.Logf("%d requests on %d connections; %d on a reused connection, the longest idle %v", served, be.Accepts(), reused, longest.Round(time.Millisecond))
}

// TestKeepAliveRaceReplaysWholeRequest: a backend that closes a reused
// connection after reading a request, without answering (what the
// keep-alive race looks like from the proxy), gets an idempotent request
// whose body was streamed, not buffered (retry.attempts 1), sent again on a
// fresh connection, body and all; a POST is not sent twice.
func TestKeepAliveRaceReplaysWholeRequest(t *testing.T) {
	t.Parallel()
	closer := newRaceCloserPeer(t)
	p := start(t, fmt.Sprintf(`
retry:
  attempts: 1
health:
  active:
    path: ""
%s`, peerRoutes(peerRoute{name: "race", backends: []string{closer.URL}})))
	c, _ := newClient(t)

	if code, body, err := kaSend(c, "PUT", p.URL("/race/x"), "first"); err != nil || code != 200 || body != "ok" {
		t.Fatalf("first request: %d %q %v, want 200 ok", code, body, err)
	}
	if ev := closer.next(t, "served", 5*time.Second); ev.Reused || ev.Path != "first" {
		t.Fatalf("first request reached the backend as %+v, want on a new connection with its body", ev)
	}

	// Reuses the connection, which the backend then closes: sent again.
	code, body, err := kaSend(c, "PUT", p.URL("/race/x"), "second body")
	if err != nil || code != 200 || body != "ok" {
		t.Fatalf("request on the connection the backend closed: %d %q %v, want 200 ok (sent again on a fresh connection)", code, truncate(body, 200), err)
	}
	first := closer.next(t, "served", 5*time.Second)
	again := closer.next(t, "served", 5*time.Second)
	if !first.Reused || again.Reused || first.Path != "second body" || again.Path != "second body" || again.Method != "PUT" {
		t.Errorf("the backend saw %+v then %+v, want the PUT with its whole body on the reused connection, then again on a new one", first, again)
	}

	// A POST is not sent twice: the backend may have acted on it.
	code, body, err = kaSend(c, "POST", p.URL("/race/x"), "post body")
	if err != nil || code != 502 {
		t.Errorf("POST on the connection the backend closed: %d %q %v, want 502", code, truncate(body, 200), err)
	}
	closer.next(t, "served", 5*time.Second)
	if ev, ok := closer.tryNext("served", 300*time.Millisecond); ok {
		t.Errorf("the POST reached the backend a second time: %+v", ev)
	}
}
