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
	if c.br == nil {
		return x.awaitBackend(c, now, limit, c.readFirst)
	}
	if c.br.Buffered() > 0 {
		return nil
	}
	return x.awaitBackend(c, now, limit, func() error {
		_, err := c.br.Peek(1)
		return err
	})
}

// awaitBackend runs op, a read from the backend connection that consumes
// nothing when it times out, under read deadlines of at most pollInterval,
// until it ends for another reason than its deadline or limit has passed;
// between tries it checks that the client is still connected
// (errClientGone otherwise). A request waiting on a slow backend so learns
// within pollInterval that its client has left.
func (x *exchange) awaitBackend(c *upConn, now time.Time, limit time.Duration, op func() error) error {
	end := now.Add(limit)
	for {
		if err := c.armWait(now, end); err != nil {
			return err
		}
		err := op()
		if err == nil || !isTimeout(err) {
			return err
		}
		if now = time.Now(); !now.Before(end) {
			return err
		}
		if peerGone(x.c.NetConn()) {
			return errClientGone
		}
	}
}

// armWait sets c's read deadline for a wait that must end by end, to at
// most pollInterval from now. A deadline already set a little earlier (by
// at most an eighth of that span) and still ahead is kept: the wait then
// wakes a little early and is armed again, and a busy connection is spared
// a timer update on most requests.
func (c *upConn) armWait(now, end time.Time) error {
	span := min(end.Sub(now), pollInterval)
	d := now.Add(span)
	if cur := c.deadline; cur.After(now) && !cur.After(d) && d.Sub(cur) <= span/8 {
		return nil
	}
	c.deadline = d
	return c.nc.SetReadDeadline(d)
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
	// A read deadline from the request head (client_header) may have
	// passed during a long wait, and would fail the peek before it is
	// made. Nothing else reads the client's connection meanwhile; the
	// engine sets its own deadline before it reads the next request, and
	// the body's reads set theirs.
	nc.SetReadDeadline(time.Time{})
	gone := false
	raw.Read(func(fd uintptr) bool {
		var buf [1]byte
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		gone = err == nil && n == 0 || errors.Is(err, syscall.ECONNRESET)
		return true
	})
	return gone
}
