package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strings"
	"testing"
)

func mustOK(t testing.TB, r rawResult) {
	t.Helper()
	if r.Resp == nil || r.Resp.StatusCode != 200 {
		t.Fatalf("got %v, want 200", r)
	}
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	p := start(t, fmt.Sprintf(`
routes:
  - name: api
    path_prefix: /api
    backends: [%s]
  - name: down
    path_prefix: /down
    backends: [%s]
`, b.URL, refusedURL(t)))

	long128 := strings.Repeat("a", 128)
	long129 := strings.Repeat("b", 129)

	t.Run("generated when absent", func(t *testing.T) {
		ids := map[string]bool{}
		for i := 0; i < 2; i++ {
			r := rawDo(t, p.Addr, rawReq("GET /api/gen HTTP/1.1", "Host: test.example"))
			mustOK(t, r)
			id := r.Resp.Header.Get("X-Request-Id")
			if !validRequestID(id) {
				t.Fatalf("X-Request-Id %q is not a valid generated id", id)
			}
			if got := b.Last(t).Header.Values("X-Request-Id"); len(got) != 1 || got[0] != id {
				t.Errorf("backend saw X-Request-Id %q, client got %q: want the same", got, id)
			}
			ids[id] = true
		}
		if len(ids) != 2 {
			t.Errorf("two requests got the same generated id %v", ids)
		}
	})

	valid := []struct{ name, id string }{
		{"simple", "abc-123"},
		{"visible punctuation", `!"#$%&'()*+,-./:;<=>?@[\]^_{|}~`},
		{"128 chars", long128},
	}
	for _, tc := range valid {
		t.Run("kept "+tc.name, func(t *testing.T) {
			r := rawDo(t, p.Addr, rawReq("GET /api/kept HTTP/1.1", "Host: test.example", "X-Request-Id: "+tc.id))
			mustOK(t, r)
			if got := r.Resp.Header.Get("X-Request-Id"); got != tc.id {
				t.Errorf("response X-Request-Id = %q, want the client's %q", got, tc.id)
			}
			if got := b.Last(t).Header.Values("X-Request-Id"); len(got) != 1 || got[0] != tc.id {
				t.Errorf("backend saw X-Request-Id %q, want [%q]", got, tc.id)
			}
		})
	}

	// A head read whole but refused (framing, Host, version) is answered
	// by the proxy: the client's valid X-Request-Id comes back on it, on
	// whichever line it stood.
	refusedHeads := []struct{ name, line string }{
		{"bad Content-Length after the id", "POST /api/r HTTP/1.1"},
		{"version", "GET /api/r HTTP/2.0"},
	}
	for _, tc := range refusedHeads {
		t.Run("kept on a refused head: "+tc.name, func(t *testing.T) {
			r := rawDo(t, p.Addr, rawReq(tc.line, "Host: test.example", "X-Request-Id: keep-me-7", "Content-Length: x"))
			if r.Resp == nil || r.Resp.StatusCode != 400 {
				t.Fatalf("got %v, want 400", r)
			}
			if got := r.Resp.Header.Get("X-Request-Id"); got != "keep-me-7" {
				t.Errorf("X-Request-Id = %q, want the client's keep-me-7", got)
			}
		})
	}
	t.Run("kept on a refused head: id after the bad field", func(t *testing.T) {
		r := rawDo(t, p.Addr, rawReq("POST /api/r HTTP/1.1", "Host: test.example", "Transfer-Encoding: gzip", "X-Request-Id: late-id"))
		if r.Resp == nil || r.Resp.StatusCode != 400 {
			t.Fatalf("got %v, want 400", r)
		}
		if got := r.Resp.Header.Get("X-Request-Id"); got != "late-id" {
			t.Errorf("X-Request-Id = %q, want the client's late-id", got)
		}
	})

	invalid := []struct{ name, line string }{
		{"129 chars", "X-Request-Id: " + long129},
		{"space", "X-Request-Id: abc def"},
		{"tab", "X-Request-Id: abc\tdef"},
		{"non-ASCII", "X-Request-Id: caf\xc3\xa9"},
		{"empty", "X-Request-Id: "},
	}
	for _, tc := range invalid {
		t.Run("replaced "+tc.name, func(t *testing.T) {
			r := rawDo(t, p.Addr, rawReq("GET /api/replaced HTTP/1.1", "Host: test.example", tc.line))
			mustOK(t, r)
			id := r.Resp.Header.Get("X-Request-Id")
			sent := strings.TrimSpace(strings.TrimPrefix(tc.line, "X-Request-Id:"))
			if !validRequestID(id) || strings.Contains(sent, id) {
				t.Errorf("response X-Request-Id = %q, want a new valid id replacing %q", id, sent)
			}
			if got := b.Last(t).Header.Values("X-Request-Id"); len(got) != 1 || got[0] != id {
				t.Errorf("backend saw X-Request-Id %q, want only the replacement [%q]", got, id)
			}
		})
	}

	t.Run("on proxy errors", func(t *testing.T) {
		for _, tc := range []struct {
			path, word string
			status     int
		}{{"/nowhere", "no_route", 404}, {"/down/x", "upstream_error", 502}} {
			r := rawDo(t, p.Addr, rawReq("GET "+tc.path+" HTTP/1.1", "Host: test.example"))
			if r.Resp == nil {
				t.Fatal(r)
			}
			checkProxyError(t, r.Resp, r.Body, tc.status, tc.word)
			if id := r.Resp.Header.Get("X-Request-Id"); !validRequestID(id) {
				t.Errorf("%s: X-Request-Id = %q, want a generated id", tc.path, id)
			}
			r = rawDo(t, p.Addr, rawReq("GET "+tc.path+" HTTP/1.1", "Host: test.example", "X-Request-Id: mine-err"))
			if r.Resp == nil {
				t.Fatal(r)
			}
			checkProxyError(t, r.Resp, r.Body, tc.status, tc.word)
			if got := r.Resp.Header.Get("X-Request-Id"); got != "mine-err" {
				t.Errorf("%s: X-Request-Id = %q, want the client's mine-err", tc.path, got)
			}
		}
	})
}

func TestHopByHopRequestHeaders(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	p := start(t, simpleRoute(b.URL))

	r := rawDo(t, p.Addr, rawReq("GET /api/hop HTTP/1.1",
		"Host: test.example",
		"Connection: close, X-Custom-Hop, x-other-hop",
		"Keep-Alive: timeout=5",
		"Proxy-Connection: keep-alive",
		"Proxy-Authorization: Basic Zm9vOmJhcg==",
		"Proxy-Authenticate: Basic",
		"TE: gzip",
		"Trailer: X-Trail",
		"Upgrade: foo/1",
		"X-Custom-Hop: 1",
		"X-Other-Hop: 2",
		"X-Keep: yes",
	))
	mustOK(t, r)
	got := b.Last(t).Header
	for _, h := range []string{"Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Proxy-Authenticate",
		"Te", "Trailer", "Upgrade", "X-Custom-Hop", "X-Other-Hop"} {
		if v, ok := got[h]; ok {
			t.Errorf("backend received hop-by-hop header %s: %q", h, v)
		}
	}
	checkConnectionTokens(t, "request to backend", got)
	if got.Get("X-Keep") != "yes" {
		t.Errorf("backend lost the end-to-end header X-Keep: %v", got)
	}

	t.Run("TE trailers forwarded", func(t *testing.T) {
		r := rawDo(t, p.Addr, rawReq("GET /api/te HTTP/1.1", "Host: test.example", "TE: trailers"))
		mustOK(t, r)
		if got := b.Last(t).Header.Get("Te"); got != "trailers" {
			t.Errorf("backend saw TE %q, want trailers", got)
		}
	})
}

// checkConnectionTokens fails when a Connection header carries anything but
// the proxy's own keep-alive/close tokens.
func checkConnectionTokens(t testing.TB, where string, h http.Header) {
	t.Helper()
	for _, v := range h.Values("Connection") {
		for _, tok := range strings.Split(v, ",") {
			tok = strings.ToLower(strings.TrimSpace(tok))
			if tok != "" && tok != "keep-alive" && tok != "close" {
				t.Errorf("%s: Connection carries token %q from the other hop: %q", where, tok, h.Values("Connection"))
			}
		}
	}
}

func TestHopByHopResponseHeaders(t *testing.T) {
	t.Parallel()
	rb := newRawBackend(t, "HTTP/1.1 200 OK\r\n"+
		"Content-Length: 2\r\n"+
		"Connection: close, X-Resp-Hop\r\n"+
		"Keep-Alive: timeout=5\r\n"+
		"Proxy-Connection: keep-alive\r\n"+
		"Proxy-Authenticate: Basic realm=\"x\"\r\n"+
		"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"+
		"Trailer: X-Trail\r\n"+
		"Upgrade: foo/1\r\n"+
		"TE: trailers\r\n"+
		"X-Resp-Hop: 1\r\n"+
		"X-Resp-Keep: yes\r\n"+
		"\r\n"+
		"ok")
	p := start(t, simpleRoute(rb.URL))

	r := rawDo(t, p.Addr, rawReq("GET /api/x HTTP/1.1", "Host: test.example"))
	mustOK(t, r)
	if string(r.Body) != "ok" {
		t.Errorf("body = %q, want ok", r.Body)
	}
	for _, h := range []string{"Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
		"Trailer", "Upgrade", "Te", "X-Resp-Hop"} {
		if v, ok := r.Resp.Header[h]; ok {
			t.Errorf("client received hop-by-hop response header %s: %q", h, v)
		}
	}
	if len(r.Resp.Trailer) != 0 {
		t.Errorf("client received announced trailers %v from a Content-Length response", r.Resp.Trailer)
	}
	checkConnectionTokens(t, "response to client", r.Resp.Header)
	if r.Resp.Header.Get("X-Resp-Keep") != "yes" {
		t.Errorf("client lost the end-to-end header X-Resp-Keep: %v", r.Resp.Header)
	}
}

// TestTrailerFieldDroppedOnChunked: the backend's Trailer field is
// hop-by-hop on a chunked response too; the trailers themselves go on.
func TestTrailerFieldDroppedOnChunked(t *testing.T) {
	t.Parallel()
	rb := newRawBackend(t, "HTTP/1.1 200 OK\r\n"+
		"Transfer-Encoding: chunked\r\n"+
		"Trailer: X-Announced, X-Other\r\n"+
		"\r\n"+
		"3\r\nabc\r\n0\r\nX-Announced: tv\r\n\r\n")
	p := start(t, simpleRoute(rb.URL))
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /api/x HTTP/1.1\r\nHost: test.example\r\n\r\n")
	br := bufio.NewReader(c)
	tp := textproto.NewReader(br)
	if line, err := tp.ReadLine(); err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Fatalf("status line %q, %v", line, err)
	}
	head, err := tp.ReadMIMEHeader()
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := head["Trailer"]; ok {
		t.Errorf("client received the backend's Trailer field %q", v)
	}
	if head.Get("Transfer-Encoding") != "chunked" {
		t.Fatalf("response not chunked: %v", head)
	}
	body, err := io.ReadAll(httputil.NewChunkedReader(br))
	if err != nil || string(body) != "abc" {
		t.Fatalf("body %q, %v", body, err)
	}
	trailer, err := tp.ReadMIMEHeader()
	if err != nil || trailer.Get("X-Announced") != "tv" {
		t.Errorf("trailers %v, %v; want X-Announced: tv relayed", trailer, err)
	}
}

func TestConnectionCannotRemoveProxyHeaders(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	p := start(t, simpleRoute(b.URL))

	check := func(t *testing.T, body string) {
		t.Helper()
		got := b.Last(t)
		if got.Host != "test.example" {
			t.Errorf("backend Host = %q, want test.example", got.Host)
		}
		want := map[string]string{
			"X-Forwarded-For":   "127.0.0.1",
			"X-Forwarded-Proto": "http",
			"X-Forwarded-Host":  "test.example",
			"X-Request-Id":      "keep-me-7",
		}
		for h, v := range want {
			if g := got.Header.Values(h); len(g) != 1 || g[0] != v {
				t.Errorf("backend %s = %q, want [%q]", h, g, v)
			}
		}
		if string(got.Body) != body {
			t.Errorf("backend body = %q, want %q; the backend's socket read:\n%s", got.Body, body, b.Raw())
		}
	}

	t.Run("content-length", func(t *testing.T) {
		r := rawDo(t, p.Addr, "POST /api/c HTTP/1.1\r\n"+
			"Host: test.example\r\n"+
			"Connection: close, Host, Content-Length, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Request-Id\r\n"+
			"X-Request-Id: keep-me-7\r\n"+
			"Content-Length: 5\r\n"+
			"\r\n"+
			"hello")
		mustOK(t, r)
		check(t, "hello")
	})
	t.Run("transfer-encoding", func(t *testing.T) {
		r := rawDo(t, p.Addr, "POST /api/c HTTP/1.1\r\n"+
			"Host: test.example\r\n"+
			"Connection: close, Transfer-Encoding, X-Forwarded-For, X-Request-Id\r\n"+
			"X-Request-Id: keep-me-7\r\n"+
			"Transfer-Encoding: chunked\r\n"+
			"\r\n"+
			"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
		mustOK(t, r)
		check(t, "hello world")
	})
}

// xffList flattens every X-Forwarded-For line into its comma-separated items.
func xffList(h http.Header) []string {
	var out []string
	for _, v := range h.Values("X-Forwarded-For") {
		for _, it := range strings.Split(v, ",") {
			out = append(out, strings.TrimSpace(it))
		}
	}
	return out
}

// forwardedList flattens every Forwarded line into its elements.
func forwardedList(h http.Header) []string {
	var out []string
	for _, v := range h.Values("Forwarded") {
		for _, it := range strings.Split(v, ",") {
			out = append(out, strings.TrimSpace(it))
		}
	}
	return out
}

func eqList(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

const proxyElement = "for=127.0.0.1;proto=http;host=myhost.example"

func TestForwardedHeadersUntrusted(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	// 127.0.0.1 is not in 10.0.0.0/8, so the test client is untrusted.
	p := start(t, "trusted_proxies: [\"10.0.0.0/8\"]\n"+simpleRoute(b.URL))

	r := rawDo(t, p.Addr, rawReq("GET /api/f HTTP/1.1",
		"Host: myhost.example",
		"X-Forwarded-For: 1.2.3.4",
		"X-Forwarded-For: 5.6.7.8",
		"X-Forwarded-Proto: https",
		"X-Forwarded-Host: evil.example",
		"Forwarded: for=1.2.3.4;proto=https;host=evil.example",
	))
	mustOK(t, r)
	got := b.Last(t).Header
	if l := xffList(got); !eqList(l, []string{"127.0.0.1"}) {
		t.Errorf("X-Forwarded-For = %q, want the spoofed value replaced by [127.0.0.1]", got.Values("X-Forwarded-For"))
	}
	if v := got.Values("X-Forwarded-Proto"); !eqList(v, []string{"http"}) {
		t.Errorf("X-Forwarded-Proto = %q, want [http]", v)
	}
	if v := got.Values("X-Forwarded-Host"); !eqList(v, []string{"myhost.example"}) {
		t.Errorf("X-Forwarded-Host = %q, want [myhost.example]", v)
	}
	if l := forwardedList(got); !eqList(l, []string{proxyElement}) {
		t.Errorf("Forwarded = %q, want [%s]", got.Values("Forwarded"), proxyElement)
	}
}

func TestForwardedHeadersTrusted(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	p := start(t, "trusted_proxies: [\"127.0.0.0/8\"]\n"+simpleRoute(b.URL))

	t.Run("client values kept and appended", func(t *testing.T) {
		r := rawDo(t, p.Addr, rawReq("GET /api/f HTTP/1.1",
			"Host: myhost.example",
			"X-Forwarded-For: 1.2.3.4",
			"X-Forwarded-Proto: https",
			"X-Forwarded-Host: orig.example",
			"Forwarded: for=1.2.3.4;proto=https;host=orig.example",
		))
		mustOK(t, r)
		got := b.Last(t).Header
		if l := xffList(got); !eqList(l, []string{"1.2.3.4", "127.0.0.1"}) {
			t.Errorf("X-Forwarded-For = %q, want 1.2.3.4 with 127.0.0.1 appended", got.Values("X-Forwarded-For"))
		}
		if v := got.Values("X-Forwarded-Proto"); !eqList(v, []string{"https"}) {
			t.Errorf("X-Forwarded-Proto = %q, want the trusted peer's [https]", v)
		}
		if v := got.Values("X-Forwarded-Host"); !eqList(v, []string{"orig.example"}) {
			t.Errorf("X-Forwarded-Host = %q, want the trusted peer's [orig.example]", v)
		}
		want := []string{"for=1.2.3.4;proto=https;host=orig.example", proxyElement}
		if l := forwardedList(got); !eqList(l, want) {
			t.Errorf("Forwarded = %q, want elements %q", got.Values("Forwarded"), want)
		}
	})

	t.Run("several X-Forwarded-For lines", func(t *testing.T) {
		r := rawDo(t, p.Addr, rawReq("GET /api/f HTTP/1.1",
			"Host: myhost.example",
			"X-Forwarded-For: 1.1.1.1",
			"X-Forwarded-For: 2.2.2.2, 3.3.3.3",
		))
		mustOK(t, r)
		got := b.Last(t).Header
		if l := xffList(got); !eqList(l, []string{"1.1.1.1", "2.2.2.2", "3.3.3.3", "127.0.0.1"}) {
			t.Errorf("X-Forwarded-For = %q, want 1.1.1.1, 2.2.2.2, 3.3.3.3, 127.0.0.1", got.Values("X-Forwarded-For"))
		}
	})

	t.Run("several X-Forwarded-Proto and -Host lines kept as sent", func(t *testing.T) {
		r := rawDo(t, p.Addr, rawReq("GET /api/f HTTP/1.1",
			"Host: myhost.example",
			"X-Forwarded-Proto: https",
			"X-Forwarded-Host: a.example",
			"X-Forwarded-Proto: http",
			"X-Forwarded-Host: b.example",
		))
		mustOK(t, r)
		got := b.Last(t).Header
		if v := got.Values("X-Forwarded-Proto"); !eqList(v, []string{"https", "http"}) {
			t.Errorf("X-Forwarded-Proto = %q, want both lines as sent [https http]", v)
		}
		if v := got.Values("X-Forwarded-Host"); !eqList(v, []string{"a.example", "b.example"}) {
			t.Errorf("X-Forwarded-Host = %q, want both lines as sent [a.example b.example]", v)
		}
	})

	t.Run("nothing sent gets the proxy's values", func(t *testing.T) {
		r := rawDo(t, p.Addr, rawReq("GET /api/f HTTP/1.1", "Host: myhost.example"))
		mustOK(t, r)
		got := b.Last(t).Header
		if l := xffList(got); !eqList(l, []string{"127.0.0.1"}) {
			t.Errorf("X-Forwarded-For = %q, want [127.0.0.1]", got.Values("X-Forwarded-For"))
		}
		if v := got.Values("X-Forwarded-Proto"); !eqList(v, []string{"http"}) {
			t.Errorf("X-Forwarded-Proto = %q, want [http]", v)
		}
		if v := got.Values("X-Forwarded-Host"); !eqList(v, []string{"myhost.example"}) {
			t.Errorf("X-Forwarded-Host = %q, want [myhost.example]", v)
		}
		if l := forwardedList(got); !eqList(l, []string{proxyElement}) {
			t.Errorf("Forwarded = %q, want [%s]", got.Values("Forwarded"), proxyElement)
		}
	})
}

func TestUnderscoreHeadersDropped(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	p := start(t, simpleRoute(b.URL))

	r := rawDo(t, p.Addr, rawReq("GET /api/u HTTP/1.1",
		"Host: test.example",
		"X_Auth_User: admin",
		"x_lower: 1",
		"X-Auth-User: real",
	))
	mustOK(t, r)
	got := b.Last(t).Header
	for k := range got {
		if strings.Contains(k, "_") {
			t.Errorf("backend received header %q with an underscore", k)
		}
	}
	if v := got.Values("X-Auth-User"); !eqList(v, []string{"real"}) {
		t.Errorf("X-Auth-User = %q, want [real] (the dash form kept, the underscore alias dropped)", v)
	}
	if raw := strings.ToLower(b.Raw()); strings.Contains(raw, "x_auth_user") || strings.Contains(raw, "x_lower") {
		t.Errorf("underscore header names reached the backend's socket:\n%s", b.Raw())
	}
}

func TestHostPassedUnchanged(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	p := start(t, simpleRoute(b.URL))

	for _, host := range []string{"Mixed.Case.Example:8443", "example.com", "127.0.0.1:1", "[::1]:8080", ""} {
		r := rawDo(t, p.Addr, rawReq("GET /api/h HTTP/1.1", "Host: "+host))
		mustOK(t, r)
		if got := b.Last(t).Host; got != host {
			t.Errorf("backend Host = %q, want %q unchanged", got, host)
		}
	}
	// The backend hears HTTP/1.1, which needs a Host field: an HTTP/1.0
	// request without one is sent with an empty one (Go's server answers
	// 400 to an HTTP/1.1 request with none).
	r := rawDo(t, p.Addr, rawReq("GET /api/h HTTP/1.0"))
	mustOK(t, r)
	if got := b.Last(t).Host; got != "" {
		t.Errorf("backend Host = %q for an HTTP/1.0 request without one, want empty", got)
	}
}

func TestH2CUpgradeRemoved(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	p := start(t, simpleRoute(b.URL))

	cases := []struct {
		name    string
		headers []string
	}{
		{"named in Connection", []string{"Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAAQAAP__"}},
		{"not named in Connection", []string{"Connection: close", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAAQAAP__"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rawDo(t, p.Addr, rawReq("GET /api/h2c HTTP/1.1", append([]string{"Host: test.example"}, tc.headers...)...))
			if r.Resp == nil {
				t.Fatal(r)
			}
			if r.Resp.StatusCode == 101 {
				t.Fatalf("h2c upgrade was carried through: %v", r)
			}
			mustOK(t, r)
			got := b.Last(t).Header
			if v, ok := got["Upgrade"]; ok {
				t.Errorf("backend received Upgrade %q", v)
			}
			if v, ok := got["Http2-Settings"]; ok {
				t.Errorf("backend received HTTP2-Settings %q", v)
			}
			checkConnectionTokens(t, "request to backend", got)
		})
	}
}
