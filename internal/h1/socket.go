package h1

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-proxy/sluice/internal/fairpoll"
	"github.com/sluice-proxy/sluice/internal/wire"
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
	return newFairSocket(tc, raw, w)
}

// fairSocket is a connection with a socket of its own whose reads wait on
// its place in a fair poller (in Go's poller when it has none, or the
// poller has closed). A read that took less than it asked for, or found
// nothing, left the socket empty (drained): the next one waits first,
// since bytes that arrive later leave a wake; bytes a full read left
// behind arrived before it, and their wake may have been taken already,
// so after a full read the next one reads first. The engine reads its
// plain connections through one, and a TLS connection its socket. Reads
// are not safe for concurrent use.
type fairSocket struct {
	net.Conn
	raw     syscall.RawConn
	fair    *fairpoll.Waiter // nil: reads wait in Go's poller
	drained bool
	read    func(fd uintptr) bool // readCallback, made once

	// The read callback's arguments and results.
	buf   []byte
	n     int
	again bool
	err   error

	// The write callback (writeCallback, made once), its argument and
	// results, held by wmu for a write.
	wmu   sync.Mutex
	write func(fd uintptr) bool
	wbuf  []byte
	wn    int
	werr  error
}

func newFairSocket(nc net.Conn, raw syscall.RawConn, fair *fairpoll.Waiter) *fairSocket {
	f := &fairSocket{Conn: nc, raw: raw, fair: fair}
	f.read = f.readCallback
	f.write = f.writeCallback
	return f
}

// Write writes p with raw system calls while the socket takes it (a write
// of a non-blocking socket never waits), and hands what is left when its
// buffer is full, or when a write fails, to the connection's own Write,
// which waits in Go's poller, keeps the write deadline and reports errors
// as net does. A write made through the syscall package would tell the
// runtime it may block, which wakes its monitor thread after every idle
// spell (see wire.PeekFD); TLS connections write their records here.
func (f *fairSocket) Write(p []byte) (int, error) {
	// Held to the end, so that concurrent writes do not interleave, as
	// the connection's own Write guarantees.
	f.wmu.Lock()
	defer f.wmu.Unlock()
	f.wbuf, f.wn, f.werr = p, 0, nil
	err := f.raw.Write(f.write)
	n, werr := f.wn, f.werr
	f.wbuf = nil
	if err == nil && werr == nil {
		return n, nil
	}
	m, err := f.Conn.Write(p[n:])
	return n + m, err
}

// writeCallback is Write's raw write.
func (f *fairSocket) writeCallback(fd uintptr) bool {
	f.wn, f.werr = wire.WriteFD(fd, f.wbuf)
	return true
}

// SyscallConn returns the socket's raw connection.
func (f *fairSocket) SyscallConn() (syscall.RawConn, error) { return f.raw, nil }

// Read reads into p, waiting for bytes in the fair poller (in Go's poller
// without one).
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
		if n, again, err := f.once(p); !again || err != nil {
			return n, err // a deadline passed, or the socket closed, when again
		}
	}
	return f.Conn.Read(p)
}

// once makes one read from the socket into p that does not wait: again
// when nothing has arrived or the poller would not let the read be made (a
// deadline passed, the socket closed: err says which); io.EOF when the peer
// has closed its side; the read's error otherwise.
func (f *fairSocket) once(p []byte) (n int, again bool, err error) {
	f.buf, f.n, f.again, f.err = p, 0, false, nil
	perr := f.raw.Read(f.read)
	f.buf = nil
	switch {
	case perr != nil:
		return 0, true, perr
	case f.err != nil:
		return 0, false, f.err
	case f.again:
		return 0, true, nil
	case f.n == 0:
		return 0, false, io.EOF
	}
	return f.n, false, nil
}

// readCallback is once's read, made without waiting.
func (f *fairSocket) readCallback(fd uintptr) bool {
	f.n, f.again, f.err = f.readFD(fd, f.buf)
	return true
}

// readFD makes one read of the socket fd into p that does not wait: again
// when nothing has arrived, the read's error (as net reports one)
// otherwise. It records whether the read left the socket empty.
func (f *fairSocket) readFD(fd uintptr, p []byte) (n int, again bool, err error) {
	for {
		n, err := wire.ReadFD(fd, p)
		switch err {
		case nil:
			f.drained = n < len(p)
			return n, false, nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			f.drained = true
			return 0, true, nil
		}
		f.drained = false
		return 0, false, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", err)}
	}
}

// SetReadDeadline sets the socket's read deadline, which the wait keeps
// too; one already passed ends a wait at once.
func (f *fairSocket) SetReadDeadline(t time.Time) error {
	f.fair.SetDeadline(t)
	err := f.Conn.SetReadDeadline(t)
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
	return f.Conn.SetWriteDeadline(t)
}

// Close takes the socket out of the poller, ends a wait in progress, and
// closes it.
func (f *fairSocket) Close() error {
	f.fair.Remove()
	f.fair.Wake()
	return f.Conn.Close()
}
