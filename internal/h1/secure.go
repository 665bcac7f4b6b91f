package h1

import (
	"crypto/tls"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Secure reports whether the connection came over TLS (the server's TLS
// field): a request on it has the scheme https.
func (c *Conn) Secure() bool { return c.s.TLS }

// ProtoName returns the request's protocol as the access log writes it:
// "HTTP/2.0" on a server of HTTP/2 streams, "HTTP/1.0" for an HTTP/1.0
// request line, and "HTTP/1.1" otherwise (later HTTP/1.x are served as
// HTTP/1.1, and a head that could not be read has none).
func (c *Conn) ProtoName() string {
	switch {
	case c.s.HTTP2:
		return "HTTP/2.0"
	case string(c.Proto) == "HTTP/1.0":
		return "HTTP/1.0"
	}
	return "HTTP/1.1"
}

// PlainTCP reports whether the connection is a plain TCP socket, the only
// kind a response body may be spliced to: under TLS the kernel would send
// the backend's bytes in clear.
func (c *Conn) PlainTCP() bool { return c.tcp }

// watchPeer finds how PeerGone can tell a connection without a descriptor
// of its own: the TCP socket under a TLS connection, or the connection's
// own PeerGone method.
func (c *Conn) watchPeer() {
	switch nc := c.nc.(type) {
	case *tls.Conn:
		if sc, ok := nc.NetConn().(syscall.Conn); ok {
			if raw, err := sc.SyscallConn(); err == nil {
				c.under = raw
			}
		}
	case interface{ PeerGone() bool }:
		c.checker = nc
	}
}

// otherPeerGone is PeerGone for a connection without a descriptor of its
// own. Under TLS, bytes waiting on the socket do not say the client left
// (a client's close sends a close_notify alert before its FIN), so the
// socket is polled for the FIN itself (POLLRDHUP) or an error, without
// reading anything.
func (c *Conn) otherPeerGone() bool {
	switch {
	case c.checker != nil:
		return c.checker.PeerGone()
	case c.under == nil:
		return false
	}
	c.setReadDeadline(time.Time{})
	gone := false
	c.under.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
		if n, err := unix.Poll(fds, 0); err == nil && n > 0 {
			gone = fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
		}
	})
	return gone
}

// ServeConn serves nc, a connection accepted elsewhere (after a TLS
// handshake, say, or an HTTP/2 stream), on the calling goroutine until it
// closes. It is tracked like the listener's connections: Shutdown waits
// for it and CloseAll closes it. During a shutdown it closes nc at once.
func (s *Server) ServeConn(nc net.Conn) {
	if c := s.track(nc); c != nil {
		c.serve()
	}
}
