// Package netx holds socket helpers shared by the proxy's two sides.
package netx

import (
	"io"
	"net"
	"os"
	"syscall"
)

// WaitFirst reads a TCP connection with one system call per arrival of data
// where net.Conn would use two. net.Conn's Read always tries the read first
// and waits for readiness only after EAGAIN; when the caller knows the peer
// cannot have answered yet (a request was just sent, a response was just
// written), that first read is wasted. WaitFirst then waits for readiness
// first and reads once.
//
// Waiting first is only done when the previous read drained the socket (it
// returned less than asked): any byte that arrived since raised a new
// readiness event, so the wait cannot miss data. Deadlines set on the
// connection apply as usual.
type WaitFirst struct {
	raw      syscall.RawConn
	drained  bool
	waitNext bool

	// callback state, kept here so a read does not allocate
	p     []byte
	first bool
	n     int
	err   error
	fn    func(fd uintptr) bool
}

// NewWaitFirst returns a WaitFirst over c, or nil when c exposes no raw
// connection (a TLS connection, say).
func NewWaitFirst(c net.Conn) *WaitFirst {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	w := &WaitFirst{raw: raw}
	w.fn = func(fd uintptr) bool {
		if w.first {
			w.first = false
			return false // wait for readiness
		}
		for {
			n, err := syscall.Read(int(fd), w.p)
			if err == syscall.EINTR {
				continue
			}
			if err == syscall.EAGAIN {
				return false
			}
			w.n, w.err = n, err
			return true
		}
	}
	return w
}

// ExpectQuiet says that the peer cannot have sent anything yet: the next
// read waits for readiness before reading, if that is safe.
func (w *WaitFirst) ExpectQuiet() { w.waitNext = true }

// Read reads into p.
func (w *WaitFirst) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	w.p, w.n, w.err = p, 0, nil
	w.first = w.waitNext && w.drained
	w.waitNext = false
	if err := w.raw.Read(w.fn); err != nil {
		w.p = nil
		return 0, err
	}
	w.p = nil
	n, err := w.n, w.err
	if err != nil {
		w.drained = false
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", err)}
	}
	if n == 0 {
		return 0, io.EOF
	}
	w.drained = n < len(p)
	return n, nil
}
