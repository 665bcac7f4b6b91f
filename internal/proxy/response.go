package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"

	"github.com/sluice-proxy/sluice/internal/h1"
)

// maxResponseHead bounds a backend's status line and headers.
const maxResponseHead = 64 << 10

// errBadResponse is a backend answer that is not valid HTTP/1.x.
var errBadResponse = errors.New("invalid HTTP response from backend")

// responseHead is a backend response's status line and header fields.
type responseHead struct {
	buf           []byte // the raw head; fields point into it
	fields        []field
	status        int
	reason        []byte
	http11        bool
	contentLength int64 // -1 when absent
	chunked       bool
	closeAfter    bool // the backend will close the connection
	keepAlive     int  // seconds from "Keep-Alive: timeout=N", 0 when absent
	connection    [][]byte
	trailer       [][]byte // names announced in Trailer
}

// readResponseHead reads one response head from br into h.
func readResponseHead(br *bufio.Reader, h *responseHead) error {
	h.buf = h.buf[:0]
	lineStart := 0
	for {
		line, err := br.ReadSlice('\n')
		h.buf = append(h.buf, line...)
		if len(h.buf) > maxResponseHead {
			return errBadResponse
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

// parse interprets h.buf.
func (h *responseHead) parse() error {
	h.fields, h.connection, h.trailer = h.fields[:0], h.connection[:0], h.trailer[:0]
	h.contentLength, h.chunked, h.closeAfter, h.keepAlive = -1, false, false, 0
	b := h.buf
	i := bytes.IndexByte(b, '\n')
	line := bytes.TrimSuffix(b[:i], []byte{'\r'})
	b = b[i+1:]
	// HTTP/1.x SP 3DIGIT SP reason
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return errBadResponse
	}
	h.http11 = line[7] != '0'
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return errBadResponse
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 || code > 599 || len(line) > 12 && line[12] != ' ' {
		return errBadResponse
	}
	h.status = code
	h.reason = nil
	if len(line) > 13 {
		h.reason = line[13:]
	}
	if !h.http11 {
		h.closeAfter = true
	}
	var lastName []byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		line := bytes.TrimSuffix(b[:i], []byte{'\r'})
		b = b[i+1:]
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			// obs-fold in a response: RFC 9112 section 5.2 lets a proxy
			// replace it with a space; join it to the previous value.
			if lastName == nil {
				return errBadResponse
			}
			f := &h.fields[len(h.fields)-1]
			f.value = append(append(append([]byte(nil), f.value...), ' '), trimOWS(line)...)
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			return errBadResponse
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		if !validFieldValue(value) {
			return errBadResponse
		}
		lastName = name
		switch {
		case equalFold(name, "content-length"):
			n, ok := parseContentLength(value)
			if !ok || h.contentLength >= 0 && h.contentLength != n {
				return errBadResponse
			}
			h.contentLength = n
		case equalFold(name, "transfer-encoding"):
			if hasToken(value, "chunked") {
				h.chunked = true
			} else {
				return errBadResponse
			}
		case equalFold(name, "connection"):
			h.connection = append(h.connection, value)
			if hasToken(value, "close") {
				h.closeAfter = true
			}
			if !h.http11 && hasToken(value, "keep-alive") {
				h.closeAfter = false
			}
		case equalFold(name, "keep-alive"):
			h.keepAlive = keepAliveTimeout(value)
		case equalFold(name, "trailer"):
			h.trailer = append(h.trailer, value)
		}
		h.fields = append(h.fields, field{name: name, value: value})
	}
	if h.chunked {
		// Transfer-Encoding overrides Content-Length (RFC 9112 section
		// 6.3); the connection is not reused after such a response.
		if h.contentLength >= 0 {
			h.closeAfter = true
		}
		h.contentLength = -1
	}
	return nil
}

// keepAliveTimeout returns N of "timeout=N" in a Keep-Alive value.
func keepAliveTimeout(v []byte) int {
	for len(v) > 0 {
		var part []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			part, v = trimOWS(v[:i]), v[i+1:]
		} else {
			part, v = trimOWS(v), nil
		}
		if len(part) > 8 && equalFold(part[:8], "timeout=") {
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

// bodyless reports whether a response to method with this status has no
// body whatever its headers say.
func bodyless(method []byte, status int) bool {
	return status < 200 || status == 204 || status == 304 || string(method) == "HEAD"
}

// errBadChunk is malformed chunked framing.
var errBadChunk = errors.New("malformed chunked encoding")

// chunkedReader decodes a chunked body strictly: hex sizes, CRLF after every
// size line and every chunk, and trailer fields, which it keeps.
type chunkedReader struct {
	br       *bufio.Reader
	left     int64 // bytes left in the current chunk
	started  bool
	done     bool
	trailers []byte // raw trailer section, without the final CRLF
}

func (r *chunkedReader) reset(br *bufio.Reader) {
	r.br, r.left, r.started, r.done, r.trailers = br, 0, false, false, r.trailers[:0]
}

func (r *chunkedReader) Read(p []byte) (int, error) {
	if r.done {
		return 0, io.EOF
	}
	if r.left == 0 {
		if r.started {
			if err := r.crlf(); err != nil {
				return 0, err
			}
		}
		r.started = true
		n, err := r.size()
		if err != nil {
			return 0, err
		}
		if n == 0 {
			if err := r.readTrailers(); err != nil {
				return 0, err
			}
			r.done = true
			return 0, io.EOF
		}
		r.left = n
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.br.Read(p)
	r.left -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (r *chunkedReader) crlf() error {
	b, err := r.br.ReadByte()
	if err != nil {
		return unexpected(err)
	}
	if b != '\r' {
		return errBadChunk
	}
	if b, err = r.br.ReadByte(); err != nil {
		return unexpected(err)
	}
	if b != '\n' {
		return errBadChunk
	}
	return nil
}

func (r *chunkedReader) size() (int64, error) {
	line, err := r.br.ReadSlice('\n')
	if err != nil {
		if err == bufio.ErrBufferFull {
			return 0, errBadChunk
		}
		return 0, unexpected(err)
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return 0, errBadChunk
	}
	n, ok := h1.ParseChunkSize(line[:len(line)-2])
	if !ok {
		return 0, errBadChunk
	}
	return n, nil
}

func (r *chunkedReader) readTrailers() error {
	for {
		line, err := r.br.ReadSlice('\n')
		if err != nil {
			if err == bufio.ErrBufferFull {
				return errBadChunk
			}
			return unexpected(err)
		}
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return errBadChunk
		}
		if len(line) == 2 {
			return nil
		}
		if len(r.trailers)+len(line) > maxResponseHead {
			return errBadChunk
		}
		r.trailers = append(r.trailers, line...)
	}
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
