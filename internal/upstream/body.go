package upstream

import (
	"bufio"
	"errors"
	"io"
	"time"

	"github.com/sluice-proxy/sluice/internal/wire"
)

// ErrBadChunk is a backend's malformed chunked framing.
var ErrBadChunk = errors.New("malformed chunked encoding from backend")

// ErrResponseTooLarge is a response body over the caller's limit.
var ErrResponseTooLarge = errors.New("response body over the limit")

// Body is a response body being read: fixed-length, chunked (decoded here,
// trailers kept) or delimited by the connection's close. Reads wait at most
// the pause limit for bytes and ask the gone check every PollInterval
// meanwhile; the body is cut at the size limit. A connection has one,
// reused from response to response.
type Body struct {
	c       *Conn
	chunked chunkedReader
	left    int64 // bytes left of a fixed-length body, -1 when not fixed
	max     int64
	n       int64
	pause   time.Duration
	gone    func() bool
	isChunk bool
	eof     bool
	err     error
	splice  splicer
}

// Body starts reading the body of the response whose head is h: at most
// max bytes, waiting at most pause for each read's bytes, asking gone
// whether the client left. A body delimited by the close makes the
// connection one not to reuse.
func (c *Conn) Body(h *Head, max int64, pause time.Duration, gone func() bool) *Body {
	b := &c.body
	b.left, b.max, b.n, b.pause, b.gone = h.ContentLength, max, 0, pause, gone
	b.isChunk, b.eof, b.err = h.Chunked, false, nil
	if h.Chunked {
		b.chunked.reset(c.br)
	} else if h.ContentLength < 0 {
		h.CloseAfter = true
	}
	// Reads of the body may block in the middle of its framing: give them
	// the body's pause limit from the start.
	c.setReadDeadline(time.Now(), pause)
	return b
}

// Left returns the bytes left of a fixed-length body, -1 for another.
func (b *Body) Left() int64 { return b.left }

// Read reads the body's bytes (decoded from chunks).
func (b *Body) Read(p []byte) (int, error) {
	if b.left == 0 {
		b.eof = true
		return 0, io.EOF
	}
	if b.left > 0 && int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.read(p)
	b.count(n)
	if b.left >= 0 && err == io.EOF && b.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	if b.n > b.max {
		n -= int(b.n - b.max)
		b.n = b.max
		err = ErrResponseTooLarge
	}
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil:
		b.err = err
	}
	return n, err
}

// count records n bytes of the body passed on.
func (b *Body) count(n int) {
	b.n += int64(n)
	if b.left > 0 {
		b.left -= int64(n)
	}
}

// read reads from the backend, waiting at most the pause limit for bytes
// and asking gone every PollInterval meanwhile. A body not chunked is read
// straight into p when the buffer is empty, so large bodies move in large
// reads.
func (b *Body) read(p []byte) (int, error) {
	c := b.c
	if c.br.Buffered() > 0 {
		return b.source().Read(p)
	}
	if b.isChunk {
		// The chunked parser must not be interrupted mid-line: wait for
		// bytes without consuming any, then read.
		if err := c.waitReadable(time.Now(), b.pause, b.gone); err != nil {
			return 0, err
		}
		if err := c.setReadDeadline(time.Now(), b.pause); err != nil {
			return 0, err
		}
		return b.chunked.Read(p)
	}
	var n int
	var rerr error
	err := c.await(time.Now(), b.pause, b.gone, func() error {
		n, rerr = c.br.Read(p)
		if n > 0 {
			return nil
		}
		return rerr
	})
	if n > 0 {
		return n, rerr
	}
	return 0, err
}

func (b *Body) source() io.Reader {
	if b.isChunk {
		return &b.chunked
	}
	return b.c.br
}

// Chunked reports whether the backend sent the body in chunks.
func (b *Body) Chunked() bool { return b.isChunk }

// Trailers returns the raw trailer lines of a chunked body read whole,
// each ending in CRLF, every one a valid field line.
func (b *Body) Trailers() []byte { return b.chunked.trailers }

// Buffered returns the bytes of a fixed-length body already read from the
// backend and not yet passed on; Consume passes them.
func (b *Body) Buffered() []byte {
	if b.isChunk || b.left < 0 {
		return nil
	}
	p := b.c.Buffered()
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	return p
}

// Consume marks the first n bytes of Buffered as passed on.
func (b *Body) Consume(n int) {
	b.c.Consume(n)
	b.count(n)
}

// End reports how the body's reading ended: complete when all of it was
// read, err the backend's failure (or the size limit, or ErrClientGone).
func (b *Body) End() (complete bool, err error) {
	return b.eof || b.left == 0, b.err
}

// chunkedReader decodes a chunked body strictly: hex sizes with valid
// extensions, CRLF after every size line and every chunk, and valid trailer
// field lines, which it keeps.
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
		return ErrBadChunk
	}
	if b, err = r.br.ReadByte(); err != nil {
		return unexpected(err)
	}
	if b != '\n' {
		return ErrBadChunk
	}
	return nil
}

// line reads one CRLF-terminated line and returns it without its CRLF.
func (r *chunkedReader) line() ([]byte, error) {
	line, err := r.br.ReadSlice('\n')
	if err != nil {
		if err == bufio.ErrBufferFull {
			return nil, ErrBadChunk
		}
		return nil, unexpected(err)
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, ErrBadChunk
	}
	return line[:len(line)-2], nil
}

func (r *chunkedReader) size() (int64, error) {
	line, err := r.line()
	if err != nil {
		return 0, err
	}
	n, ok := wire.ParseChunkSize(line)
	if !ok {
		return 0, ErrBadChunk
	}
	return n, nil
}

func (r *chunkedReader) readTrailers() error {
	for {
		line, err := r.line()
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return nil
		}
		if !wire.ValidTrailerLine(line) || len(r.trailers)+len(line)+2 > maxHead {
			return ErrBadChunk
		}
		r.trailers = append(append(r.trailers, line...), '\r', '\n')
	}
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Sent returns the bytes of the body passed on so far.
func (b *Body) Sent() int64 { return b.n }
