package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRawRequestStrictness sends malformed requests over raw sockets. The
// HTTP engine under sluice is lenient; sluice must not be. Each row's request
// carries a unique marker; after the row a valid sentinel request goes
// through, and then the backend's socket must not have seen the marker.
func TestRawRequestStrictness(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	p := start(t, `
limits:
  max_header_bytes: 8KiB
`+simpleRoute(b.URL))

	bigHeaders := func(m string) string {
		var s strings.Builder
		s.WriteString("GET /api/" + m + " HTTP/1.1\r\nHost: test.example\r\n")
		for i := 0; i < 20; i++ {
			fmt.Fprintf(&s, "X-Filler-%02d: %s\r\n", i, strings.Repeat("f", 1024))
		}
		s.WriteString("\r\n")
		return s.String()
	}
	bigValue := func(m string) string {
		return "GET /api/" + m + " HTTP/1.1\r\nHost: test.example\r\nX-Big: " + strings.Repeat("v", 20*1024) + "\r\n\r\n"
	}

	type row struct {
		name string
		// req builds the raw request around the marker m, which it must
		// put in the request target.
		req func(m string) string
		// want lists the acceptable statuses.
		want []int
		// reaches: the backend must receive the request (valid rows);
		// mayReach: it may (the rejection can only come mid-body);
		// partial: it may receive part of the request, never all of it
		// (see completeRequests), nor anything pipelined behind it;
		// otherwise the backend must see nothing.
		reaches, mayReach, partial bool
		// jsonWord, when set, requires the proxy's JSON error body.
		jsonWord string
		// closes: the proxy closes the connection after its answer,
		// answering nothing pipelined behind the request.
		closes bool
	}
	line := func(m string) string { return "GET /api/" + m + " HTTP/1.1\r\n" }
	// badBody is a row of a chunked request whose body is malformed: 400
	// bad_request and a close, with a request pipelined behind the body
	// (its target holds the marker too) that must not be served, and
	// nothing complete at the backend.
	badBody := func(name, body string) row {
		return row{name: name, req: func(m string) string {
			return "POST /api/" + m + " HTTP/1.1\r\nHost: test.example\r\nTransfer-Encoding: chunked\r\n\r\n" + body +
				"GET /api/" + m + "-pipelined HTTP/1.1\r\nHost: test.example\r\n\r\n"
		}, want: []int{400}, partial: true, jsonWord: "bad_request", closes: true}
	}
	rows := []row{
		{name: "valid control row", req: func(m string) string {
			return line(m) + "Host: test.example\r\n\r\n"
		}, want: []int{200}, reaches: true},
		{name: "header name with space", req: func(m string) string {
			return line(m) + "Host: test.example\r\nBad Header: x\r\n\r\n"
		}, want: []int{400}},
		{name: "whitespace before colon", req: func(m string) string {
			return line(m) + "Host: test.example\r\nX-Foo : x\r\n\r\n"
		}, want: []int{400}},
		{name: "empty header name", req: func(m string) string {
			return line(m) + "Host: test.example\r\n: x\r\n\r\n"
		}, want: []int{400}},
		{name: "HTTP/2.0 request line", req: func(m string) string {
			return "GET /api/" + m + " HTTP/2.0\r\nHost: test.example\r\n\r\n"
		}, want: []int{400}},
		{name: "HTTP/3.0 unsupported major version", req: func(m string) string {
			return "GET /api/" + m + " HTTP/3.0\r\nHost: test.example\r\n\r\n"
		}, want: []int{400}},
		// RFC 9110 section 2.5: a higher minor version of a supported
		// major version SHOULD be processed as the highest one supported.
		{name: "HTTP/1.2 treated as 1.1", req: func(m string) string {
			return "GET /api/" + m + " HTTP/1.2\r\nHost: test.example\r\n\r\n"
		}, want: []int{200}, reaches: true},
		{name: "malformed version", req: func(m string) string {
			return "GET /api/" + m + " HTTP/1.x\r\nHost: test.example\r\n\r\n"
		}, want: []int{400}},
		{name: "lowercase protocol name", req: func(m string) string {
			return "GET /api/" + m + " http/1.1\r\nHost: test.example\r\n\r\n"
		}, want: []int{400}},
		{name: "Transfer-Encoding identity", req: func(m string) string {
			return "POST /api/" + m + " HTTP/1.1\r\nHost: test.example\r\nTransfer-Encoding: identity\r\n\r\nhello"
		}, want: []int{400}},
		{name: "Transfer-Encoding gzip only", req: func(m string) string {
			return "POST /api/" + m + " HTTP/1.1\r\nHost: test.example\r\nTransfer-Encoding: gzip\r\n\r\nhello"
		}, want: []int{400}},
		{name: "Transfer-Encoding chunked and Content-Length", req: func(m string) string {
			return "POST /api/" + m + " HTTP/1.1\r\nHost: test.example\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n" +
				"5\r\nhello\r\n0\r\n\r\nGET /api/smuggled-" + m + " HTTP/1.1\r\nHost: test.example\r\n\r\n"
		}, want: []int{400}},
		{name: "Content-Length then chunked", req: func(m string) string {
			return "POST /api/" + m + " HTTP/1.1\r\nHost: test.example\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n" +
				"5\r\nhello\r\n0\r\n\r\n"
		}, want: []int{400}},
		{name: "two different Content-Length", req: func(m string) string {
			return "POST /api/" + m + " HTTP/1.1\r\nHost: test.example\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
		}, want: []int{400}},
		{name: "Content-Length list of different values", req: func(m string) string {
			return "POST /api/" + m + " HTTP/1.1\r\nHost: test.example\r\nContent-Length: 5, 6\r\n\r\nhello!"
		}, want: []int{400}},
		{name: "Content-Length with plus sign", req: func(m string) string {
			return "POST /api/" + m + " HTTP/1.1\r\nHost: test.example\r\nContent-Length: +5\r\n\r\nhello"
		}, want: []int{400}},
		{name: "Content-Length negative", req: func(m string) string {
			return "POST /api/" + m + " HTTP/1.1\r\nHost: test.example\r\nContent-Length: -1\r\n\r\nhello"
		}, want: []int{400}},
		{name: "Content-Length hex", req: func(m string) string {
			return "POST /api/" + m + " HTTP/1.1\r\nHost: test.example\r\nContent-Length: 0x5\r\n\r\nhello"
		}, want: []int{400}},
		{name: "Content-Length trailing garbage", req: func(m string) string {
			return "POST /api/" + m + " HTTP/1.1\r\nHost: test.example\r\nContent-Length: 5x\r\n\r\nhello"
		}, want: []int{400}},
		{name: "userinfo in Host", req: func(m string) string {
			return line(m) + "Host: user@example.com\r\n\r\n"
		}, want: []int{400}},
		{name: "missing Host on HTTP/1.1", req: func(m string) string {
			return line(m) + "X-Other: 1\r\n\r\n"
		}, want: []int{400}},
		{name: "two different Host headers", req: func(m string) string {
			return line(m) + "Host: a.example\r\nHost: b.example\r\n\r\n"
		}, want: []int{400}},
		{name: "two identical Host headers", req: func(m string) string {
			return line(m) + "Host: a.example\r\nHost: a.example\r\n\r\n"
		}, want: []int{400}},
		{name: "Host with space", req: func(m string) string {
			return line(m) + "Host: a example\r\n\r\n"
		}, want: []int{400}},
		{name: "NUL in header value", req: func(m string) string {
			return line(m) + "Host: test.example\r\nX-A: a\x00b\r\n\r\n"
		}, want: []int{400}},
		{name: "control char 0x01 in header value", req: func(m string) string {
			return line(m) + "Host: test.example\r\nX-A: a\x01b\r\n\r\n"
		}, want: []int{400}},
		{name: "bare CR in header value", req: func(m string) string {
			return line(m) + "Host: test.example\r\nX-A: a\rb\r\n\r\n"
		}, want: []int{400}},
		{name: "obs-fold continuation line", req: func(m string) string {
			return line(m) + "Host: test.example\r\nX-A: a\r\n b\r\n\r\n"
		}, want: []int{400}},
		{name: "obs-fold with tab", req: func(m string) string {
			return line(m) + "Host: test.example\r\nX-A: a\r\n\tb\r\n\r\n"
		}, want: []int{400}},
		{name: "bare LF everywhere", req: func(m string) string {
			return "GET /api/" + m + " HTTP/1.1\nHost: test.example\n\n"
		}, want: []int{400}},
		{name: "bare LF after request line", req: func(m string) string {
			return "GET /api/" + m + " HTTP/1.1\nHost: test.example\r\n\r\n"
		}, want: []int{400}},
		{name: "bare LF in one header line", req: func(m string) string {
			return line(m) + "Host: test.example\r\nX-A: a\nX-B: b\r\n\r\n"
		}, want: []int{400}},
		{name: "invalid method token", req: func(m string) string {
			return "G{T /api/" + m + " HTTP/1.1\r\nHost: test.example\r\n\r\n"
		}, want: []int{400}},
		{name: "method with control char", req: func(m string) string {
			return "GE\x01T /api/" + m + " HTTP/1.1\r\nHost: test.example\r\n\r\n"
		}, want: []int{400}},
		{name: "fragment in target", req: func(m string) string {
			return "GET /api/" + m + "#frag HTTP/1.1\r\nHost: test.example\r\n\r\n"
		}, want: []int{400}},
		{name: "space in target", req: func(m string) string {
			return "GET /api/" + m + "/a b HTTP/1.1\r\nHost: test.example\r\n\r\n"
		}, want: []int{400}},
		{name: "header block over max_header_bytes (many headers)", req: bigHeaders, want: []int{431}},
		{name: "header block over max_header_bytes (one value)", req: bigValue, want: []int{431}},
		{name: "invalid chunk size", req: func(m string) string {
			return "POST /api/" + m + " HTTP/1.1\r\nHost: test.example\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
		}, want: []int{400}, mayReach: true, jsonWord: "bad_request"},
		{name: "chunk size overflow", req: func(m string) string {
			return "POST /api/" + m + " HTTP/1.1\r\nHost: test.example\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff1\r\nhello\r\n0\r\n\r\n"
		}, want: []int{400, 413}, mayReach: true},
		{name: "chunk data longer than its size", req: func(m string) string {
			return "POST /api/" + m + " HTTP/1.1\r\nHost: test.example\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"
		}, want: []int{400}, mayReach: true, jsonWord: "bad_request"},
		// Chunk extensions (RFC 9112 section 7.1.1) and trailer fields are
		// framing: a byte the grammar has no room for is a 400.
		badBody("chunk extension with a bare CR", "5;a\rb\r\nhello\r\n0\r\n\r\n"),
		badBody("chunk extension with a bare CR after a good chunk", "5\r\nhello\r\n5;a\rb\r\nworld\r\n0\r\n\r\n"),
		badBody("chunk size followed by a bare CR", "5\r\r\nhello\r\n0\r\n\r\n"),
		badBody("chunk extension with an LF inside a quoted value", "5\r\nhello\r\n5;a=\"x\ny\"\r\nworld\r\n0\r\n\r\n"),
		badBody("chunk extension with a NUL", "5\r\nhello\r\n5;a\x00b\r\nworld\r\n0\r\n\r\n"),
		badBody("chunk extension with a control character", "5\r\nhello\r\n5;a=b\x01\r\nworld\r\n0\r\n\r\n"),
		badBody("chunk extension with an unterminated quoted string", "5\r\nhello\r\n5;a=\"world\r\nworld\r\n0\r\n\r\n"),
		badBody("chunk extension with a non-token name", "5\r\nhello\r\n5;a@b=c\r\nworld\r\n0\r\n\r\n"),
		badBody("chunk extension with an empty name", "5\r\nhello\r\n5;=c\r\nworld\r\n0\r\n\r\n"),
		badBody("chunk extension with an equals sign and no value", "5\r\nhello\r\n5;a=\r\nworld\r\n0\r\n\r\n"),
		badBody("whitespace after the chunk size", "5\r\nhello\r\n5 \r\nworld\r\n0\r\n\r\n"),
		badBody("whitespace after a chunk extension", "5\r\nhello\r\n5;a=b\t\r\nworld\r\n0\r\n\r\n"),
		badBody("whitespace inside the chunk size", "5\r\nhello\r\n5 5\r\nworld\r\n0\r\n\r\n"),
		badBody("last chunk with a NUL in its extension", "5\r\nhello\r\n0;a\x00\r\n\r\n"),
		badBody("trailer field with a bare CR", "5\r\nhello\r\n0\r\nX: a\rb\r\n\r\n"),
		badBody("bare CR line after the last chunk, a request pipelined behind", "5\r\nhello\r\n0\r\n\r\r\n"),
		badBody("obs-fold in trailers", "5\r\nhello\r\n0\r\nX: a\r\n b\r\n\r\n"),
		badBody("trailer field without a colon", "5\r\nhello\r\n0\r\nX-T 1\r\n\r\n"),
		badBody("trailer field with a NUL", "5\r\nhello\r\n0\r\nX: a\x00\r\n\r\n"),
		badBody("trailer field ending in a bare LF", "5\r\nhello\r\n0\r\nX: a\n\r\n"),
	}

	sentinel := 0
	for i, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			m := fmt.Sprintf("mark%03d", i)
			res, br := rawSend(t, p.Addr, r.req(m))
			if res.Resp == nil {
				t.Fatalf("connection closed without a response (%v), want status %v", res.Err, r.want)
			}
			okStatus := false
			for _, w := range r.want {
				okStatus = okStatus || res.Resp.StatusCode == w
			}
			if !okStatus {
				t.Errorf("got %v, want status %v", res, r.want)
			}
			if r.jsonWord != "" {
				checkProxyError(t, res.Resp, res.Body, res.Resp.StatusCode, r.jsonWord)
			}
			if r.closes {
				if !res.Resp.Close {
					t.Errorf("the answer does not say Connection: close")
				}
				checkClosed(t, br)
			}

			// Barrier: a valid request through the same proxy and backend.
			sentinel++
			s := rawDo(t, p.Addr, fmt.Sprintf("GET /api/sentinel%d HTTP/1.1\r\nHost: test.example\r\nConnection: close\r\n\r\n", sentinel))
			if s.Resp == nil || s.Resp.StatusCode != 200 {
				t.Fatalf("sentinel request after the row: %v", s)
			}
			seen := strings.Contains(b.Raw(), m)
			switch {
			case r.reaches && !seen:
				t.Errorf("backend never received the valid request")
			case r.partial:
				if n := completeRequests(b.Raw(), m); n > 0 {
					t.Errorf("backend received %d complete requests built from the rejected one (marker %s):\n%s", n, m, rawAround(b.Raw(), m))
				}
			case !r.reaches && !r.mayReach && seen:
				t.Errorf("backend received bytes of a rejected request (marker %s):\n%s", m, rawAround(b.Raw(), m))
			}
		})
	}
}

// rawAround returns the backend bytes around the first occurrence of m.
func rawAround(raw, m string) string {
	i := strings.Index(raw, m)
	lo, hi := max(0, i-200), min(len(raw), i+400)
	return raw[lo:hi]
}

// TestExpectContinue: the client sends headers with Expect: 100-continue,
// waits for the interim 100, then sends the body and gets the final answer.
func TestExpectContinue(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %s", body)
	})
	p := start(t, simpleRoute(b.URL))

	c, br := dialRaw(t, p.Addr, 5*time.Second)
	io.WriteString(c, "POST /api/upload HTTP/1.1\r\nHost: test.example\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
	interim, err := http.ReadResponse(br, &http.Request{Method: "POST"})
	if err != nil {
		t.Fatalf("reading the interim response before sending the body: %v", err)
	}
	if interim.StatusCode != 100 {
		body, _ := io.ReadAll(interim.Body)
		t.Fatalf("first response = %d %q, want 100 Continue", interim.StatusCode, body)
	}
	io.WriteString(c, "hello")
	res := readRaw(br, "POST")
	if res.Resp == nil || res.Resp.StatusCode != 200 || string(res.Body) != "got hello" {
		t.Fatalf("final response = %v, want 200 \"got hello\"", res)
	}
	if got := b.Last(t); string(got.Body) != "hello" {
		t.Errorf("backend body = %q, want hello", got.Body)
	}
}
