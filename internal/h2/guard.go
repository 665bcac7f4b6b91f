// Package h2 is the HTTP/2 side of the HTTPS listener. The standard
// library's HTTP/2 server speaks the protocol; this package stands on both
// sides of it. Guard reads the client's frames before the server does and
// refuses what the server would let through (RFC 9113 section 8 as sluice
// applies it, and rapid reset); Bridge is the server's handler, which
// checks each stream's request again, renders it as a strict HTTP/1.1
// request for sluice's own engine (internal/h1), and turns the engine's
// HTTP/1.1 response back into the stream's. There is one proxy core:
// requests on HTTP/2 go through the same lifecycle as any other.
package h2

import (
	"encoding/binary"
	"net"
	"sync"
	"time"

	"github.com/sluice-proxy/sluice/internal/wire"
	"golang.org/x/net/http2/hpack"
)

// Frame types and flags of RFC 9113 that the guard reads.
const (
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	frameContinuation = 0x9

	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20
)

// preface is the client connection preface.
const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// The server's settings the guard mirrors; Settings gives them to the
// server.
const (
	// MaxFrameSize is SETTINGS_MAX_FRAME_SIZE, the protocol's default and
	// least value: larger frames are a connection error.
	MaxFrameSize = 16 << 10
	// HeaderTableSize is SETTINGS_HEADER_TABLE_SIZE, the HPACK dynamic
	// table the server decodes with, which the guard's decoder mirrors.
	HeaderTableSize = 4096
)

// Rapid reset: a client may reset resetBurst streams at once, and
// resetRate more every second; past that its connection gets GOAWAY. A
// client that resets streams as fast as it opens them trips it after
// about resetBurst streams, within 10 s at any rate above 2*resetRate;
// and whatever its rate, once it has reset resetFloor streams and nine in
// ten of those it opened: at 50 streams a second, in 10 s.
const (
	resetBurst = 1000
	resetRate  = 100
	resetFloor = 500
)

// CONTINUATION floods: a header block may run over at most
// 16 + listSize/1024 CONTINUATION frames (a 64 KiB list in frames of as
// little as 1 KiB), and for at most maxBlockTime (client_header, when
// shorter) from its first CONTINUATION; past either its connection gets
// GOAWAY. The server stops a block whose bytes run over its list limit
// itself, but not one of empty frames.
const maxBlockTime = 5 * time.Second

// refused is the header field the guard appends to a request's header
// block that must not reach a handler: a literal without indexing (it
// leaves the HPACK tables alone) whose name "X" is upper case, which the
// server refuses with a stream error of type PROTOCOL_ERROR (RFC 9113
// 8.2.1). So the server itself resets the stream, and the connection's
// other streams go on.
var refused = []byte{0x00, 0x01, 'X', 0x00}

// goAway is a frame the guard puts in front of the server to make it
// send GOAWAY (PROTOCOL_ERROR) and close: DATA on stream 0, a connection
// error (RFC 9113 6.1).
var goAway = []byte{0, 0, 0, 0, 0, 0, 0, 0, 0}

var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 9+MaxFrameSize+len(refused)); return &b }}

// Guard is a client's HTTP/2 connection as the server reads it. It passes
// every byte on unchanged but for the two things it exists for:
//
//   - It decodes each request's header block with an HPACK decoder of its
//     own (in step with the server's, since it sees the same blocks in the
//     same order) and checks it. A block on a HEADERS frame that ends the
//     stream which the server would let through, or answer itself with a
//     400, but sluice must not forward (a connection-specific field, TE
//     other than trailers, a Host that differs from :authority, a bad,
//     repeated or conflicting content-length or one above 0, a :path that
//     is not origin-form, a method that is not a token, CR, LF or NUL in a
//     value) gets the refused field appended, and the server resets that
//     stream with PROTOCOL_ERROR, as RFC 9113 8.1.1 asks. A request whose
//     body follows is checked by the server and by the Bridge instead.
//   - It refuses request trailers that hold a field HTTP/2 forbids (the
//     server would end the stream with them, the request complete).
//   - It counts the streams the client resets; a client over the budget
//     (rapid reset) gets GOAWAY, and its connection closes. So does one
//     whose header block runs on in CONTINUATION frames past their count
//     or time, however small the frames.
//   - It keeps only the last value of a setting a SETTINGS frame repeats.
//     RFC 9113 6.5.3 has the values processed in order, so the last one is
//     what counts; the server hangs up on repeats instead.
//
// Reads of the server run through it; everything else is the wrapped
// connection's.
type Guard struct {
	net.Conn

	dec   *hpack.Decoder
	req   headCheck // the request block being decoded
	inReq bool      // the block being decoded is a request's (not trailers)
	open  uint32    // stream of the header block in progress; 0 for none
	last  uint32    // highest stream a request has opened

	prefaceLeft int
	passLeft    int     // payload bytes of the current frame to pass on as they come
	pend        []byte  // bytes to hand out before reading more
	held        *[]byte // the frame pend holds, from framePool
	hdr         [9]byte
	broken      bool // no more checking: pass everything on
	trip        bool // put goAway in front once the current frame is out

	tokens float64
	refill time.Time
	opened int // streams the client opened
	resets int // streams the client reset

	conts      int       // CONTINUATION frames of the block in progress
	blockStart time.Time // when its first CONTINUATION came
	maxConts   int
	blockTime  time.Duration
	trailerBad bool // the trailers in progress hold a field HTTP/2 forbids

	listSize int // the server's header list limit, past which it answers 431 itself
}

// NewGuard returns nc guarded; maxHeaderList is the server's
// SETTINGS_MAX_HEADER_LIST_SIZE, headerTimeout the listener's
// client_header (0 for none), which bounds how long a header block may
// take.
func NewGuard(nc net.Conn, maxHeaderList int, headerTimeout time.Duration) *Guard {
	g := &Guard{Conn: nc, prefaceLeft: len(preface), tokens: resetBurst, refill: time.Now(), listSize: maxHeaderList,
		maxConts: 16 + maxHeaderList/1024, blockTime: maxBlockTime}
	if headerTimeout > 0 && headerTimeout < g.blockTime {
		g.blockTime = headerTimeout
	}
	g.dec = hpack.NewDecoder(HeaderTableSize, g.field)
	// Longer than any string the server's decoder takes, so that a block
	// the server decodes, this one decodes too; bounded, so that a client
	// cannot make it buffer without end.
	g.dec.SetMaxStringLength(2*maxHeaderList + 64<<10)
	return g
}

// Read reads what the server reads: the client's bytes, a header block the
// guard refuses made invalid, and a GOAWAY trigger when the client resets
// too many streams.
func (g *Guard) Read(p []byte) (int, error) {
	for {
		switch {
		case len(g.pend) > 0:
			n := copy(p, g.pend)
			g.pend = g.pend[n:]
			if len(g.pend) == 0 {
				g.release()
			}
			return n, nil
		case g.broken, g.prefaceLeft > 0, g.passLeft > 0:
			q := p
			if g.prefaceLeft > 0 && len(q) > g.prefaceLeft {
				q = q[:g.prefaceLeft]
			} else if g.passLeft > 0 && len(q) > g.passLeft {
				q = q[:g.passLeft]
			}
			n, err := g.Conn.Read(q)
			if g.prefaceLeft > 0 {
				g.prefaceLeft -= n
			} else if g.passLeft > 0 {
				g.passLeft -= n
			}
			return n, err
		case g.trip:
			g.trip, g.broken = false, true
			g.pend = goAway
			continue
		}
		if err := g.frame(); err != nil {
			return 0, err
		}
	}
}

// frame reads the next frame's header and decides how it passes: a header
// block's frame whole, once checked; any other with its payload streamed.
func (g *Guard) frame() error {
	if _, err := readFull(g.Conn, g.hdr[:]); err != nil {
		return err
	}
	h := g.hdr[:]
	length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
	typ, flags := h[3], h[4]
	stream := binary.BigEndian.Uint32(h[5:]) & (1<<31 - 1)
	g.pend = h
	switch typ {
	case frameHeaders, frameContinuation:
		if length > MaxFrameSize {
			g.broken = true // the server refuses it (FRAME_SIZE_ERROR)
			return nil
		}
		b, err := g.whole(h, length)
		if err != nil {
			return err
		}
		g.pend = g.block(b, typ, flags, stream)
		*g.held = g.pend
	case frameRSTStream:
		g.passLeft = length
		g.reset()
	case frameSettings:
		if flags&flagAck != 0 || length%6 != 0 || length > 6*maxSettings {
			g.passLeft = length // the server judges it
			return nil
		}
		b, err := g.whole(h, length)
		if err != nil {
			return err
		}
		g.pend = lastSettings(b)
		*g.held = g.pend
	default:
		g.passLeft = length
	}
	return nil
}

// whole reads the payload of the frame whose header is h into a buffer
// from framePool, which g.held then holds, and returns the whole frame.
func (g *Guard) whole(h []byte, length int) ([]byte, error) {
	bp := framePool.Get().(*[]byte)
	b := append((*bp)[:0], h...)[:9+length]
	if _, err := readFull(g.Conn, b[9:]); err != nil {
		framePool.Put(bp)
		return nil, err
	}
	g.held = bp
	return b, nil
}

// release gives the held frame's buffer back.
func (g *Guard) release() {
	if g.held != nil {
		framePool.Put(g.held)
		g.held = nil
	}
}

// reset counts a stream the client reset, and trips the guard when the
// client is over its budget.
func (g *Guard) reset() {
	now := time.Now()
	g.tokens = min(resetBurst, g.tokens+now.Sub(g.refill).Seconds()*resetRate)
	g.refill = now
	g.tokens--
	g.resets++
	if g.tokens < 0 || g.resets >= resetFloor && g.resets*10 >= g.opened*9 {
		g.trip = true
	}
}

// continuation counts a CONTINUATION frame of the block in progress, and
// trips the guard when the block has run over its frames or its time.
func (g *Guard) continuation() {
	g.conts++
	if g.conts == 1 {
		g.blockStart = time.Now()
		return
	}
	if g.conts > g.maxConts || time.Since(g.blockStart) > g.blockTime {
		g.trip = true
	}
}

// block decodes the header block fragment of the frame b (its 9-byte
// header included) and returns the frame to pass on: b itself, or, when it
// ends a request block the guard refuses, b with the refused field added.
func (g *Guard) block(b []byte, typ, flags byte, stream uint32) []byte {
	frag := b[9:]
	if typ == frameHeaders {
		if g.open != 0 {
			g.broken = true // the server refuses it: a block is still open
			return b
		}
		pad := 0
		if flags&flagPadded != 0 {
			if len(frag) < 1 {
				g.broken = true
				return b
			}
			pad = int(frag[0])
			frag = frag[1:]
		}
		if flags&flagPriority != 0 {
			if len(frag) < 5 {
				g.broken = true
				return b
			}
			frag = frag[5:]
		}
		if pad > len(frag) {
			g.broken = true
			return b
		}
		frag = frag[:len(frag)-pad]
		g.open = stream
		g.conts = 0
		g.inReq = stream > g.last
		if g.inReq {
			g.last = stream
			g.opened++
			g.req.reset(flags&flagEndStream != 0)
		} else {
			g.trailerBad = false
		}
	} else if g.open != stream {
		g.broken = true // a CONTINUATION out of place: the server refuses it
		return b
	} else {
		g.continuation()
	}
	if _, err := g.dec.Write(frag); err != nil {
		g.broken = true // the server fails the block too (COMPRESSION_ERROR)
		return b
	}
	if flags&flagEndHeaders == 0 {
		return b
	}
	g.open = 0
	if err := g.dec.Close(); err != nil {
		g.broken = true
		return b
	}
	if !g.inReq {
		if g.trailerBad {
			// The server would end the stream with them, the request
			// complete; refused, the stream is reset instead.
			return refuse(b, typ, flags, len(frag))
		}
		return b
	}
	if !g.req.endStream || g.req.valid() || g.req.size > g.listSize {
		// A request whose DATA follows is left to the server (which
		// answers 400 to a connection-specific field) and to the bridge:
		// refused here, its DATA would come on a stream the server never
		// opened, which is a connection error. Past the list limit the
		// server answers 431 itself.
		return b
	}
	return refuse(b, typ, flags, len(frag))
}

// refuse adds the refused field at the end of the header block fragment of
// b, a frame that ends a block and whose fragment is fragLen bytes: in the
// frame when it has room (before any padding), else in a CONTINUATION
// frame of its own, b then no longer ending the block.
func refuse(b []byte, typ, flags byte, fragLen int) []byte {
	length := len(b) - 9
	if length+len(refused) <= MaxFrameSize {
		end := len(b)
		if typ == frameHeaders && flags&flagPadded != 0 {
			end -= int(b[9]) // the padding stays last
		}
		b = append(b, refused...)
		copy(b[end+len(refused):], b[end:len(b)-len(refused)])
		copy(b[end:], refused)
		length += len(refused)
		b[0], b[1], b[2] = byte(length>>16), byte(length>>8), byte(length)
		return b
	}
	b[4] &^= flagEndHeaders
	b = append(b, 0, 0, byte(len(refused)), frameContinuation, flagEndHeaders)
	b = append(b, b[5:9]...)
	return append(b, refused...)
}

// maxSettings is the most settings a SETTINGS frame the guard reads may
// hold; the server refuses a frame of more.
const maxSettings = 100

// lastSettings drops from the SETTINGS frame b every setting the frame
// sets again later, keeping the order of the rest.
func lastSettings(b []byte) []byte {
	p := b[9:]
	out := p[:0]
	for i := 0; i < len(p); i += 6 {
		again := false
		for j := i + 6; j < len(p); j += 6 {
			if p[i] == p[j] && p[i+1] == p[j+1] {
				again = true
				break
			}
		}
		if !again {
			out = append(out, p[i:i+6]...)
		}
	}
	n := len(out)
	b[0], b[1], b[2] = byte(n>>16), byte(n>>8), byte(n)
	return b[:9+n]
}

// readFull reads len(p) bytes.
func readFull(c net.Conn, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := c.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// field is the decoder's emit function.
func (g *Guard) field(f hpack.HeaderField) {
	if g.inReq {
		g.req.field(f.Name, f.Value)
	} else if forbiddenInTrailers(f.Name, f.Value) {
		g.trailerBad = true
	}
}

// forbiddenInTrailers reports a field that makes a request's trailers
// malformed and that the server lets through: a connection-specific one,
// TE other than trailers, or a value that breaks a line or starts or ends
// with a blank (RFC 9113 8.2).
func forbiddenInTrailers(name, value string) bool {
	switch name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	case "te":
		return !equalFold(value, "trailers")
	}
	return !cleanValue(value)
}

// headCheck is what the guard learns of a request's header block.
type headCheck struct {
	endStream bool // the HEADERS frame ended the stream: no body may follow
	bad       bool
	size      int // the header list's size as RFC 9113 counts it

	method, authority, host string
	path                    bool // :path seen and well-formed so far
	nHost                   int
	contentLength           int64 // -1 when absent
}

func (r *headCheck) reset(endStream bool) {
	*r = headCheck{endStream: endStream, contentLength: -1}
}

// field checks one field of the block.
func (r *headCheck) field(name, value string) {
	r.size += len(name) + len(value) + 32
	if r.bad {
		return
	}
	if !cleanValue(value) {
		r.bad = true
		return
	}
	switch name {
	case ":method":
		r.method = value
		r.bad = !wire.IsToken([]byte(value))
	case ":authority":
		r.authority = value
	case ":path":
		r.bad = !(len(value) > 0 && value[0] == '/' || value == "*")
	case "host":
		r.nHost++
		r.host = value
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		r.bad = true
	case "te":
		r.bad = !equalFold(value, "trailers")
	case "content-length":
		n, ok := wire.ParseContentLength([]byte(value))
		r.bad = !ok || r.contentLength >= 0 && r.contentLength != n || r.endStream && n != 0
		r.contentLength = n
	}
}

// valid reports whether the request may be served.
func (r *headCheck) valid() bool {
	switch {
	case r.bad, r.nHost > 1:
		return false
	case r.nHost == 1 && r.authority != "" && !equalFold(r.host, r.authority):
		return false
	}
	return true
}

// cleanValue reports whether a field value is free of CR, LF and NUL,
// which would split or end an HTTP/1.1 line, and neither starts nor ends
// with a space or tab (RFC 9113 8.2.1).
func cleanValue(v string) bool {
	if n := len(v); n > 0 && (v[0] == ' ' || v[0] == '\t' || v[n-1] == ' ' || v[n-1] == '\t') {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}

// equalFold reports whether a and b are equal ignoring ASCII case.
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
