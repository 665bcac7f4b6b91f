package h1

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluice-proxy/sluice/internal/fairpoll"
	"github.com/sluice-proxy/sluice/internal/wire"
)

// inSize is the read buffer a connection takes while it reads a request:
// most heads fit it, and longer ones move to a buffer of their own, up to
// MaxHeaderBytes.
const inSize = 4 << 10

// outSize is the usual capacity of a response buffer; larger ones are not
// kept for reuse past maxKeptOut.
const (
	outSize    = 4 << 10
	maxKeptOut = 64 << 10
)

var (
	inPool  = sync.Pool{New: func() any { b := make([]byte, inSize); return &b }}
	outPool = sync.Pool{New: func() any { b := make([]byte, 0, outSize); return &b }}
)

// Connection states, for a shutdown that closes idle connections only.
const (
	stateActive int32 = iota
	stateIdle
	stateClosed
)

// Conn is one client connection and the request being served on it. Its
// request fields are valid until the handler returns.
type Conn struct {
	s        *Server
	nc       net.Conn
	raw      syscall.RawConn // nil when the connection has no descriptor
	tcp      bool            // nc is a plain TCP socket: a body may be spliced to it
	next     func(fd uintptr) bool
	accepted time.Time

	in   *[]byte // read buffer; nil while nothing is buffered between requests
	r, w int     // the unread bytes are (*in)[r:w]
	big  bool    // in is a long head's own buffer, not from inPool

	// The request: request line parts, and the header block (every field
	// line with its CRLF, then the empty line's CRLF).
	Method, Target, Proto, Header []byte
	// Time is when the request's head had been read.
	Time time.Time

	body Body

	// Out holds response bytes not yet written: the handler appends to
	// it, from Begin; Flush and Write send it, and what is left when the
	// handler returns goes out with the wait for the next request.
	Out  []byte
	outp *[]byte
	sent int // bytes of Out already written

	close    bool
	hijacked bool
	state    atomic.Int32

	writeSet time.Time // when the write deadline was last moved
	readSet  time.Time // the read deadline set on the socket; zero for none
	// waitUntil is when the wait for the next request ends: the socket's
	// read deadline may be set a little earlier (armWait), and a wait
	// that ends before waitUntil goes on.
	waitUntil time.Time

	// next's results.
	nextErr  error
	nextN    int
	nextPart bool

	// sock reads the connection's socket, when it has one of its own
	// (raw): in the fair poller when fair is set.
	sock *fairSocket

	peer netip.Addr // RemoteIP, once known

	// PeerGone's callback, made on first use, and its result.
	gone   func(fd uintptr) bool
	isGone bool
	// under is the TCP socket under a TLS connection, which PeerGone
	// polls; checker is a connection that has a PeerGone of its own (an
	// HTTP/2 stream). Both are nil otherwise.
	under   syscall.RawConn
	checker interface{ PeerGone() bool }

	// fair is the connection's place in the server's fairpoll.Poller,
	// when it has one: the wait for the next request is made there, so
	// that connections are served in the order their requests arrived.
	fair     *fairpoll.Waiter
	fairNext func(fd uintptr) bool // next, asking to wait on fair instead of parking
	parked   bool                  // fairNext's report that next asked to wait
}

func newConn(s *Server, nc net.Conn) *Conn {
	c := &Conn{s: s, nc: nc, accepted: time.Now()}
	c.body.c = c
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
		c.tcp = true
	}
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
			c.next = c.writeThenRead
			if s.Poller != nil && c.tcp {
				c.joinPoller(s.Poller)
			}
			c.sock = newFairSocket(nc, raw, c.fair)
		}
	} else {
		c.watchPeer()
	}
	return c
}

// joinPoller adds the connection's socket to p; the connection goes on
// waiting in Go's poller if it cannot.
func (c *Conn) joinPoller(p *fairpoll.Poller) {
	if w, err := p.AddConn(c.raw); err == nil {
		c.fair = w
		c.fairNext = fairpoll.NoPark(c.next, &c.parked)
	}
}

// setReadDeadline sets the socket's read deadline, which a wait in the
// fair poller keeps too.
func (c *Conn) setReadDeadline(t time.Time) {
	c.nc.SetReadDeadline(t)
	c.readSet = t
	c.fair.SetDeadline(t)
}

// armWait bounds the wait for the next request's first bytes: it ends at
// t, d from now. On a socket of its own (c.raw) the deadline is moved only
// when the one set is not within an eighth of d before t
// (wire.MoveDeadline), which spares a busy keep-alive connection a timer
// update on most requests; a wait it ends early goes on (waitRead).
func (c *Conn) armWait(t time.Time, d time.Duration) {
	c.waitUntil = t
	c.fair.SetDeadline(t)
	if c.raw == nil || wire.MoveDeadline(c.readSet, t, d) {
		c.nc.SetReadDeadline(t)
		c.readSet = t
	}
}

// errClosedByShutdown ends a connection that a shutdown closed while it
// waited for a request.
var errClosedByShutdown = errors.New("h1: closed by shutdown")

func (c *Conn) serve() {
	defer c.end()
	defer c.contain()
	for first := true; ; first = false {
		status, reason, err := c.readRequest(first)
		if err != nil {
			if status != 0 {
				c.refuse(status, reason)
			}
			return
		}
		c.s.Handler.Serve(c)
		if c.hijacked {
			return
		}
		if !c.body.settle() {
			c.close = true
		}
		c.Method, c.Target, c.Proto, c.Header = nil, nil, nil, nil
		if c.close || c.s.draining.Load() {
			c.Flush()
			return
		}
		if c.r == c.w {
			c.dropIn()
		}
	}
}

// contain recovers a panic of the handler's, tells OnPanic with the stack,
// and drops what is left of the response: the connection then closes (end
// runs next), and the client learns of the failure from the close.
func (c *Conn) contain() {
	v := recover()
	if v == nil {
		return
	}
	if c.s.OnPanic != nil {
		c.s.OnPanic(v, debug.Stack())
	}
	c.Out, c.sent = c.Out[:0], 0
}

// end closes the connection and gives its buffers back.
func (c *Conn) end() {
	c.state.Store(stateClosed)
	c.fair.Remove()
	c.nc.Close()
	c.dropIn()
	c.releaseOut()
	c.s.forget(c)
}

// refuse answers a request whose head could not be read, and closes.
func (c *Conn) refuse(status int, reason string) {
	if c.Method == nil {
		c.Method = c.partialMethod()
	}
	c.Time = time.Now()
	c.close = true
	c.s.Handler.Refuse(c, status, reason)
	c.Flush()
}

// partialMethod returns the method of a head that could not be read whole,
// when its request line got that far, and GET otherwise.
func (c *Conn) partialMethod() []byte {
	if c.in != nil {
		b := (*c.in)[c.r:c.w]
		if i := bytes.IndexByte(b, ' '); i > 0 && wire.IsToken(b[:i]) {
			return b[:i]
		}
	}
	return []byte("GET")
}

// readRequest reads the next request's head, after writing what is left
// of the previous response. A status above 0 is the answer due to a head
// that could not be read; with 0, the connection just ends.
func (c *Conn) readRequest(first bool) (status int, reason string, err error) {
	s := c.s
	lim := s.limits()
	armed := false // the head's own deadline is set
	if c.r == c.w {
		if first {
			if lim.HeaderTimeout > 0 {
				c.armWait(c.accepted.Add(lim.HeaderTimeout), lim.HeaderTimeout)
			}
			armed = true
		} else {
			if s.draining.Load() {
				c.Flush()
				return 0, "", errClosedByShutdown
			}
			if lim.IdleTimeout > 0 {
				c.armWait(time.Now().Add(lim.IdleTimeout), lim.IdleTimeout)
			}
		}
		c.state.Store(stateIdle)
		if s.draining.Load() && c.state.CompareAndSwap(stateIdle, stateClosed) {
			c.Flush()
			return 0, "", errClosedByShutdown
		}
		err := c.waitRead()
		if !c.state.CompareAndSwap(stateIdle, stateActive) {
			c.Flush()
			return 0, "", errClosedByShutdown
		}
		if err != nil {
			return 0, "", err
		}
	} else if err := c.Flush(); err != nil {
		return 0, "", err
	}
	c.releaseOut()
	lim = s.limits() // a reload during the wait counts for this request

	// Scan for the end of the head, reading on as needed.
	scan, lineStart, lineEnd := c.r, c.r, -1
	for {
		buf := (*c.in)[:c.w]
		end := -1
		for scan < c.w {
			i := bytes.IndexByte(buf[scan:], '\n')
			if i < 0 {
				scan = c.w
				break
			}
			nl := scan + i
			if nl == lineStart || buf[nl-1] != '\r' {
				return 400, "request lines must end in CRLF", errBadHead
			}
			scan = nl + 1
			if nl-1 == lineStart { // an empty line
				if lineEnd < 0 {
					// Empty lines before the request line are skipped
					// (RFC 9112 2.2).
					c.r, lineStart = scan, scan
					continue
				}
				end = scan
				break
			}
			if lineEnd < 0 {
				lineEnd = nl - 1
			}
			lineStart = scan
		}
		if end >= 0 {
			if end-c.r > lim.MaxHeaderBytes {
				return 431, "request headers are over the limit", errBadHead
			}
			return c.parseHead(lineEnd, end)
		}
		if c.w-c.r >= lim.MaxHeaderBytes {
			return 431, "request headers are over the limit", errBadHead
		}
		if !armed {
			if lim.HeaderTimeout > 0 {
				c.setReadDeadline(time.Now().Add(lim.HeaderTimeout))
			}
			armed = true
		}
		off := c.r
		if err := c.fill(lim.MaxHeaderBytes); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && c.w > c.r {
				return 408, "the client was too slow sending its request", err
			}
			return 0, "", err
		}
		// fill may have moved the bytes.
		scan, lineStart = scan-off+c.r, lineStart-off+c.r
		if lineEnd >= 0 {
			lineEnd = lineEnd - off + c.r
		}
	}
}

// errBadHead is a request head that cannot be served.
var errBadHead = errors.New("h1: bad request head")

// parseHead splits the head in (*c.in)[c.r:end], whose request line ends
// at lineEnd, and consumes it.
func (c *Conn) parseHead(lineEnd, end int) (int, string, error) {
	buf := *c.in
	line := buf[c.r:lineEnd]
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp1 <= 0 || sp2 == sp1 {
		c.Method = nil
		return 400, "malformed request line", errBadHead
	}
	c.Method, c.Target, c.Proto = line[:sp1], line[sp1+1:sp2], line[sp2+1:]
	if len(c.Target) == 0 || !validProto(c.Proto) {
		return 400, "malformed request line", errBadHead
	}
	c.Header = buf[lineEnd+2 : end]
	c.r = end
	c.Time = time.Now()
	c.close, c.sent = false, 0
	c.body.reset()
	return 0, "", nil
}

// validProto reports whether p is HTTP/DIGIT.DIGIT.
func validProto(p []byte) bool {
	return len(p) == 8 && string(p[:5]) == "HTTP/" && isDigit(p[5]) && p[6] == '.' && isDigit(p[7])
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// waitRead writes what is left in Out, waits for the client's next bytes
// and reads them into the read buffer. The write and the wait share one
// RawConn.Read call. With a fair poller the wait after the write begins
// without a read attempt, which would find nothing but a pipelined
// request, and a pipelined request has left a wake behind (see
// writeThenRead); in Go's poller, which forgets a socket's readiness when
// the call begins, a read is tried first.
func (c *Conn) waitRead() error {
	if c.raw == nil {
		if err := c.Flush(); err != nil {
			return err
		}
		c.takeIn()
		n, err := c.readSocket((*c.in)[c.w:])
		c.w += n
		if n > 0 {
			return nil
		}
		if err == nil {
			err = io.EOF
		}
		return err
	}
	for {
		c.nextErr, c.nextN, c.nextPart = nil, 0, false
		var err error
		if c.fair.Live() {
			c.parked = false
			if err = c.raw.Read(c.fairNext); err == nil && c.parked {
				if err = c.fair.Wait(); err == nil || err == fairpoll.ErrClosed {
					continue
				}
			}
		} else {
			err = c.raw.Read(c.next)
		}
		if c.nextPart {
			// The socket took part of the response: the rest goes out in
			// a write that waits.
			if err := c.Flush(); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			// A deadline set early (armWait) ends the wait early: it
			// goes on, unless a shutdown closed the connection.
			if wire.IsTimeout(err) && c.state.Load() != stateClosed {
				if until := c.waitUntil; !until.IsZero() && time.Now().Before(until) {
					c.setReadDeadline(until)
					continue
				}
			}
			return err
		}
		if c.nextErr != nil {
			return c.nextErr
		}
		if c.nextN == 0 {
			return io.EOF
		}
		c.w += c.nextN
		return nil
	}
}

// writeThenRead is waitRead's RawConn callback.
func (c *Conn) writeThenRead(fd uintptr) bool {
	if c.sent < len(c.Out) {
		n, err := wire.WriteFD(fd, c.Out[c.sent:])
		c.sent += n
		switch err {
		case nil:
		case syscall.EAGAIN:
			c.nextPart = true
			return true
		default:
			c.nextErr = &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", err)}
			return true
		}
	}
	wrote := len(c.Out) > 0
	c.releaseOut()
	if wrote && c.fair.Live() && c.sock.drained {
		// The response is out: wait for the next request. Bytes that
		// arrived since the last read, which left the socket empty (a
		// pipelined request), have left a wake in the fair poller, so
		// the wait cannot miss them. Go's poller forgot their readiness
		// when this call began: there the read below looks first.
		return false
	}
	c.takeIn()
	n, again, err := c.sock.readFD(fd, (*c.in)[c.w:])
	if again {
		if c.r == c.w {
			c.dropIn()
		}
		return false
	}
	c.nextN, c.nextErr = n, err
	return true
}

// fill reads more into the read buffer, moving the unread bytes to its
// start or to a larger buffer, of at most limit bytes, when it is full.
// An end of the stream is io.ErrUnexpectedEOF.
func (c *Conn) fill(limit int) error {
	c.takeIn()
	if c.w == len(*c.in) {
		switch {
		case c.r > 0:
			n := copy(*c.in, (*c.in)[c.r:c.w])
			c.r, c.w = 0, n
		case len(*c.in) < limit:
			b := make([]byte, min(max(2*len(*c.in), inSize), limit))
			n := copy(b, (*c.in)[c.r:c.w])
			c.dropIn()
			c.in, c.big, c.r, c.w = &b, true, 0, n
		default:
			return errLineTooLong
		}
	}
	n, err := c.readSocket((*c.in)[c.w:])
	c.w += n
	if n > 0 {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// errLineTooLong is a line of a body's framing longer than the read buffer.
var errLineTooLong = errors.New("h1: line too long")

// takeIn gives the connection a read buffer when it has none.
func (c *Conn) takeIn() {
	if c.in == nil {
		c.in = inPool.Get().(*[]byte)
		c.r, c.w, c.big = 0, 0, false
	}
}

// dropIn gives the read buffer back; its bytes must have been read.
func (c *Conn) dropIn() {
	if c.in != nil && !c.big {
		inPool.Put(c.in)
	}
	c.in, c.r, c.w, c.big = nil, 0, 0, false
}

// Begin returns Out emptied, to start a response in: a connection takes a
// response buffer only once its response is due, not while its request
// waits on a backend.
func (c *Conn) Begin() []byte {
	if c.outp == nil {
		c.outp = outPool.Get().(*[]byte)
		c.Out = *c.outp
	}
	c.sent = 0
	return c.Out[:0]
}

// releaseOut gives the response buffer back; its bytes must have been
// written.
func (c *Conn) releaseOut() {
	if c.outp != nil && cap(c.Out) <= maxKeptOut {
		*c.outp = c.Out[:0]
		outPool.Put(c.outp)
	}
	c.outp, c.Out, c.sent = nil, nil, 0
}

// armWrite bounds the next blocking write by IdleTimeout. The deadline is
// moved only when it would move by more than an eighth of it, which spares
// a timer update on most writes of a busy connection.
func (c *Conn) armWrite() {
	d := c.s.limits().IdleTimeout
	if d <= 0 {
		return
	}
	// time.Since reads only the monotonic clock: cheaper than Now.
	if c.writeSet.IsZero() || time.Since(c.writeSet) > d/8 {
		c.writeSet = time.Now()
		c.nc.SetWriteDeadline(c.writeSet.Add(d))
	}
}

// Flush writes what Out holds.
func (c *Conn) Flush() error {
	if c.sent < len(c.Out) {
		c.armWrite()
		n, err := c.nc.Write(c.Out[c.sent:])
		c.sent += n
		if err != nil {
			return err
		}
	}
	c.Out, c.sent = c.Out[:0], 0
	return nil
}

// Write writes what Out holds, then p. Small writes share one system call.
func (c *Conn) Write(p []byte) (int, error) {
	if len(c.Out)+len(p) <= cap(c.Out) {
		c.Out = append(c.Out, p...)
		if err := c.Flush(); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if err := c.Flush(); err != nil {
		return 0, err
	}
	c.armWrite()
	return c.nc.Write(p)
}

// SetClose makes the connection close after this response.
func (c *Conn) SetClose() { c.close = true }

// Closing reports whether the connection closes after this response: the
// handler asked for it, the server is shutting down, or the request's
// body was not read and is not all buffered (so where the next request
// begins is not known).
func (c *Conn) Closing() bool {
	return c.close || c.s.draining.Load() || !c.body.settleable()
}

// HTTP11 reports whether the request is HTTP/1.1 or a later HTTP/1.x.
func (c *Conn) HTTP11() bool { return len(c.Proto) == 8 && c.Proto[5] == '1' && c.Proto[7] >= '1' }

// RemoteIP returns the client's IP address (IPv4 unmapped), worked out
// once per connection.
func (c *Conn) RemoteIP() netip.Addr {
	if !c.peer.IsValid() {
		switch a := c.nc.RemoteAddr().(type) {
		case *net.TCPAddr:
			ip, _ := netip.AddrFromSlice(a.IP)
			c.peer = ip.Unmap()
		default:
			if ap, err := netip.ParseAddrPort(a.String()); err == nil {
				c.peer = ap.Addr().Unmap()
			}
		}
	}
	return c.peer
}

// NetConn returns the client's connection, for deadlines, peeks and
// splicing. Reads from it skip what the engine has buffered.
func (c *Conn) NetConn() net.Conn { return c.nc }

// PeerGone reports whether the client has closed or reset its connection,
// with one non-blocking peek that consumes nothing: a handler waiting on a
// slow backend asks it now and then. Nothing else reads the connection
// meanwhile; the engine sets its own deadline before it reads the next
// request, and body reads set theirs.
func (c *Conn) PeerGone() bool {
	if c.raw == nil {
		return c.otherPeerGone()
	}
	// A read deadline from the request head (client_header) may have
	// passed during a long wait, and would fail the peek before it is
	// made.
	c.setReadDeadline(time.Time{})
	if c.gone == nil {
		c.gone = func(fd uintptr) bool {
			n, err := wire.PeekFD(fd)
			c.isGone = err == nil && n == 0 || err == syscall.ECONNRESET
			return true
		}
	}
	c.isGone = false
	c.raw.Read(c.gone)
	return c.isGone
}

// Hijack hands the connection to the handler, with the bytes the client
// sent past the request head (valid until the handler returns). The engine
// closes the connection when the handler returns.
func (c *Conn) Hijack() (net.Conn, []byte) {
	c.hijacked = true
	c.fair.Detach() // the tunnel reads in Go's poller
	if c.in == nil {
		return c.nc, nil
	}
	b := (*c.in)[c.r:c.w]
	c.r = c.w
	return c.nc, b
}

// closeIfIdle closes the connection if it waits for a request. The close
// is a read deadline in the past: the connection's own goroutine finds
// itself closed when its wait ends, and finishes writing a response it was
// still writing before it closes.
func (c *Conn) closeIfIdle() {
	if c.state.CompareAndSwap(stateIdle, stateClosed) {
		c.setReadDeadline(time.Unix(1, 0))
		c.fair.Wake()
	}
}

// readNow makes one read into p that does not wait: (0, nil) when nothing
// has arrived, or when the read cannot be made now (a deadline passed,
// say; a read that waits will report it).
func (c *Conn) readNow(p []byte) (int, error) {
	if c.raw == nil {
		return 0, nil
	}
	n, again, err := c.sock.once(p)
	switch {
	case again:
		return 0, nil // nothing yet, or a deadline passed: a read that waits reports it
	case err == io.EOF:
		return 0, io.ErrUnexpectedEOF
	}
	return n, err
}

// readSocket reads into p, waiting for bytes under the read deadline set:
// in the fair poller when the connection waits there, so that the bytes of
// a head or body wake their reader in one poller, not two; in Go's poller
// otherwise.
func (c *Conn) readSocket(p []byte) (int, error) {
	if c.sock != nil {
		return c.sock.Read(p)
	}
	return c.nc.Read(p)
}
