package h1

import (
	"bytes"
	"errors"
	"io"
	"time"

	"github.com/sluice-proxy/sluice/internal/wire"
)

// ErrBadChunk is a chunked request body whose framing is malformed.
var ErrBadChunk = errors.New("h1: malformed chunked request body")

// Body reads a request's body, framed as the handler declared with
// SetBody. Bytes the engine has buffered are read first; the rest is read
// from the connection straight into the caller's buffer.
type Body struct {
	c       *Conn
	mode    uint8
	state   uint8 // of a chunked body: what comes next
	cont    bool  // a 100 Continue is due before the first read
	left    int64 // bytes left of the body, or of the current chunk
	trailer int   // bytes of trailer fields so far
	read    int64 // body bytes handed out (chunk data, not its framing)

	timeout time.Duration // the longest wait of one read from the client
}

// Body framings.
const (
	bodyUnknown uint8 = iota // not declared: where the next request begins is not known
	bodyNone
	bodyLength
	bodyChunked
	bodyDone
)

// States of a chunked body.
const (
	chunkSize uint8 = iota
	chunkData
	chunkEnd
	chunkTrailer
)

var continueLine = []byte("HTTP/1.1 100 Continue\r\n\r\n")

func (b *Body) reset() {
	b.mode, b.state, b.cont, b.left, b.trailer, b.timeout, b.read = bodyUnknown, chunkSize, false, 0, 0, 0, 0
}

// Count returns the body bytes read so far: what the client sent of its
// body, whether or not the request went on to succeed.
func (b *Body) Count() int64 { return b.read }

// SetTimeout bounds each wait of the body's reads for bytes from the
// client by d (a pause between two reads); 0 leaves the deadline as it is.
func (b *Body) SetTimeout(d time.Duration) { b.timeout = d }

// arm sets the deadline of a read from the socket.
func (b *Body) arm() {
	if b.timeout > 0 {
		b.c.setReadDeadline(time.Now().Add(b.timeout))
	}
}

// fill reads more of the body's framing into the buffer.
func (b *Body) fill() error {
	b.arm()
	return b.c.fill(inSize)
}

// SetBody declares the request body's framing: chunked, or length bytes
// (0 or less for none). expect asks for a 100 Continue before the body's
// first read, when the client waits for one.
func (c *Conn) SetBody(length int64, chunked, expect bool) {
	b := &c.body
	switch {
	case chunked:
		b.mode = bodyChunked
	case length > 0:
		b.mode, b.left = bodyLength, length
	default:
		b.mode = bodyNone
	}
	b.cont = expect && b.mode != bodyNone && c.HTTP11()
}

// Body returns the request body's reader.
func (c *Conn) Body() *Body { return &c.body }

// Read reads the body; io.EOF comes with its last bytes or after them.
func (b *Body) Read(p []byte) (int, error) {
	switch b.mode {
	case bodyLength:
		return b.readLength(p, false)
	case bodyChunked:
		return b.readChunked(p)
	}
	return 0, io.EOF
}

func (b *Body) sendContinue() error {
	b.cont = false
	c := b.c
	if c.r < c.w {
		return nil // the client sent its body without waiting
	}
	c.armWrite()
	_, err := c.nc.Write(continueLine)
	return err
}

// readSome reads into p from the buffer, or else from the connection:
// with a read that waits (under the body's timeout), or with one that does
// not (now), which returns (0, nil) when nothing has arrived.
func (b *Body) readSome(p []byte, now bool) (int, error) {
	c := b.c
	if c.r < c.w {
		n := copy(p, (*c.in)[c.r:c.w])
		c.r += n
		return n, nil
	}
	if now {
		return c.readNow(p)
	}
	b.arm()
	n, err := c.readSocket(p)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// take reads at most what is left of the body or chunk into p.
func (b *Body) take(p []byte, now bool) (int, error) {
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.readSome(p, now)
	b.left -= int64(n)
	b.read += int64(n)
	return n, err
}

// readLength reads a body of declared length; now, it does not wait (see
// ReadNow).
func (b *Body) readLength(p []byte, now bool) (int, error) {
	if b.left == 0 {
		b.mode = bodyDone
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.cont {
		if now {
			return 0, nil // the 100 Continue goes with a read that waits
		}
		if err := b.sendContinue(); err != nil {
			return 0, err
		}
	}
	n, err := b.take(p, now)
	if b.left == 0 {
		b.mode = bodyDone
		return n, io.EOF
	}
	if n > 0 {
		return n, nil
	}
	return 0, err
}

// ReadNow reads what of a body of declared length has already arrived,
// without waiting: buffered bytes, or what one read that does not block
// returns. (0, nil) means nothing is here yet, or that the body is chunked
// (ReadNow leaves those to Read), or that a 100 Continue is still due.
func (b *Body) ReadNow(p []byte) (int, error) {
	switch b.mode {
	case bodyLength:
		return b.readLength(p, true)
	case bodyChunked:
		return 0, nil
	}
	return 0, io.EOF
}

func (b *Body) readChunked(p []byte) (int, error) {
	c := b.c
	if b.cont {
		if err := b.sendContinue(); err != nil {
			return 0, err
		}
	}
	for {
		switch b.state {
		case chunkSize:
			line, err := b.line()
			if err != nil {
				return 0, err
			}
			size, ok := wire.ParseChunkSize(line)
			if !ok {
				return 0, ErrBadChunk
			}
			if size == 0 {
				b.state = chunkTrailer
				continue
			}
			b.left, b.state = size, chunkData
		case chunkData:
			if len(p) == 0 {
				return 0, nil
			}
			n, err := b.take(p, false)
			if b.left == 0 {
				b.state = chunkEnd
			}
			if n > 0 {
				return n, nil
			}
			return 0, err
		case chunkEnd:
			for c.in == nil || c.w-c.r < 2 {
				if err := b.fill(); err != nil {
					return 0, err
				}
			}
			if (*c.in)[c.r] != '\r' || (*c.in)[c.r+1] != '\n' {
				return 0, ErrBadChunk
			}
			c.r += 2
			b.state = chunkSize
		case chunkTrailer:
			// Trailer fields are checked (they are framing: a line that
			// is not a field line could be the next request's) and
			// dropped.
			line, err := b.line()
			if err != nil {
				return 0, err
			}
			b.trailer += len(line) + 2
			if b.trailer > c.s.limits().MaxHeaderBytes {
				return 0, ErrBadChunk
			}
			if len(line) == 0 {
				b.mode = bodyDone
				return 0, io.EOF
			}
			if !wire.ValidTrailerLine(line) {
				return 0, ErrBadChunk
			}
		}
	}
}

// line reads a line of the body's framing, without its CRLF.
func (b *Body) line() ([]byte, error) {
	c := b.c
	for {
		if c.in != nil {
			buf := (*c.in)[c.r:c.w]
			if i := bytes.IndexByte(buf, '\n'); i >= 0 {
				if i == 0 || buf[i-1] != '\r' {
					return nil, ErrBadChunk
				}
				c.r += i + 1
				return buf[:i-1], nil
			}
		}
		if err := b.fill(); err != nil {
			if err == errLineTooLong {
				return nil, ErrBadChunk
			}
			return nil, err
		}
	}
}

// settleable reports whether the body is read, or its rest is buffered.
func (b *Body) settleable() bool {
	switch b.mode {
	case bodyNone, bodyDone:
		return true
	case bodyLength:
		return b.left <= int64(b.c.w-b.c.r)
	}
	return false
}

// settle skips what the handler left of the body, when all of it is
// buffered, and reports whether the next request's start is known.
func (b *Body) settle() bool {
	if !b.settleable() {
		return false
	}
	if b.mode == bodyLength {
		b.c.r += int(b.left)
		b.left, b.mode = 0, bodyDone
	}
	return true
}
