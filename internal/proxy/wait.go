package proxy

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// pollInterval is how often a request waiting on a slow backend checks that
// its client is still there.
const pollInterval = 100 * time.Millisecond

// errClientGone is a client that closed its connection while its request
// waited on a backend.
var errClientGone = &clientError{ErrClientDisconnect, errors.New("client closed the connection")}

// waitReadable waits until the backend connection has data to read or
// limit has passed (a timeout error), checking every pollInterval that
// the client is still connected (errClientGone otherwise). It consumes
// nothing, so it is safe in the middle of parsing.
func (x *exchange) waitReadable(c *upConn, now time.Time, limit time.Duration) error {
	if c.br.Buffered() > 0 {
		return nil
	}
	end := now.Add(limit)
	for {
		slice := end.Sub(now)
		if slice > pollInterval {
			slice = pollInterval
		}
		if err := c.nc.SetReadDeadline(now.Add(slice)); err != nil {
			return err
		}
		c.deadline = now.Add(slice)
		_, err := c.br.Peek(1)
		if err == nil {
			return nil
		}
		now = time.Now()
		if !isTimeout(err) || !now.Before(end) {
			return err
		}
		if peerGone(x.ctx.Conn()) {
			return errClientGone
		}
	}
}

// peerGone reports whether the peer of a connection has closed or reset it,
// with one non-blocking peek that consumes nothing.
func peerGone(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	raw.Read(func(fd uintptr) bool {
		var buf [1]byte
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		gone = err == nil && n == 0 || errors.Is(err, syscall.ECONNRESET)
		return true
	})
	return gone
}
