package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// cutGet GETs url with a keep-alive-less client and reads the whole body,
// returning the response (nil when none came), what arrived of the body, the
// time taken and the error that ended the read (nil: the body ended cleanly).
func cutGet(t testing.TB, url string) (*http.Response, []byte, time.Duration, error) {
	t.Helper()
	c, tr := newClient(t)
	tr.DisableKeepAlives = true
	t0 := time.Now()
	resp, err := c.Get(url)
	if err != nil {
		return nil, nil, time.Since(t0), err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, time.Since(t0), err
}

// checkCut asserts that a response whose backend failed after sending its
// 200 head and the start of its body, sent, was cut: the client got either no
// response at all (the proxy had not flushed the head yet) or that 200 and a
// prefix of sent, and never a cleanly ended body or a proxy error instead.
func checkCut(t testing.TB, resp *http.Response, body []byte, err error, sent string) {
	t.Helper()
	if resp == nil {
		if err == nil {
			t.Errorf("no response and no error")
		}
		return
	}
	if resp.StatusCode != 200 {
		t.Errorf("status = %d %q, want the backend's 200 and a cut body (the backend had sent its status; a cut, not a proxy error)", resp.StatusCode, body)
	}
	if err == nil {
		t.Errorf("the body ended cleanly with %q; want the connection cut (a truncated body must not look complete)", truncate(string(body), 100))
	}
	if !strings.HasPrefix(sent, string(body)) {
		t.Errorf("body = %q, want a prefix of what the backend sent", truncate(string(body), 100))
	}
}

// checkPeerLetGo waits for peer's "closed" event and asserts it came within
// a second of since: the proxy gave the upstream connection up at once.
func checkPeerLetGo(t testing.TB, pr *peer, since time.Time, what string) {
	t.Helper()
	ev, ok := pr.tryNext("closed", 5*time.Second)
	if !ok {
		t.Errorf("%s: the backend's connection was not closed within 5s (the upstream request leaks or was pooled half-read)", what)
		return
	}
	if lag := ev.At.Sub(since); lag > time.Second {
		t.Errorf("%s: the backend saw its connection closed %v later, want within 1s", what, lag.Round(time.Millisecond))
	}
}

// TestMisbehavingBackends runs requests against backends that hang, stall,
// trickle, reset, answer too much, or lose their client, each next to a steady
// stream of good requests to a healthy route that must not notice, and then
// checks that the proxy's goroutines come back to their baseline.
func TestMisbehavingBackends(t *testing.T) {
	t.Parallel()
	const timeout = time.Second // upstream_connect, upstream_header, upstream_body
	ok := newBackend(t, "ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	silent := newSilentPeer(t)
	slowHead := newTricklePeer(t, "", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: "+strings.Repeat("p", 40)+"\r\n\r\nok", 100*time.Millisecond)
	stall := newStallPeer(t, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", "0123456789")
	stallChunked := newStallPeer(t, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "a\r\n0123456789\r\n")
	trickle := newTricklePeer(t, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "0123456789", 250*time.Millisecond)
	resetMid := newResetPeer(t, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", strings.Repeat("r", 100))
	resetEarly := newResetPeer(t, "", "")
	blackhole := blackholeURL(t)
	bigDeclared := newStallPeer(t, "HTTP/1.1 200 OK\r\nContent-Length: 17000000000\r\n\r\n", strings.Repeat("b", 1000))
	bigStream := newEndlessPeer(t, 0)
	gone := newEndlessPeer(t, 50*time.Millisecond)
	goneWait := newSilentPeer(t)
	idleCloser := newKeepAlivePeer(t, 200*time.Millisecond, "")

	p := start(t, fmt.Sprintf(`
timeouts:
  upstream_connect: 1s
  upstream_header: 1s
  upstream_body: 1s
retry:
  attempts: 1
health:
  active:
    path: ""
  passive:
    consecutive_failures: 1000
%s`, peerRoutes(
		peerRoute{name: "ok", backends: []string{ok.URL}},
		peerRoute{name: "silent", backends: []string{silent.URL}},
		peerRoute{name: "slowhead", backends: []string{slowHead.URL}},
		peerRoute{name: "stall", backends: []string{stall.URL}},
		peerRoute{name: "stallchunked", backends: []string{stallChunked.URL}},
		peerRoute{name: "trickle", backends: []string{trickle.URL}},
		peerRoute{name: "resetmid", backends: []string{resetMid.URL}},
		peerRoute{name: "resetearly", backends: []string{resetEarly.URL}},
		peerRoute{name: "blackhole", backends: []string{blackhole}},
		peerRoute{name: "bigdeclared", backends: []string{bigDeclared.URL}, extra: "    limits:\n      max_response_body: 1MiB"},
		peerRoute{name: "bigstream", backends: []string{bigStream.URL}, extra: "    limits:\n      max_response_body: 64KiB"},
		peerRoute{name: "gone", backends: []string{gone.URL}},
		peerRoute{name: "gonewait", backends: []string{goneWait.URL}, extra: "    timeouts:\n      upstream_header: 10s"},
		peerRoute{name: "idleclose", backends: []string{idleCloser.URL}},
	)))

	for i := 0; i < 5; i++ {
		if resp, body := get(t, p.URL("/ok/warm")); resp.StatusCode != 200 {
			t.Fatalf("warm-up GET = %d %q", resp.StatusCode, body)
		}
	}
	base := goroutines(t, p)
	steady := startSteady(t, p.URL("/ok/steady"), "ok", 2)

	t.Run("cases", func(t *testing.T) {
		t.Run("upstream_header: silent backend gets 504", func(t *testing.T) {
			t.Parallel()
			resp, body, d, err := cutGet(t, p.URL("/silent/x"))
			if resp == nil {
				t.Fatalf("no response: %v", err)
			}
			done := time.Now()
			checkProxyError(t, resp, body, 504, "upstream_timeout")
			checkCutTime(t, "504", d, timeout)
			checkPeerLetGo(t, silent, done, "after the 504")
		})
		t.Run("upstream_header: headers trickled past it get 504", func(t *testing.T) {
			t.Parallel()
			resp, body, d, err := cutGet(t, p.URL("/slowhead/x"))
			if resp == nil {
				t.Fatalf("no response: %v", err)
			}
			done := time.Now()
			checkProxyError(t, resp, body, 504, "upstream_timeout")
			checkCutTime(t, "504", d, timeout)
			checkPeerLetGo(t, slowHead, done, "after the 504")
		})
		for _, tc := range []struct {
			name string
			path string
			pr   *peer
		}{
			{"upstream_body: stall after part of a sized body cuts the client", "/stall/x", stall},
			{"upstream_body: stall after a chunk cuts the client", "/stallchunked/x", stallChunked},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				resp, body, d, err := cutGet(t, p.URL(tc.path))
				done := time.Now()
				checkCut(t, resp, body, err, "0123456789")
				checkCutTime(t, "cut", d, timeout)
				checkPeerLetGo(t, tc.pr, done, "after the cut")
			})
		}
		t.Run("upstream_body: a byte every 250ms is not a stall", func(t *testing.T) {
			t.Parallel()
			resp, body, d, err := cutGet(t, p.URL("/trickle/x"))
			if resp == nil || err != nil {
				t.Fatalf("response %v, error %v; want 200 and the whole body", resp, err)
			}
			if resp.StatusCode != 200 || string(body) != "0123456789" {
				t.Errorf("got %d %q, want 200 %q (each pause is under upstream_body, though the total is over it)", resp.StatusCode, body, "0123456789")
			}
			if d < 2*time.Second {
				t.Errorf("took %v; the backend needs 2.25s, so the test did not trickle", d)
			}
		})
		t.Run("reset mid-body cuts the client", func(t *testing.T) {
			t.Parallel()
			resp, body, d, err := cutGet(t, p.URL("/resetmid/x"))
			checkCut(t, resp, body, err, strings.Repeat("r", 100))
			if d > timeoutSlack {
				t.Errorf("cut after %v, want at once (under %v)", d, timeoutSlack)
			}
		})
		t.Run("reset before the response gets 502", func(t *testing.T) {
			t.Parallel()
			resp, body, d, err := cutGet(t, p.URL("/resetearly/x"))
			if resp == nil {
				t.Fatalf("no response: %v", err)
			}
			checkProxyError(t, resp, body, 502, "upstream_error")
			if d > timeoutSlack {
				t.Errorf("502 after %v, want at once (under %v)", d, timeoutSlack)
			}
		})
		t.Run("upstream_connect: hanging connect gets 502", func(t *testing.T) {
			t.Parallel()
			resp, body, d, err := cutGet(t, p.URL("/blackhole/x"))
			if resp == nil {
				t.Fatalf("no response: %v", err)
			}
			checkProxyError(t, resp, body, 502, "upstream_error")
			checkCutTime(t, "502", d, timeout)
		})
		t.Run("max_response_body: declared length over it gets 502", func(t *testing.T) {
			t.Parallel()
			resp, body, d, err := cutGet(t, p.URL("/bigdeclared/x"))
			if resp == nil {
				t.Fatalf("no response: %v", err)
			}
			done := time.Now()
			checkProxyError(t, resp, body, 502, "response_too_large")
			if d > timeoutSlack {
				t.Errorf("502 after %v, want at once (under %v)", d, timeoutSlack)
			}
			checkPeerLetGo(t, bigDeclared, done, "after the 502")
		})
		t.Run("max_response_body: streamed body over it cuts the client", func(t *testing.T) {
			t.Parallel()
			resp, body, d, err := cutGet(t, p.URL("/bigstream/stream"))
			done := time.Now()
			switch {
			case resp == nil: // cut before the headers went out
			case resp.StatusCode == 502 && err == nil:
				// Nothing had gone out when the limit was crossed.
				checkProxyError(t, resp, body, 502, "response_too_large")
			case resp.StatusCode != 200:
				t.Errorf("status = %d %q, want 200 and a cut body (or 502 response_too_large before the response starts)", resp.StatusCode, truncate(string(body), 100))
			case err == nil:
				t.Errorf("the body ended cleanly with %d bytes; want the connection cut", len(body))
			}
			if len(body) > 64<<10 && resp != nil && resp.StatusCode == 200 {
				t.Errorf("client received %d body bytes, over max_response_body (64 KiB)", len(body))
			}
			if d > timeoutSlack {
				t.Errorf("cut after %v, want as soon as the body passed the limit", d)
			}
			checkPeerLetGo(t, bigStream, done, "after the cut")
		})
		t.Run("client gone mid-response cancels the upstream request", func(t *testing.T) {
			t.Parallel()
			c, br := dialProxy(t, p)
			io.WriteString(c, "GET /gone/stream HTTP/1.1\r\nHost: test.example\r\n\r\n")
			resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
			if err != nil {
				t.Fatalf("reading the streamed response: %v", err)
			}
			if resp.StatusCode != 200 {
				t.Fatalf("status = %d, want 200", resp.StatusCode)
			}
			if _, err := io.ReadFull(resp.Body, make([]byte, 2048)); err != nil {
				t.Fatalf("reading the first 2 KiB of the stream: %v", err)
			}
			c.Close()
			closed := time.Now()
			checkPeerLetGo(t, gone, closed, "after the client disconnected")
			// The half-read connection must not have gone back to the
			// pool: the next request gets a clean answer.
			for i := 0; i < 3; i++ {
				resp, body := get(t, p.URL("/gone/after"))
				if resp.StatusCode != 200 || string(body) != "fine" {
					t.Errorf("GET after the disconnect #%d = %d %q, want 200 fine", i, resp.StatusCode, truncate(string(body), 100))
				}
			}
		})
		t.Run("backend closing idle connections after 200ms", func(t *testing.T) {
			t.Parallel()
			c, _ := newClient(t)
			// GETs straddle the instant; POSTs keep clear of it (50 ms
			// before: the connection is open; 50 ms after: the backend
			// has closed it while idle), since a POST sent on a
			// connection at the very moment it closes may not be replayed.
			steps := []struct {
				method string
				pause  time.Duration
			}{
				{"GET", 150}, {"GET", 190}, {"GET", 200}, {"GET", 210}, {"GET", 250},
				{"POST", 150}, {"POST", 250}, {"GET", 200}, {"POST", 150}, {"POST", 250},
			}
			for i, st := range steps {
				time.Sleep(st.pause * time.Millisecond) // the behaviour under test: the pause
				code, body, err := kaSend(c, st.method, p.URL("/idleclose/x"), "small body")
				if err != nil || code != 200 || body != "ok" {
					t.Errorf("#%d %s after %v idle: %d %q %v, want 200 ok", i, st.method, st.pause*time.Millisecond, code, truncate(body, 100), err)
				}
			}
		})
		t.Run("client gone while waiting for headers cancels the upstream request", func(t *testing.T) {
			t.Parallel()
			c, _ := dialProxy(t, p)
			io.WriteString(c, "GET /gonewait/x HTTP/1.1\r\nHost: test.example\r\n\r\n")
			goneWait.next(t, "request", 5*time.Second)
			c.Close()
			checkPeerLetGo(t, goneWait, time.Now(), "after the client disconnected")
		})
	})

	steady.finish(t, time.Second)
	waitIdle(t, p)
	checkGoroutinesBack(t, p, base, 8, 30*time.Second)
}
