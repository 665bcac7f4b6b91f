package proxy

import "testing"

func TestParseRequestHead(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		http11  bool
		status  int // 0: accepted
		cl      int64
		chunked bool
	}{
		{"minimal", "Host: a\r\n\r\n", true, 0, -1, false},
		{"content length", "Host: a\r\nContent-Length: 5\r\n\r\n", true, 0, 5, false},
		{"same content length twice", "Host: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", true, 0, 5, false},
		{"content length list", "Host: a\r\nContent-Length: 5, 5\r\n\r\n", true, 0, 5, false},
		{"chunked", "Host: a\r\nTransfer-Encoding: chunked\r\n\r\n", true, 0, -1, true},
		{"chunked any case", "Host: a\r\ntransfer-encoding: Chunked\r\n\r\n", true, 0, -1, true},
		{"no host on 1.0", "\r\n", false, 0, -1, false},
		{"missing host", "Accept: */*\r\n\r\n", true, 400, 0, false},
		{"two hosts", "Host: a\r\nHost: b\r\n\r\n", true, 400, 0, false},
		{"userinfo in host", "Host: user@a\r\n\r\n", true, 400, 0, false},
		{"host with path", "Host: a/b\r\n\r\n", true, 400, 0, false},
		{"host with bad port", "Host: a:x\r\n\r\n", true, 400, 0, false},
		{"ipv6 host", "Host: [::1]:8080\r\n\r\n", true, 0, -1, false},
		{"space in name", "Host: a\r\nBad Header: x\r\n\r\n", true, 400, 0, false},
		{"space before colon", "Host: a\r\nX-A : x\r\n\r\n", true, 400, 0, false},
		{"control char", "Host: a\r\nX-A: a\x01b\r\n\r\n", true, 400, 0, false},
		{"obs fold", "Host: a\r\nX-A: a\r\n b\r\n\r\n", true, 400, 0, false},
		{"bare LF", "Host: a\nX-A: b\r\n\r\n", true, 400, 0, false},
		{"two content lengths", "Host: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", true, 400, 0, false},
		{"signed content length", "Host: a\r\nContent-Length: +5\r\n\r\n", true, 400, 0, false},
		{"hex content length", "Host: a\r\nContent-Length: 0x5\r\n\r\n", true, 400, 0, false},
		{"huge content length", "Host: a\r\nContent-Length: 17000000000\r\n\r\n", true, 0, 17000000000, false},
		{"te identity", "Host: a\r\nTransfer-Encoding: identity\r\n\r\n", true, 400, 0, false},
		{"te gzip chunked", "Host: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", true, 400, 0, false},
		{"te twice", "Host: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", true, 400, 0, false},
		{"te and cl", "Host: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", true, 400, 0, false},
		{"te on 1.0", "Transfer-Encoding: chunked\r\n\r\n", false, 400, 0, false},
		{"no colon", "Host: a\r\nX-A\r\n\r\n", true, 400, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h requestHead
			err := parseRequestHead(&h, []byte(tt.raw), tt.http11)
			if tt.status != 0 {
				if err == nil || err.status != tt.status {
					t.Fatalf("got %v, want status %d", err, tt.status)
				}
				return
			}
			if err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if h.contentLength != tt.cl || h.chunked != tt.chunked {
				t.Fatalf("content length %d chunked %v, want %d %v", h.contentLength, h.chunked, tt.cl, tt.chunked)
			}
		})
	}
}

func TestRequestFieldDropped(t *testing.T) {
	conn := [][]byte{[]byte("X-Forwarded-For, X-Request-Id, X-Secret, close")}
	tests := []struct {
		name string
		drop bool
	}{
		{"Accept", false},
		{"X-Secret", true},
		{"x-secret", true},
		{"Keep-Alive", true},
		{"Proxy-Authorization", true},
		{"Upgrade", true},
		{"HTTP2-Settings", true},
		{"X_Forwarded_For", true},
		{"X-Forwarded-For", true}, // replaced by the proxy's own
		{"Content-Type", false},
		{"Host", true}, // written separately
	}
	for _, tt := range tests {
		if got := requestFieldDropped([]byte(tt.name), conn); got != tt.drop {
			t.Errorf("%s: dropped=%v, want %v", tt.name, got, tt.drop)
		}
	}
	if protectedFromConnection([]byte("X-Secret")) || !protectedFromConnection([]byte("X-Forwarded-Host")) {
		t.Error("protectedFromConnection is wrong")
	}
}

// TestScanRequestID: the X-Request-Id of a head that did not parse.
func TestScanRequestID(t *testing.T) {
	for _, tt := range []struct{ name, raw, want string }{
		{"alone", "X-Request-Id: abc\r\n\r\n", "abc"},
		{"case and blanks", "Host: a\r\nx-request-ID:  \tabc \r\n\r\n", "abc"},
		{"the last of two", "X-Request-Id: one\r\nX-Request-Id: two\r\n\r\n", "two"},
		{"after a broken line", "Content-Length: x\r\nno colon here\r\nX-Request-Id: z\r\n\r\n", "z"},
		{"bare LF", "Host: a\nX-Request-Id: lf\n\n", "lf"},
		{"none", "Host: a\r\nX-Request: no\r\n\r\n", ""},
		{"empty block", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(scanRequestID([]byte(tt.raw))); got != tt.want {
				t.Errorf("scanRequestID(%q) = %q, want %q", tt.raw, got, tt.want)
			}
		})
	}
}
