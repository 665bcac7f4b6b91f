package h2

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-proxy/sluice/internal/h1"
)

// Bridge is the HTTP/2 server's handler. Each stream's request, checked and
// rendered as HTTP/1.1 (appendHead), is served by Engine, sluice's own
// HTTP/1.1 engine with the proxy as its handler, on a connection of its
// own (a stream), and the engine's response goes back on the stream:
// status and fields (less HTTP/1.1's connection fields), the body as it
// comes, trailers.
type Bridge struct {
	// Engine serves the rendered requests; its HTTP2 and TLS are set.
	Engine *h1.Server
}

// ServeHTTP serves one stream. A request that must not be forwarded, and a
// response cut short, reset the stream.
func (b *Bridge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := streamPool.Get().(*stream)
	complete := s.serve(b.Engine, w, r)
	streamPool.Put(s)
	if !complete {
		panic(http.ErrAbortHandler) // the server resets the stream
	}
}

var streamPool = sync.Pool{New: func() any { return new(stream) }}

// errTooLong is DATA beyond a request's declared length.
var errTooLong = errors.New("h2: request body longer than its content-length")

// stream is one HTTP/2 stream as the HTTP/1.1 engine sees it: a connection
// from which the rendered request is read, and to which the engine writes
// its response, translated on the way. Its reads never hand out a
// request's last byte before the stream has ended, so that a request
// whose DATA runs past its declared length never reaches a backend whole.
type stream struct {
	w  http.ResponseWriter
	rc controller // w's deadlines and flush
	r  *http.Request
	nc net.Conn // the client's connection, for its addresses

	head    []byte // the rendered request head
	off     int    // of head, handed out
	body    uint8
	left    int64  // of a body of declared length, not handed out
	pend    []byte // framed chunk bytes to hand out
	chunk   []byte // the chunk buffer
	ended   bool   // the request's body has ended
	readErr error  // sticky

	ended0 bool // HEADERS ended the stream: reads of the body never wait

	mu       sync.Mutex // guards what follows against the deadline timer
	gen      uint64     // which use of the pooled stream this is
	done     bool
	timer    *time.Timer // made on first use; for reads or writes that may wait
	readDL   time.Time   // the engine's read deadline, armed by armRead
	writeDL  time.Time   // the engine's write deadline, armed by Write
	armed    uint8       // what the timer stands for now: armedRead or armedWrite
	timedOut bool        // a read deadline passed

	out response
}

// controller is what the stream needs of the HTTP/2 server's
// ResponseWriter beyond http.ResponseWriter (it has these methods; a type
// assertion costs no allocation, unlike a ResponseController).
type controller interface {
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
	FlushError() error
}

// noController stands in for a ResponseWriter without them (tests).
type noController struct{}

func (noController) SetReadDeadline(time.Time) error  { return nil }
func (noController) SetWriteDeadline(time.Time) error { return nil }
func (noController) FlushError() error                { return nil }

// serve serves r and reports whether the response went out whole.
func (s *stream) serve(engine *h1.Server, w http.ResponseWriter, r *http.Request) bool {
	s.w, s.r = w, r
	s.rc, _ = w.(controller)
	if s.rc == nil {
		s.rc = noController{}
	}
	s.nc, _ = r.Context().Value(ConnKey).(net.Conn)
	s.off, s.left, s.pend, s.ended, s.readErr = 0, 0, nil, false, nil
	// A request whose HEADERS ended the stream has ContentLength 0 and no
	// content-length field (a declared 0 may still be followed by DATA).
	s.ended0 = r.ContentLength == 0 && r.Header["Content-Length"] == nil
	s.mu.Lock()
	s.gen++
	s.done, s.timedOut = false, false
	s.readDL, s.writeDL, s.armed = time.Time{}, time.Time{}, 0
	s.mu.Unlock()
	s.out = response{head: s.out.head[:0], headReq: r.Method == "HEAD"}
	req := request{method: r.Method, target: r.RequestURI, authority: r.Host, header: r.Header, contentLength: r.ContentLength}
	var ok bool
	s.head, s.body, s.left, ok = appendHead(s.head[:0], &req)
	if ok {
		engine.ServeConn(s)
	}
	s.mu.Lock()
	s.done = true
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil // a late fire must not find the next stream
	}
	s.mu.Unlock()
	complete := ok && s.out.complete()
	s.w, s.r, s.rc, s.nc = nil, nil, nil, nil
	if cap(s.head) > 64<<10 {
		s.head = nil
	}
	if cap(s.out.head) > 64<<10 {
		s.out.head = nil
	}
	return complete
}

// ConnKey is the request context key under which the server puts the
// client's connection (http.Server.ConnContext).
var ConnKey = &connKey{}

type connKey struct{}

// Read hands out the rendered request: its head, then its body as the
// stream's DATA arrives (chunked when it has no declared length).
func (s *stream) Read(p []byte) (int, error) {
	if s.readErr != nil {
		return 0, s.readErr
	}
	if len(s.pend) > 0 {
		n := copy(p, s.pend)
		s.pend = s.pend[n:]
		return n, nil
	}
	if s.off < len(s.head) {
		rest := s.head[s.off:]
		if s.body == bodyNone {
			// The head is the whole request: its last byte waits for the
			// end of the stream.
			if len(rest) == 1 {
				if err := s.awaitEnd(); err != nil {
					s.readErr = err
					return 0, err
				}
			} else {
				rest = rest[:len(rest)-1]
			}
		}
		n := copy(p, rest)
		s.off += n
		return n, nil
	}
	switch s.body {
	case bodyLength:
		return s.readLength(p)
	case bodyChunked:
		return s.readChunked(p)
	}
	return 0, io.EOF
}

// readLength reads a body of declared length; its last byte is handed out
// only once the stream has ended with it.
func (s *stream) readLength(p []byte) (int, error) {
	if s.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	s.armRead()
	n, err := s.r.Body.Read(p)
	s.left -= int64(n)
	if s.left == 0 && n > 0 {
		if err == io.EOF {
			return n, nil
		}
		if err := s.awaitEnd(); err != nil {
			s.readErr = err
			s.left++
			return n - 1, nil
		}
		return n, nil
	}
	if n > 0 {
		return n, nil
	}
	if err == io.EOF || err == nil {
		err = io.ErrUnexpectedEOF // the server says why itself; just in case
	}
	return 0, s.readError(err)
}

// chunkRoom is the room kept before a chunk's data for its size line.
const chunkRoom = 18

// readChunked frames the stream's DATA as chunks, and the last chunk once
// the stream has ended (its trailers, if any, stay behind: sluice drops a
// request's trailers).
func (s *stream) readChunked(p []byte) (int, error) {
	if s.ended {
		return 0, io.EOF
	}
	if s.chunk == nil {
		s.chunk = make([]byte, 16<<10)
	}
	buf := s.chunk
	s.armRead()
	n, err := s.r.Body.Read(buf[chunkRoom : len(buf)-2])
	if n > 0 {
		end := chunkRoom + n
		buf[end], buf[end+1] = '\r', '\n'
		size := strconv.AppendInt(buf[:0:chunkRoom], int64(n), 16)
		i := chunkRoom - 2 - len(size)
		copy(buf[i:], size)
		buf[chunkRoom-2], buf[chunkRoom-1] = '\r', '\n'
		s.pend = buf[i : end+2]
		m := copy(p, s.pend)
		s.pend = s.pend[m:]
		return m, nil
	}
	if err == io.EOF {
		s.ended = true
		s.pend = []byte("0\r\n\r\n")
		m := copy(p, s.pend)
		s.pend = s.pend[m:]
		return m, nil
	}
	if err == nil {
		return 0, nil
	}
	return 0, s.readError(err)
}

// awaitEnd waits for the end of the stream, which must bring no more DATA.
func (s *stream) awaitEnd() error {
	var one [1]byte
	if !s.ended0 {
		s.armRead()
	}
	for {
		n, err := s.r.Body.Read(one[:])
		switch {
		case n > 0:
			return errTooLong
		case err == io.EOF:
			s.ended = true
			return nil
		case err != nil:
			return s.readError(err)
		}
	}
}

// readError is err, or the deadline's error when the read deadline cut it.
func (s *stream) readError(err error) error {
	s.mu.Lock()
	t := s.timedOut
	s.mu.Unlock()
	if t {
		return os.ErrDeadlineExceeded
	}
	return err
}

// What the deadline timer stands for.
const (
	armedRead uint8 = iota + 1
	armedWrite
)

// SetReadDeadline bounds the reads of the body that wait for DATA. It is
// only noted: the stream's own timer is armed with it when a read may
// wait (armRead), and cuts the stream's body when it fires (the server's
// read deadline would cost a message to its connection's goroutine on
// every move, and a request without a body never waits).
func (s *stream) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	s.readDL = t
	s.mu.Unlock()
	return nil
}

// SetWriteDeadline bounds the writes of the response that may wait for the
// client to take them; noted, and armed by Write.
func (s *stream) SetWriteDeadline(t time.Time) error {
	s.mu.Lock()
	s.writeDL = t
	s.mu.Unlock()
	return nil
}

// armRead arms the timer with the read deadline, before a read that may
// wait.
func (s *stream) armRead() {
	s.mu.Lock()
	s.arm(armedRead, s.readDL)
	s.mu.Unlock()
}

// arm sets the timer to fire at t for what; a zero t disarms it. s.mu is
// held.
func (s *stream) arm(what uint8, t time.Time) {
	if s.done || s.timedOut {
		return
	}
	if t.IsZero() {
		if s.timer != nil {
			s.timer.Stop()
		}
		s.armed = 0
		return
	}
	s.armed = what
	if s.timer == nil {
		gen := s.gen
		s.timer = time.AfterFunc(time.Until(t), func() { s.expired(gen) })
	} else {
		s.timer.Reset(time.Until(t))
	}
}

// expired ends the read or write that waited too long, unless the use of
// the stream the timer was set for is over: a read sees its body cut, a
// write the stream reset.
func (s *stream) expired(gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen != s.gen || s.done || s.timedOut {
		return
	}
	switch s.armed {
	case armedRead:
		s.timedOut = true
		s.rc.SetReadDeadline(time.Unix(1, 0))
	case armedWrite:
		s.rc.SetWriteDeadline(time.Unix(1, 0))
	}
}

// SetDeadline sets both deadlines.
func (s *stream) SetDeadline(t time.Time) error {
	s.SetReadDeadline(t)
	return s.SetWriteDeadline(t)
}

// Write translates the engine's HTTP/1.1 response onto the stream; what
// went out is flushed at once unless the response is whole (the handler's
// return then ends the stream with it).
func (s *stream) Write(p []byte) (int, error) {
	// A write that fits the server's buffer (4 KiB) does not wait; a
	// larger one may, for the client's flow control.
	wait := len(p) > 4<<10 || s.out.state != stateDone && s.out.state != stateHead
	if wait {
		s.mu.Lock()
		s.arm(armedWrite, s.writeDL)
		s.mu.Unlock()
	}
	err := s.out.write(s.w, p)
	if err == nil && s.out.state != stateDone && s.out.state != stateHead {
		err = s.rc.FlushError()
	}
	if wait {
		s.mu.Lock()
		s.arm(armedWrite, time.Time{})
		s.mu.Unlock()
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// PeerGone reports whether the client reset the stream or left.
func (s *stream) PeerGone() bool { return s.r.Context().Err() != nil }

// Close is the engine's end of the stream.
func (s *stream) Close() error { return nil }

// LocalAddr returns the client connection's local address.
func (s *stream) LocalAddr() net.Addr {
	if s.nc == nil {
		return nil
	}
	return s.nc.LocalAddr()
}

// RemoteAddr returns the client's address.
func (s *stream) RemoteAddr() net.Addr {
	if s.nc == nil {
		return &net.TCPAddr{}
	}
	return s.nc.RemoteAddr()
}

// The states of a response's translation.
const (
	stateHead uint8 = iota
	stateLength
	stateChunkSize
	stateChunkData
	stateChunkEnd
	stateTrailer
	stateToClose
	stateDone
	stateBad // a head or line over maxHead
)

// maxHead bounds a response head (and a framing line) being gathered.
const maxHead = 1 << 20

// errBadResponse is a response the translation cannot follow; the engine
// only writes well-formed ones.
var errBadResponse = errors.New("h2: malformed response from the engine")

// response translates an HTTP/1.1 response, written in pieces, onto an
// http.ResponseWriter.
type response struct {
	state   uint8
	head    []byte // the head, or a framing line, being gathered
	left    int64  // of the body or of the current chunk
	headReq bool   // the request was HEAD: no body follows any head
	wrote   bool   // the status went out
}

// complete reports whether the whole response went out.
func (o *response) complete() bool {
	return o.state == stateDone || o.state == stateToClose
}

// write translates p.
func (o *response) write(w http.ResponseWriter, p []byte) error {
	for len(p) > 0 {
		switch o.state {
		case stateHead:
			rest, err := o.gatherHead(w, p)
			if err != nil {
				return err
			}
			p = rest
		case stateLength, stateChunkData, stateToClose:
			n := len(p)
			if o.state != stateToClose && int64(n) > o.left {
				n = int(o.left)
			}
			if _, err := w.Write(p[:n]); err != nil {
				return err
			}
			p = p[n:]
			o.left -= int64(n)
			switch {
			case o.state == stateLength && o.left == 0:
				o.state = stateDone
			case o.state == stateChunkData && o.left == 0:
				o.state = stateChunkEnd
			}
		case stateChunkEnd, stateChunkSize, stateTrailer:
			line, rest, ok := o.line(p)
			p = rest
			if !ok {
				continue
			}
			if err := o.framing(w, line); err != nil {
				return err
			}
		default:
			return errBadResponse // bytes after the end
		}
	}
	return nil
}

// line gathers a CRLF-ended line from p; ok is false when p ended first.
func (o *response) line(p []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(p, '\n')
	if i < 0 {
		o.head = append(o.head, p...)
		if len(o.head) > maxHead {
			o.state = stateBad
		}
		return nil, nil, false
	}
	if len(o.head) > 0 {
		o.head = append(o.head, p[:i+1]...)
		line = o.head
		o.head = o.head[:0]
	} else {
		line = p[:i+1]
	}
	return bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'}), p[i+1:], true
}

// framing takes one line of a chunked body's framing.
func (o *response) framing(w http.ResponseWriter, line []byte) error {
	switch o.state {
	case stateChunkEnd:
		if len(line) != 0 {
			return errBadResponse
		}
		o.state = stateChunkSize
	case stateChunkSize:
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil || n < 0 {
			return errBadResponse
		}
		o.left, o.state = n, stateChunkData
		if n == 0 {
			o.state = stateTrailer
		}
	case stateTrailer:
		if len(line) == 0 {
			o.state = stateDone
			return nil
		}
		name, value, ok := splitField(line)
		if !ok {
			return errBadResponse
		}
		if !hopByHop(name) {
			w.Header().Add(http.TrailerPrefix+name, value)
		}
	}
	return nil
}

// gatherHead gathers a response head from p and, once it is whole, puts
// it on w; it returns what of p follows the head.
func (o *response) gatherHead(w http.ResponseWriter, p []byte) ([]byte, error) {
	buf := p
	if len(o.head) > 0 {
		o.head = append(o.head, p...)
		buf = o.head
	}
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 {
		if len(o.head) == 0 {
			o.head = append(o.head, p...)
		}
		if len(o.head) > maxHead {
			return nil, errBadResponse
		}
		return nil, nil
	}
	head := buf[:end+2]
	var rest []byte
	if len(o.head) > 0 {
		// The part of p after the head: the head's last bytes are p's
		// first ones.
		rest = p[len(p)-(len(buf)-end-4):]
	} else {
		rest = p[end+4:]
	}
	err := o.putHead(w, head)
	o.head = o.head[:0]
	return rest, err
}

// putHead puts a whole response head on w and decides how its body is
// framed. The fields' names and values are cut from one string of the
// head, and the values share one slice: a few allocations a head.
func (o *response) putHead(w http.ResponseWriter, head []byte) error {
	i := bytes.Index(head, []byte("\r\n"))
	line := head[:i]
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return errBadResponse
	}
	status := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return errBadResponse
		}
		status = status*10 + int(c-'0')
	}
	if status < 100 {
		return errBadResponse
	}
	if status < 200 {
		return nil // an interim response: the server sends its own 100
	}
	h := w.Header()
	fields := string(head[i+2:])
	values := make([]string, 0, strings.Count(fields, "\n"))
	chunked, length := false, int64(-1)
	var err error
	for rest := fields; len(rest) > 0; {
		j := strings.Index(rest, "\r\n")
		if j < 0 {
			return errBadResponse
		}
		name, value, ok := cutField(rest[:j])
		rest = rest[j+2:]
		if !ok {
			return errBadResponse
		}
		switch {
		case equalFold(name, "transfer-encoding"):
			chunked = true
			continue
		case equalFold(name, "content-length"):
			if length, err = strconv.ParseInt(value, 10, 64); err != nil || length < 0 {
				return errBadResponse
			}
		case hopByHop(name):
			continue
		}
		key := http.CanonicalHeaderKey(name) // name itself when canonical already
		if vs, ok := h[key]; ok {
			h[key] = append(vs, value)
			continue
		}
		values = append(values, value)
		h[key] = values[len(values)-1 : len(values) : len(values)]
	}
	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil // the server would sniff one: a proxy adds none
	}
	w.WriteHeader(status)
	o.wrote = true
	switch {
	case o.headReq || status == http.StatusNoContent || status == http.StatusNotModified:
		o.state = stateDone
	case chunked:
		o.state = stateChunkSize
	case length >= 0:
		o.left, o.state = length, stateLength
		if length == 0 {
			o.state = stateDone
		}
	default:
		o.state = stateToClose
	}
	return nil
}

// splitField splits a field line into its name and its value, trimmed.
func splitField(line []byte) (name, value string, ok bool) {
	return cutField(string(line))
}

// cutField splits a field line into its name and its value, trimmed.
func cutField(line string) (name, value string, ok bool) {
	i := strings.IndexByte(line, ':')
	if i <= 0 {
		return "", "", false
	}
	return line[:i], strings.Trim(line[i+1:], " \t"), true
}

// hopByHop reports the fields of an HTTP/1.1 response that HTTP/2 has no
// place for (RFC 9113 8.2.2).
func hopByHop(name string) bool {
	for _, h := range []string{"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te"} {
		if equalFold(name, h) {
			return true
		}
	}
	return false
}

// Interface guard.
var _ net.Conn = (*stream)(nil)
