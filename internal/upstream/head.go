package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"

	"github.com/sluice-proxy/sluice/internal/wire"
)

// maxHead bounds a backend's status line and headers, and its trailers.
const maxHead = 64 << 10

// ErrBadResponse is a backend answer that is not valid HTTP/1.x.
var ErrBadResponse = errors.New("invalid HTTP response from backend")

// Head is a backend response's status line and header fields. Its slices
// point into its own buffer, valid until the next read into it.
type Head struct {
	buf           []byte
	Fields        []wire.Field
	Status        int
	Reason        []byte
	HTTP11        bool
	ContentLength int64 // -1 when absent
	Chunked       bool
	CloseAfter    bool // the backend will close the connection
	keepAlive     int  // seconds from "Keep-Alive: timeout=N", 0 when absent
	Connection    [][]byte
}

// read reads one response head from br into h.
func (h *Head) read(br *bufio.Reader) error {
	h.buf = h.buf[:0]
	lineStart := 0
	for {
		line, err := br.ReadSlice('\n')
		h.buf = append(h.buf, line...)
		if len(h.buf) > maxHead {
			return ErrBadResponse
		}
		if err == bufio.ErrBufferFull {
			continue // a line longer than the buffer: read on
		}
		if err != nil {
			if len(h.buf) == 0 {
				return err
			}
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		if n := len(h.buf) - lineStart; n == 1 || n == 2 && h.buf[lineStart] == '\r' {
			break
		}
		lineStart = len(h.buf)
	}
	return h.parse()
}

// Parse interprets raw, a whole response head, into h (for tests and
// fuzzing; the connection reads heads with read).
func (h *Head) Parse(raw []byte) error {
	h.buf = append(h.buf[:0], raw...)
	return h.parse()
}

// parse interprets h.buf.
func (h *Head) parse() error {
	h.Fields, h.Connection = h.Fields[:0], h.Connection[:0]
	h.ContentLength, h.Chunked, h.CloseAfter, h.keepAlive = -1, false, false, 0
	b := h.buf
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return ErrBadResponse
	}
	line := bytes.TrimSuffix(b[:i], []byte{'\r'})
	b = b[i+1:]
	// HTTP/1.x SP 3DIGIT SP reason
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return ErrBadResponse
	}
	h.HTTP11 = line[7] != '0'
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return ErrBadResponse
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 || code > 599 || len(line) > 12 && line[12] != ' ' {
		return ErrBadResponse
	}
	h.Status = code
	h.Reason = nil
	if len(line) > 13 {
		h.Reason = line[13:]
	}
	if !h.HTTP11 {
		h.CloseAfter = true
	}
	var lastName []byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return ErrBadResponse
		}
		line := bytes.TrimSuffix(b[:i], []byte{'\r'})
		b = b[i+1:]
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			// obs-fold in a response: RFC 9112 section 5.2 lets a proxy
			// replace it with a space; join it to the previous value.
			if lastName == nil {
				return ErrBadResponse
			}
			f := &h.Fields[len(h.Fields)-1]
			f.Value = append(append(append([]byte(nil), f.Value...), ' '), wire.TrimOWS(line)...)
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !wire.IsToken(line[:colon]) {
			return ErrBadResponse
		}
		name, value := line[:colon], wire.TrimOWS(line[colon+1:])
		if !wire.ValidFieldValue(value) {
			return ErrBadResponse
		}
		lastName = name
		switch {
		case wire.EqualFold(name, "content-length"):
			n, ok := wire.ParseContentLength(value)
			if !ok || h.ContentLength >= 0 && h.ContentLength != n {
				return ErrBadResponse
			}
			h.ContentLength = n
		case wire.EqualFold(name, "transfer-encoding"):
			if wire.HasToken(value, "chunked") {
				h.Chunked = true
			} else {
				return ErrBadResponse
			}
		case wire.EqualFold(name, "connection"):
			h.Connection = append(h.Connection, value)
			if wire.HasToken(value, "close") {
				h.CloseAfter = true
			}
			if !h.HTTP11 && wire.HasToken(value, "keep-alive") {
				h.CloseAfter = false
			}
		case wire.EqualFold(name, "keep-alive"):
			h.keepAlive = keepAliveTimeout(value)
		}
		h.Fields = append(h.Fields, wire.Field{Name: name, Value: value})
	}
	if h.Chunked {
		// Transfer-Encoding overrides Content-Length (RFC 9112 section
		// 6.3); the connection is not reused after such a response.
		if h.ContentLength >= 0 {
			h.CloseAfter = true
		}
		h.ContentLength = -1
	}
	return nil
}

// keepAliveTimeout returns N of "timeout=N" in a Keep-Alive value.
func keepAliveTimeout(v []byte) int {
	for len(v) > 0 {
		var part []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			part, v = wire.TrimOWS(v[:i]), v[i+1:]
		} else {
			part, v = wire.TrimOWS(v), nil
		}
		if len(part) > 8 && wire.EqualFold(part[:8], "timeout=") {
			n := 0
			for _, c := range part[8:] {
				if c < '0' || c > '9' {
					return 0
				}
				n = n*10 + int(c-'0')
				if n > 1<<20 {
					return 0
				}
			}
			return n
		}
	}
	return 0
}

// Bodyless reports whether a response to method with this status has no
// body whatever its headers say.
func Bodyless(method []byte, status int) bool {
	return status < 200 || status == 204 || status == 304 || string(method) == "HEAD"
}
