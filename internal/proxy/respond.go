package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/sluice-proxy/sluice/internal/upstream"
	"github.com/sluice-proxy/sluice/internal/wire"
)

// respond relays the backend's response: the head, then the body, which
// goes out with the head when it already arrived whole and is streamed
// otherwise.
func (x *exchange) respond() {
	if testHookRespond != nil {
		testHookRespond(x.path)
	}
	up := x.up
	rh := &x.resp
	x.status = rh.Status
	x.outcome = OutcomeOK
	if x.route.Passive.Failure(rh.Status) {
		x.outcome = OutcomeHTTPError
	}
	// A HEAD or 304 answer declares a length it does not send: nothing of
	// it is over the limit.
	if rh.ContentLength > x.route.MaxResponseBody && !upstream.Bodyless(x.method, rh.Status) {
		x.dropConn()
		x.fail(http.StatusBadGateway, ErrResponseTooLarge, "backend "+x.backend.URL+" declared a "+
			strconv.FormatInt(rh.ContentLength, 10)+"-byte response, over the limit of "+
			strconv.FormatInt(x.route.MaxResponseBody, 10))
		return
	}
	x.rec.Status = rh.Status
	out := appendStatusLine(x.client.Begin(), rh.Status, rh.Reason)
	hasDate := false
	for _, f := range rh.Fields {
		if responseFieldDropped(f.Name, rh.Connection) || wire.EqualFold(f.Name, "content-length") {
			continue
		}
		hasDate = hasDate || wire.EqualFold(f.Name, "date")
		out = appendField(out, f.Name, f.Value)
	}
	if rh.Status == http.StatusSwitchingProtocols {
		x.client.Out = out
		x.tunnel()
		return
	}

	switch {
	case upstream.Bodyless(x.method, rh.Status):
		if rh.ContentLength >= 0 && string(x.method) == "HEAD" {
			out = appendContentLength(out, rh.ContentLength)
		}
		x.client.Out = x.endHead(out, hasDate)
		x.release()
		return
	case rh.ContentLength == 0:
		x.client.Out = x.endHead(appendContentLength(out, 0), hasDate)
		x.release()
		return
	case rh.ContentLength > 0 && int64(len(up.Buffered())) >= rh.ContentLength:
		// All of it is here: it goes out with the head, in one write.
		n := int(rh.ContentLength)
		out = x.endHead(appendContentLength(out, rh.ContentLength), hasDate)
		x.client.Out = append(out, up.Buffered()[:n]...)
		up.Consume(n)
		x.rec.BytesOut = int64(n)
		x.release()
		return
	}

	body := up.Body(rh, x.route.MaxResponseBody, x.route.UpstreamBody, x.gone)
	if rh.ContentLength > 0 {
		out = appendContentLength(out, rh.ContentLength)
	} else if x.client.HTTP11() {
		// Trailers go on after the last chunk; the backend's Trailer
		// field, hop-by-hop, stays behind like the others.
		out = append(out, "Transfer-Encoding: chunked\r\n"...)
	} else {
		// An HTTP/1.0 client reads to the close.
		x.client.SetClose()
	}
	x.client.Out = x.endHead(out, hasDate)
	// The head goes out at once: a client waiting on a slow body knows where
	// it stands, and a body cut later is seen as a cut, not as no answer.
	werr := x.client.Flush()
	if werr == nil {
		werr = x.relay(body)
	}
	x.endBody(body, werr)
}

// testHookRespond, set by tests only, is called with the request's path as
// a response is about to be relayed.
var testHookRespond func(path string)

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
	case x.client.Closing():
		out = append(out, "Connection: close\r\n"...)
	case !x.client.HTTP11():
		out = append(out, "Connection: keep-alive\r\n"...)
	}
	return append(out, '\r', '\n')
}

// release gives the try's connection back after a response read whole.
func (x *exchange) release() {
	up := x.up
	x.up = nil
	up.Release(&x.resp, x.now)
}

// relay copies the body to the client in reads of up to 64 KiB, so a
// large body costs few system calls; a large body of known length moves
// by splice. A body of unknown length is framed in chunks for an HTTP/1.1
// client, each chunk's size line, data and CRLF going out together (a
// client may wait for the CRLF before it hands a chunk on), or passed as
// it is to an HTTP/1.0 client, which reads to the close; its last chunk
// and trailers are left in Out, to go out with the wait for the next
// request. A failure of the backend's side ends the relay with nil: the
// body keeps it (see endBody).
func (x *exchange) relay(body *upstream.Body) error {
	w := x.client
	// Only to a plain TCP socket: spliced under TLS, the bytes would go
	// out in clear.
	if body.Left() >= upstream.SpliceMin && w.PlainTCP() {
		// Pass on what is already buffered, then splice the rest.
		if p := body.Buffered(); len(p) > 0 {
			m, err := w.Write(p)
			body.Consume(m)
			if err != nil {
				return err
			}
		}
		_, err := body.SpliceTo(w.NetConn(), x.rt.Config.Timeouts.ClientIdle.D())
		if err != upstream.ErrSpliceUnsupported {
			if _, failed := body.End(); failed != nil {
				return nil // the backend's failure (or the client gone), kept in body
			}
			return err
		}
	}
	frame := body.Left() < 0 && w.HTTP11()
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	// A chunk is built around its data in one buffer: the size line goes
	// in the room before it, the CRLF after it, so that all three go out
	// in one write (a client may wait for the CRLF before it hands a
	// chunk on) with no copy.
	buf, head, tail := *bp, 0, 0
	if frame {
		head, tail = chunkHead, 2
	}
	for {
		n, err := body.Read(buf[head : len(buf)-tail])
		if n > 0 {
			p := buf[head : head+n]
			if frame {
				p = frameChunk(buf, n)
			}
			if _, werr := w.Write(p); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			if frame {
				w.Out = append(w.Out, '0', '\r', '\n')
				w.Out = appendTrailers(w.Out, body.Trailers())
				w.Out = append(w.Out, '\r', '\n')
			}
			return nil
		}
		if err != nil {
			return nil // a failure of the backend's side, kept in body
		}
	}
}

// chunkHead is the room kept before a chunk's data for its size line: 16
// hex digits and a CRLF.
const chunkHead = 18

// frameChunk frames the n bytes of data at buf[chunkHead:] as one chunk,
// its size line written into the room before them and its CRLF after
// them, and returns the chunk.
func frameChunk(buf []byte, n int) []byte {
	end := chunkHead + n
	buf[end], buf[end+1] = '\r', '\n'
	i := chunkHead - 2
	buf[i], buf[i+1] = '\r', '\n'
	for v := uint64(n); ; v >>= 4 {
		i--
		buf[i] = "0123456789abcdef"[v&0xf]
		if v < 16 {
			break
		}
	}
	return buf[i : end+2]
}

// copyBufs are the buffers of body copies.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// endBody records how the body's relay ended, werr being the client's
// failure, and gives the backend connection back when the body was read
// whole. A body cut short closes the client's connection too: that is how
// the client learns of the cut.
func (x *exchange) endBody(body *upstream.Body, werr error) {
	complete, err := body.End()
	x.rec.BytesOut = body.Sent()
	if complete && werr == nil && err == nil {
		x.release()
	} else {
		x.dropConn()
	}
	switch {
	case err == upstream.ErrResponseTooLarge:
		x.word = ErrResponseTooLarge
	case err == upstream.ErrClientGone || isClientErr(err):
		x.word = ErrClientDisconnect
	case err != nil && wire.IsTimeout(err):
		x.word, x.outcome = ErrUpstreamTimeout, OutcomeTimeout
	case err != nil:
		x.word, x.outcome = ErrUpstream, OutcomeReset
	case werr != nil || !complete:
		x.word = ErrClientDisconnect
	}
	if werr != nil || !complete || err != nil {
		x.client.SetClose()
	}
}

// appendTrailers appends the fields of t, a backend's raw trailer lines,
// that may be passed on: valid ones, not hop-by-hop.
func appendTrailers(out, t []byte) []byte {
	for len(t) > 0 {
		i := bytes.IndexByte(t, '\n')
		line := bytes.TrimSuffix(t[:i], []byte{'\r'})
		t = t[i+1:]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !wire.IsToken(line[:colon]) {
			continue
		}
		name, value := line[:colon], wire.TrimOWS(line[colon+1:])
		if wire.ValidFieldValue(value) && !hopByHop(name) {
			out = appendField(out, name, value)
		}
	}
	return out
}

// tunnel carries an upgraded connection: the 101 goes to the client with
// the backend's Upgrade, then bytes flow both ways until either side closes.
func (x *exchange) tunnel() {
	x.tunneled = true
	out := x.client.Out
	for _, f := range x.resp.Fields {
		if wire.EqualFold(f.Name, "upgrade") {
			out = appendField(out, f.Name, f.Value)
		}
	}
	out = append(out, "Connection: Upgrade\r\n"...)
	out = appendField(out, "X-Request-Id", x.requestID)
	x.client.Out = append(out, '\r', '\n')
	x.rec.Status = http.StatusSwitchingProtocols
	if err := x.client.Flush(); err != nil {
		x.dropConn()
		x.word = ErrClientDisconnect
		return
	}
	upConn, fromUp := x.up.Hijack()
	x.up = nil
	client, early := x.client.Hijack()
	client.SetDeadline(time.Time{})
	var in int64
	if len(early) > 0 {
		// What the client sent past its request head is the tunnel's.
		n, _ := upConn.Write(early)
		in += int64(n)
	}
	done := make(chan int64, 1)
	go func() {
		// Bytes the backend sent after its 101 come first from fromUp.
		n, _ := io.Copy(client, fromUp)
		closeWrite(client)
		done <- n
	}()
	n, _ := io.Copy(upConn, client)
	closeWrite(upConn)
	out64 := <-done
	upConn.Close()
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
