package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// bodyPair is two body peers (see newBodyPeer) sharing one event channel,
// for a route where one backend of two can always be ejected, so that a
// failure miscounted against a backend shows.
type bodyPair struct {
	a, b *peer
}

func newBodyPair(t testing.TB) bodyPair {
	ev := make(chan peerEvent, 4096)
	return bodyPair{newBodyPeer(t, ev), newBodyPeer(t, ev)}
}

func (bp bodyPair) urls() []string { return []string{bp.a.URL, bp.b.URL} }

// next waits for the next event of kind from either peer.
func (bp bodyPair) next(t testing.TB, kind string, timeout time.Duration) peerEvent {
	t.Helper()
	return bp.a.next(t, kind, timeout)
}

// checkNoBody asserts that no request body reached either peer complete:
// whatever the proxy sent upstream was abandoned.
func (bp bodyPair) checkNoBody(t testing.TB) {
	t.Helper()
	if n := bp.a.count("body") + bp.b.count("body"); n > 0 {
		t.Errorf("the backend received %d complete request bodies, want none (the request must not reach it whole)", n)
	}
}

// checkAbandonedIfSent asserts that when the backend saw the request at all,
// it saw the request abandoned mid-body within a second of since.
func (bp bodyPair) checkAbandonedIfSent(t testing.TB, since time.Time) {
	t.Helper()
	if bp.a.count("request")+bp.b.count("request") == 0 {
		return
	}
	ev, ok := bp.a.tryNext("abandoned", 5*time.Second)
	if !ok {
		t.Errorf("the backend received the request head but the upstream request was not abandoned within 5s")
		return
	}
	if lag := ev.At.Sub(since); lag > time.Second {
		t.Errorf("the upstream request was abandoned %v after the client's request ended, want within 1s", lag.Round(time.Millisecond))
	}
}

// TestClientFaultsNotCountedAgainstBackend sends the faults of misbehaving
// clients (a disconnect mid-upload, a stalled upload, malformed chunked
// bodies, bodies over the limit, headers over the limit) next to steady good
// traffic, with consecutive_failures: 1 so that a single miscount would eject
// a backend; afterwards every backend must be healthy with no failure counted
// and the goroutines back to their baseline.
func TestClientFaultsNotCountedAgainstBackend(t *testing.T) {
	t.Parallel()
	const clientBody = time.Second
	ok := newBackend(t, "ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	ctlOK := newBackend(t, "ctl", nil)
	refused := boundRefusedURL(t)
	pairs := map[string]bodyPair{}
	// Routes named str* stream request bodies over 1 KiB to the backend
	// as they arrive (retry.max_body: 1KiB); the others may buffer them.
	names := []string{"gonebuf", "gonestr", "slowzero", "slowbuf", "slowstr", "steadyup", "badbuf", "badstr", "declared", "declared2", "growbuf", "growstr"}
	var routes []peerRoute
	routes = append(routes, peerRoute{name: "ok", backends: []string{ok.URL}})
	for _, n := range names {
		bp := newBodyPair(t)
		pairs[n] = bp
		var extra []string
		if strings.HasSuffix(n, "str") {
			extra = append(extra, "    retry:\n      max_body: 1KiB")
		}
		switch n {
		case "declared2":
			extra = append(extra, "    limits:\n      max_request_body: 1KiB")
		case "growbuf", "growstr":
			extra = append(extra, "    limits:\n      max_request_body: 64KiB")
		}
		routes = append(routes, peerRoute{name: n, backends: bp.urls(), extra: strings.Join(extra, "\n")})
	}
	routes = append(routes, peerRoute{name: "ctl", backends: []string{refused, ctlOK.URL}})
	p := start(t, fmt.Sprintf(`
timeouts:
  client_body: 1s
limits:
  max_header_bytes: 4KiB
health:
  active:
    path: ""
  passive:
    consecutive_failures: 1
    ejection_time: 1m
%s`, peerRoutes(routes...)))

	for i := 0; i < 5; i++ {
		if resp, body := get(t, p.URL("/ok/warm")); resp.StatusCode != 200 {
			t.Fatalf("warm-up GET = %d %q", resp.StatusCode, body)
		}
	}
	base := goroutines(t, p)
	steady := startSteady(t, p.URL("/ok/steady"), "ok", 2)

	t.Run("cases", func(t *testing.T) {
		t.Run("disconnect mid-upload, buffered body", func(t *testing.T) {
			t.Parallel()
			bp := pairs["gonebuf"]
			c, _ := dialProxy(t, p)
			io.WriteString(c, "POST /gonebuf/x HTTP/1.1\r\nHost: test.example\r\nContent-Length: 1000\r\n\r\n"+strings.Repeat("u", 100))
			// Nothing observable tells when the proxy has read the
			// partial body; the pause is the client's behaviour.
			time.Sleep(200 * time.Millisecond)
			c.Close()
			closed := time.Now()
			bp.checkAbandonedIfSent(t, closed)
			bp.checkNoBody(t)
		})
		t.Run("disconnect mid-upload, streamed body", func(t *testing.T) {
			t.Parallel()
			bp := pairs["gonestr"]
			c, _ := dialProxy(t, p)
			io.WriteString(c, "POST /gonestr/x HTTP/1.1\r\nHost: test.example\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("u", 10000))
			bp.next(t, "request", 5*time.Second) // a body over retry.max_body is streamed
			c.Close()
			closed := time.Now()
			ev := bp.next(t, "abandoned", 5*time.Second)
			if lag := ev.At.Sub(closed); lag > time.Second {
				t.Errorf("the backend saw the upload abandoned %v after the client left, want within 1s", lag.Round(time.Millisecond))
			}
			bp.checkNoBody(t)
		})
		for _, tc := range []struct {
			name, route string
			declared    int
			sent        int
		}{
			{"upload that never starts gets 408", "slowzero", 100, 0},
			{"slow upload gets 408, buffered body", "slowbuf", 100, 10},
			{"slow upload gets 408, streamed body", "slowstr", 100000, 10000},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				bp := pairs[tc.route]
				c, br := dialProxy(t, p)
				io.WriteString(c, fmt.Sprintf("POST /%s/x HTTP/1.1\r\nHost: test.example\r\nContent-Length: %d\r\n\r\n%s",
					tc.route, tc.declared, strings.Repeat("s", tc.sent)))
				last := time.Now()
				r := readRaw(br, "POST")
				d := time.Since(last)
				if r.Resp == nil {
					t.Fatalf("no answer to a stalled upload: %v", r)
				}
				checkProxyError(t, r.Resp, r.Body, 408, "client_timeout")
				checkCutTime(t, "408", d, clientBody)
				bp.checkAbandonedIfSent(t, last.Add(d))
				bp.checkNoBody(t)
			})
		}
		t.Run("slow but steady chunked upload is not a stall", func(t *testing.T) {
			t.Parallel()
			c, br := dialProxy(t, p)
			io.WriteString(c, "POST /steadyup/x HTTP/1.1\r\nHost: test.example\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
			for i := 0; i < 5; i++ {
				time.Sleep(500 * time.Millisecond) // the behaviour under test: a pause under client_body
				io.WriteString(c, "a\r\n0123456789\r\n")
			}
			io.WriteString(c, "0\r\n\r\n")
			r := readRaw(br, "POST")
			if r.Resp == nil || r.Resp.StatusCode != 200 || string(r.Body) != "got 50" {
				t.Errorf("got %v, want 200 \"got 50\" (each pause is under client_body, though the total is over it)", r)
			}
		})
		t.Run("malformed chunked bodies get 400", func(t *testing.T) {
			t.Parallel()
			// On the streamed route a valid 2 KiB chunk comes first, so
			// the body is on its way to the backend when framing breaks.
			lead := "800\r\n" + strings.Repeat("l", 2048) + "\r\n"
			bad := []struct{ name, body string }{
				{"invalid chunk size", "zz\r\nhello\r\n0\r\n\r\n"},
				{"negative chunk size", "-5\r\nhello\r\n0\r\n\r\n"},
				{"chunk size overflow", "10000000000000000005\r\nhello\r\n0\r\n\r\n"},
				{"bare LF framing", "5\nhello\n0\n\n"},
				{"data longer than the chunk size", "3\r\nhelloworld\r\n0\r\n\r\n"},
			}
			for _, route := range []string{"badbuf", "badstr"} {
				bp := pairs[route]
				for _, b := range bad {
					body := b.body
					if route == "badstr" {
						body = lead + body
					}
					t0 := time.Now()
					r := rawDo(t, p.Addr, fmt.Sprintf("POST /%s/x HTTP/1.1\r\nHost: test.example\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n%s", route, body))
					d := time.Since(t0)
					if r.Resp == nil {
						t.Errorf("%s, %s: no response: %v", route, b.name, r)
						continue
					}
					if r.Resp.StatusCode != 400 {
						t.Errorf("%s, %s: got %v, want 400 bad_request", route, b.name, r)
						continue
					}
					checkProxyError(t, r.Resp, r.Body, 400, "bad_request")
					if d > timeoutSlack {
						t.Errorf("%s, %s: 400 after %v, want at once", route, b.name, d)
					}
					bp.checkAbandonedIfSent(t, t0.Add(d))
				}
				bp.checkNoBody(t)
			}
		})
		t.Run("declared body over the limit gets 413 before any backend is dialled", func(t *testing.T) {
			t.Parallel()
			for _, tc := range []struct{ route, length, expect string }{
				{"declared", "17000000000", ""}, // over the 16 MiB default, and over 32 bits
				{"declared", "17000000000", "Expect: 100-continue\r\n"},
				{"declared2", "1025", ""}, // over a route's 1 KiB
			} {
				what := "Content-Length " + tc.length
				if tc.expect != "" {
					what += " with Expect: 100-continue"
				}
				c, br := dialProxy(t, p)
				c.SetDeadline(time.Now().Add(3 * time.Second))
				t0 := time.Now()
				// The head alone: the declared length is enough to refuse.
				io.WriteString(c, "POST /"+tc.route+"/x HTTP/1.1\r\nHost: test.example\r\nContent-Length: "+tc.length+"\r\n"+tc.expect+"\r\n")
				resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
				if err == nil && resp.StatusCode == 100 {
					t.Errorf("%s: the proxy answered 100 Continue, inviting a body it must refuse; want 413 at once", what)
					r := readRaw(br, "POST")
					resp, err = r.Resp, r.Err
				}
				d := time.Since(t0)
				if resp == nil {
					t.Errorf("%s: no response after %v: %v", what, d.Round(time.Millisecond), err)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				checkProxyError(t, resp, body, 413, "request_too_large")
				if d > 500*time.Millisecond {
					t.Errorf("%s: 413 after %v, want at once, without waiting for the body", what, d)
				}
				bp := pairs[tc.route]
				if n := bp.a.Accepts() + bp.b.Accepts(); n != 0 {
					t.Errorf("%s: the route's backends accepted %d connections, want none", what, n)
				}
			}
		})
		for _, route := range []string{"growbuf", "growstr"} {
			t.Run("chunked body growing over the limit gets 413 at once, "+route, func(t *testing.T) {
				t.Parallel()
				bp := pairs[route]
				c, br := dialProxy(t, p)
				io.WriteString(c, "POST /"+route+"/x HTTP/1.1\r\nHost: test.example\r\nTransfer-Encoding: chunked\r\n\r\n")
				chunk := "2000\r\n" + strings.Repeat("g", 8192) + "\r\n"
				// Nine 8 KiB chunks: 72 KiB, over the 64 KiB limit, and
				// no terminating chunk: the proxy must not wait for it.
				for i := 0; i < 9; i++ {
					io.WriteString(c, chunk)
				}
				last := time.Now()
				r := readRaw(br, "POST")
				d := time.Since(last)
				if r.Resp == nil {
					t.Fatalf("no response: %v", r)
				}
				checkProxyError(t, r.Resp, r.Body, 413, "request_too_large")
				if d > 500*time.Millisecond {
					t.Errorf("413 %v after the body passed the limit, want at once (client_body is %v)", d, clientBody)
				}
				if route == "growstr" {
					ev := bp.next(t, "abandoned", 5*time.Second)
					if lag := ev.At.Sub(last.Add(d)); lag > time.Second {
						t.Errorf("the upstream request was cancelled %v after the 413, want within 1s", lag.Round(time.Millisecond))
					}
					if ev.N > 64<<10 {
						t.Errorf("the backend received %d body bytes, over the 64 KiB limit", ev.N)
					}
				} else {
					bp.checkAbandonedIfSent(t, last.Add(d))
				}
				bp.checkNoBody(t)
			})
		}
		t.Run("headers over max_header_bytes get 431", func(t *testing.T) {
			t.Parallel()
			headers := func(n int) []string {
				var hs []string
				for i := 0; i < n; i++ {
					hs = append(hs, fmt.Sprintf("X-Filler-%02d: %s", i, strings.Repeat("f", 1000)))
				}
				return append(hs, "Host: test.example")
			}
			r := rawDo(t, p.Addr, rawReq("GET /ok/small HTTP/1.1", headers(2)...))
			if r.Resp == nil || r.Resp.StatusCode != 200 {
				t.Errorf("2 KiB of headers (limit 4 KiB): got %v, want 200", r)
			}
			r = rawDo(t, p.Addr, rawReq("GET /ok/big HTTP/1.1", headers(16)...))
			if r.Resp == nil || r.Resp.StatusCode != 431 {
				t.Errorf("16 KiB of headers (limit 4 KiB): got %v, want 431", r)
			}
		})
	})

	steady.finish(t, time.Second)
	waitIdle(t, p)
	for _, n := range names {
		checkBackendsHealthy(t, p, n)
	}
	checkGoroutinesBack(t, p, base, 8, 30*time.Second)

	// The control: a real backend failure is counted and ejects at once,
	// so the checks above could have seen a miscount.
	for i := 0; i < 4; i++ {
		get(t, p.URL("/ctl/x"))
	}
	var bs []backendStatus
	if !poll(5*time.Second, func() bool {
		bs = routeBackends(t, p, "ctl")
		return len(bs) == 2 && bs[0].State == "ejected"
	}) {
		t.Errorf("control: the refused backend of route ctl was not ejected within 5s (consecutive_failures: 1): %+v", bs)
	}
}

// TestClientSideTimeouts: client_idle closes an idle keep-alive connection and
// nothing else; client_header bounds each request's headers, not the
// connection's life.
func TestClientSideTimeouts(t *testing.T) {
	t.Parallel()
	const clientIdle = time.Second
	ok := newBackend(t, "ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		select { // a backend that thinks longer than client_idle
		case <-time.After(1500 * time.Millisecond):
		case <-r.Context().Done():
		}
		io.WriteString(w, "slow")
	})
	p := start(t, fmt.Sprintf(`
timeouts:
  client_header: 2s
  client_idle: 1s
%s`, peerRoutes(peerRoute{name: "ok", backends: []string{ok.URL}}, peerRoute{name: "slow", backends: []string{slow.URL}})))
	steady := startSteady(t, p.URL("/ok/steady"), "ok", 2)

	t.Run("cases", func(t *testing.T) {
		t.Run("idle keep-alive connection is closed after client_idle", func(t *testing.T) {
			t.Parallel()
			c, br := dialProxy(t, p)
			io.WriteString(c, "GET /ok/x HTTP/1.1\r\nHost: test.example\r\n\r\n")
			r := readRaw(br, "GET")
			if r.Resp == nil || r.Resp.StatusCode != 200 {
				t.Fatalf("got %v, want 200", r)
			}
			idle := time.Now()
			n, err := io.Copy(io.Discard, br)
			d := time.Since(idle)
			if n > 0 {
				t.Errorf("the proxy sent %d more bytes on an idle connection", n)
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("the idle connection was still open after %v", d)
			}
			checkCutTime(t, "idle connection closed", d, clientIdle)
		})
		t.Run("requests 600ms apart keep the connection", func(t *testing.T) {
			t.Parallel()
			c, br := dialProxy(t, p)
			for i := 0; i < 4; i++ {
				if i > 0 {
					time.Sleep(600 * time.Millisecond) // the behaviour under test: idle, under client_idle
				}
				if _, err := io.WriteString(c, "GET /ok/x HTTP/1.1\r\nHost: test.example\r\n\r\n"); err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if r := readRaw(br, "GET"); r.Resp == nil || r.Resp.StatusCode != 200 {
					t.Fatalf("request %d on one connection (2.4 s in all, over client_idle and client_header): got %v, want 200", i, r)
				}
			}
		})
		t.Run("a slow backend is not an idle client", func(t *testing.T) {
			t.Parallel()
			c, br := dialProxy(t, p)
			io.WriteString(c, "GET /slow/x HTTP/1.1\r\nHost: test.example\r\n\r\n")
			if r := readRaw(br, "GET"); r.Resp == nil || r.Resp.StatusCode != 200 || string(r.Body) != "slow" {
				t.Errorf("got %v, want 200 slow (waiting for a backend is not idleness)", r)
			}
		})
		t.Run("headers sent slowly within client_header are served", func(t *testing.T) {
			t.Parallel()
			c, br := dialProxy(t, p)
			req := "GET /ok/x HTTP/1.1\r\nHost: test.example\r\nX-Slow: yes\r\n\r\n"
			for i := 0; i < 4; i++ {
				if i > 0 {
					time.Sleep(300 * time.Millisecond) // the behaviour under test
				}
				io.WriteString(c, req[i*len(req)/4:(i+1)*len(req)/4])
			}
			if r := readRaw(br, "GET"); r.Resp == nil || r.Resp.StatusCode != 200 {
				t.Errorf("got %v, want 200 (the headers took 0.9 s, under client_header)", r)
			}
		})
	})
	steady.finish(t, time.Second)
}
