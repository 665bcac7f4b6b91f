package proxy

import (
	"bufio"
	"bytes"
	"io"
	"testing"
)

// FuzzParseRequestHead checks that request validation never panics, and
// that whatever it accepts has unambiguous framing and one valid Host.
func FuzzParseRequestHead(f *testing.F) {
	for _, seed := range []string{
		"Host: a\r\n\r\n",
		"Host: a\r\nContent-Length: 5\r\n\r\n",
		"Host: a\r\nTransfer-Encoding: chunked\r\n\r\n",
		"Host: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
		"Host: user@a\r\n\r\n",
		"Host: a\r\nX: a\r\n b\r\n\r\n",
		"Host: a\nX: b\n\n",
		"Host: [::1]:80\r\nContent-Length: 1, 1\r\n\r\n",
	} {
		f.Add([]byte(seed), true)
	}
	f.Fuzz(func(t *testing.T, raw []byte, http11 bool) {
		var h requestHead
		if err := parseRequestHead(&h, raw, http11); err != nil {
			if err.status != 400 && err.status != 501 {
				t.Fatalf("status %d", err.status)
			}
			return
		}
		if h.chunked && h.contentLength >= 0 {
			t.Fatal("accepted both chunked and Content-Length")
		}
		if http11 && h.hostCount != 1 {
			t.Fatalf("accepted %d Host headers", h.hostCount)
		}
		for _, f := range h.fields {
			if !isToken(f.name) || !validFieldValue(f.value) {
				t.Fatalf("accepted field %q: %q", f.name, f.value)
			}
		}
	})
}

// FuzzResponse checks that a backend's response head and chunked body,
// whatever they are, are parsed without panic or hang.
func FuzzResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 204 No Content\r\nKeep-Alive: timeout=5\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(raw), 4096)
		var h responseHead
		if err := readResponseHead(br, &h); err != nil {
			return
		}
		if h.status < 100 || h.status > 599 {
			t.Fatalf("status %d", h.status)
		}
		if h.chunked {
			var cr chunkedReader
			cr.reset(br)
			n, _ := io.Copy(io.Discard, &cr)
			if n > int64(len(raw)) {
				t.Fatalf("decoded %d bytes from %d", n, len(raw))
			}
		}
	})
}
