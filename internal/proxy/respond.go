package proxy

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// respond relays the backend's response head and arranges its body: small
// bodies that already arrived whole are copied and the connection returned at
// once; anything else is streamed after Serve returns, and finished by the
// body's close.
func (x *exchange) respond() {
	c := x.conn
	rh := &x.resp
	resp := &x.ctx.Response
	x.status = rh.status
	x.outcome = OutcomeOK
	if x.route.Passive.Failure(rh.status) {
		x.outcome = OutcomeHTTPError
	}
	if rh.contentLength > x.route.MaxResponseBody {
		x.conn = nil
		c.nc.Close()
		x.fail(fasthttp.StatusBadGateway, ErrResponseTooLarge, "backend "+x.backend.URL+" declared a "+
			strconv.FormatInt(rh.contentLength, 10)+"-byte response, over the limit of "+
			strconv.FormatInt(x.route.MaxResponseBody, 10))
		return
	}
	x.rec.Status = rh.status
	resp.SetStatusCode(rh.status)
	for _, f := range rh.fields {
		if !responseFieldDropped(f.name, rh.connection) {
			resp.Header.AddBytesKV(f.name, f.value)
		}
	}
	resp.Header.SetBytesKV(hdrRequestID, x.requestID)
	if rh.status == fasthttp.StatusSwitchingProtocols {
		x.tunnel()
		return
	}

	switch {
	case bodyless(x.method, rh.status):
		if rh.contentLength >= 0 && string(x.method) == "HEAD" {
			resp.Header.SetContentLength(int(rh.contentLength))
		}
		x.release(c, true)
		return
	case rh.contentLength == 0:
		resp.Header.SetContentLength(0)
		x.release(c, true)
		return
	case rh.contentLength > 0 && int64(c.br.Buffered()) >= rh.contentLength:
		n := int(rh.contentLength)
		b, _ := c.br.Peek(n)
		resp.SetBody(b)
		c.br.Discard(n)
		x.rec.BytesOut = int64(n)
		x.release(c, true)
		return
	}

	x.resBody = respBody{x: x, left: rh.contentLength, max: x.route.MaxResponseBody}
	size := -1
	switch {
	case rh.chunked:
		x.chunked.reset(c.br)
		x.resBody.r = &x.chunked
		if len(rh.trailer) > 0 {
			resp.Header.SetTrailerBytes(bytes.Join(rh.trailer, []byte(", ")))
		}
	case rh.contentLength > 0:
		x.resBody.r = c.br
		size = int(rh.contentLength)
	default:
		// Delimited by the connection's close.
		x.resBody.r = c.br
		rh.closeAfter = true
	}
	// Reads of the body may block in the middle of its framing: give them
	// the body's pause limit from the start.
	c.setReadDeadline(time.Now(), x.route.UpstreamBody)
	x.streaming = true
	// The head goes out at once: a client waiting on a slow body knows where
	// it stands, and a body cut later is seen as a cut, not as no answer.
	resp.ImmediateHeaderFlush = true
	resp.SetBodyStream(&x.resBody, size)
}

// release ends the use of c: back to its pool when reusable is set and the
// backend keeps the connection open, closed otherwise.
func (x *exchange) release(c *upConn, reusable bool) {
	x.conn = nil
	if !reusable || x.resp.closeAfter {
		c.nc.Close()
		return
	}
	var keep time.Duration
	if n := x.resp.keepAlive; n > 0 {
		// Retire it well before the backend's own Keep-Alive timeout.
		keep = time.Duration(n) * time.Second * 3 / 4
	}
	c.pool.put(c, x.now, keep)
}

// respBody is the streamed response body handed to the engine: it reads the
// backend's body with the upstream_body pause limit and the size limit, and
// its close (from the engine, after the last byte was written or the write
// failed) finishes the exchange.
type respBody struct {
	x    *exchange
	r    io.Reader
	left int64 // bytes left of a fixed-length body, -1 when not fixed
	max  int64
	n    int64
	eof  bool
	err  error
}

func (b *respBody) Read(p []byte) (int, error) {
	if b.left == 0 {
		b.eof = true
		return 0, io.EOF
	}
	if b.left > 0 && int64(len(p)) > b.left {
		p = p[:b.left]
	}
	x := b.x
	n, err := b.read(p)
	b.n += int64(n)
	if b.left > 0 {
		b.left -= int64(n)
		if err == io.EOF && b.left > 0 {
			err = io.ErrUnexpectedEOF
		}
	}
	if b.n > b.max {
		n -= int(b.n - b.max)
		b.n = b.max
		err = errResponseTooLarge
	}
	switch {
	case err == io.EOF:
		b.eof = true
		if x.resp.chunked {
			x.setTrailers()
		}
	case err != nil:
		b.err = err
	}
	return n, err
}

// read reads from the backend's body, waiting at most upstream_body for
// bytes and checking every pollInterval meanwhile that the client is still
// there. A body not chunked is read straight into p when the buffer is
// empty, so large bodies move in large reads.
func (b *respBody) read(p []byte) (int, error) {
	x := b.x
	c := x.conn
	if c.br.Buffered() > 0 {
		return b.r.Read(p)
	}
	if x.resp.chunked {
		// The chunked parser must not be interrupted mid-line: wait for
		// bytes without consuming any, then read.
		if err := x.waitReadable(c, time.Now(), x.route.UpstreamBody); err != nil {
			return 0, err
		}
		if err := c.setReadDeadline(time.Now(), x.route.UpstreamBody); err != nil {
			return 0, err
		}
		return b.r.Read(p)
	}
	var n int
	var rerr error
	err := x.awaitBackend(c, time.Now(), x.route.UpstreamBody, func() error {
		n, rerr = b.r.Read(p)
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

// SupportsBodyWriteTo tells the engine to use WriteTo for chunked bodies too.
func (b *respBody) SupportsBodyWriteTo() bool { return true }

// WriteTo copies the body in reads of up to 64 KiB, so a large body costs
// few system calls. A body of known length goes straight to the client's
// connection (the engine has already flushed the head, see respond), so
// every byte is passed on as soon as it arrives, whatever the engine's
// buffer holds; a chunked one goes through the engine's chunk writer, which
// flushes each chunk.
func (b *respBody) WriteTo(w io.Writer) (int64, error) {
	if b.left >= 0 {
		w = b.x.ctx.Conn()
	}
	var total int64
	if b.left >= spliceMin {
		// Pass on what is already buffered, then splice the rest.
		if n := b.x.conn.br.Buffered(); n > 0 {
			p, _ := b.x.conn.br.Peek(n)
			m, err := w.Write(p)
			b.x.conn.br.Discard(m)
			b.n += int64(m)
			b.left -= int64(m)
			total += int64(m)
			if err != nil {
				return total, err // the client's failure, reported by the engine
			}
		}
		n, err := b.spliceBody(w.(net.Conn))
		total += n
		if err != errSpliceUnsupported {
			return total, err
		}
	}
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	for {
		n, err := b.Read(*buf)
		if n > 0 {
			m, werr := w.Write((*buf)[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// copyBufs are the buffers of body copies.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// CloseWithError is called by the engine once the body has been written, or
// writing it failed with werr.
func (b *respBody) CloseWithError(werr error) error {
	x := b.x
	c := x.conn
	x.rec.BytesOut = b.n
	complete := b.eof || b.left == 0
	x.release(c, complete && werr == nil && b.err == nil)
	switch {
	case b.err == errResponseTooLarge:
		x.rec.Error = ErrResponseTooLarge
	case isClientErr(b.err):
		x.rec.Error = ErrClientDisconnect
	case b.err != nil && isTimeout(b.err):
		x.rec.Error, x.outcome = ErrUpstreamTimeout, OutcomeTimeout
	case b.err != nil:
		x.rec.Error, x.outcome = ErrUpstream, OutcomeReset
	case werr != nil || !complete:
		x.rec.Error = ErrClientDisconnect
	}
	x.finish()
	return nil
}

// setTrailers hands the backend's trailer fields to the engine, which writes
// those it announced after the last chunk.
func (x *exchange) setTrailers() {
	t := x.chunked.trailers
	for len(t) > 0 {
		i := bytes.IndexByte(t, '\n')
		line := bytes.TrimSuffix(t[:i], []byte{'\r'})
		t = t[i+1:]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			continue
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		if validFieldValue(value) && !hopByHop(name) {
			// The head has gone out; announcing the name now only tells the
			// engine to write the field after the last chunk.
			x.ctx.Response.Header.AddTrailerBytes(name)
			x.ctx.Response.Header.SetBytesKV(name, value)
		}
	}
}

// tunnel carries an upgraded connection: the 101 goes to the client with
// the backend's Upgrade, then bytes flow both ways until either side closes.
// The request is finished when the tunnel closes.
func (x *exchange) tunnel() {
	resp := &x.ctx.Response
	for _, f := range x.resp.fields {
		if equalFold(f.name, "upgrade") {
			resp.Header.SetBytesKV(f.name, f.value)
		}
	}
	resp.Header.Set("Connection", "Upgrade")
	x.rec.Status = fasthttp.StatusSwitchingProtocols
	x.streaming = true
	up := x.conn
	x.conn = nil
	x.ctx.Hijack(func(client net.Conn) {
		up.nc.SetReadDeadline(time.Time{})
		done := make(chan int64, 1)
		go func() {
			// Bytes the backend sent after its 101 are in up.br.
			n, _ := io.Copy(client, up.br)
			closeWrite(client)
			done <- n
		}()
		in, _ := io.Copy(up.nc, client)
		closeWrite(up.nc)
		out := <-done
		up.nc.Close()
		x.rec.BytesIn, x.rec.BytesOut = in, out
		x.finish()
	})
}

// closeWrite half-closes c when it can, so the peer sees the end of the
// stream while the other direction drains.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}
