package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// gate is a channel closed once, by the test or at cleanup, so a blocked
// handler never outlives the test.
type gate struct {
	ch   chan struct{}
	once sync.Once
}

func newGate(t testing.TB) *gate {
	g := &gate{ch: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }

// wait blocks until the gate opens, the request is cancelled, or 10 s pass.
func (g *gate) wait(r *http.Request) {
	select {
	case <-g.ch:
	case <-r.Context().Done():
	case <-time.After(10 * time.Second):
	}
}

func TestStreamingResponse(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, path, contentType, first, second string
	}{
		{"chunked flush", "/plain", "text/plain", "first chunk|", "second chunk"},
		{"server-sent events", "/sse", "text/event-stream", "data: one\n\n", "data: two\n\n"},
	}
	gates := map[string]*gate{}
	var urls []string
	for _, tc := range cases {
		g := newGate(t)
		gates[tc.path] = g
		tc := tc
		b := newStreamBackend(t, tc.name, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", tc.contentType)
			io.WriteString(w, tc.first)
			w.(http.Flusher).Flush()
			g.wait(r) // the test opens the gate only after the client saw the first part
			io.WriteString(w, tc.second)
		})
		urls = append(urls, b.URL)
	}
	p := start(t, fmt.Sprintf(`
routes:
  - path_prefix: /plain
    backends: [%s]
  - path_prefix: /sse
    backends: [%s]
`, urls[0], urls[1]))

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := gates[tc.path]
			c, _ := newClient(t)
			type result struct {
				resp  *http.Response
				first []byte
				err   error
			}
			res := make(chan result, 1)
			go func() {
				resp, err := c.Get(p.URL(tc.path))
				if err != nil {
					res <- result{err: err}
					return
				}
				first := make([]byte, len(tc.first))
				_, err = io.ReadFull(resp.Body, first)
				res <- result{resp: resp, first: first, err: err}
			}()
			var r result
			select {
			case r = <-res:
			case <-time.After(3 * time.Second):
				g.open()
				<-res
				t.Fatalf("the first part did not reach the client within 3 s while the backend held the rest: the response is buffered")
			}
			if r.err != nil {
				g.open()
				t.Fatalf("reading the first part: %v", r.err)
			}
			defer r.resp.Body.Close()
			if string(r.first) != tc.first {
				t.Errorf("first part = %q, want %q", r.first, tc.first)
			}
			if ct := r.resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.contentType) {
				t.Errorf("Content-Type = %q, want %q", ct, tc.contentType)
			}
			g.open()
			rest, err := io.ReadAll(r.resp.Body)
			if err != nil {
				t.Fatalf("reading the rest: %v", err)
			}
			if string(rest) != tc.second {
				t.Errorf("rest = %q, want %q", rest, tc.second)
			}
		})
	}
}

func TestStreamingUpload(t *testing.T) {
	t.Parallel()
	const first, second = "part-one|", "part-two"
	gotFirst := make(chan string, 4)
	b := newStreamBackend(t, "up", func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, len(first))
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			http.Error(w, "reading first part: "+err.Error(), 500)
			return
		}
		gotFirst <- r.URL.Path
		rest, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "reading rest: "+err.Error(), 500)
			return
		}
		w.Write(buf)
		w.Write(rest)
	})
	// Retries off, so that no replay buffering can be argued for.
	p := start(t, fmt.Sprintf(`
retry:
  attempts: 1
routes:
  - path_prefix: /up
    backends: [%s]
`, b.URL))

	// Raw connections, so that the client's bytes go out exactly when
	// written (net/http buffers a Content-Length body).
	for _, tc := range []struct {
		name, framing, part1, part2 string
	}{
		{"chunked", "Transfer-Encoding: chunked",
			fmt.Sprintf("%x\r\n%s\r\n", len(first), first), fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(second), second)},
		{"content-length", fmt.Sprintf("Content-Length: %d", len(first)+len(second)), first, second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, br := dialProxy(t, p)
			io.WriteString(c, "POST /up/"+tc.name+" HTTP/1.1\r\nHost: test.example\r\nConnection: close\r\n"+tc.framing+"\r\n\r\n"+tc.part1)
			select {
			case <-gotFirst:
			case <-time.After(3 * time.Second):
				t.Fatalf("backend did not receive the first part within 3 s while the client held the rest: the upload is buffered")
			}
			io.WriteString(c, tc.part2)
			r := readRaw(br, "POST")
			if r.Resp == nil || r.Resp.StatusCode != 200 || string(r.Body) != first+second {
				t.Errorf("got %v, want 200 %q", r, first+second)
			}
		})
	}
}

func TestStreamingTrailers(t *testing.T) {
	t.Parallel()
	b := newStreamBackend(t, "tr", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		io.WriteString(w, "part one,")
		w.(http.Flusher).Flush()
		io.WriteString(w, "part two")
		w.Header().Set("X-Checksum", "abc123")
		if r.URL.Path == "/tr/unannounced" {
			w.Header().Set(http.TrailerPrefix+"X-Late", "late-value")
		}
	})
	p := start(t, fmt.Sprintf(`
routes:
  - path_prefix: /tr
    backends: [%s]
`, b.URL))

	for _, path := range []string{"/tr/announced", "/tr/unannounced"} {
		t.Run(path, func(t *testing.T) {
			resp, body := get(t, p.URL(path), "TE", "trailers")
			if resp.StatusCode != 200 || string(body) != "part one,part two" {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
			if got := resp.Trailer.Get("X-Checksum"); got != "abc123" {
				t.Errorf("trailer X-Checksum = %q, want abc123 (trailers: %v)", got, resp.Trailer)
			}
			if path == "/tr/unannounced" {
				if got := resp.Trailer.Get("X-Late"); got != "late-value" {
					t.Errorf("unannounced trailer X-Late = %q, want late-value (trailers: %v)", got, resp.Trailer)
				}
			}
		})
	}
}

func TestUpstreamKeepAlive(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "ka", nil)
	p := start(t, simpleRoute(b.URL))

	conns := func(from int) map[string]bool {
		m := map[string]bool{}
		for _, r := range b.Requests()[from:] {
			m[r.RemoteAddr] = true
		}
		return m
	}
	for _, tc := range []struct {
		name            string
		clientKeepAlive bool
	}{{"client keep-alive", true}, {"client closes each time", false}} {
		t.Run(tc.name, func(t *testing.T) {
			c, tr := newClient(t)
			tr.DisableKeepAlives = !tc.clientKeepAlive
			from := b.Count()
			for i := 0; i < 50; i++ {
				resp, err := c.Post(p.URL("/api/ka"), "text/plain", bytes.NewReader([]byte("x")))
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("status %d", resp.StatusCode)
				}
			}
			if n := len(conns(from)); n > 2 {
				t.Errorf("50 sequential requests used %d upstream connections, want <= 2 (keep-alive reuse)", n)
			}
		})
	}
}

// TestRequestBodies: request bodies of each framing reach the backend intact.
func TestRequestBodies(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	p := start(t, simpleRoute(b.URL))

	big := strings.Repeat("0123456789abcdef", 8192) // 128 KiB
	cases := []struct {
		name, framing, wire, want string
	}{
		{"content-length", "Content-Length: 11", "hello world", "hello world"},
		{"chunked", "Transfer-Encoding: chunked", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world"},
		{"chunked with extension and trailer", "Transfer-Encoding: chunked",
			"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n", "hello world"},
		{"chunked uppercase hex", "Transfer-Encoding: chunked", "B\r\nhello world\r\n0\r\n\r\n", "hello world"},
		{"large content-length", fmt.Sprintf("Content-Length: %d", len(big)), big, big},
		{"large chunked", "Transfer-Encoding: chunked", fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(big), big), big},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rawDo(t, p.Addr, "POST /api/body HTTP/1.1\r\nHost: test.example\r\nConnection: close\r\n"+tc.framing+"\r\n\r\n"+tc.wire)
			mustOK(t, r)
			if got := b.Last(t).Body; string(got) != tc.want {
				i := 0
				for i < len(got) && i < len(tc.want) && got[i] == tc.want[i] {
					i++
				}
				t.Errorf("backend body (%d bytes) differs from the %d bytes sent from offset %d: got %q, want %q",
					len(got), len(tc.want), i, truncate(string(got[i:]), 60), truncate(tc.want[i:], 60))
			}
		})
	}
}

// TestSlowBackendGetsWholeUpload: a backend with a small receive buffer
// that reads a large upload late and slowly keeps the proxy's writes
// waiting on a full socket; every byte still arrives, in order, for bodies
// that are buffered for a retry and bodies that are streamed. (A request
// that fits the proxy's staging buffer but not the socket at once is
// covered in internal/proxy, TestPartlyWrittenRequestGoesOut: loopback
// sockets take 128 KiB whole.)
func TestSlowBackendGetsWholeUpload(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Not a byte of the body is read at first, so that the proxy's
		// writes find the socket full.
		time.Sleep(50 * time.Millisecond)
		h := sha256.New()
		buf := make([]byte, 16<<10)
		for {
			n, err := r.Body.Read(buf)
			h.Write(buf[:n])
			if err == io.EOF {
				break
			}
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			time.Sleep(200 * time.Microsecond)
		}
		fmt.Fprintf(w, "%x", h.Sum(nil))
	}))
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10) })
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	p := start(t, fmt.Sprintf(`
routes:
  - path_prefix: /slow
    backends: [%s]
`, srv.URL))

	body := make([]byte, 6<<20)
	for i := range body {
		body[i] = byte(i*7 + i>>11)
	}
	for _, tc := range []struct {
		method string
		size   int
	}{{"PUT", 100 << 10}, {"PUT", len(body)}, {"POST", 100 << 10}, {"POST", len(body)}} {
		t.Run(fmt.Sprintf("%s-%d", tc.method, tc.size), func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, p.URL("/slow"), bytes.NewReader(body[:tc.size]))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			want := fmt.Sprintf("%x", sha256.Sum256(body[:tc.size]))
			if resp.StatusCode != 200 || string(got) != want {
				t.Errorf("%s of %d bytes: %d %q, want 200 and the body's digest %s", tc.method, tc.size, resp.StatusCode, got, want)
			}
		})
	}
}
