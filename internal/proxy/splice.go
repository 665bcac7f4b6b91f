package proxy

import (
	"errors"
	"io"
	"net"
	"syscall"
	"time"
)

// Large bodies of known length move from the backend's socket to the
// client's with splice(2) through a pipe, so their bytes never enter the
// process: the kernel hands pages from one socket to the other.
const (
	// spliceMin is the smallest body worth the pipe.
	spliceMin = 64 << 10
	// spliceChunk is the most moved by one splice call.
	spliceChunk = 1 << 20
	// maxIdlePipes bounds the pipes kept for reuse.
	maxIdlePipes = 256
)

// pipe is a pipe(2) pair for splicing.
type pipe struct {
	r, w    int
	pending int // bytes in the pipe not yet written out
}

var pipes = make(chan *pipe, maxIdlePipes)

func getPipe() (*pipe, error) {
	select {
	case p := <-pipes:
		return p, nil
	default:
	}
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		return nil, err
	}
	return &pipe{r: fds[0], w: fds[1]}, nil
}

func putPipe(p *pipe) {
	if p.pending != 0 {
		p.close() // holds bytes of another body: never reuse
		return
	}
	select {
	case pipes <- p:
	default:
		p.close()
	}
}

func (p *pipe) close() {
	syscall.Close(p.r)
	syscall.Close(p.w)
}

// errSpliceUnsupported means the connections are not plain TCP sockets.
var errSpliceUnsupported = errors.New("splice unsupported")

// splicer moves one body. Its callbacks are built once per exchange, so a
// move does not allocate.
type splicer struct {
	p        *pipe
	want     int
	n        int
	err      error
	fromFunc func(fd uintptr) bool
	toFunc   func(fd uintptr) bool
}

const spliceFlags = 0x1 | 0x2 // SPLICE_F_MOVE | SPLICE_F_NONBLOCK

func (s *splicer) init() {
	s.fromFunc = func(fd uintptr) bool {
		n, err := syscall.Splice(int(fd), nil, s.p.w, nil, s.want, spliceFlags)
		if err == syscall.EINTR {
			return false
		}
		if err == syscall.EAGAIN {
			return false // the socket is empty: wait for it
		}
		s.n, s.err = int(n), err
		return true
	}
	s.toFunc = func(fd uintptr) bool {
		n, err := syscall.Splice(s.p.r, nil, int(fd), nil, s.p.pending, spliceFlags)
		if err == syscall.EAGAIN || err == syscall.EINTR {
			return false // the client's socket is full: wait for room
		}
		if err != nil {
			s.err = err
			return true
		}
		s.p.pending -= int(n)
		return s.p.pending == 0
	}
}

// spliceBody moves the rest of a fixed-length body, b.left bytes, from the
// backend connection to the client's, keeping the upstream_body pause limit
// and noticing a client that leaves. It returns the bytes moved.
func (b *respBody) spliceBody(client net.Conn) (int64, error) {
	x := b.x
	up, ok1 := x.conn.nc.(*net.TCPConn)
	var cl *net.TCPConn
	switch c := client.(type) {
	case *net.TCPConn:
		cl = c
	case interface{ NetConn() net.Conn }:
		cl, _ = c.NetConn().(*net.TCPConn)
	}
	if !ok1 || cl == nil || x.conn.br.Buffered() > 0 {
		return 0, errSpliceUnsupported
	}
	upRaw, err1 := up.SyscallConn()
	clRaw, err2 := cl.SyscallConn()
	if err1 != nil || err2 != nil {
		return 0, errSpliceUnsupported
	}
	p, err := getPipe()
	if err != nil {
		return 0, errSpliceUnsupported
	}
	s := &x.splice
	if s.fromFunc == nil {
		s.init()
	}
	s.p = p
	defer func() { putPipe(p); s.p = nil }()
	var total int64
	for b.left > 0 {
		s.want, s.n, s.err = int(min(b.left, spliceChunk)), 0, nil
		err := b.waitSplice(upRaw)
		if err == nil {
			err = s.err
		}
		if err == nil && s.n == 0 {
			err = io.ErrUnexpectedEOF // the backend closed early
		}
		if err != nil {
			b.err = err // the backend's failure (or the client gone)
			return total, err
		}
		b.left -= int64(s.n)
		b.n += int64(s.n)
		p.pending = s.n
		if d := x.rt.Config.Timeouts.ClientIdle.D(); d > 0 {
			cl.SetWriteDeadline(time.Now().Add(d))
		}
		// A failure to write is the client's.
		if err := clRaw.Write(s.toFunc); err != nil {
			return total, err
		}
		if s.err != nil {
			return total, s.err
		}
		total += int64(s.n)
	}
	b.eof = true
	return total, nil
}

// waitSplice runs one splice from the backend socket into the pipe, waiting
// at most upstream_body for bytes and checking every pollInterval meanwhile
// that the client is still there.
func (b *respBody) waitSplice(raw syscall.RawConn) error {
	x := b.x
	return x.awaitBackend(x.conn, time.Now(), x.route.UpstreamBody, func() error {
		return raw.Read(x.splice.fromFunc)
	})
}
