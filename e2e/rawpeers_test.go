package e2e

// Misbehaving raw TCP backends, and the shared checks of the limits and
// timeouts tests: a steady stream of good requests that must not be disturbed,
// the goroutine count that must come back to its baseline, time windows, and
// the /backends health state.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------
// Raw peers.

// peerEvent is something a raw peer saw on one of its connections.
type peerEvent struct {
	Kind   string // see the peer constructors
	At     time.Time
	Conn   int // connection number, from 1 in accept order
	Method string
	Path   string
	N      int64         // request body bytes read
	Idle   time.Duration // "served": how long the connection was idle before this request (0 on a new one)
	Reused bool          // "served": not the connection's first request
	Err    error
}

// peer is a raw TCP backend whose connections are served by a behaviour
// function. It reports what happened on a channel of events, and counts the
// connections it accepted. Everything it started ends at cleanup.
type peer struct {
	URL    string
	Addr   string
	l      net.Listener
	events chan peerEvent
	quit   chan struct{}
	wg     sync.WaitGroup

	mu         sync.Mutex
	conns      map[net.Conn]bool
	accepts    int
	counts     map[string]int // events emitted, by kind
	lastServed int            // connection of the last "served" event
}

// peerConn is one accepted connection.
type peerConn struct {
	net.Conn
	br *bufio.Reader
	p  *peer
	id int
}

// newPeer starts a raw peer that serves each connection with serve, which
// need not close the connection.
func newPeer(t testing.TB, serve func(c *peerConn)) *peer {
	t.Helper()
	return newPeerEvents(t, make(chan peerEvent, 4096), serve)
}

// newPeerEvents is newPeer reporting to a given event channel, so that
// several peers can share one.
func newPeerEvents(t testing.TB, events chan peerEvent, serve func(c *peerConn)) *peer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{
		URL:    "http://" + l.Addr().String(),
		Addr:   l.Addr().String(),
		l:      l,
		events: events,
		quit:   make(chan struct{}),
		conns:  map[net.Conn]bool{},
		counts: map[string]int{},
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.accepts++
			id := p.accepts
			p.conns[c] = true
			p.mu.Unlock()
			// A backstop: no connection outlives the test by much.
			c.SetDeadline(time.Now().Add(30 * time.Second))
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer func() {
					c.Close()
					p.mu.Lock()
					delete(p.conns, c)
					p.mu.Unlock()
				}()
				serve(&peerConn{Conn: c, br: bufio.NewReader(c), p: p, id: id})
			}()
		}
	}()
	t.Cleanup(func() {
		close(p.quit)
		l.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

// Accepts returns the number of connections accepted so far.
func (p *peer) Accepts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepts
}

// next waits up to timeout for the next event of kind, dropping the events of
// other kinds, and fails the test when none comes.
func (p *peer) next(t testing.TB, kind string, timeout time.Duration) peerEvent {
	t.Helper()
	ev, ok := p.tryNext(kind, timeout)
	if !ok {
		t.Fatalf("peer %s: no %q event within %v", p.Addr, kind, timeout)
	}
	return ev
}

// tryNext is next without failing.
func (p *peer) tryNext(kind string, timeout time.Duration) (peerEvent, bool) {
	return p.waitFor(timeout, func(ev peerEvent) bool { return ev.Kind == kind })
}

// count returns how many events of kind the peer emitted so far.
func (p *peer) count(kind string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[kind]
}

// lastServedConn returns the connection of the last "served" event.
func (p *peer) lastServedConn() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastServed
}

// drain returns the events buffered so far, without waiting.
func (p *peer) drain() []peerEvent {
	var evs []peerEvent
	for {
		select {
		case ev := <-p.events:
			evs = append(evs, ev)
		default:
			return evs
		}
	}
}

// waitFor waits up to timeout for an event that match accepts, dropping the
// others, and reports whether one came.
func (p *peer) waitFor(timeout time.Duration, match func(peerEvent) bool) (peerEvent, bool) {
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-p.events:
			if match(ev) {
				return ev, true
			}
		case <-deadline:
			return peerEvent{}, false
		}
	}
}

func (c *peerConn) emit(ev peerEvent) {
	ev.At = time.Now()
	ev.Conn = c.id
	c.p.mu.Lock()
	c.p.counts[ev.Kind]++
	if ev.Kind == "served" {
		c.p.lastServed = c.id
	}
	c.p.mu.Unlock()
	select {
	case c.p.events <- ev:
	default: // nobody listens; never block the peer
	}
}

// sleep pauses for d, or less if the peer is shutting down; it reports
// whether the full pause was taken.
func (c *peerConn) sleep(d time.Duration) bool {
	select {
	case <-time.After(d):
		return true
	case <-c.p.quit:
		return false
	}
}

// readHead reads one request head, leaving the body in req.Body.
func (c *peerConn) readHead() (*http.Request, error) {
	return http.ReadRequest(c.br)
}

// readRequest reads one request with its whole body.
func (c *peerConn) readRequest() (*http.Request, error) {
	req, err := c.readHead()
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(io.Discard, req.Body)
	return req, err
}

// awaitClose reads and discards until the connection breaks (the proxy closed
// or reset it), then emits a "closed" event.
func (c *peerConn) awaitClose() {
	_, err := io.Copy(io.Discard, c.br)
	c.emit(peerEvent{Kind: "closed", Err: err})
}

// write writes s, ignoring errors (the other side may be gone).
func (c *peerConn) write(s string) error {
	_, err := io.WriteString(c.Conn, s)
	return err
}

// newSilentPeer accepts, reads the request, never answers, and emits
// "request" then "closed" when the proxy gives the connection up.
func newSilentPeer(t testing.TB) *peer {
	return newPeer(t, func(c *peerConn) {
		req, err := c.readRequest()
		if err != nil {
			return
		}
		c.emit(peerEvent{Kind: "request", Method: req.Method, Path: req.URL.Path})
		c.awaitClose()
	})
}

// newStallPeer answers each request with head and the start of the body, then
// stalls; it emits "request" and then "closed" when the proxy gives up.
func newStallPeer(t testing.TB, head, partial string) *peer {
	return newPeer(t, func(c *peerConn) {
		req, err := c.readRequest()
		if err != nil {
			return
		}
		c.emit(peerEvent{Kind: "request", Method: req.Method, Path: req.URL.Path})
		c.write(head + partial)
		c.awaitClose()
	})
}

// newResetPeer answers each request with head and partial, then resets the
// connection (RST, not FIN). It emits "reset".
func newResetPeer(t testing.TB, head, partial string) *peer {
	return newPeer(t, func(c *peerConn) {
		if _, err := c.readRequest(); err != nil {
			return
		}
		c.write(head + partial)
		if tc, ok := c.Conn.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Conn.Close()
		c.emit(peerEvent{Kind: "reset"})
	})
}

// newTricklePeer answers each request with head at once and then body one
// byte every `every`, and serves the next request on the same connection. It
// emits "served" after each full response and "closed" when a write fails.
func newTricklePeer(t testing.TB, head, body string, every time.Duration) *peer {
	return newPeer(t, func(c *peerConn) {
		for {
			req, err := c.readRequest()
			if err != nil {
				return
			}
			if head != "" {
				if err := c.write(head); err != nil {
					c.emit(peerEvent{Kind: "closed", Err: err})
					return
				}
			}
			for i := 0; i < len(body); i++ {
				if (head != "" || i > 0) && !c.sleep(every) {
					return
				}
				if err := c.write(body[i : i+1]); err != nil {
					c.emit(peerEvent{Kind: "closed", Err: err})
					return
				}
			}
			c.emit(peerEvent{Kind: "served", Method: req.Method, Path: req.URL.Path})
		}
	})
}

// newEndlessPeer answers a request whose path ends in /stream with a chunked
// body of 1 KiB chunks that never ends, one chunk every `every` (0: as fast as
// the connection takes them). Other paths get 200 "fine" on a kept-alive
// connection. When the proxy abandons a stream the peer emits "closed" with
// the time it noticed (EOF or reset on read, or a failed write).
func newEndlessPeer(t testing.TB, every time.Duration) *peer {
	chunk := "400\r\n" + strings.Repeat("e", 1024) + "\r\n"
	return newPeer(t, func(c *peerConn) {
		for {
			req, err := c.readRequest()
			if err != nil {
				return
			}
			if !strings.HasSuffix(req.URL.Path, "/stream") {
				c.emit(peerEvent{Kind: "served", Path: req.URL.Path})
				if c.write("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine") != nil {
					return
				}
				continue
			}
			c.emit(peerEvent{Kind: "request", Path: req.URL.Path})
			c.stream(chunk, every)
			return
		}
	})
}

// stream writes a chunked head and then chunk every `every` until the proxy
// abandons the response, and emits "closed" when it notices.
func (c *peerConn) stream(chunk string, every time.Duration) {
	gone := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, c.br)
		gone <- err
	}()
	defer func() {
		c.Conn.Close()
		<-gone
	}()
	err := c.write("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
	for err == nil {
		select {
		case err = <-gone:
			gone <- err // for the deferred receive
			if err == nil {
				err = io.EOF
			}
			continue
		case <-c.p.quit:
			return
		default:
		}
		if err = c.write(chunk); err == nil && every > 0 && !c.sleep(every) {
			return
		}
	}
	c.emit(peerEvent{Kind: "closed", Err: err})
}

// newBodyPeer serves kept-alive connections: it reads each request's body as
// it arrives and answers 200 "got N" only once the body is complete. It emits
// "request" when a head arrives, "body" when a body completes and "abandoned"
// when the proxy breaks the connection mid-body (N is what had arrived).
func newBodyPeer(t testing.TB, events chan peerEvent) *peer {
	return newPeerEvents(t, events, func(c *peerConn) {
		for {
			req, err := c.readHead()
			if err != nil {
				return
			}
			c.emit(peerEvent{Kind: "request", Method: req.Method, Path: req.URL.Path})
			n, err := io.Copy(io.Discard, req.Body)
			if err != nil {
				c.emit(peerEvent{Kind: "abandoned", Method: req.Method, Path: req.URL.Path, N: n, Err: err})
				return
			}
			c.emit(peerEvent{Kind: "body", Method: req.Method, Path: req.URL.Path, N: n})
			msg := fmt.Sprintf("got %d", n)
			if c.write(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(msg), msg)) != nil {
				return
			}
		}
	})
}

// newKeepAlivePeer serves kept-alive connections with 200 "ok" plus the extra
// header lines (each ending in CRLF), and closes a connection once it has
// been idle for idle after a response. It emits "served" for each request
// (with Reused and Idle) and "idle-close" when it closes an idle connection.
func newKeepAlivePeer(t testing.TB, idle time.Duration, extra string) *peer {
	return newPeer(t, func(c *peerConn) {
		var last time.Time
		for n := 0; ; n++ {
			c.SetReadDeadline(time.Now().Add(idle))
			if _, err := c.br.Peek(1); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					c.Conn.Close()
					c.emit(peerEvent{Kind: "idle-close"})
				}
				return
			}
			arrived := time.Now()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			req, err := c.readHead()
			if err != nil {
				return
			}
			nb, err := io.Copy(io.Discard, req.Body)
			if err != nil {
				return
			}
			ev := peerEvent{Kind: "served", Method: req.Method, Path: req.URL.Path, N: nb, Reused: n > 0}
			if n > 0 {
				ev.Idle = arrived.Sub(last)
			}
			c.emit(ev)
			if c.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"+extra+"\r\nok") != nil {
				return
			}
			last = time.Now()
		}
	})
}

// blackholeURL returns an http URL where a TCP connect hangs: a listener with
// a backlog of 0 that never accepts and whose accept queue is already full, so
// the kernel drops further SYNs. The test is skipped where that cannot be
// arranged.
func blackholeURL(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(sa.(*syscall.SockaddrInet4).Port)
	for i := 0; i < 8; i++ {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return "http://" + addr
			}
			t.Fatalf("filling the accept queue of %s: %v", addr, err)
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("cannot make a TCP connect hang on this host (the accept queue never fills)")
	return ""
}

// boundRefusedURL returns an http URL where a connect is refused: a socket
// bound for the whole test but never listening, so that no parallel test
// can take the port.
func boundRefusedURL(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return "http://127.0.0.1:" + strconv.Itoa(sa.(*syscall.SockaddrInet4).Port)
}

// ---------------------------------------------------------------------------
// Time windows.

// timeoutSlack is how late a cut may come after its configured timeout.
const timeoutSlack = 1500 * time.Millisecond

// earlySlack is how much earlier than its timeout a cut may come (clock and
// measurement granularity only).
const earlySlack = 100 * time.Millisecond

// checkCutTime asserts that d, the time from the start of a wait to the cut,
// is within [timeout-earlySlack, timeout+timeoutSlack].
func checkCutTime(t testing.TB, what string, d, timeout time.Duration) {
	t.Helper()
	if d < timeout-earlySlack || d > timeout+timeoutSlack {
		t.Errorf("%s after %v, want within [%v, %v] (the configured %v)", what, d.Round(time.Millisecond),
			timeout-earlySlack, timeout+timeoutSlack, timeout)
	}
}

// ---------------------------------------------------------------------------
// Undisturbed traffic.

// steadyLoad is a stream of good GETs to a healthy route, sent by a few
// keep-alive clients while misbehaving traffic runs next to it.
type steadyLoad struct {
	url   string
	t0    time.Time
	tr    *http.Transport
	stopc chan struct{}
	wg    sync.WaitGroup

	mu      sync.Mutex
	ok      int
	fails   []string
	slowest time.Duration
}

// startSteady starts workers that GET url in a loop, each 10 ms apart, and
// expect 200 with the body want.
func startSteady(t testing.TB, url, want string, workers int) *steadyLoad {
	c, tr := newClient(t)
	c.Timeout = 5 * time.Second
	s := &steadyLoad{url: url, t0: time.Now(), tr: tr, stopc: make(chan struct{})}
	for i := 0; i < workers; i++ {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				select {
				case <-s.stopc:
					return
				case <-time.After(10 * time.Millisecond):
				}
				t0 := time.Now()
				resp, err := c.Get(url)
				var body []byte
				if err == nil {
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				d := time.Since(t0)
				s.mu.Lock()
				switch {
				case err != nil:
					s.fails = append(s.fails, fmt.Sprintf("at +%v: %v", t0.Sub(s.t0).Round(time.Millisecond), err))
				case resp.StatusCode != 200 || string(body) != want:
					s.fails = append(s.fails, fmt.Sprintf("at +%v: %d %q", t0.Sub(s.t0).Round(time.Millisecond), resp.StatusCode, truncate(string(body), 100)))
				default:
					s.ok++
				}
				if d > s.slowest {
					s.slowest = d
				}
				s.mu.Unlock()
			}
		}()
	}
	t.Cleanup(s.stop)
	return s
}

func (s *steadyLoad) stop() {
	select {
	case <-s.stopc:
	default:
		close(s.stopc)
	}
	s.wg.Wait()
	s.tr.CloseIdleConnections()
}

// finish stops the load and asserts that every request succeeded, and within
// maxLatency.
func (s *steadyLoad) finish(t testing.TB, maxLatency time.Duration) {
	t.Helper()
	s.stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ok == 0 {
		t.Errorf("steady traffic to %s: no request succeeded", s.url)
	}
	if len(s.fails) > 0 {
		t.Errorf("steady traffic to %s was disturbed: %d of %d requests failed, e.g. %q", s.url,
			len(s.fails), len(s.fails)+s.ok, s.fails[:min(3, len(s.fails))])
	}
	if s.slowest > maxLatency {
		t.Errorf("steady traffic to %s: slowest request took %v, want under %v", s.url, s.slowest.Round(time.Millisecond), maxLatency)
	}
	t.Logf("steady traffic to %s: %d requests, slowest %v", s.url, s.ok+len(s.fails), s.slowest.Round(time.Millisecond))
}

// ---------------------------------------------------------------------------
// Leaks.

// goroutines returns the proxy's go_goroutines gauge.
func goroutines(t testing.TB, p *proc) int {
	t.Helper()
	ss, _ := scrape(t, p)
	v, ok := metricValue(ss, "go_goroutines")
	if !ok {
		t.Fatal("/metrics has no go_goroutines")
	}
	return int(v)
}

// checkGoroutinesBack polls go_goroutines until it is within margin of base,
// failing after timeout.
func checkGoroutinesBack(t testing.TB, p *proc, base, margin int, timeout time.Duration) {
	t.Helper()
	var n int
	t0 := time.Now()
	if !poll(timeout, func() bool { n = goroutines(t, p); return n <= base+margin }) {
		t.Errorf("go_goroutines = %d %v after the failure tests, want back within %d of the baseline %d (a leak)", n, timeout, margin, base)
		return
	}
	t.Logf("go_goroutines back to %d (baseline %d) after %v", n, base, time.Since(t0).Round(time.Millisecond))
}

// waitIdle waits until the proxy has no request in flight, so that what a
// request leads to (metrics, health) has been recorded.
func waitIdle(t testing.TB, p *proc) {
	t.Helper()
	var v float64
	eventually(t, 10*time.Second, func() bool {
		ss, _ := scrape(t, p)
		var ok bool
		v, ok = metricValue(ss, "sluice_inflight_requests")
		return ok && v == 0
	}, "sluice_inflight_requests to be 0 (last %v)", v)
}

// ---------------------------------------------------------------------------
// Health state.

// backendStatus is one backend of GET /backends.
type backendStatus struct {
	URL          string `json:"url"`
	State        string `json:"state"`
	Reason       string `json:"reason"`
	ConsecFails  *int   `json:"consecutive_failures"`
	InFlight     *int   `json:"in_flight"`
	EjectionTime string `json:"ejection_time"`
}

// routeBackends returns route's backends from GET /backends.
func routeBackends(t testing.TB, p *proc, route string) []backendStatus {
	t.Helper()
	resp, body := get(t, p.AdminURL("/backends"))
	if resp.StatusCode != 200 {
		t.Fatalf("GET /backends = %d %q", resp.StatusCode, body)
	}
	var got struct {
		Routes []struct {
			Name     string          `json:"name"`
			Backends []backendStatus `json:"backends"`
		} `json:"routes"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("/backends is not the documented JSON: %v\n%s", err, body)
	}
	for _, r := range got.Routes {
		if r.Name == route {
			return r.Backends
		}
	}
	t.Fatalf("/backends has no route %q:\n%s", route, body)
	return nil
}

// checkBackendsHealthy asserts that every backend of route is healthy with no
// failure counted, and that the route has no ejection on record.
func checkBackendsHealthy(t testing.TB, p *proc, route string) {
	t.Helper()
	for _, b := range routeBackends(t, p, route) {
		if b.State != "healthy" || b.ConsecFails == nil || *b.ConsecFails != 0 || b.EjectionTime != "0s" {
			fails := "missing"
			if b.ConsecFails != nil {
				fails = strconv.Itoa(*b.ConsecFails)
			}
			t.Errorf("route %s backend %s: state %q (reason %q), consecutive_failures %s, ejection_time %q; want healthy, 0, 0s (client faults must not count against a backend)",
				route, b.URL, b.State, b.Reason, fails, b.EjectionTime)
		}
	}
	ss, _ := scrape(t, p)
	for _, s := range ss {
		if s.name == "sluice_backend_ejections_total" && s.labels["route"] == route && s.value != 0 {
			t.Errorf("sluice_backend_ejections_total{route=%q,backend=%q} = %v, want 0", route, s.labels["backend"], s.value)
		}
	}
}
