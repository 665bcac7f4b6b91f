package upstream

import (
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/sluice-proxy/sluice/internal/wire"
)

// Large bodies of known length move from the backend's socket to the
// client's with splice(2) through a pipe, so their bytes never enter the
// process: the kernel hands pages from one socket to the other.
const (
	// SpliceMin is the smallest body worth the pipe.
	SpliceMin = 64 << 10
	// spliceChunk is the most moved by one splice call.
	spliceChunk = 1 << 20
	// maxIdlePipes bounds the pipes a transport keeps for reuse.
	maxIdlePipes = 256
)

// pipe is a pipe(2) pair for splicing.
type pipe struct {
	r, w    int
	pending int // bytes in the pipe not yet written out
}

func (p *pipe) close() {
	syscall.Close(p.r)
	syscall.Close(p.w)
}

// pipeCache keeps a transport's idle pipes.
type pipeCache chan *pipe

func newPipeCache() pipeCache { return make(pipeCache, maxIdlePipes) }

func (pc pipeCache) get() (*pipe, error) {
	select {
	case p := <-pc:
		return p, nil
	default:
	}
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		return nil, err
	}
	return &pipe{r: fds[0], w: fds[1]}, nil
}

func (pc pipeCache) put(p *pipe) {
	if p.pending != 0 {
		p.close() // holds bytes of another body: never reuse
		return
	}
	select {
	case pc <- p:
	default:
		p.close()
	}
}

// close closes the idle pipes. The transport is closed last, once no body
// moves any more, so no pipe is given back after it.
func (pc pipeCache) close() {
	for {
		select {
		case p := <-pc:
			p.close()
		default:
			return
		}
	}
}

// ErrSpliceUnsupported means the connections are not plain TCP sockets,
// or what is buffered must go first.
var ErrSpliceUnsupported = errors.New("splice unsupported")

// splicer moves one body. Its callbacks are built once per connection, so
// a move does not allocate.
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
		n, err := wire.SpliceFD(fd, uintptr(s.p.w), s.want, spliceFlags)
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
		n, err := wire.SpliceFD(uintptr(s.p.r), fd, s.p.pending, spliceFlags)
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

// SpliceTo moves the rest of a fixed-length body from the backend's socket
// to dst, the client's, keeping the pause limit and the gone check; a write
// to dst that blocks is bounded by writeTimeout (none when 0). Nothing may
// be buffered (pass Buffered on first). It returns the bytes moved, and
// ErrSpliceUnsupported, having moved nothing, when either side is not a
// plain TCP socket. A failure to write is the client's and is returned as
// it is; the backend's failures are also kept for End.
func (b *Body) SpliceTo(dst net.Conn, writeTimeout time.Duration) (int64, error) {
	c := b.c
	up, ok1 := c.nc.(*net.TCPConn)
	// Only a plain TCP socket: a wrapper's socket (a *tls.Conn's, say)
	// would get the bytes without what the wrapper does to them.
	cl, ok2 := dst.(*net.TCPConn)
	if !ok1 || !ok2 || b.isChunk || b.left <= 0 || c.br != nil && c.br.Buffered() > 0 {
		return 0, ErrSpliceUnsupported
	}
	upRaw, err1 := up.SyscallConn()
	clRaw, err2 := cl.SyscallConn()
	if err1 != nil || err2 != nil {
		return 0, ErrSpliceUnsupported
	}
	pipes := c.pool.t.pipes
	p, err := pipes.get()
	if err != nil {
		return 0, ErrSpliceUnsupported
	}
	s := &b.splice
	if s.fromFunc == nil {
		s.init()
	}
	s.p = p
	defer func() { pipes.put(p); s.p = nil }()
	var total int64
	for b.left > 0 {
		s.want, s.n, s.err = int(min(b.left, spliceChunk)), 0, nil
		err := c.await(time.Now(), b.pause, b.gone, func() error {
			return upRaw.Read(s.fromFunc)
		})
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
		b.count(s.n)
		p.pending = s.n
		if writeTimeout > 0 {
			cl.SetWriteDeadline(time.Now().Add(writeTimeout))
		}
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
