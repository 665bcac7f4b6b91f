package e2e

import (
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPipelinedWhileServed: a client pipelines its second request after
// sluice has read the first, while the backend is still answering it. Both
// are answered, in order, as soon as the backend answers: the second is
// not left in the socket until the idle timeout closes the connection.
func TestPipelinedWhileServed(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/first" {
			entered <- struct{}{}
			<-release
		}
		io.WriteString(w, "answer to "+r.URL.Path)
	})
	p := start(t, `
timeouts:
  client_idle: 30s
`+simpleRoute(b.URL))

	c, br := dialRaw(t, p.Addr, 10*time.Second)
	io.WriteString(c, "GET /api/first HTTP/1.1\r\nHost: test.example\r\n\r\n")
	select {
	case <-entered: // sluice has read the first request and sent it on
	case <-time.After(5 * time.Second):
		t.Fatal("the first request did not reach the backend")
	}
	io.WriteString(c, "GET /api/second HTTP/1.1\r\nHost: test.example\r\n\r\n")
	// The second request reaches sluice's socket while the first is in
	// flight; only then does the backend answer the first.
	awaitDelivered(t, c)
	close(release)

	// Well under client_idle: a second request missed by the wait after
	// the first response would be answered only by the idle close.
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	for _, want := range []string{"answer to /api/first", "answer to /api/second"} {
		res := readRaw(br, "GET")
		if res.Err != nil || res.Resp == nil || res.Resp.StatusCode != 200 || !strings.Contains(string(res.Body), want) {
			t.Fatalf("want 200 %q, got %+v (body %q)", want, res.Resp, res.Body)
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
