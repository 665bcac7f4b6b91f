package e2e

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// ---------------------------------------------------------------------------
// A raw HTTP/2 client: frames and header blocks written as the test says,
// malformed ones included.

type h2conn struct {
	t    testing.TB
	c    *tls.Conn
	fr   *http2.Framer
	buf  bytes.Buffer
	enc  *hpack.Encoder
	dec  *hpack.Decoder
	next uint32 // the next stream to open

	// What the server's SETTINGS said.
	maxStreams uint32

	// The streams' outcomes read so far (see outcome).
	status map[uint32]string
	done   map[uint32]string
}

// dialH2 opens an h2 connection and exchanges SETTINGS.
func dialH2(t testing.TB, p *tlsProc) *h2conn {
	t.Helper()
	c, err := tls.Dial("tcp", p.TLSAddr, p.tlsClientConfig("localhost", "h2"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if c.ConnectionState().NegotiatedProtocol != "h2" {
		t.Fatalf("ALPN chose %q", c.ConnectionState().NegotiatedProtocol)
	}
	h := &h2conn{t: t, c: c, fr: http2.NewFramer(c, c), next: 1, status: map[uint32]string{}, done: map[uint32]string{}}
	h.enc = hpack.NewEncoder(&h.buf)
	h.dec = hpack.NewDecoder(4096, nil)
	h.fr.ReadMetaHeaders = h.dec
	io.WriteString(c, http2.ClientPreface)
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the server's SETTINGS: %v", err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			sf.ForeachSetting(func(s http2.Setting) error {
				if s.ID == http2.SettingMaxConcurrentStreams {
					h.maxStreams = s.Val
				}
				return nil
			})
			h.fr.WriteSettingsAck()
			return h
		}
	}
}

// block encodes fields (name, value pairs, as given: upper case and
// control characters too).
func (h *h2conn) block(fields ...string) []byte {
	h.buf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		h.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(h.buf.Bytes())
}

// open sends a HEADERS frame of fields on a new stream and returns it.
func (h *h2conn) open(endStream bool, fields ...string) uint32 {
	id := h.next
	h.next += 2
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.block(fields...),
		EndStream: endStream, EndHeaders: true}); err != nil {
		h.t.Fatalf("HEADERS: %v", err)
	}
	return id
}

// get is a well-formed GET of path.
func (h *h2conn) get(path string) uint32 {
	return h.open(true, ":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", path)
}

// outcome reads frames until stream id is answered or refused: "status
// NNN" (with the body read), "reset CODE", "goaway CODE" or "closed". The
// outcomes of other streams met on the way are kept for their turn.
func (h *h2conn) outcome(id uint32) string {
	for {
		if o, ok := h.done[id]; ok {
			return o
		}
		f, err := h.fr.ReadFrame()
		if err != nil {
			return "closed"
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if _, ok := h.status[f.StreamID]; !ok {
				h.status[f.StreamID] = "status " + f.PseudoValue("status")
			}
			if f.StreamEnded() {
				h.done[f.StreamID] = h.status[f.StreamID]
			}
		case *http2.DataFrame:
			if n := len(f.Data()); n > 0 {
				h.fr.WriteWindowUpdate(0, uint32(n))
			}
			if f.StreamEnded() {
				h.done[f.StreamID] = h.status[f.StreamID]
			}
		case *http2.RSTStreamFrame:
			h.done[f.StreamID] = "reset " + f.ErrCode.String()
		case *http2.GoAwayFrame:
			return "goaway " + f.ErrCode.String()
		case *http2.PingFrame:
			if !f.IsAck() {
				h.fr.WritePing(true, f.Data)
			}
		}
	}
}

// captureBackend counts the requests that reached it whole: head and the
// complete body its framing announced.
type captureBackend struct {
	*backend
	whole atomic.Int64
}

func newCaptureBackend(t testing.TB) *captureBackend {
	cb := &captureBackend{}
	cb.backend = newStreamBackend(t, "capture", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err == nil {
			cb.whole.Add(1)
		}
		io.WriteString(w, "captured")
	})
	return cb
}

// TestH2Malformed: every malformed request of RFC 9113 section 8 (as
// docs/configuration.md lists them) is refused, with a stream error or a
// 4xx, and no request reaches the backend whole; a stream error leaves the
// connection's other streams alone.
func TestH2Malformed(t *testing.T) {
	t.Parallel()
	cb := newCaptureBackend(t)
	p := startTLS(t, "retry: {attempts: 1}\n"+simpleRoute(cb.URL), "")
	base := []string{":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/api/x"}
	with := func(extra ...string) []string { return append(append([]string{}, base...), extra...) }
	type step struct {
		data []byte
		end  bool
	}
	cases := []struct {
		name   string
		fields []string
		end    bool   // HEADERS ends the stream
		data   []step // DATA frames after HEADERS
		want   string // "refused" (reset, goaway or closed) or a status
	}{
		{"connection", with("connection", "keep-alive"), true, nil, "refused"},
		{"keep-alive", with("keep-alive", "timeout=5"), true, nil, "refused"},
		{"proxy-connection", with("proxy-connection", "keep-alive"), true, nil, "refused"},
		{"transfer-encoding", with("transfer-encoding", "chunked"), false, []step{{[]byte("4\r\ntest\r\n0\r\n\r\n"), true}}, "refused or 400"},
		{"connection, with a body", with("connection", "close", "content-length", "4"), false, []step{{[]byte("test"), true}}, "refused or 400"},
		{"host differs from :authority, with a body", with("host", "evil.example", "content-length", "4"), false, []step{{[]byte("test"), true}}, "refused or 400"},
		{"upgrade", with("upgrade", "websocket"), true, nil, "refused"},
		{"te gzip", with("te", "gzip"), true, nil, "refused"},
		{"te trailers and more", with("te", "trailers, deflate"), true, nil, "refused"},
		{"upper-case name", with("X-Upper", "a"), true, nil, "refused"},
		{"CR in a value", with("x-a", "a\rb"), true, nil, "refused"},
		{"LF in a value", with("x-a", "a\nb: c"), true, nil, "refused"},
		{"NUL in a value", with("x-a", "a\x00b"), true, nil, "refused"},
		{"space at the start of a value", with("x-a", " a"), true, nil, "refused"},
		{"tab at the end of a value", with("x-a", "a\t"), true, nil, "refused"},
		{"space at the end of a value, with a body", with("x-a", "a ", "content-length", "4"), false, []step{{[]byte("test"), true}}, "refused or 400"},
		{"CRLF in :path", []string{":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/api/x HTTP/1.1\r\nX-Smuggled: 1"}, true, nil, "refused"},
		{"space in :path", []string{":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/api/x y"}, true, nil, "refused"},
		{"no :method", []string{":scheme", "https", ":authority", "localhost", ":path", "/api/x"}, true, nil, "refused"},
		{"no :path", []string{":method", "GET", ":scheme", "https", ":authority", "localhost"}, true, nil, "refused"},
		{"no :scheme", []string{":method", "GET", ":authority", "localhost", ":path", "/api/x"}, true, nil, "refused"},
		{"two :path", with(":path", "/api/y"), true, nil, "refused"},
		{"unknown pseudo-header", with(":foo", "bar"), true, nil, "refused"},
		{"pseudo-header after a field", []string{":method", "GET", ":scheme", "https", "x-a", "b", ":authority", "localhost", ":path", "/api/x"}, true, nil, "refused"},
		{":status in a request", with(":status", "200"), true, nil, "refused"},
		{"host differs from :authority", with("host", "evil.example"), true, nil, "refused"},
		{"two hosts", []string{":method", "GET", ":scheme", "https", ":path", "/api/x", "host", "localhost", "host", "evil.example"}, true, nil, "refused"},
		{":path not origin-form", []string{":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "http://evil.example/api/x"}, true, nil, "refused"},
		{"method not a token", []string{":method", "GE T", ":scheme", "https", ":authority", "localhost", ":path", "/api/x"}, true, nil, "refused"},
		{"content-length on a HEADERS that ends the stream", with("content-length", "5"), true, nil, "refused"},
		{"content-length not a number", with("content-length", "abc"), false, []step{{[]byte("abc"), true}}, "refused or 400"},
		{"content-lengths that differ", with("content-length", "4", "content-length", "5"), false, []step{{[]byte("test"), true}}, "refused or 400"},
		{"DATA longer than content-length", with("content-length", "4"), false, []step{{[]byte("test"), false}, {[]byte("more"), true}}, "refused or 400"},
		{"DATA longer than content-length, one frame", with("content-length", "4"), false, []step{{[]byte("testmore"), true}}, "refused or 400"},
		{"DATA shorter than content-length", with("content-length", "10"), false, []step{{[]byte("test"), true}}, "refused or 400"},
		{"DATA shorter than content-length, in two frames", with("content-length", "10"), false, []step{{[]byte("test"), false}, {[]byte("more"), true}}, "refused or 400"},
		{"CONNECT", []string{":method", "CONNECT", ":authority", "localhost:443"}, true, nil, "status 405"},
		{"extended CONNECT", []string{":method", "CONNECT", ":protocol", "websocket", ":scheme", "https", ":authority", "localhost", ":path", "/api/x"}, true, nil, "refused or 405"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := cb.whole.Load()
			h := dialH2(t, p)
			id := h.open(tc.end, tc.fields...)
			for _, d := range tc.data {
				h.fr.WriteData(id, d.end, d.data)
			}
			got := h.outcome(id)
			refused := strings.HasPrefix(got, "reset") || strings.HasPrefix(got, "goaway") || got == "closed"
			switch {
			case tc.want == "refused" && !refused,
				tc.want == "refused or 400" && !refused && got != "status 400",
				tc.want == "refused or 405" && !refused && got != "status 405",
				strings.HasPrefix(tc.want, "status") && got != tc.want:
				t.Errorf("outcome %q, want %s", got, tc.want)
			}
			if strings.HasPrefix(got, "reset") || strings.HasPrefix(got, "status") {
				// A stream error: the connection goes on.
				if next := h.outcome(h.get("/api/after")); next != "status 200" {
					t.Errorf("the next stream on the connection: %q, want status 200", next)
				}
				before++ // that one
			}
			time.Sleep(50 * time.Millisecond) // a backend request would have arrived by now
			if n := cb.whole.Load(); n != before {
				t.Errorf("the backend got %d whole requests, want %d", n, before)
			}
		})
	}
	// A well-formed request with te: trailers and a body is served.
	h := dialH2(t, p)
	id := h.open(false, with("te", "trailers", "content-length", "4")...)
	h.fr.WriteData(id, true, []byte("test"))
	if got := h.outcome(id); got != "status 200" {
		t.Errorf("a well-formed POST: %q, want status 200", got)
	}
}

// TestH2RapidReset: a client that resets streams as fast as it opens them
// gets GOAWAY (or a close) before 10,000 streams and within 10 s, while a
// second connection keeps being served.
func TestH2RapidReset(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	p := startTLS(t, simpleRoute(b.URL), "")
	other := dialH2(t, p)
	flood := dialH2(t, p)
	ended := make(chan string, 1)
	var lastStream atomic.Uint32
	go func() {
		for {
			f, err := flood.fr.ReadFrame()
			if err != nil {
				ended <- "closed"
				return
			}
			if ga, ok := f.(*http2.GoAwayFrame); ok {
				// The last stream the server took is what it opened.
				ended <- fmt.Sprintf("goaway %s after stream %d", ga.ErrCode, ga.LastStreamID)
				lastStream.Store(ga.LastStreamID)
				return
			}
		}
	}()
	start := time.Now()
	opened := 0
	var outcome string
flood:
	for opened < 20000 && time.Since(start) < 10*time.Second {
		id := flood.next
		flood.next += 2
		blk := flood.block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/api/x")
		if flood.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndStream: true, EndHeaders: true}) != nil ||
			flood.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
			break
		}
		opened++
		select {
		case outcome = <-ended:
			break flood
		default:
		}
	}
	if outcome == "" {
		select {
		case outcome = <-ended:
		case <-time.After(2 * time.Second):
			outcome = "still open"
		}
	}
	t.Logf("%d streams written in %v: %s", opened, time.Since(start).Round(time.Millisecond), outcome)
	if outcome == "still open" {
		t.Fatalf("the flood of %d reset streams went on for %v without GOAWAY or a close", opened, time.Since(start))
	}
	// The client's writes run ahead of the server's reads (socket
	// buffers); what the server opened is what GOAWAY says it took.
	if last := lastStream.Load(); last >= 2*10000 {
		t.Errorf("the server took %d streams before GOAWAY, want fewer than 10,000", (last+1)/2)
	}
	if got := other.outcome(other.get("/api/other")); got != "status 200" {
		t.Errorf("the other connection: %q, want status 200", got)
	}
}

// TestH2ContinuationFlood: a header block that never ends (CONTINUATION
// after CONTINUATION) gets GOAWAY or a close; other connections are served.
func TestH2ContinuationFlood(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	p := startTLS(t, simpleRoute(b.URL), "")
	other := dialH2(t, p)
	h := dialH2(t, p)
	blk := h.block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/api/x")
	h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk, EndStream: true})
	flood := func(t *testing.T, h *h2conn, crumb []byte) {
		t.Helper()
		ended := make(chan string, 1)
		go func() { ended <- h.outcome(1) }()
		start := time.Now()
		sent := 0
		for ; sent < 100000 && time.Since(start) < 10*time.Second; sent++ {
			if h.fr.WriteContinuation(1, false, crumb) != nil {
				break
			}
		}
		got := waitChan(t, ended, 10*time.Second, "the flood's end")
		t.Logf("after %d CONTINUATION frames in %v: %s", sent, time.Since(start).Round(time.Millisecond), got)
		if !strings.HasPrefix(got, "goaway") && got != "closed" {
			t.Errorf("outcome %q, want GOAWAY or a close", got)
		}
	}
	t.Run("fragments of 1000 bytes", func(t *testing.T) {
		flood(t, h, h.block("x-filler", strings.Repeat("a", 1000)))
	})
	// Empty fragments add nothing to the header list, so no limit on its
	// size ever stops them.
	t.Run("empty fragments", func(t *testing.T) {
		h := dialH2(t, p)
		h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk, EndStream: true})
		flood(t, h, nil)
	})
	if got := other.outcome(other.get("/api/other")); got != "status 200" {
		t.Errorf("the other connection: %q, want status 200", got)
	}
	if n := b.Count(); n != 1 {
		t.Errorf("backend got %d requests, want 1 (the other connection's)", n)
	}
}

// TestH2ContinuationTrickle: a header block that goes on in a
// CONTINUATION frame now and then, never ending, is cut once it has taken
// longer than client_header.
func TestH2ContinuationTrickle(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	p := startTLS(t, "timeouts: {client_header: 500ms}\n"+simpleRoute(b.URL), "")
	h := dialH2(t, p)
	blk := h.block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/api/x")
	h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk, EndStream: true})
	ended := make(chan string, 1)
	go func() { ended <- h.outcome(1) }()
	start := time.Now()
	var got string
trickle:
	for time.Since(start) < 10*time.Second {
		select {
		case got = <-ended:
			break trickle
		case <-time.After(50 * time.Millisecond):
			if h.fr.WriteContinuation(1, false, nil) != nil {
				got = waitChan(t, ended, 5*time.Second, "the connection's end")
				break trickle
			}
		}
	}
	took := time.Since(start)
	t.Logf("%s after %v", got, took.Round(time.Millisecond))
	if !strings.HasPrefix(got, "goaway") && got != "closed" || took > 3*time.Second {
		t.Errorf("outcome %q after %v, want GOAWAY or a close soon after client_header (500ms)", got, took)
	}
	if n := b.Count(); n != 0 {
		t.Errorf("backend got %d requests", n)
	}
}

// TestH2MaxConcurrentStreams: max_concurrent_streams is advertised, and a
// stream beyond it is refused and reaches no backend; the others finish.
func TestH2MaxConcurrentStreams(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		g.wait(r)
		io.WriteString(w, "done")
	})
	p := startTLS(t, simpleRoute(b.URL), "  max_concurrent_streams: 2\n")
	h := dialH2(t, p)
	if h.maxStreams != 2 {
		t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS = %d, want 2", h.maxStreams)
	}
	s1, s2 := h.get("/api/1"), h.get("/api/2")
	eventually(t, 5*time.Second, func() bool { return b.Count() == 2 }, "two streams at the backend")
	s3 := h.get("/api/3")
	if got := h.outcome(s3); !strings.HasPrefix(got, "reset") {
		t.Fatalf("the third stream: %q, want it refused", got)
	}
	g.open()
	for _, id := range []uint32{s1, s2} {
		if got := h.outcome(id); got != "status 200" {
			t.Errorf("stream %d: %q", id, got)
		}
	}
	if n := b.Count(); n != 2 {
		t.Errorf("backend got %d requests, want 2", n)
	}
}

// TestH2HeaderListLimit: a header list over max_header_bytes gets 431.
func TestH2HeaderListLimit(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	p := startTLS(t, "limits: {max_header_bytes: 4KiB}\n"+simpleRoute(b.URL), "")
	h := dialH2(t, p)
	id := h.open(true, ":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/api/x",
		"x-big", strings.Repeat("b", 3000), "x-big2", strings.Repeat("c", 3000))
	if got := h.outcome(id); got != "status 431" {
		t.Errorf("outcome %q, want status 431", got)
	}
	// A list several times the limit, over HEADERS and CONTINUATION frames
	// of 1000-byte fields, gets the proxy's 431 too, not the end of the
	// connection.
	var fields []string
	for i := range 15 {
		fields = append(fields, fmt.Sprintf("x-b%d", i), strings.Repeat("b", 1000))
	}
	id = h.next
	h.next += 2
	head := h.block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/api/big")
	h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: head, EndStream: true})
	for i := 0; i < len(fields); i += 2 {
		h.fr.WriteContinuation(id, i+2 == len(fields), h.block(fields[i], fields[i+1]))
	}
	if got := h.outcome(id); got != "status 431" {
		t.Errorf("a 15,000-byte list: outcome %q, want status 431", got)
	}
	eventually(t, 5*time.Second, func() bool {
		return metricOrZero(t, p.proc, "sluice_errors_total", "route", "", "error", "headers_too_large") == 2
	}, "both 431s counted as headers_too_large")
	if n := b.Count(); n != 0 {
		t.Errorf("backend got %d requests", n)
	}
}

// TestH2TrailersMalformed: request trailers with a field HTTP/2 forbids
// reset the stream, and the backend never gets the request whole.
func TestH2TrailersMalformed(t *testing.T) {
	t.Parallel()
	cb := newCaptureBackend(t)
	p := startTLS(t, "retry: {attempts: 1}\n"+simpleRoute(cb.URL), "")
	for _, trailer := range [][]string{{"connection", "close"}, {"x-a", " padded"}} {
		h := dialH2(t, p)
		id := h.open(false, ":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/api/t")
		h.fr.WriteData(id, false, []byte("abc"))
		h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.block(trailer...), EndStream: true, EndHeaders: true})
		got := h.outcome(id)
		if !strings.HasPrefix(got, "reset") && got != "status 400" {
			t.Errorf("trailers %q: outcome %q, want the stream reset or 400", trailer, got)
		}
	}
	time.Sleep(50 * time.Millisecond) // a backend request would have arrived by now
	if n := cb.whole.Load(); n != 0 {
		t.Errorf("the backend got %d whole requests, want none", n)
	}
}

// TestH2Streaming: over HTTP/2 a response's parts reach the client as the
// backend sends them, an upload's parts reach the backend as the client
// sends them, and a backend's trailers come through.
func TestH2Streaming(t *testing.T) {
	t.Parallel()
	respGate, firstSeen := newGate(t), make(chan string, 1)
	b := newStreamBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/down":
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "first|")
			w.(http.Flusher).Flush()
			respGate.wait(r)
			io.WriteString(w, "second")
			w.Header().Set("X-Sum", "42")
		case "/api/up":
			buf := make([]byte, 5)
			io.ReadFull(r.Body, buf)
			firstSeen <- string(buf)
			rest, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s%s", buf, rest)
		}
	})
	p := startTLS(t, simpleRoute(b.URL), "")
	c := p.client(t, true)

	resp, err := c.Get(p.HTTPS("/api/down"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first|" {
		t.Fatalf("first part: %q %v", buf, err)
	}
	respGate.open()
	rest, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(rest) != "second" || resp.Trailer.Get("X-Sum") != "42" || resp.Proto != "HTTP/2.0" {
		t.Errorf("rest %q, trailer %v, proto %s", rest, resp.Trailer, resp.Proto)
	}

	pr, pw := io.Pipe()
	done := make(chan string, 1)
	go func() {
		resp, err := c.Post(p.HTTPS("/api/up"), "text/plain", pr)
		if err != nil {
			done <- err.Error()
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- string(body)
	}()
	io.WriteString(pw, "hello")
	if got := waitChan(t, firstSeen, 5*time.Second, "the upload's first part at the backend"); got != "hello" {
		t.Fatalf("backend saw %q first", got)
	}
	io.WriteString(pw, " world")
	pw.Close()
	if got := waitChan(t, done, 5*time.Second, "the upload's response"); got != "hello world" {
		t.Errorf("response %q", got)
	}
}

// TestH2LargeBodies: a 1 MiB download and a 1 MiB upload over one HTTP/2
// connection arrive intact.
func TestH2LargeBodies(t *testing.T) {
	t.Parallel()
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i*31 + i>>10)
	}
	want := sha256.Sum256(big)
	b := newStreamBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "PUT" {
			h := sha256.New()
			n, _ := io.Copy(h, r.Body)
			fmt.Fprintf(w, "%x %d", h.Sum(nil), n)
			return
		}
		w.Write(big) // chunked: no Content-Length
	})
	p := startTLS(t, simpleRoute(b.URL), "")
	c := p.client(t, true)
	resp, err := c.Get(p.HTTPS("/api/big"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || sha256.Sum256(got) != want {
		t.Errorf("download: %d bytes (err %v) differ from the backend's", len(got), err)
	}
	req, _ := http.NewRequest("PUT", p.HTTPS("/api/up"), bytes.NewReader(big))
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != fmt.Sprintf("%x %d", want, len(big)) {
		t.Errorf("upload: backend saw %q", body)
	}
}

// TestH2ConcurrentStreams: 100 streams at once on one HTTP/2 connection are
// all served, spread over the route's backends.
func TestH2ConcurrentStreams(t *testing.T) {
	t.Parallel()
	const n = 100
	var arrived sync.WaitGroup
	arrived.Add(n)
	all := make(chan struct{})
	go func() { arrived.Wait(); close(all) }()
	handler := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/api/warm" {
				return
			}
			arrived.Done()
			select { // answer once all are in flight together
			case <-all:
			case <-time.After(10 * time.Second):
			}
			io.WriteString(w, name)
		}
	}
	bs := []*backend{newBackend(t, "b1", handler("b1")), newBackend(t, "b2", handler("b2")), newBackend(t, "b3", handler("b3"))}
	p := startTLS(t, simpleRoute(bs[0].URL, bs[1].URL, bs[2].URL), "")
	c := p.client(t, true)
	// One request first: many at once before any connection is up would
	// each dial one.
	if resp, err := c.Get(p.HTTPS("/api/warm")); err != nil {
		t.Fatal(err)
	} else {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	counts := map[string]int{}
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get(p.HTTPS(fmt.Sprintf("/api/%d", i)))
			if err != nil {
				errs <- err
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.Proto != "HTTP/2.0" {
				errs <- fmt.Errorf("%s", resp.Proto)
			}
			mu.Lock()
			counts[string(body)]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, b := range bs {
		if got := counts[b.Name]; got < n/3-1 || got > n/3+1 {
			t.Errorf("%s served %d of %d, want about a third: %v", b.Name, got, n, counts)
		}
	}
	if got := metricOrZero(t, p.proc, "sluice_connections_total", "listener", "https", "proto", "HTTP/2.0"); got != 1 {
		t.Errorf("HTTP/2 connections = %v, want 1", got)
	}
}

// TestH2Shutdown: on SIGTERM an HTTP/2 connection gets GOAWAY, its stream
// in flight finishes, and sluice exits 0.
func TestH2Shutdown(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		g.wait(r)
		io.WriteString(w, "finished")
	})
	p := startTLS(t, simpleRoute(b.URL), "")
	h := dialH2(t, p)
	id := h.get("/api/slow")
	eventually(t, 5*time.Second, func() bool { return b.Count() == 1 }, "the request at the backend")
	p.Signal(os.Interrupt)
	goaway := make(chan bool, 1)
	status := make(chan string, 1)
	goingAway := make(chan struct{}) // closed at the GOAWAY
	go func() {
		sawGoAway := false
		for {
			f, err := h.fr.ReadFrame()
			if err != nil {
				goaway <- sawGoAway
				status <- "closed"
				return
			}
			switch f := f.(type) {
			case *http2.GoAwayFrame:
				if !sawGoAway {
					close(goingAway)
				}
				sawGoAway = true
			case *http2.MetaHeadersFrame:
				if f.StreamID == id {
					goaway <- sawGoAway
					status <- "status " + f.PseudoValue("status")
					return
				}
			}
		}
	}()
	// The response is let go once the GOAWAY came (or after a while
	// without one, which the check below reports).
	select {
	case <-goingAway:
	case <-time.After(5 * time.Second):
	}
	g.open()
	if !waitChan(t, goaway, 10*time.Second, "the response") {
		t.Errorf("no GOAWAY before the response")
	}
	if got := <-status; got != "status 200" {
		t.Errorf("the stream in flight: %q, want status 200", got)
	}
	if code := p.Wait(10 * time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

// TestH2Spec runs h2spec against the HTTPS listener: every test passes.
// Without h2spec it skips, unless CI=true.
func TestH2Spec(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("h2spec")
	if err != nil {
		if gopath, gerr := exec.Command("go", "env", "GOPATH").Output(); gerr == nil {
			cand := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "h2spec")
			if _, serr := os.Stat(cand); serr == nil {
				bin, err = cand, nil
			}
		}
	}
	if err != nil {
		msg := "h2spec not found (go install github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	b := newBackend(t, "b", nil)
	p := startTLS(t, simpleRoute(b.URL), "")
	report := filepath.Join(t.TempDir(), "h2spec.xml")
	host, port := "127.0.0.1", portOf(p.TLSAddr)
	out, err := exec.Command(bin, "-t", "-k", "-h", host, "-p", port, "-P", "/api/h2spec", "-o", "5", "-j", report).CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("h2spec: %v\n%s", err, out)
	}
	data, rerr := os.ReadFile(report)
	if rerr != nil {
		t.Fatalf("h2spec wrote no report (%v):\n%s", rerr, out)
	}
	var suites struct {
		Suites []struct {
			Package string `xml:"package,attr"`
			Cases   []struct {
				Class   string    `xml:"classname,attr"`
				Failure *struct{} `xml:"failure"`
				Error   *struct{} `xml:"error"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(data, &suites); err != nil {
		t.Fatal(err)
	}
	total, failed := 0, 0
	for _, s := range suites.Suites {
		for _, c := range s.Cases {
			if c.Class == "" {
				continue
			}
			total++
			if c.Failure != nil || c.Error != nil {
				failed++
				t.Errorf("h2spec %s: %s failed", s.Package, c.Class)
			}
		}
	}
	t.Logf("h2spec: %d tests, %d failed", total, failed)
	if total < 140 {
		t.Errorf("h2spec ran %d tests, want the whole suite (145):\n%s", total, out)
	}
	if t.Failed() {
		t.Logf("h2spec output:\n%s", out)
	}
}

// TestH2Timeouts: over HTTP/2, client_body bounds a pause in an upload
// (408, nothing whole at the backend), and client_idle closes a connection
// with no open stream, with GOAWAY.
func TestH2Timeouts(t *testing.T) {
	t.Parallel()
	cb := newCaptureBackend(t)
	p := startTLS(t, "timeouts: {client_body: 300ms, client_idle: 500ms}\nretry: {attempts: 1}\n"+simpleRoute(cb.URL), "")
	h := dialH2(t, p)
	id := h.open(false, ":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/api/slow", "content-length", "10")
	h.fr.WriteData(id, false, []byte("test"))
	start := time.Now()
	if got := h.outcome(id); got != "status 408" {
		t.Errorf("a paused upload: %q, want status 408", got)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the 408 came after %v", d)
	}
	if n := cb.whole.Load(); n != 0 {
		t.Errorf("the backend got %d whole requests", n)
	}
	// Idle: no stream open now; GOAWAY follows client_idle.
	start = time.Now()
	if got := h.outcome(h.next); !strings.HasPrefix(got, "goaway") && got != "closed" {
		t.Errorf("an idle connection: %q, want GOAWAY or a close", got)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the idle connection lasted %v", d)
	}
}
