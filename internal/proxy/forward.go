package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/sluice-proxy/sluice/internal/backend"
	"github.com/sluice-proxy/sluice/internal/retry"
)

// errTotalTimeout is retry.total_timeout spent before a response.
var errTotalTimeout error = totalTimeout{}

type totalTimeout struct{}

func (totalTimeout) Error() string   { return "retry.total_timeout spent" }
func (totalTimeout) Timeout() bool   { return true }
func (totalTimeout) Temporary() bool { return true }

// forward sends the request to a backend, retrying on another backend when
// the retry policy allows it, and relays the answer.
func (x *exchange) forward() {
	r := x.route
	p := r.Retry
	r.Budget.Request(x.rec.Time)
	x.deadline = x.rec.Time.Add(p.TotalTimeout)
	x.idempotent = p.Idempotent(x.method, x.head.idemKey) && !x.upgrade
	if x.hasBody() && p.Attempts > 1 && x.idempotent {
		if err := x.bufferBody(p.MaxBody); err != nil {
			x.sendFailed(err)
			return
		}
	}
	b := r.Balancer.Pick(nil)
	if b == nil {
		x.fail(http.StatusServiceUnavailable, ErrNoHealthyBackend, "route "+r.Name+" has no healthy backend")
		return
	}
	for {
		x.start(b)
		err := x.try()
		if err == nil && !p.RetryStatus(x.resp.status) {
			x.respond()
			return
		}
		if err == nil {
			x.status = x.resp.status
			x.outcome = OutcomeOK
			if r.Passive.Failure(x.status) {
				x.outcome = OutcomeHTTPError
			}
		} else if !isClientErr(err) {
			x.outcome = upstreamOutcome(err)
		}
		left := time.Until(x.deadline)
		verdict, _ := retry.Decide(retry.Facts{
			Retryable:  !isClientErr(err),
			Sent:       !isDialError(err),
			Idempotent: x.idempotent,
			BodyIntact: !x.hasBody() || x.body != nil || isDialError(err),
			TriesLeft:  p.Attempts - x.nTried,
			TimeLeft:   left,
			BudgetOK:   true,
		})
		var next *backend.Backend
		if verdict == retry.Retry {
			if !r.Budget.Allow(time.Now()) {
				verdict = retry.StopBudget
			} else if next = r.Balancer.Pick(x.tried[:x.nTried]); next == nil {
				verdict = retry.Stop // every backend has been tried
			}
		}
		if verdict != retry.Retry {
			switch {
			case err == nil:
				x.respond() // the last failure is the backend's own response
			case verdict == retry.StopBudget:
				x.dropConn()
				x.fail(http.StatusServiceUnavailable, ErrRetryBudget, "a retry was needed for route "+r.Name+" but its retry budget is spent")
			default:
				x.sendFailed(err)
			}
			return
		}
		x.discard(err == nil)
		x.observe()
		r.Budget.Retry(time.Now())
		r.Metrics.Retry()
		if d := retry.Backoff(p.Backoff, x.nTried, time.Until(x.deadline), nil); d > 0 {
			time.Sleep(d)
		}
		b = next
	}
}

// start begins a try against b.
func (x *exchange) start(b *backend.Backend) {
	x.backend = b
	x.trial = b.State() == backend.Ejected
	x.status, x.outcome = 0, ""
	if x.nTried < len(x.tried) {
		x.tried[x.nTried] = b
	}
	x.nTried++
	x.rec.Backend = b.URL
	x.rec.Attempts = x.nTried
	b.Acquire()
}

// discard ends a failed try whose answer will not be relayed: a response
// that is short and already here is read out so its connection can serve
// again; anything else closes the connection.
func (x *exchange) discard(hasResponse bool) {
	c := x.conn
	if c == nil {
		return
	}
	x.conn = nil
	if hasResponse && !x.resp.chunked && !x.resp.closeAfter {
		n := x.resp.contentLength
		if bodyless(x.method, x.resp.status) {
			n = 0
		}
		if n >= 0 && int64(c.br.Buffered()) >= n {
			c.br.Discard(int(n))
			x.conn = c
			x.release(c, true)
			return
		}
	}
	c.nc.Close()
}

// dropConn closes the try's connection, if any.
func (x *exchange) dropConn() {
	if x.conn != nil {
		x.conn.nc.Close()
		x.conn = nil
	}
}

func isDialError(err error) bool {
	var de *dialError
	return errors.As(err, &de)
}

// try sends the request to x.backend and reads the response head into
// x.resp, within what is left of the total timeout.
func (x *exchange) try() error {
	left := time.Until(x.deadline)
	if left <= 0 {
		return errTotalTimeout
	}
	return x.send(false, left, 0)
}

// hasBody reports whether the client sends a request body.
func (x *exchange) hasBody() bool { return x.head.chunked || x.head.contentLength > 0 }

// send writes the request to a connection of the chosen backend and reads
// the response head into x.resp, in at most left. fresh asks for a new
// connection. replay, when above 0, is the length of the whole request,
// head and body, still in x.out from the try before, to be sent as it is.
func (x *exchange) send(fresh bool, left time.Duration, replay int) error {
	r := x.route
	if replay > 0 {
		x.out = x.out[:replay]
	} else {
		x.prepare()
	}
	pool := r.Pools[x.backend.Index]
	var c *upConn
	var err error
	if fresh {
		c, err = pool.dial(context.Background(), min(r.UpstreamConnect, left))
	} else {
		c, err = pool.get(context.Background(), x.rec.Time, min(r.UpstreamConnect, left))
	}
	if err != nil {
		if isTimeout(err) && time.Until(x.deadline) <= 0 {
			return errTotalTimeout
		}
		return err
	}
	x.conn = c
	x.writes = 0
	if replay == 0 && x.hasBody() {
		err = x.writeBody(c)
	}
	whole := 0 // the whole request is in x.out, for the one write below
	queued := false
	if err == nil {
		if x.writes == 0 {
			whole = len(x.out)
		}
		if c.queue(x.out) {
			// Written by the wait for the answer (see readFirst).
			x.writes++
			x.out = x.out[:0]
			queued = true
		} else {
			err = x.flush(c)
		}
	}
	if err == nil {
		err = x.awaitHead(c, queued)
	}
	if err != nil && c.reused && (!x.hasBody() || x.body != nil || whole > 0 && x.idempotent) && !isTimeout(err) && !isClientErr(err) {
		// The keep-alive race: the backend closed this idle connection as
		// it was reused, before reading anything of the request. A request
		// without a body, or whose body is buffered, is sent again on a
		// fresh connection, whatever its method; an idempotent one whose
		// body was streamed too, when all of it is still in x.out.
		c.nc.Close()
		x.conn = nil
		return x.send(true, time.Until(x.deadline), whole)
	}
	return err
}

// awaitHead arms the wait for the response head and reads it, after what
// is left of a request queued on c (queued) went out.
func (x *exchange) awaitHead(c *upConn, queued bool) error {
	for {
		// The wait for the head is armed here, not deeper down in
		// readHead: setting a deadline takes about 1 KiB of stack, and
		// the request path fits in a 4 KiB goroutine stack only if that
		// happens this high up (awaitBackend then finds it armed).
		now := time.Now()
		x.now = now
		limit := min(x.route.UpstreamHeader, x.deadline.Sub(now))
		if err := c.armWait(now, now.Add(limit)); err != nil {
			return err
		}
		err := x.readHead(c, now, limit)
		if !queued || err != errQueuedPartly {
			return err
		}
		// The socket's buffer was full: the rest goes out in a write
		// that waits, and the wait for the head starts after it.
		rest := c.queued
		c.queued, queued = nil, false
		c.armWrite(x.route.UpstreamBody)
		if _, err := c.nc.Write(rest); err != nil {
			return err
		}
	}
}

// readHead reads the response head, skipping interim 1xx responses, within
// limit from now (upstream_header and the total timeout).
func (x *exchange) readHead(c *upConn, now time.Time, limit time.Duration) error {
	if err := x.waitReadable(c, now, limit); err != nil {
		if isTimeout(err) && time.Until(x.deadline) <= 0 {
			return errTotalTimeout
		}
		return err
	}
	// The head has begun to arrive. Unless all of it is here, the rest of
	// it gets the same time.
	if !headBuffered(c.br) {
		if err := c.setReadDeadline(time.Now(), limit); err != nil {
			return err
		}
	}
	for {
		if err := readResponseHead(c.br, &x.resp); err != nil {
			return err
		}
		if x.resp.status >= 200 {
			return nil
		}
		if x.resp.status == 101 {
			if x.upgrade {
				return nil
			}
			return errBadResponse // a switch the client did not ask for
		}
	}
}

// headBuffered reports whether a whole response head is in br's buffer.
func headBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.Contains(b, []byte("\r\n\r\n"))
}

// bufferBody reads the request body into a pooled buffer, up to max bytes,
// so that it can be sent again. A longer body keeps what was read as a
// prefix and is streamed. Nothing is sent upstream before the body is read,
// so a client that leaves meanwhile costs the backend nothing.
func (x *exchange) bufferBody(max int64) error {
	src := x.c.Body()
	buf := retry.GetBuffer()
	limit := min(max, x.route.MaxRequestBody)
	for {
		if len(*buf) == cap(*buf) {
			if int64(cap(*buf)) > limit {
				break
			}
			*buf = append(*buf, 0)[:len(*buf)]
		}
		n, err := src.Read((*buf)[len(*buf):cap(*buf)])
		*buf = (*buf)[:len(*buf)+n]
		if err == io.EOF {
			if !x.head.chunked && int64(len(*buf)) < x.head.contentLength {
				retry.PutBuffer(buf)
				return &clientError{ErrClientDisconnect, io.ErrUnexpectedEOF}
			}
			x.body = buf
			x.rec.BytesIn = int64(len(*buf))
			return nil
		}
		if err != nil {
			retry.PutBuffer(buf)
			return classifyClientRead(err)
		}
		if int64(len(*buf)) > limit {
			break
		}
	}
	if int64(len(*buf)) > x.route.MaxRequestBody {
		retry.PutBuffer(buf)
		return &clientError{ErrRequestTooLarge, errBodyTooLarge}
	}
	// Too long to buffer: stream it, starting with what was read.
	x.prefix = buf
	return nil
}

// writeBody writes the request body to the backend connection: the buffer,
// or the prefix and then the rest of the client's stream.
func (x *exchange) writeBody(c *upConn) error {
	if x.body != nil {
		return x.write(c, *x.body)
	}
	var n64 int64
	if x.prefix != nil {
		if err := x.writeBodyPart(c, *x.prefix); err != nil {
			return err
		}
		n64 = int64(len(*x.prefix))
	}
	src := x.c.Body()
	limit := x.route.MaxRequestBody
	var buf []byte
	if x.head.chunked {
		bp := copyBufs.Get().(*[]byte)
		defer copyBufs.Put(bp)
		buf = *bp
	}
	for {
		var n int
		var rerr error
		if x.head.chunked {
			n, rerr = src.Read(buf)
		} else {
			// A body of declared length is read straight behind what is
			// queued for the backend: no copy between the two.
			if cap(x.out)-len(x.out) < 16<<10 {
				if len(x.out) >= maxPending/2 {
					if err := x.flush(c); err != nil {
						return err
					}
				}
				x.out = slices.Grow(x.out, 64<<10)
			}
			// What has already arrived is taken without waiting; only
			// when nothing has does what came go out, before the wait:
			// the backend gets the upload as the client sends it, and a
			// burst goes out in one write.
			dst := x.out[len(x.out):cap(x.out)]
			n, rerr = src.ReadNow(dst)
			if n == 0 && rerr == nil {
				if err := x.flush(c); err != nil {
					return err
				}
				n, rerr = src.Read(x.out[len(x.out):cap(x.out)])
			}
		}
		if n > 0 {
			n64 += int64(n)
			if n64 > limit {
				return &clientError{ErrRequestTooLarge, errBodyTooLarge}
			}
			if !x.head.chunked {
				x.out = x.out[:len(x.out)+n]
			} else if err := x.writeBodyPart(c, buf[:n]); err != nil {
				return err
			} else if rerr == nil {
				// A chunked body, which may grow past its limit, goes
				// out as it comes.
				if err := x.flush(c); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			if !x.head.chunked && n64 < x.head.contentLength {
				return &clientError{ErrClientDisconnect, io.ErrUnexpectedEOF}
			}
			break
		}
		if rerr != nil {
			return classifyClientRead(rerr)
		}
	}
	x.rec.BytesIn = n64
	if x.head.chunked {
		x.out = append(x.out, "0\r\n\r\n"...)
	}
	return nil
}

// writeBodyPart writes p with the request's framing.
func (x *exchange) writeBodyPart(c *upConn, p []byte) error {
	if x.head.chunked {
		x.out = strconv.AppendUint(x.out, uint64(len(p)), 16)
		x.out = append(x.out, '\r', '\n')
		if err := x.write(c, p); err != nil {
			return err
		}
		x.out = append(x.out, '\r', '\n')
		return nil
	}
	return x.write(c, p)
}

// maxPending bounds the bytes of a request queued in x.out before they
// are written.
const maxPending = 128 << 10

// write queues p to be sent on c after the pending bytes of x.out, so that
// a request head and its body go out in as few system calls as they can;
// past maxPending, what is queued is written and p is written from where it
// is.
func (x *exchange) write(c *upConn, p []byte) error {
	if len(x.out)+len(p) <= maxPending {
		x.out = append(x.out, p...)
		return nil
	}
	if err := x.flush(c); err != nil {
		return err
	}
	x.writes++
	c.armWrite(x.route.UpstreamBody)
	_, err := c.nc.Write(p)
	return err
}

// flush sends the pending bytes of x.out on c.
func (x *exchange) flush(c *upConn) error {
	if len(x.out) == 0 {
		return nil
	}
	x.writes++
	c.armWrite(x.route.UpstreamBody)
	_, err := c.nc.Write(x.out)
	x.out = x.out[:0] // the bytes stay, for a replay (see send)
	return err
}
