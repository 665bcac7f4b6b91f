package h1

import (
	"io"
	"net"
	"syscall"
	"time"

	"github.com/sluice-proxy/sluice/internal/fairpoll"
)

// Socket returns nc, an accepted TCP connection that a TLS connection is to
// run over, made to wait for its bytes in the server's fair poller, as the
// engine's plain connections do: served in the order their bytes arrived,
// and without a read that finds nothing before each wait. It returns nc
// itself when the server has no poller or nc is not a TCP socket. Close
// the returned connection, not nc.
func (s *Server) Socket(nc net.Conn) net.Conn {
	tc, ok := nc.(*net.TCPConn)
	if !ok || s.Poller == nil {
		return nc
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nc
	}
	w, err := s.Poller.AddConn(raw)
	if err != nil {
		return nc
	}
	f := &fairSocket{TCPConn: tc, raw: raw, fair: w}
	f.read = f.readCallback
	return f
}

// fairSocket is a TCP connection whose reads wait on its place in a fair
// poller. A read that took less than it asked for, or found nothing, left
// the socket empty: the next one waits first, since bytes that arrive
// later leave a wake (see Conn.drained). Reads and the wait are not safe
// for concurrent use; a TLS connection makes one at a time.
type fairSocket struct {
	*net.TCPConn
	raw     syscall.RawConn
	fair    *fairpoll.Waiter
	drained bool
	read    func(fd uintptr) bool // readCallback, made once

	// The read callback's arguments and results.
	buf   []byte
	n     int
	again bool
	err   error
}

// Read reads into p, waiting for bytes in the fair poller (in Go's poller
// once the fair one has closed).
func (f *fairSocket) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for f.fair.Live() {
		if f.drained {
			if err := f.fair.Wait(); err != nil {
				if err == fairpoll.ErrClosed {
					break
				}
				return 0, err
			}
		}
		f.buf, f.n, f.again, f.err = p, 0, false, nil
		err := f.raw.Read(f.read)
		f.buf = nil
		switch {
		case err != nil:
			return 0, err // a deadline passed, or the socket closed
		case f.again:
			f.drained = true
			continue
		case f.err != nil:
			return 0, f.err
		case f.n == 0:
			return 0, io.EOF
		}
		f.drained = f.n < len(p)
		return f.n, nil
	}
	return f.TCPConn.Read(p)
}

// readCallback is Read's one read, made without waiting.
func (f *fairSocket) readCallback(fd uintptr) bool {
	f.n, f.again, f.err = readFD(fd, f.buf)
	return true
}

// SetReadDeadline sets the socket's read deadline, which the wait keeps
// too; one already passed ends a wait at once.
func (f *fairSocket) SetReadDeadline(t time.Time) error {
	f.fair.SetDeadline(t)
	err := f.TCPConn.SetReadDeadline(t)
	if !t.IsZero() && !t.After(time.Now()) {
		f.fair.Wake()
	}
	return err
}

// SetDeadline sets both deadlines, as SetReadDeadline for reads.
func (f *fairSocket) SetDeadline(t time.Time) error {
	if err := f.SetReadDeadline(t); err != nil {
		return err
	}
	return f.TCPConn.SetWriteDeadline(t)
}

// Close takes the socket out of the poller, ends a wait in progress, and
// closes it.
func (f *fairSocket) Close() error {
	f.fair.Remove()
	f.fair.Wake()
	return f.TCPConn.Close()
}
