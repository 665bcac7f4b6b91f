package h1

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/fairpoll"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echo is a test handler: it frames the body from Content-Length or
// "Transfer-Encoding: chunked" (and "Expect: 100-continue"), reads it unless
// the target is /noread, and answers 200 with "METHOD TARGET PROTO body".
// Refusals answer with the status and the reason as a plain body.
type echo struct {
	mu      sync.Mutex
	refused []int
	release chan struct{} // when set, /slow waits for it before answering
	entered chan struct{} // when set, /slow says on it that it is being served
	timeout time.Duration // of the body's reads; 1s when 0
}

func (e *echo) Serve(c *Conn) {
	var length int64
	chunked, expect := false, false
	for _, line := range strings.Split(string(c.Header), "\r\n") {
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimSpace(value)
		switch strings.ToLower(name) {
		case "content-length":
			length, _ = strconv.ParseInt(value, 10, 64)
		case "transfer-encoding":
			chunked = value == "chunked"
		case "expect":
			expect = true
		case "connection":
			if value == "close" {
				c.SetClose()
			}
		}
	}
	c.SetBody(length, chunked, expect)
	c.Body().SetTimeout(time.Second)
	if e.timeout > 0 {
		c.Body().SetTimeout(e.timeout)
	}
	if string(c.Target) == "/slow" && e.release != nil {
		if e.entered != nil {
			e.entered <- struct{}{}
		}
		<-e.release
	}
	var body []byte
	if string(c.Target) != "/noread" {
		var err error
		body, err = io.ReadAll(c.Body())
		if err != nil {
			body = []byte("error: " + err.Error())
			c.SetClose()
		}
	}
	msg := fmt.Sprintf("%s %s %s %s", c.Method, c.Target, c.Proto, body)
	if string(c.Target) == "/big" {
		msg = strings.Repeat("b", 4<<20)
	}
	c.Out = fmt.Appendf(c.Begin(), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n", len(msg))
	if c.Closing() {
		c.Out = append(c.Out, "Connection: close\r\n"...)
	}
	c.Out = append(c.Out, "\r\n"...)
	c.Out = append(c.Out, msg...)
}

func (e *echo) Refuse(c *Conn, status int, reason string) {
	e.mu.Lock()
	e.refused = append(e.refused, status)
	e.mu.Unlock()
	c.Out = fmt.Appendf(c.Begin(), "HTTP/1.1 %d %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", status, http.StatusText(status), len(reason), reason)
}

// inGoPoller makes start serve without a fair poller, as a server whose
// poller could not be made does (TestInGoPoller).
var inGoPoller bool

// start serves h on a loopback listener until the test ends, with a fair
// poller as sluice does (unless inGoPoller).
func start(t *testing.T, h Handler, tune func(*Server)) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Handler: h, MaxHeaderBytes: 8 << 10, HeaderTimeout: 2 * time.Second, IdleTimeout: 5 * time.Second}
	if !inGoPoller {
		if s.Poller, err = fairpoll.New(); err != nil {
			t.Fatal(err)
		}
	}
	if tune != nil {
		tune(s)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Shutdown(context.Background())
		s.CloseAll()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if s.Poller != nil {
			s.Poller.Close()
		}
	})
	return s, ln.Addr().String()
}

// TestInGoPoller runs the engine's tests of waits, timeouts and shutdown
// with connections that wait in Go's poller, as without a fair poller.
func TestInGoPoller(t *testing.T) {
	inGoPoller = true
	defer func() { inGoPoller = false }()
	for name, test := range map[string]func(*testing.T){
		"Requests": TestRequests, "KeepAliveAndPipelining": TestKeepAliveAndPipelining,
		"HeadTimeouts": TestHeadTimeouts, "LargeResponseToSlowReader": TestLargeResponseToSlowReader,
		"Shutdown": TestShutdown, "Hijack": TestHijack, "IdleDeadlineSetEarly": TestIdleDeadlineSetEarly,
		"PipelinedDuringResponse": TestPipelinedDuringResponse, "PipelinedBatchFillsReadBuffer": TestPipelinedBatchFillsReadBuffer,
	} {
		t.Run(name, test)
	}
}

// TestIdleDeadlineSetEarly: a keep-alive connection's idle deadline is
// not moved for a request that comes soon after the last, so the socket's
// deadline passes a little before the idle timeout; the wait goes on, and
// the connection closes a whole idle timeout after its last request.
func TestIdleDeadlineSetEarly(t *testing.T) {
	const idle = 2 * time.Second
	_, addr := start(t, &echo{}, func(s *Server) { s.IdleTimeout = idle })
	c, br := dial(t, addr)
	io.WriteString(c, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
	read(t, br)
	time.Sleep(idle / 10) // within an eighth of the timeout: the deadline stays
	io.WriteString(c, "GET /two HTTP/1.1\r\nHost: x\r\n\r\n")
	if status, body := read(t, br); status != 200 || body != "GET /two HTTP/1.1 " {
		t.Fatalf("second request: %d %q", status, body)
	}
	last := time.Now()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("an idle keep-alive connection: %v, want EOF", err)
	}
	// Closed at the deadline of the first request, it would be idle/10
	// early.
	if d := time.Since(last); d < idle-idle/20 || d > idle+2*time.Second {
		t.Errorf("closed %v after the last request, want about %v", d, idle)
	}
}

// TestPollerClosedMidWait: a connection waiting in the fair poller when
// the poller closes goes on in Go's poller, and serves its next request.
func TestPollerClosedMidWait(t *testing.T) {
	s, addr := start(t, &echo{}, nil)
	c, br := dial(t, addr)
	io.WriteString(c, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
	if status, _ := read(t, br); status != 200 {
		t.Fatalf("first request: %d", status)
	}
	s.Poller.Close()
	io.WriteString(c, "GET /two HTTP/1.1\r\nHost: x\r\n\r\n")
	if status, body := read(t, br); status != 200 || body != "GET /two HTTP/1.1 " {
		t.Fatalf("after the poller closed: %d %q", status, body)
	}
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// read reads one response.
func read(t *testing.T, br *bufio.Reader) (int, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading a response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading a response body: %v", err)
	}
	return resp.StatusCode, string(body)
}

func TestRequests(t *testing.T) {
	_, addr := start(t, &echo{}, nil)
	tests := []struct {
		name, send string
		writes     []string // when set, the request is sent in these pieces
		status     int
		body       string
	}{
		{name: "plain GET", send: "GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\n", status: 200, body: "GET /a?b=c HTTP/1.1 "},
		{name: "empty lines before the request line are skipped", send: "\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n", status: 200, body: "GET /a HTTP/1.1 "},
		{name: "head in pieces", writes: []string{"GE", "T /p HTTP/1.1\r", "\nHost: x\r\n", "\r\n"}, status: 200, body: "GET /p HTTP/1.1 "},
		{name: "length body", send: "POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", status: 200, body: "POST /u HTTP/1.1 hello"},
		{name: "length body in pieces", writes: []string{"POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhel", "lo wo", "rld"}, status: 200, body: "POST /u HTTP/1.1 hello world"},
		{name: "chunked body with extension and trailer", send: "POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA ;x\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n", status: 200, body: "POST /u HTTP/1.1 hello0123456789"},
		{name: "chunked body in pieces", writes: []string{"POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5", "\r\nhel", "lo\r", "\n0\r\n", "\r\n"}, status: 200, body: "POST /u HTTP/1.1 hello"},
		{name: "bad chunk size", send: "POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", status: 200, body: "POST /u HTTP/1.1 error: " + ErrBadChunk.Error()},
		{name: "chunk longer than its size", send: "POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", status: 200, body: "POST /u HTTP/1.1 error: " + ErrBadChunk.Error()},
		{name: "chunk size overflow", send: "POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff1\r\nhello\r\n0\r\n\r\n", status: 200, body: "POST /u HTTP/1.1 error: " + ErrBadChunk.Error()},
		{name: "bare LF chunk line", send: "POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", status: 200, body: "POST /u HTTP/1.1 error: " + ErrBadChunk.Error()},
		{name: "bare LF in the head", send: "GET / HTTP/1.1\nHost: x\r\n\r\n", status: 400},
		{name: "bare LF ending the head", send: "GET / HTTP/1.1\r\nHost: x\n\n", status: 400},
		{name: "request line without a version", send: "GET /\r\nHost: x\r\n\r\n", status: 400},
		{name: "lowercase version", send: "GET / http/1.1\r\nHost: x\r\n\r\n", status: 400},
		{name: "version with a letter", send: "GET / HTTP/1.x\r\nHost: x\r\n\r\n", status: 400},
		{name: "other version passed on", send: "GET / HTTP/3.0\r\nHost: x\r\n\r\n", status: 200, body: "GET / HTTP/3.0 "},
		{name: "head over the limit", send: "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("v", 9<<10) + "\r\n\r\n", status: 431},
		{name: "head within the limit past the buffer", send: "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("v", 7<<10) + "\r\n\r\n", status: 200, body: "GET / HTTP/1.1 "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, br := dial(t, addr)
			if tt.writes == nil {
				tt.writes = []string{tt.send}
			}
			for _, w := range tt.writes {
				if _, err := io.WriteString(c, w); err != nil {
					t.Fatal(err)
				}
				time.Sleep(5 * time.Millisecond) // separate reads on the server's side
			}
			status, body := read(t, br)
			if status != tt.status || tt.body != "" && body != tt.body {
				t.Fatalf("got %d %q, want %d %q", status, body, tt.status, tt.body)
			}
		})
	}
}

// TestKeepAliveAndPipelining: requests one after another and pipelined in
// one write are all answered, in order, on one connection; a body the
// handler did not read but that is all buffered is skipped.
func TestKeepAliveAndPipelining(t *testing.T) {
	_, addr := start(t, &echo{}, nil)
	c, br := dial(t, addr)
	for i := 0; i < 50; i++ {
		fmt.Fprintf(c, "GET /k%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		if status, body := read(t, br); status != 200 || body != fmt.Sprintf("GET /k%d HTTP/1.1 ", i) {
			t.Fatalf("request %d: %d %q", i, status, body)
		}
	}
	io.WriteString(c, "POST /noread HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"+
		"GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nPOST /p2 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
	for _, want := range []string{"POST /noread HTTP/1.1 ", "GET /p1 HTTP/1.1 ", "POST /p2 HTTP/1.1 hi"} {
		if status, body := read(t, br); status != 200 || body != want {
			t.Fatalf("pipelined: %d %q, want 200 %q", status, body, want)
		}
	}
}

// TestPipelinedDuringResponse: a request pipelined after the engine read
// the one before, while that one is still being served, is answered as
// soon as the first is: the wait that follows the first response must
// not miss bytes that arrived before it began.
func TestPipelinedDuringResponse(t *testing.T) {
	e := &echo{release: make(chan struct{}), entered: make(chan struct{}, 1)}
	_, addr := start(t, e, nil)
	c, br := dial(t, addr)
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-e.entered // the first request has been read
	io.WriteString(c, "GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
	awaitDelivered(t, c) // the second is in the server's socket before the first is answered
	close(e.release)
	c.SetReadDeadline(time.Now().Add(time.Second)) // well under the idle timeout
	for _, want := range []string{"GET /slow HTTP/1.1 ", "GET /second HTTP/1.1 "} {
		if status, body := read(t, br); status != 200 || body != want {
			t.Fatalf("got %d %q, want 200 %q", status, body, want)
		}
	}
}

// TestPipelinedBatchFillsReadBuffer: a batch of pipelined requests whose
// first read fills the read buffer exactly at a request's end leaves the
// next request in the socket, with no wake to come for it (its bytes
// arrived before that read); it is served at once all the same, not when
// the idle timeout or more bytes end the wait.
func TestPipelinedBatchFillsReadBuffer(t *testing.T) {
	_, addr := start(t, &echo{}, nil)
	c, br := dial(t, addr)
	// A request first, so that the batch is waited for (and its wake
	// taken) rather than read at once on a new connection.
	io.WriteString(c, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
	if status, _ := read(t, br); status != 200 {
		t.Fatalf("first request: %d", status)
	}
	var batch []string
	total := 0
	for i := 0; ; i++ {
		r := fmt.Sprintf("GET /r%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		if total+len(r)+100 > inSize {
			// The last one of the buffer, padded to end exactly at inSize.
			const bare = "GET /pad HTTP/1.1\r\nHost: x\r\nX-Pad: \r\n\r\n"
			r = "GET /pad HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", inSize-total-len(bare)) + "\r\n\r\n"
			batch = append(batch, r)
			break
		}
		batch = append(batch, r)
		total += len(r)
	}
	batch = append(batch, "GET /after-the-buffer HTTP/1.1\r\nHost: x\r\n\r\n")
	if n := len(strings.Join(batch[:len(batch)-1], "")); n != inSize {
		t.Fatalf("the requests before the last take %d bytes, want %d", n, inSize)
	}
	io.WriteString(c, strings.Join(batch, ""))
	c.SetReadDeadline(time.Now().Add(2 * time.Second)) // well under the idle timeout
	for i, r := range batch {
		want := r[:strings.Index(r, "\r\n")] + " " // the echo's body: the request line
		if status, body := read(t, br); status != 200 || body != want {
			t.Fatalf("response %d of %d: %d %q, want 200 %q", i+1, len(batch), status, body, want)
		}
	}
}

// awaitDelivered waits until every byte written on c has left its send
// queue, that is, has reached the peer's socket (SIOCOUTQ counts the bytes
// not yet acknowledged), failing the test after 5 s.
func awaitDelivered(t testing.TB, c net.Conn) {
	t.Helper()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var unsent int
		var ierr error
		raw.Control(func(fd uintptr) { unsent, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) })
		switch {
		case ierr != nil:
			t.Fatalf("SIOCOUTQ: %v", ierr)
		case unsent == 0:
			return
		case time.Now().After(deadline):
			t.Fatalf("%d bytes still unsent after 5s", unsent)
		}
		runtime.Gosched()
	}
}

// TestUnreadBodyCloses: a body the handler left unread and that is not all
// buffered closes the connection after the response, which says so.
func TestUnreadBodyCloses(t *testing.T) {
	_, addr := start(t, &echo{}, nil)
	c, br := dial(t, addr)
	io.WriteString(c, "POST /noread HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	if !resp.Close {
		t.Error("the response does not say the connection closes")
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after the response: %v, want EOF", err)
	}
}

// TestExpectContinue: a 100 Continue goes out when the handler reads the
// body, not before.
func TestExpectContinue(t *testing.T) {
	_, addr := start(t, &echo{}, nil)
	c, br := dial(t, addr)
	io.WriteString(c, "POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("got %q, %v; want a 100 Continue", line, err)
	}
	br.ReadString('\n')
	io.WriteString(c, "hello")
	if status, body := read(t, br); status != 200 || body != "POST /u HTTP/1.1 hello" {
		t.Fatalf("got %d %q", status, body)
	}
	// Not for a body the handler does not read.
	io.WriteString(c, "POST /noread HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	if status, _ := read(t, br); status != 200 {
		t.Fatalf("got %d, want 200 without a 100 first", status)
	}
}

// TestHeadTimeouts: a connection that sends nothing is closed silently at
// HeaderTimeout after the accept; one that sent part of a head gets 408;
// a keep-alive connection waits IdleTimeout for its next request, and
// then has HeaderTimeout from its first byte for the rest of the head.
func TestHeadTimeouts(t *testing.T) {
	e := &echo{}
	_, addr := start(t, e, func(s *Server) {
		s.HeaderTimeout = 300 * time.Millisecond
		s.IdleTimeout = 600 * time.Millisecond
	})

	_, br := dial(t, addr)
	t0 := time.Now()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("a silent connection: %v, want EOF", err)
	}
	if d := time.Since(t0); d < 250*time.Millisecond || d > 2*time.Second {
		t.Errorf("a silent connection closed after %v, want about 300ms", d)
	}

	c, br := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHo")
	if status, _ := read(t, br); status != 408 {
		t.Errorf("a partial head got %d, want 408", status)
	}

	// Keep-alive: the idle wait is longer than the head timeout.
	c, br = dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	read(t, br)
	time.Sleep(450 * time.Millisecond) // past HeaderTimeout, within IdleTimeout
	io.WriteString(c, "GET /again HTTP/1.1\r\n")
	t1 := time.Now()
	if status, _ := read(t, br); status != 408 {
		t.Errorf("a partial keep-alive head got %d, want 408", status)
	}
	if d := time.Since(t1); d < 250*time.Millisecond || d > 2*time.Second {
		t.Errorf("the partial keep-alive head was cut after %v, want about 300ms", d)
	}

	c, br = dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	read(t, br)
	t2 := time.Now()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("an idle keep-alive connection: %v, want EOF", err)
	}
	if d := time.Since(t2); d < 500*time.Millisecond || d > 3*time.Second {
		t.Errorf("an idle keep-alive connection closed after %v, want about 600ms", d)
	}
}

// TestLargeResponseToSlowReader: a response larger than the socket takes
// at once, left in Out, is written whole to a client that reads slowly, and
// the connection serves the next request.
func TestLargeResponseToSlowReader(t *testing.T) {
	_, addr := start(t, &echo{}, nil)
	c, br := dial(t, addr)
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(100 * time.Millisecond) // let the socket fill
	if status, body := read(t, br); status != 200 || body != strings.Repeat("b", 4<<20) {
		t.Fatalf("got %d and %d bytes, want 200 and %d", status, len(body), 4<<20)
	}
	io.WriteString(c, "GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
	if status, body := read(t, br); status != 200 || body != "GET /after HTTP/1.1 " {
		t.Fatalf("next request: %d %q", status, body)
	}
}

// TestShutdown: Shutdown closes idle connections at once, lets a request
// in flight finish (its response says the connection closes), and returns
// when it has.
func TestShutdown(t *testing.T) {
	e := &echo{release: make(chan struct{}), entered: make(chan struct{}, 1)}
	s, addr := start(t, e, nil)
	idle, idleBR := dial(t, addr)
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	read(t, idleBR)
	busy, busyBR := dial(t, addr)
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-e.entered

	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background()) }()
	if _, err := idleBR.ReadByte(); err != io.EOF {
		t.Errorf("idle connection after Shutdown: %v, want EOF", err)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(e.release)
	resp, err := http.ReadResponse(busyBR, nil)
	if err != nil {
		t.Fatalf("the request in flight: %v", err)
	}
	io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !resp.Close {
		t.Errorf("the request in flight got %d, close=%v; want 200 and close", resp.StatusCode, resp.Close)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Error("the listener still accepts after Shutdown")
	}
	_ = busy
}

// TestShutdownDeadline: Shutdown gives up at its context's end, and
// CloseAll cuts what is left.
func TestShutdownDeadline(t *testing.T) {
	e := &echo{release: make(chan struct{}), entered: make(chan struct{}, 1)}
	s, addr := start(t, e, nil)
	c, br := dial(t, addr)
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-e.entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); err != context.DeadlineExceeded {
		t.Fatalf("Shutdown with a request stuck = %v, want the deadline", err)
	}
	if n := s.CloseAll(); n != 1 {
		t.Errorf("CloseAll cut %d connections, want 1", n)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Error("the cut connection is still open")
	}
	close(e.release)
}

// TestHijack: a hijacked connection comes with the bytes sent past the head.
func TestHijack(t *testing.T) {
	got := make(chan string, 1)
	_, addr := start(t, hijacker{got: got}, nil)
	c, _ := dial(t, addr)
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\nearly")
	io.WriteString(c, "-later")
	select {
	case s := <-got:
		if s != "early-later" {
			t.Errorf("the hijacked stream read %q, want early-later", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing came through the hijacked connection")
	}
}

type hijacker struct{ got chan string }

func (h hijacker) Serve(c *Conn) {
	c.SetBody(0, false, false)
	nc, early := c.Hijack()
	got := string(early)
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	for len(got) < len("early-later") {
		n, err := nc.Read(buf)
		got += string(buf[:n])
		if err != nil {
			break
		}
	}
	h.got <- got
}

func (h hijacker) Refuse(*Conn, int, string) {}

// TestContinueLine: the interim response's bytes.
func TestContinueLine(t *testing.T) {
	if !bytes.Equal(continueLine, []byte("HTTP/1.1 100 Continue\r\n\r\n")) {
		t.Error("continueLine changed")
	}
}

// TestReadNow: ReadNow returns what has arrived of a body without waiting,
// and nothing while the client holds the rest.
func TestReadNow(t *testing.T) {
	steps := make(chan string, 8)
	_, addr := start(t, nowHandler{steps: steps}, nil)
	c, br := dial(t, addr)
	io.WriteString(c, "POST /now HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
	for _, want := range []string{"5 <nil> hello", "0 <nil> "} {
		if got := <-steps; got != want {
			t.Fatalf("ReadNow = %q, want %q", got, want)
		}
	}
	io.WriteString(c, "world")
	if got := <-steps; got != "5 EOF world" {
		t.Fatalf("ReadNow after the rest came = %q, want 5 EOF world", got)
	}
	if status, _ := read(t, br); status != 200 {
		t.Fatalf("status %d", status)
	}
}

type nowHandler struct{ steps chan string }

func (h nowHandler) Serve(c *Conn) {
	c.SetBody(10, false, false)
	buf := make([]byte, 64)
	report := func(n int, err error) { h.steps <- fmt.Sprintf("%d %v %s", n, err, buf[:n]) }
	report(c.Body().ReadNow(buf))
	report(c.Body().ReadNow(buf))
	// The rest comes: ReadNow finds it once it has arrived.
	for {
		n, err := c.Body().ReadNow(buf)
		if n > 0 || err != nil {
			report(n, err)
			break
		}
		time.Sleep(time.Millisecond)
	}
	c.Out = append(c.Begin(), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"...)
}

func (h nowHandler) Refuse(*Conn, int, string) {}
