package h2

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-proxy/sluice/internal/wire"
)

func TestAppendHead(t *testing.T) {
	h := func(kv ...string) http.Header {
		hd := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			hd.Add(kv[i], kv[i+1])
		}
		return hd
	}
	tests := []struct {
		name string
		req  request
		want string // "" when refused
		body uint8
	}{
		{"get", request{"GET", "/a?b=1", "example.com", h("Accept", "*/*"), 0},
			"GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n", bodyNone},
		{"post with length", request{"POST", "/up", "example.com", h("Content-Length", "5"), 5},
			"POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\n", bodyLength},
		{"post without length", request{"POST", "/up", "example.com", h(), -1},
			"POST /up HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n", bodyChunked},
		{"post ended at once", request{"POST", "/up", "example.com", h(), 0},
			"POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n\r\n", bodyNone},
		{"declared zero", request{"PUT", "/z", "example.com", h("Content-Length", "0"), 0},
			"PUT /z HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n\r\n", bodyNone},
		{"cookies joined", request{"GET", "/", "example.com", h("Cookie", "a=1", "Cookie", "b=2"), 0},
			"GET / HTTP/1.1\r\nHost: example.com\r\nCookie: a=1; b=2\r\n\r\n", bodyNone},
		{"te trailers kept", request{"GET", "/", "example.com", h("Te", "trailers"), 0},
			"GET / HTTP/1.1\r\nHost: example.com\r\nTe: trailers\r\n\r\n", bodyNone},
		{"expect dropped", request{"PUT", "/", "example.com", h("Expect", "100-continue", "Content-Length", "3"), 3},
			"PUT / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\n\r\n", bodyLength},
		{"host equal to authority", request{"GET", "/", "Example.com", h("Host", "example.COM"), 0},
			"GET / HTTP/1.1\r\nHost: Example.com\r\n\r\n", bodyNone},
		{"host without authority", request{"GET", "/", "", h("Host", "example.com"), 0},
			"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", bodyNone},
		{"options star", request{"OPTIONS", "*", "example.com", h(), 0},
			"OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n", bodyNone},
		{"connect", request{"CONNECT", "", "example.com:443", h(), 0},
			"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", bodyNone},

		{"connection", request{"GET", "/", "e", h("Connection", "close"), 0}, "", 0},
		{"keep-alive", request{"GET", "/", "e", h("Keep-Alive", "1"), 0}, "", 0},
		{"proxy-connection", request{"GET", "/", "e", h("Proxy-Connection", "x"), 0}, "", 0},
		{"transfer-encoding", request{"POST", "/", "e", h("Transfer-Encoding", "chunked"), -1}, "", 0},
		{"upgrade", request{"GET", "/", "e", h("Upgrade", "h2c"), 0}, "", 0},
		{"te gzip", request{"GET", "/", "e", h("Te", "gzip"), 0}, "", 0},
		{"two te", request{"GET", "/", "e", h("Te", "trailers", "Te", "trailers"), 0}, "", 0},
		{"host differs", request{"GET", "/", "a.example", h("Host", "b.example"), 0}, "", 0},
		{"two hosts", request{"GET", "/", "", h("Host", "a", "Host", "a"), 0}, "", 0},
		{"length on an ended stream", request{"POST", "/", "e", h("Content-Length", "5"), 0}, "", 0},
		{"length not a number", request{"POST", "/", "e", h("Content-Length", "abc"), 0}, "", 0},
		{"lengths differ", request{"POST", "/", "e", h("Content-Length", "4", "Content-Length", "5"), 4}, "", 0},
		{"CR in a value", request{"GET", "/", "e", h("X-A", "a\rb"), 0}, "", 0},
		{"LF in a value", request{"GET", "/", "e", h("X-A", "a\nB: c"), 0}, "", 0},
		{"NUL in a value", request{"GET", "/", "e", h("X-A", "a\x00"), 0}, "", 0},
		{"CR in a cookie crumb", request{"GET", "/", "e", h("Cookie", "a", "Cookie", "b\r\nX: y"), 0}, "", 0},
		{"name not a token", request{"GET", "/", "e", http.Header{"X A": {"v"}}, 0}, "", 0},
		{"method not a token", request{"G T", "/", "e", h(), 0}, "", 0},
		{"space in target", request{"GET", "/a b", "e", h(), 0}, "", 0},
		{"absolute target", request{"GET", "http://evil/", "e", h(), 0}, "", 0},
		{"empty target", request{"GET", "", "e", h(), 0}, "", 0},
		// Rendered, for the proxy to answer 400 as it does on HTTP/1.1.
		{"star for GET", request{"GET", "*", "e", h(), 0}, "GET * HTTP/1.1\r\nHost: e\r\n\r\n", bodyNone},
		{"CRLF in authority", request{"GET", "/", "e\r\nX: y", h(), 0}, "", 0},
		{"connect without authority", request{"CONNECT", "", "", h(), 0}, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			head, body, _, ok := appendHead(nil, &tt.req)
			if tt.want == "" {
				if ok {
					t.Fatalf("rendered %q, want it refused", head)
				}
				return
			}
			if !ok || string(head) != tt.want || body != tt.body {
				t.Fatalf("got %q (ok %v, body %d), want %q (body %d)", head, ok, body, tt.want, tt.body)
			}
		})
	}
}

// FuzzAppendHead feeds header lists through appendHead: whatever they
// hold, a rendered head is one strict HTTP/1.1 request head, with no CR,
// LF or NUL inside a line, token names, one Host, framing of its own and
// no connection-specific field.
func FuzzAppendHead(f *testing.F) {
	f.Add([]byte(":method=GET\xff:path=/\xff:authority=a\xffaccept=*/*"), uint8(0))
	f.Add([]byte(":method=POST\xff:path=/x\xff:authority=a\xffcontent-length=3"), uint8(2))
	f.Add([]byte(":method=GET\xff:path=/\xff:authority=a\xffx=a\r\nb: c"), uint8(0))
	f.Add([]byte(":method=GET\xff:path=/\xffhost=a\xffcookie=a\xffcookie=b"), uint8(1))
	f.Add([]byte(":method=CONNECT\xff:authority=a:1\xffte=trailers"), uint8(0))
	f.Fuzz(func(t *testing.T, list []byte, kind uint8) {
		r := request{header: http.Header{}}
		for _, fld := range bytes.Split(list, []byte{0xff}) {
			name, value, _ := strings.Cut(string(fld), "=")
			switch name {
			case ":method":
				r.method = value
			case ":path":
				r.target = value
			case ":authority":
				r.authority = value
			default:
				// As the HTTP/2 server keys them.
				k := http.CanonicalHeaderKey(name)
				r.header[k] = append(r.header[k], value)
			}
		}
		switch kind % 3 {
		case 0:
			r.contentLength = 0
		case 1:
			r.contentLength = -1
		default:
			r.contentLength, _ = strconv.ParseInt(r.header.Get("Content-Length"), 10, 64)
		}
		head, body, length, ok := appendHead(nil, &r)
		if !ok {
			return
		}
		checkHead(t, head, body, length)
	})
}

// checkHead fails t unless head is one strict HTTP/1.1 request head.
func checkHead(t *testing.T, head []byte, body uint8, length int64) {
	t.Helper()
	if !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		t.Fatalf("head %q does not end in an empty line", head)
	}
	lines := strings.Split(string(head[:len(head)-4]), "\r\n")
	for _, l := range lines {
		if l == "" || strings.ContainsAny(l, "\r\n\x00") {
			t.Fatalf("line %q of %q is empty or holds CR, LF or NUL", l, head)
		}
	}
	parts := strings.Split(lines[0], " ")
	if len(parts) != 3 || !wire.IsToken([]byte(parts[0])) || parts[1] == "" || parts[2] != "HTTP/1.1" {
		t.Fatalf("request line %q", lines[0])
	}
	hosts, lengths, chunked := 0, 0, 0
	for _, l := range lines[1:] {
		name, value, ok := strings.Cut(l, ": ")
		if !ok || !wire.IsToken([]byte(name)) {
			t.Fatalf("field line %q of %q", l, head)
		}
		switch strings.ToLower(name) {
		case "host":
			hosts++
		case "content-length":
			lengths++
			if body == bodyLength && value != strconv.FormatInt(length, 10) {
				t.Fatalf("Content-Length %q for a body of %d", value, length)
			}
		case "transfer-encoding":
			chunked++
			if value != "chunked" || body != bodyChunked {
				t.Fatalf("Transfer-Encoding %q (body %d)", value, body)
			}
		case "connection", "keep-alive", "proxy-connection", "upgrade", "expect":
			t.Fatalf("field %q in %q", l, head)
		case "te":
			if !strings.EqualFold(value, "trailers") {
				t.Fatalf("field %q in %q", l, head)
			}
		}
	}
	if hosts != 1 || lengths > 1 || chunked > 1 || lengths+chunked > 1 {
		t.Fatalf("%d Host, %d Content-Length, %d Transfer-Encoding in %q", hosts, lengths, chunked, head)
	}
	if body == bodyChunked && chunked != 1 || body == bodyLength && lengths != 1 {
		t.Fatalf("framing %d not in %q", body, head)
	}
}
