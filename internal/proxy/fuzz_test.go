package proxy

import (
	"testing"

	"github.com/sluice-proxy/sluice/internal/wire"
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
			if err.status != 400 {
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
			if !wire.IsToken(f.Name) || !wire.ValidFieldValue(f.Value) {
				t.Fatalf("accepted field %q: %q", f.Name, f.Value)
			}
		}
	})
}
