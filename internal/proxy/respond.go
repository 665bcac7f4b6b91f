package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/sluice-proxy/sluice/internal/h1"
)

// respond relays the backend's response: the head, then the body, which
// goes out with the head when it already arrived whole and is streamed
// otherwise.
func (x *exchange) respond() {
	c := x.conn
	rh := &x.resp
	x.status = rh.status
	x.outcome = OutcomeOK
	if x.route.Passive.Failure(rh.status) {
		x.outcome = OutcomeHTTPError
	}
	if rh.contentLength > x.route.MaxResponseBody {
		x.conn = nil
		c.nc.Close()
		x.fail(http.StatusBadGateway, ErrResponseTooLarge, "backend "+x.backend.URL+" declared a "+
			strconv.FormatInt(rh.contentLength, 10)+"-byte response, over the limit of "+
			strconv.FormatInt(x.route.MaxResponseBody, 10))
		return
	}
	x.rec.Status = rh.status
	out := appendStatusLine(x.c.Begin(), rh.status, rh.reason)
	hasDate := false
	for _, f := range rh.fields {
		if responseFieldDropped(f.name, rh.connection) || equalFold(f.name, "content-length") {
			continue
		}
		hasDate = hasDate || equalFold(f.name, "date")
		out = appendField(out, f.name, f.value)
	}
	if rh.status == http.StatusSwitchingProtocols {
		x.c.Out = out
		x.tunnel()
		return
	}

	switch {
	case bodyless(x.method, rh.status):
		if rh.contentLength >= 0 && string(x.method) == "HEAD" {
			out = appendContentLength(out, rh.contentLength)
		}
		x.c.Out = x.endHead(out, hasDate)
		x.release(c, true)
		return
	case rh.contentLength == 0:
		x.c.Out = x.endHead(appendContentLength(out, 0), hasDate)
		x.release(c, true)
		return
	case rh.contentLength > 0 && int64(c.br.Buffered()) >= rh.contentLength:
		// All of it is here: it goes out with the head, in one write.
		n := int(rh.contentLength)
		b, _ := c.br.Peek(n)
		out = x.endHead(appendContentLength(out, rh.contentLength), hasDate)
		x.c.Out = append(out, b...)
		c.br.Discard(n)
		x.rec.BytesOut = int64(n)
		x.release(c, true)
		return
	}

	x.resBody = respBody{x: x, left: rh.contentLength, max: x.route.MaxResponseBody}
	switch {
	case rh.chunked:
		x.chunked.reset(c.br)
		x.resBody.r = &x.chunked
	case rh.contentLength > 0:
		x.resBody.r = c.br
	default:
		// Delimited by the connection's close.
		x.resBody.r = c.br
		rh.closeAfter = true
	}
	if rh.contentLength > 0 {
		out = appendContentLength(out, rh.contentLength)
	} else if x.c.HTTP11() {
		out = append(out, "Transfer-Encoding: chunked\r\n"...)
		if len(rh.trailer) > 0 {
			out = append(out, "Trailer: "...)
			for i, name := range rh.trailer {
				if i > 0 {
					out = append(out, ',', ' ')
				}
				out = append(out, name...)
			}
			out = append(out, '\r', '\n')
		}
	} else {
		// An HTTP/1.0 client reads to the close.
		x.c.SetClose()
	}
	x.c.Out = x.endHead(out, hasDate)
	// Reads of the body may block in the middle of its framing: give them
	// the body's pause limit from the start.
	c.setReadDeadline(time.Now(), x.route.UpstreamBody)
	// The head goes out at once: a client waiting on a slow body knows where
	// it stands, and a body cut later is seen as a cut, not as no answer.
	werr := x.c.Flush()
	if werr == nil {
		werr = x.resBody.writeTo(x.c)
	}
	x.resBody.end(werr)
}

// endHead appends the fields every response carries and the empty line
// that ends the head.
func (x *exchange) endHead(out []byte, hasDate bool) []byte {
	if len(x.requestID) > 0 {
		out = appendField(out, "X-Request-Id", x.requestID)
	}
	if !hasDate {
		out = appendDate(out)
	}
	switch {
	case x.c.Closing():
		out = append(out, "Connection: close\r\n"...)
	case !x.c.HTTP11():
		out = append(out, "Connection: keep-alive\r\n"...)
	}
	return append(out, '\r', '\n')
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

// respBody is a streamed response body: it reads the backend's body with
// the upstream_body pause limit and the size limit.
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

// writeTo copies the body to the client in reads of up to 64 KiB, so a
// large body costs few system calls; a large body of known length moves
// by splice. A chunked body is framed again for the client, or passed as
// it is to an HTTP/1.0 client, which reads to the close; its last chunk
// and trailers are left in w.Out, to go out with the wait for the next
// request.
func (b *respBody) writeTo(w *h1.Conn) error {
	if b.left >= spliceMin {
		// Pass on what is already buffered, then splice the rest.
		if n := b.x.conn.br.Buffered(); n > 0 {
			p, _ := b.x.conn.br.Peek(n)
			m, err := w.Write(p)
			b.x.conn.br.Discard(m)
			b.n += int64(m)
			b.left -= int64(m)
			if err != nil {
				return err
			}
		}
		_, err := b.spliceBody(w.NetConn())
		if err != errSpliceUnsupported {
			return err
		}
	}
	frame := b.left < 0 && w.HTTP11()
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	for {
		n, err := b.Read(*buf)
		if n > 0 {
			if frame {
				w.Out = strconv.AppendUint(w.Out, uint64(n), 16)
				w.Out = append(w.Out, '\r', '\n')
			}
			if _, werr := w.Write((*buf)[:n]); werr != nil {
				return werr
			}
			if frame {
				w.Out = append(w.Out, '\r', '\n')
			}
		}
		if err == io.EOF {
			if frame {
				w.Out = append(w.Out, '0', '\r', '\n')
				w.Out = b.x.appendTrailers(w.Out)
				w.Out = append(w.Out, '\r', '\n')
			}
			return nil
		}
		if err != nil {
			return nil // a failure of the backend's side, kept in b.err
		}
	}
}

// copyBufs are the buffers of body copies.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// end records how the body's relay ended, werr being the client's
// failure, and gives the backend connection back when the body was read
// whole. A body cut short closes the client's connection too: that is how
// the client learns of the cut.
func (b *respBody) end(werr error) {
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
	if werr != nil || !complete || b.err != nil {
		x.c.SetClose()
	}
}

// appendTrailers appends the backend's trailer fields that may be passed
// on: valid ones, not hop-by-hop.
func (x *exchange) appendTrailers(out []byte) []byte {
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
			out = appendField(out, name, value)
		}
	}
	return out
}

// tunnel carries an upgraded connection: the 101 goes to the client with
// the backend's Upgrade, then bytes flow both ways until either side closes.
func (x *exchange) tunnel() {
	out := x.c.Out
	for _, f := range x.resp.fields {
		if equalFold(f.name, "upgrade") {
			out = appendField(out, f.name, f.value)
		}
	}
	out = append(out, "Connection: Upgrade\r\n"...)
	out = appendField(out, "X-Request-Id", x.requestID)
	x.c.Out = append(out, '\r', '\n')
	x.rec.Status = http.StatusSwitchingProtocols
	up := x.conn
	x.conn = nil
	if err := x.c.Flush(); err != nil {
		up.nc.Close()
		x.rec.Error = ErrClientDisconnect
		return
	}
	client, early := x.c.Hijack()
	up.nc.SetReadDeadline(time.Time{})
	client.SetDeadline(time.Time{})
	var in int64
	if len(early) > 0 {
		// What the client sent past its request head is the tunnel's.
		n, _ := up.nc.Write(early)
		in += int64(n)
	}
	done := make(chan int64, 1)
	go func() {
		// Bytes the backend sent after its 101 are in up.br.
		n, _ := io.Copy(client, up.br)
		closeWrite(client)
		done <- n
	}()
	n, _ := io.Copy(up.nc, client)
	closeWrite(up.nc)
	out64 := <-done
	up.nc.Close()
	x.rec.BytesIn, x.rec.BytesOut = in+n, out64
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
