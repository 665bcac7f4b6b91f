package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestBadResponseChunkFraming: a backend's chunked response whose chunk
// extensions or trailer section break RFC 9112's grammar is an invalid
// response. Before anything of the response went out, that is a 502
// upstream_error; once its head has gone out (sluice sends a streamed
// response's head at once), the client connection is cut, so that the body
// never looks complete. Either way the cut comes at once, not at
// upstream_body, and the backend's connection is dropped, not pooled.
func TestBadResponseChunkFraming(t *testing.T) {
	t.Parallel()
	const head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
	cases := []struct {
		name, route string
		body        string // what the backend sends after head
		sent        string // the data of its chunks before the malformed part
		valid       bool
	}{
		{name: "valid extensions and trailers", route: "valid", valid: true, sent: "hello world",
			body: "5;a=b ; c=\"d \\\" e\"\r\nhello\r\n6\t;f\r\n world\r\n0;g=h\r\nX-T: 1\r\n\r\n"},
		{name: "bare CR in the first chunk's extension", route: "crfirst",
			body: "5;a\rb\r\nhello\r\n0\r\n\r\n"},
		{name: "bare CR in an extension after a chunk", route: "crext", sent: "hello",
			body: "5\r\nhello\r\n5;a\rb\r\nworld\r\n0\r\n\r\n"},
		{name: "LF inside a quoted extension value", route: "lfext", sent: "hello",
			body: "5\r\nhello\r\n5;a=\"x\ny\"\r\nworld\r\n0\r\n\r\n"},
		{name: "NUL in an extension", route: "nulext", sent: "hello",
			body: "5\r\nhello\r\n5;a\x00\r\nworld\r\n0\r\n\r\n"},
		{name: "control character in an extension", route: "ctlext", sent: "hello",
			body: "5\r\nhello\r\n5;a=b\x01\r\nworld\r\n0\r\n\r\n"},
		{name: "unterminated quoted extension value", route: "quoteext", sent: "hello",
			body: "5\r\nhello\r\n5;a=\"world\r\nworld\r\n0\r\n\r\n"},
		{name: "non-token extension name", route: "nameext", sent: "hello",
			body: "5\r\nhello\r\n5;a@b=c\r\nworld\r\n0\r\n\r\n"},
		{name: "whitespace after the chunk size", route: "wsext", sent: "hello",
			body: "5\r\nhello\r\n5 \r\nworld\r\n0\r\n\r\n"},
		{name: "bad extension on the last chunk", route: "lastext", sent: "hello",
			body: "5\r\nhello\r\n0;=x\r\n\r\n"},
		{name: "bare CR in a trailer field", route: "crtrailer", sent: "hello",
			body: "5\r\nhello\r\n0\r\nX: a\rb\r\n\r\n"},
		{name: "bare CR line after the last chunk", route: "crline", sent: "hello",
			body: "5\r\nhello\r\n0\r\n\r\r\n\r\n"},
		{name: "obs-fold in trailers", route: "foldtrailer", sent: "hello",
			body: "5\r\nhello\r\n0\r\nX: a\r\n b\r\n\r\n"},
	}
	peers := make([]*peer, len(cases))
	routes := make([]peerRoute, len(cases))
	for i, tc := range cases {
		peers[i] = newStallPeer(t, head, tc.body)
		routes[i] = peerRoute{name: tc.route, backends: []string{peers[i].URL}}
	}
	p := start(t, fmt.Sprintf(`
timeouts:
  upstream_body: 10s
retry:
  attempts: 1
health:
  active:
    path: ""
  passive:
    consecutive_failures: 1000
%s`, peerRoutes(routes...)))

	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, body, d, err := cutGet(t, p.URL("/"+tc.route+"/x"))
			done := time.Now()
			if tc.valid {
				if resp == nil || err != nil || resp.StatusCode != 200 || string(body) != tc.sent {
					t.Fatalf("got %v %q, error %v; want 200 %q", resp, body, err, tc.sent)
				}
				return
			}
			checkCutOr502(t, resp, body, err, tc.sent)
			if d > timeoutSlack {
				t.Errorf("answered after %v, want at once (under %v; upstream_body is 10s)", d.Round(time.Millisecond), timeoutSlack)
			}
			checkPeerLetGo(t, peers[i], done, "after the malformed response")
		})
	}
}

// checkCutOr502 asserts that a response whose backend broke its chunked
// framing after sending the data sent got no clean answer: a 502
// upstream_error when the proxy had sent nothing yet, or else the
// backend's 200 with a prefix of sent and a cut (or no response at all).
func checkCutOr502(t testing.TB, resp *http.Response, body []byte, err error, sent string) {
	t.Helper()
	switch {
	case resp == nil:
		if err == nil {
			t.Errorf("no response and no error")
		}
	case resp.StatusCode == 502 && err == nil:
		t.Logf("502: nothing had gone out")
		checkProxyError(t, resp, body, 502, "upstream_error")
	case resp.StatusCode != 200:
		t.Errorf("status = %d %q, want 502 upstream_error before the response starts, or the backend's 200 and a cut", resp.StatusCode, truncate(string(body), 100))
	case err == nil:
		t.Errorf("the body ended cleanly with %q; want the connection cut (a malformed body must not look complete)", truncate(string(body), 100))
	case !strings.HasPrefix(sent, string(body)):
		t.Errorf("body = %q, want a prefix of %q", truncate(string(body), 100), sent)
	default:
		t.Logf("cut after the head and %d bytes: %v", len(body), err)
	}
}
