package e2e

// Raw TCP clients: a dial with deadlines, one request written verbatim and
// its response read, the check that the proxy closed the connection, and
// what a backend's socket saw of a request.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dialRaw dials addr, failing the test when it cannot, and gives the
// connection a deadline d from now for all its reads and writes. The
// connection closes when the test ends.
func dialRaw(t testing.TB, addr string, d time.Duration) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(d))
	return c, bufio.NewReader(c)
}

// dialProxy dials the proxy's listener, with a 10 s deadline as a backstop.
func dialProxy(t testing.TB, p *proc) (net.Conn, *bufio.Reader) {
	t.Helper()
	return dialRaw(t, p.Addr, 10*time.Second)
}

// rawSend dials addr, writes req verbatim and reads one response (the first
// non-1xx) with a 5 s deadline, leaving the connection open for checkClosed.
func rawSend(t testing.TB, addr, req string) (rawResult, *bufio.Reader) {
	t.Helper()
	c, br := dialRaw(t, addr, 5*time.Second)
	// A write error is left to the read: the proxy may have answered and
	// closed before it took all of req.
	io.WriteString(c, req)
	return readRaw(br, methodOf(req)), br
}

// checkClosed asserts that the proxy closes the connection behind br with
// nothing more sent on it (no answer to anything pipelined): the next read
// ends (EOF, or a reset when the proxy left bytes unread) before the
// connection's deadline.
func checkClosed(t testing.TB, br *bufio.Reader) {
	t.Helper()
	rest, err := io.ReadAll(br)
	switch {
	case len(rest) > 0:
		t.Errorf("after the response the proxy sent %q, want the connection closed", truncate(string(rest), 300))
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Errorf("the connection was still open at its deadline, want it closed after the response")
	case err != nil && !errors.Is(err, syscall.ECONNRESET):
		t.Errorf("after the response: %v, want the connection closed", err)
	}
}

// completeRequests returns how many requests whose target holds m the raw
// bytes a backend read (see backend.Raw) hold whole: the head and all of
// the body as framed. A request cut short, whose body ends before its
// framing says, does not count.
func completeRequests(raw, m string) int {
	n := 0
	for i := 0; ; {
		j := strings.Index(raw[i:], m)
		if j < 0 {
			return n
		}
		at := i + j
		i = at + len(m)
		// The request line the marker is in.
		start := strings.LastIndex(raw[:at], "\n") + 1
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw[start:])))
		if err != nil || !strings.Contains(req.RequestURI, m) {
			continue
		}
		if _, err := io.Copy(io.Discard, req.Body); err == nil {
			n++
		}
	}
}

// rawReq builds a request with CRLF line endings from a request line and
// header lines, adding "Connection: close" unless a Connection line is given.
func rawReq(line string, headers ...string) string {
	var b strings.Builder
	b.WriteString(line + "\r\n")
	hasConn := false
	for _, h := range headers {
		if strings.HasPrefix(strings.ToLower(h), "connection:") {
			hasConn = true
		}
		b.WriteString(h + "\r\n")
	}
	if !hasConn {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// rawExchange dials addr, writes first, then after pause rest (when not
// empty), and reads one response with a 5 s deadline. It takes no
// testing.TB, for the goroutines of a load: a failed dial is the result's
// Err.
func rawExchange(addr, first, rest string, pause time.Duration) rawResult {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return rawResult{Err: err}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, first)
	if rest != "" {
		time.Sleep(pause)
		io.WriteString(c, rest)
	}
	return readRaw(bufio.NewReader(c), "POST")
}

// rawResult is the outcome of a raw request.
type rawResult struct {
	Resp *http.Response // nil when the connection closed without a response
	Body []byte
	Err  error // error reading the response, if any
}

// rawDo dials addr, writes req verbatim and reads one response (the first
// non-1xx) with a 5 s deadline. A connection closed without a response gives
// Resp == nil and Err set.
func rawDo(t testing.TB, addr, req string) rawResult {
	t.Helper()
	c, br := dialRaw(t, addr, 5*time.Second)
	defer c.Close()
	// A write error is left to the read: the proxy may have answered and
	// closed before it took all of req.
	io.WriteString(c, req)
	return readRaw(br, methodOf(req))
}

func methodOf(req string) string {
	m, _, _ := strings.Cut(req, " ")
	return m
}

// readRaw reads one final response from br, skipping 1xx responses.
func readRaw(br *bufio.Reader, method string) rawResult {
	for {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			return rawResult{Err: err}
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != 101 {
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		return rawResult{Resp: resp, Body: body, Err: err}
	}
}

func (r rawResult) String() string {
	if r.Resp == nil {
		return fmt.Sprintf("no response (%v)", r.Err)
	}
	return fmt.Sprintf("%s %q", r.Resp.Status, truncate(string(r.Body), 300))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
