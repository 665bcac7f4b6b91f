package proxy

import (
	"io"
	"slices"
	"strconv"

	"github.com/sluice-proxy/sluice/internal/upstream"
)

// writeBody writes the request body to the backend connection: the buffer,
// or the prefix and then the rest of the client's stream.
func (x *exchange) writeBody(up *upstream.Conn) error {
	if x.body != nil {
		return x.write(up, *x.body)
	}
	var n64 int64
	if x.prefix != nil {
		if err := x.writeBodyPart(up, *x.prefix); err != nil {
			return err
		}
		n64 = int64(len(*x.prefix))
	}
	src := x.client.Body()
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
					if err := x.flush(up); err != nil {
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
				if err := x.flush(up); err != nil {
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
			} else if err := x.writeBodyPart(up, buf[:n]); err != nil {
				return err
			} else if rerr == nil {
				// A chunked body, which may grow past its limit, goes
				// out as it comes.
				if err := x.flush(up); err != nil {
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
	if x.head.chunked {
		x.out = append(x.out, "0\r\n\r\n"...)
	}
	return nil
}

// writeBodyPart writes p with the request's framing.
func (x *exchange) writeBodyPart(up *upstream.Conn, p []byte) error {
	if x.head.chunked {
		x.out = strconv.AppendUint(x.out, uint64(len(p)), 16)
		x.out = append(x.out, '\r', '\n')
		if err := x.write(up, p); err != nil {
			return err
		}
		x.out = append(x.out, '\r', '\n')
		return nil
	}
	return x.write(up, p)
}

// maxPending bounds the bytes of a request queued in x.out before they
// are written.
const maxPending = 128 << 10

// write queues p to be sent on up after the pending bytes of x.out, so
// that a request head and its body go out in as few system calls as they
// can; past maxPending, what is queued is written and p is written from
// where it is.
func (x *exchange) write(up *upstream.Conn, p []byte) error {
	if len(x.out)+len(p) <= maxPending {
		x.out = append(x.out, p...)
		return nil
	}
	if err := x.flush(up); err != nil {
		return err
	}
	x.writes++
	return up.Write(p, x.route.UpstreamBody)
}

// flush sends the pending bytes of x.out on up.
func (x *exchange) flush(up *upstream.Conn) error {
	if len(x.out) == 0 {
		return nil
	}
	x.writes++
	err := up.Write(x.out, x.route.UpstreamBody)
	x.out = x.out[:0]
	return err
}
