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

// TestFirstHeadTimedFromAccept: client_header bounds a connection's first
// request head from the moment the connection was accepted, not from its
// first byte. A client that connects, stays silent for most of the limit
// and then dribbles a head is cut when the limit passes after connecting.
func TestFirstHeadTimedFromAccept(t *testing.T) {
	t.Parallel()
	const (
		clientHeader = 2 * time.Second
		silence      = clientHeader * 4 / 5
		// Timed from the first byte instead, the cut would come at
		// silence+clientHeader, well past this.
		slack = 900 * time.Millisecond
	)
	ok := newBackend(t, "ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	p := start(t, fmt.Sprintf(`
timeouts:
  client_header: 2s
%s`, peerRoutes(peerRoute{name: "ok", backends: []string{ok.URL}})))

	t0 := time.Now()
	c, _ := dialProxy(t, p)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-time.After(silence):
		case <-stop:
			return
		}
		head := "GET /ok/late HTTP/1.1\r\nHost: test.example\r\nX-Slow: " + strings.Repeat("s", 50) + "\r\n\r\n"
		for i := 0; i < len(head); i++ {
			if _, err := c.Write([]byte{head[i]}); err != nil {
				return
			}
			select {
			case <-time.After(100 * time.Millisecond):
			case <-stop:
				return
			}
		}
	}()
	got, err := io.ReadAll(c)
	lasted := time.Since(t0)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after %v, want it closed at client_header (%v) after connecting", lasted, clientHeader)
	}
	if lasted < clientHeader-earlySlack || lasted > clientHeader+slack {
		t.Errorf("connection closed %v after connecting, want within [%v, %v]: the first head is timed from the accept",
			lasted.Round(time.Millisecond), clientHeader-earlySlack, clientHeader+slack)
	}
	if len(got) > 0 && !strings.HasPrefix(string(got), "HTTP/1.1 408 ") {
		t.Errorf("got %q, want the connection closed (or a 408)", truncate(string(got), 100))
	}
	if ok.Count() != 0 {
		t.Errorf("backend saw %d requests, want 0", ok.Count())
	}
}

// TestStackPerConnection: a keep-alive client connection that has been
// served holds a goroutine whose stack stays at 4 KiB: the request path,
// including a request that dials a new backend connection, fits in it.
// Thousands of connections then cost 4 KiB of stack each instead of 8.
// Each of the connections here is served in turn, and the backend closes
// every connection after its answer, so that every request dials. sluice
// runs on one P, as in the benchmark: with more, contended runtime locks
// take deeper paths and some stacks grow. (Not parallel, for t.Setenv: the
// other tests wait meanwhile.)
func TestStackPerConnection(t *testing.T) {
	t.Setenv("GOMAXPROCS", "1")
	const conns = 300
	ok := newBackend(t, "ok", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "ok")
	})
	p := start(t, peerRoutes(peerRoute{name: "ok", backends: []string{ok.URL}}))
	stack := func() float64 {
		ss, _ := scrape(t, p)
		v, found := metricValue(ss, "go_memstats_stack_inuse_bytes")
		if !found {
			t.Fatal("go_memstats_stack_inuse_bytes missing from /metrics")
		}
		return v
	}
	before := stack()

	cs := make([]net.Conn, conns)
	for i := range cs {
		c, br := dialRaw(t, p.Addr, 20*time.Second)
		cs[i] = c
		if _, err := io.WriteString(c, "GET /ok/x HTTP/1.1\r\nHost: test.example\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("connection %d: status %d, want 200", i, resp.StatusCode)
		}
	}
	perConn := (stack() - before) / conns
	t.Logf("goroutine stack per served keep-alive connection: %.0f bytes", perConn)
	if perConn > 5<<10 {
		t.Errorf("goroutine stack per served keep-alive connection = %.0f bytes, want at most 5 KiB (a 4 KiB stack each)", perConn)
	}
}

// TestClientGoneAfterLongWait: a client that leaves while its request has
// waited on a slow backend for longer than client_header is still noticed
// at once, and the upstream request cancelled.
func TestClientGoneAfterLongWait(t *testing.T) {
	t.Parallel()
	silent := newSilentPeer(t)
	p := start(t, fmt.Sprintf(`
timeouts:
  client_header: 500ms
  upstream_header: 20s
retry:
  attempts: 1
health:
  active:
    path: ""
%s`, peerRoutes(peerRoute{name: "slow", backends: []string{silent.URL}})))
	c, _ := dialProxy(t, p)
	io.WriteString(c, "GET /slow/x HTTP/1.1\r\nHost: test.example\r\n\r\n")
	silent.next(t, "request", 5*time.Second)
	// Past client_header, still waiting on the backend.
	time.Sleep(1500 * time.Millisecond)
	c.Close()
	checkPeerLetGo(t, silent, time.Now(), "after the client disconnected, 1.5s into the wait")
}
