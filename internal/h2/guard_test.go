package h2

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// pipeGuard returns a client's framer writing into a guard, and a server's
// framer reading from it, as the HTTP/2 server reads (header blocks decoded
// and checked by x/net's framer, which the server's mirrors).
func pipeGuard(t *testing.T) (client *http2.Framer, enc func(...string) []byte, server *http2.Framer) {
	t.Helper()
	return pipeGuardTimeout(t, 0)
}

// pipeGuardTimeout is pipeGuard with the listener's client_header.
func pipeGuardTimeout(t *testing.T, headerTimeout time.Duration) (client *http2.Framer, enc func(...string) []byte, server *http2.Framer) {
	t.Helper()
	c, s := net.Pipe()
	t.Cleanup(func() { c.Close(); s.Close() })
	g := NewGuard(s, 64<<10, headerTimeout)
	go func() {
		io.WriteString(c, preface)
	}()
	var pre [len(preface)]byte
	if _, err := io.ReadFull(g, pre[:]); err != nil || string(pre[:]) != preface {
		t.Fatalf("preface: %q %v", pre, err)
	}
	client = http2.NewFramer(c, nil)
	server = http2.NewFramer(nil, g)
	server.ReadMetaHeaders = hpack.NewDecoder(HeaderTableSize, nil)
	server.MaxHeaderListSize = 64 << 10
	var buf bytes.Buffer
	e := hpack.NewEncoder(&buf)
	enc = func(kv ...string) []byte {
		buf.Reset()
		for i := 0; i+1 < len(kv); i += 2 {
			e.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
		}
		return bytes.Clone(buf.Bytes())
	}
	return client, enc, server
}

// read reads the next frame the server sees, in a goroutine-safe way with
// a deadline.
func read(t *testing.T, fr *http2.Framer) (http2.Frame, error) {
	t.Helper()
	type result struct {
		f   http2.Frame
		err error
	}
	ch := make(chan result, 1)
	go func() {
		f, err := fr.ReadFrame()
		ch <- result{f, err}
	}()
	select {
	case r := <-ch:
		return r.f, r.err
	case <-time.After(5 * time.Second):
		t.Fatal("no frame within 5s")
	}
	return nil, nil
}

func TestGuardBlocks(t *testing.T) {
	base := []string{":method", "GET", ":scheme", "https", ":authority", "a.example", ":path", "/"}
	with := func(kv ...string) []string { return append(append([]string{}, base...), kv...) }
	tests := []struct {
		name    string
		fields  []string
		end     bool // END_STREAM on HEADERS
		padded  bool
		split   bool // the block in a HEADERS and a CONTINUATION
		refused bool
	}{
		{"plain", base, true, false, false, false},
		{"te trailers", with("te", "trailers"), true, false, false, false},
		{"host equal", with("host", "A.example"), true, false, false, false},
		{"length 0", with("content-length", "0"), true, false, false, false},
		{"connection", with("connection", "close"), true, false, false, true},
		{"upgrade", with("upgrade", "h2c"), true, false, false, true},
		{"te gzip", with("te", "gzip"), true, false, false, true},
		{"host differs", with("host", "b.example"), true, false, false, true},
		{"two hosts", with("host", "a.example", "host", "a.example"), true, false, false, true},
		{"length above 0", with("content-length", "3"), true, false, false, true},
		{"length not a number", with("content-length", "x"), true, false, false, true},
		{"absolute path", []string{":method", "GET", ":scheme", "https", ":path", "http://b/"}, true, false, false, true},
		{"method not a token", []string{":method", "G(T", ":scheme", "https", ":path", "/"}, true, false, false, true},
		{"padded", with("connection", "close"), true, true, false, true},
		{"padded plain", base, true, true, false, false},
		{"split", with("keep-alive", "1"), true, false, true, true},
		{"body follows", with("connection", "close"), false, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, enc, server := pipeGuard(t)
			blk := enc(tt.fields...)
			wrote := make(chan struct{})
			go func() {
				defer close(wrote)
				first := blk
				if tt.split {
					first = blk[:len(blk)/2]
				}
				p := http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndStream: tt.end, EndHeaders: !tt.split}
				if tt.padded {
					p.PadLength = 7
				}
				client.WriteHeaders(p)
				if tt.split {
					client.WriteContinuation(1, true, blk[len(blk)/2:])
				}
			}()
			f, err := read(t, server)
			var se http2.StreamError
			switch {
			case tt.refused && errors.As(err, &se) && se.StreamID == 1 && se.Code == http2.ErrCodeProtocol:
			case tt.refused:
				t.Fatalf("got %v, %v; want a stream error PROTOCOL_ERROR", f, err)
			case err != nil:
				t.Fatalf("got %v", err)
			default:
				mh := f.(*http2.MetaHeadersFrame)
				if len(mh.Fields) != len(tt.fields)/2 {
					t.Fatalf("fields %v, want %v", mh.Fields, tt.fields)
				}
			}
			// The HPACK tables stay in step: the next block decodes.
			<-wrote
			go client.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: enc(base...), EndStream: true, EndHeaders: true})
			if f, err := read(t, server); err != nil || len(f.(*http2.MetaHeadersFrame).Fields) != 4 {
				t.Fatalf("the next block: %v %v", f, err)
			}
		})
	}
}

func TestGuardSettings(t *testing.T) {
	client, _, server := pipeGuard(t)
	go client.WriteSettings(
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100},
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 15},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1})
	f, err := read(t, server)
	if err != nil {
		t.Fatal(err)
	}
	sf := f.(*http2.SettingsFrame)
	if sf.HasDuplicates() || sf.NumSettings() != 2 {
		t.Fatalf("settings %v", sf)
	}
	if v, _ := sf.Value(http2.SettingInitialWindowSize); v != 1 {
		t.Errorf("initial window %d, want the last value, 1", v)
	}
}

// TestGuardRapidReset: a client that resets every stream it opens trips
// the guard once it has reset resetFloor of them; one that resets fewer
// than nine in ten, but fast, trips the token bucket after about
// resetBurst resets.
func TestGuardRapidReset(t *testing.T) {
	for _, tt := range []struct {
		name     string
		perReset int // streams opened for each one reset
		least    int
		most     int
	}{
		{"every stream reset", 1, resetFloor, resetFloor},
		{"one stream in three reset", 3, resetBurst, resetBurst + resetRate},
	} {
		t.Run(tt.name, func(t *testing.T) {
			client, enc, server := pipeGuard(t)
			blk := enc(":method", "GET", ":scheme", "https", ":path", "/")
			go func() {
				for id, n := uint32(1), 0; id < 2*uint32(tt.perReset)*(resetBurst+2*resetRate); id, n = id+2, n+1 {
					if client.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndStream: true, EndHeaders: true}) != nil {
						return
					}
					if n%tt.perReset == 0 && client.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
						return
					}
				}
			}()
			resets := 0
			for {
				f, err := read(t, server)
				if err != nil {
					var ce http2.ConnectionError
					if !errors.As(err, &ce) || http2.ErrCode(ce) != http2.ErrCodeProtocol {
						t.Fatalf("after %d resets: %v, want a connection error", resets, err)
					}
					break
				}
				if _, ok := f.(*http2.RSTStreamFrame); ok {
					resets++
				}
			}
			// The budget refills at resetRate a second while the test runs.
			if resets < tt.least || resets > tt.most {
				t.Errorf("tripped after %d resets, want %d to %d", resets, tt.least, tt.most)
			}
		})
	}
}

// TestGuardContinuationFlood: a header block that goes on in CONTINUATION
// frames, empty ones too (which the server's own byte limit never sees),
// trips the guard after 16 + listSize/1024 frames, or once it has taken
// longer than client_header; the server then fails the connection.
func TestGuardContinuationFlood(t *testing.T) {
	for _, tt := range []struct {
		name    string
		timeout time.Duration // client_header
		pause   time.Duration // between two CONTINUATION frames
	}{
		{"empty frames at once", 0, 0},
		{"empty frames slowly", 200 * time.Millisecond, 20 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			client, enc, server := pipeGuardTimeout(t, tt.timeout)
			blk := enc(":method", "GET", ":scheme", "https", ":path", "/")
			var sent atomic.Int64
			start := time.Now()
			go func() {
				if client.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk, EndStream: true}) != nil {
					return
				}
				for {
					if client.WriteContinuation(1, false, nil) != nil {
						return
					}
					sent.Add(1)
					time.Sleep(tt.pause)
				}
			}()
			_, err := read(t, server)
			var ce http2.ConnectionError
			if !errors.As(err, &ce) {
				t.Fatalf("after %d CONTINUATION frames: %v, want a connection error", sent.Load(), err)
			}
			maxConts := int64(16 + (64<<10)/1024)
			if n := sent.Load(); n > maxConts+1 {
				t.Errorf("the guard let %d CONTINUATION frames through, want at most %d", n, maxConts+1)
			}
			if tt.timeout > 0 {
				if d := time.Since(start); d < tt.timeout || sent.Load() >= maxConts {
					t.Errorf("tripped after %v and %d frames, want after client_header (%v), before the frame limit", d, sent.Load(), tt.timeout)
				}
			}
		})
	}
}

// TestGuardTrailers: trailers with a connection-specific field, TE other
// than trailers, or a value with a blank at an end are refused (the server
// then resets the stream rather than end the request complete); others
// pass.
func TestGuardTrailers(t *testing.T) {
	for _, tt := range []struct {
		name    string
		fields  []string
		refused bool
	}{
		{"plain trailer", []string{"x-checksum", "abc"}, false},
		{"connection", []string{"connection", "close"}, true},
		{"transfer-encoding", []string{"transfer-encoding", "chunked"}, true},
		{"te gzip", []string{"te", "gzip"}, true},
		{"leading space", []string{"x-a", " a"}, true},
		{"trailing tab", []string{"x-a", "a\t"}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			client, enc, server := pipeGuard(t)
			go func() {
				client.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(":method", "POST", ":scheme", "https", ":path", "/"), EndHeaders: true})
				client.WriteData(1, false, []byte("abc"))
				client.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(tt.fields...), EndStream: true, EndHeaders: true})
			}()
			for {
				// Refused trailers come with the guard's upper-case field:
				// the server's framer fails the stream (PROTOCOL_ERROR).
				f, err := read(t, server)
				var se http2.StreamError
				if errors.As(err, &se) {
					if !tt.refused || se.Code != http2.ErrCodeProtocol {
						t.Errorf("trailers %v: %v, want them passed", tt.fields, err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if mh, ok := f.(*http2.MetaHeadersFrame); ok && len(mh.PseudoFields()) == 0 {
					if tt.refused {
						t.Errorf("trailers %v passed, want them refused", tt.fields)
					}
					return
				}
			}
		})
	}
}
