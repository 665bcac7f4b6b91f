package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestClientBodyTimeout(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	p := start(t, fmt.Sprintf(`
routes:
  - name: api
    path_prefix: /api
    timeouts:
      client_body: 300ms
    backends: [%s]
`, b.URL))

	c, br := dialRaw(t, p.Addr, 5*time.Second)
	start := time.Now()
	// Two of the ten declared bytes, then silence.
	io.WriteString(c, "POST /api/slow-upload HTTP/1.1\r\nHost: test.example\r\nContent-Length: 10\r\n\r\nab")
	r := readRaw(br, "POST")
	if r.Resp == nil {
		t.Fatalf("no answer to a stalled upload: %v", r)
	}
	checkProxyError(t, r.Resp, r.Body, 408, "client_timeout")
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("408 came after %v, want about client_body (300ms)", d)
	}
}

func TestResponseTooLarge(t *testing.T) {
	t.Parallel()
	b := newStreamBackend(t, "big", func(w http.ResponseWriter, r *http.Request) {
		body := strings.Repeat("x", 100)
		if r.URL.Path == "/api/declared" {
			w.Header().Set("Content-Length", "100")
			io.WriteString(w, body)
			return
		}
		for i := 0; i < 10; i++ { // no declared length: chunked
			io.WriteString(w, body[:10])
			w.(http.Flusher).Flush()
		}
	})
	// A 304 that repeats the length of what it stands for (Go's server
	// leaves Content-Length out of a 304, so a raw one).
	notModified := newRawBackend(t, "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\nETag: \"v1\"\r\n\r\n")
	p := start(t, fmt.Sprintf(`
routes:
  - name: api
    path_prefix: /api
    limits:
      max_response_body: 50
    backends: [%s]
  - name: cached
    path_prefix: /cached
    limits:
      max_response_body: 50
    backends: [%s]
`, b.URL, notModified.URL))

	t.Run("declared", func(t *testing.T) {
		resp, body := get(t, p.URL("/api/declared"))
		checkProxyError(t, resp, body, 502, "response_too_large")
	})
	// Bodyless answers declare a length they do not send: nothing of them
	// is over the limit.
	t.Run("HEAD", func(t *testing.T) {
		resp, body := do(t, "HEAD", p.URL("/api/declared"), "")
		if resp.StatusCode != 200 || resp.ContentLength != 100 || len(body) != 0 {
			t.Errorf("HEAD of a 100-byte resource over a 50-byte limit: %d, Content-Length %d, body %q; want 200 with the declared length", resp.StatusCode, resp.ContentLength, body)
		}
	})
	t.Run("304", func(t *testing.T) {
		resp, body := get(t, p.URL("/cached/x"), "If-None-Match", `"v1"`)
		if resp.StatusCode != 304 || len(body) != 0 || resp.Header.Get("ETag") != `"v1"` {
			t.Errorf("304 declaring 100 bytes over a 50-byte limit: %d, ETag %q, body %q; want the 304 passed on", resp.StatusCode, resp.Header.Get("ETag"), body)
		}
	})
	t.Run("streamed", func(t *testing.T) {
		c, tr := newClient(t)
		tr.DisableKeepAlives = true
		resp, err := c.Get(p.URL("/api/streamed"))
		if err != nil {
			return // cut before the headers: acceptable
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil {
			t.Errorf("a streamed response over max_response_body ended cleanly with %d bytes (status %d), want the connection cut", len(body), resp.StatusCode)
		}
		if len(body) > 50 {
			t.Errorf("client received %d bytes, over the 50-byte limit", len(body))
		}
	})
}

func TestRetries(t *testing.T) {
	t.Parallel()
	ok := newBackend(t, "ok", nil)
	bad := newBackend(t, "bad", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(503)
		io.WriteString(w, "bad")
	})
	// Budget and ejection are set out of the way: this test is about which
	// requests may be retried.
	p := start(t, fmt.Sprintf(`
retry:
  budget_percent: 100
  backoff: 1ms
routes:
  - name: refused
    path_prefix: /refused
    health:
      passive:
        consecutive_failures: 1000
    backends: [%s, %s]
  - name: flaky
    path_prefix: /flaky
    health:
      passive:
        consecutive_failures: 1000
    backends: [%s, %s]
`, refusedURL(t), ok.URL, bad.URL, ok.URL))

	t.Run("connect failure retried for any method", func(t *testing.T) {
		for _, m := range []string{"GET", "POST", "PATCH"} {
			for i := 0; i < 4; i++ {
				resp, body := do(t, m, p.URL("/refused/x"), "payload")
				if resp.StatusCode != 200 || string(body) != "ok" {
					t.Errorf("%s #%d = %d %q, want 200 ok (a refused connect is retried)", m, i, resp.StatusCode, body)
				}
			}
		}
	})
	t.Run("status retried for GET", func(t *testing.T) {
		for i := 0; i < 4; i++ {
			resp, body := get(t, p.URL("/flaky/x"))
			if resp.StatusCode != 200 || string(body) != "ok" {
				t.Errorf("GET #%d = %d %q, want 200 ok (503 retried on the other backend)", i, resp.StatusCode, body)
			}
		}
	})
	t.Run("status not retried for POST", func(t *testing.T) {
		before := bad.Count()
		got503 := 0
		for i := 0; i < 4; i++ {
			resp, body := do(t, "POST", p.URL("/flaky/x"), "payload")
			switch {
			case resp.StatusCode == 503 && string(body) == "bad":
				got503++
			case resp.StatusCode == 200 && string(body) == "ok":
			default:
				t.Errorf("POST #%d = %d %q, want the backend's own answer", i, resp.StatusCode, body)
			}
		}
		if n := bad.Count() - before; n != got503 || got503 == 0 {
			t.Errorf("bad backend got %d POSTs and the client %d of its 503s: want equal and > 0 (a sent POST is not retried)", n, got503)
		}
	})
	t.Run("Idempotency-Key makes POST retryable", func(t *testing.T) {
		for i := 0; i < 4; i++ {
			resp, body := do(t, "POST", p.URL("/flaky/x"), "payload", "Idempotency-Key", fmt.Sprintf("key-%d", i))
			if resp.StatusCode != 200 || string(body) != "ok" {
				t.Errorf("POST with Idempotency-Key #%d = %d %q, want 200 ok", i, resp.StatusCode, body)
			}
		}
		for _, r := range ok.Requests() {
			if r.Method == "POST" && r.Path == "/flaky/x" && r.Header.Get("Idempotency-Key") != "" && string(r.Body) != "payload" {
				t.Errorf("a replayed POST reached the backend with body %q, want payload", r.Body)
			}
		}
	})
}

func TestActiveHealthNoHealthyBackend(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "sick", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			w.WriteHeader(500)
			return
		}
		io.WriteString(w, "sick")
	})
	p := start(t, fmt.Sprintf(`
routes:
  - name: sick
    path_prefix: /api
    health:
      active:
        path: /health
        interval: 100ms
        timeout: 1s
        unhealthy_threshold: 1
    backends: [%s/base/]
`, b.URL))

	var resp *http.Response
	var body []byte
	eventually(t, 5*time.Second, func() bool {
		resp, body = get(t, p.URL("/api/x"))
		return resp.StatusCode == 503
	}, "the route to answer 503 once its only backend fails active checks")
	checkProxyError(t, resp, body, 503, "no_healthy_backend")
	for _, r := range b.Requests() {
		if strings.HasPrefix(r.Path, "/base/health") {
			t.Errorf("active probe went to %s, want /health at the backend's origin", r.Path)
			break
		}
	}
}

// TestBackendStopsReadingUpload: a backend that reads a request's head and
// then stops reading its body must not hold the request forever: once one
// write to it has been blocked for upstream_body, the client gets 504.
func TestBackendStopsReadingUpload(t *testing.T) {
	t.Parallel()
	b := newPeer(t, func(c *peerConn) {
		if _, err := c.readHead(); err != nil {
			return
		}
		c.emit(peerEvent{Kind: "head"})
		c.sleep(time.Minute) // reads nothing more
	})
	p := start(t, fmt.Sprintf(`
routes:
  - name: up
    path_prefix: /up
    timeouts:
      upstream_body: 500ms
    backends: [%s]
`, b.URL))

	c, br := dialRaw(t, p.Addr, 15*time.Second)
	const size = 12 << 20
	go func() {
		fmt.Fprintf(c, "POST /up/big HTTP/1.1\r\nHost: test.example\r\nContent-Length: %d\r\n\r\n", size)
		chunk := make([]byte, 64<<10)
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				return // the proxy answered and closed
			}
		}
	}()
	b.next(t, "head", 5*time.Second)
	start := time.Now()
	r := readRaw(br, "POST")
	if r.Resp == nil {
		t.Fatalf("no answer while the backend does not read the upload: %v", r)
	}
	checkProxyError(t, r.Resp, r.Body, 504, "upstream_timeout")
	if !strings.Contains(string(r.Body), "stopped reading the request") {
		t.Errorf("body %q does not say the backend stopped reading", r.Body)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("504 came %v after the backend stopped reading, want about upstream_body (500ms) once its buffers filled", d)
	}
}
