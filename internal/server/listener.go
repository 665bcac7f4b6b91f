package server

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// trackingListener remembers the connections it accepted until they close,
// so that shutdown can cut those still open when its deadline passes.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[*trackedConn]struct{}

	// writeStall bounds how long one write to a client may block: a client
	// that stops reading its response is cut after it, instead of holding
	// the request's resources forever. 0 for no bound.
	writeStall atomic.Int64

	// firstHead bounds the time from accepting a connection to the end of
	// its first request head (client_header). The engine restarts its
	// header timer at a connection's first byte; the connection holds it
	// to the accept time instead. 0 for no bound.
	firstHead atomic.Int64
}

func newTrackingListener(ln net.Listener) *trackingListener {
	return &trackingListener{Listener: ln, conns: map[*trackedConn]struct{}{}}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	t := &trackedConn{Conn: c, l: l, scanning: true, inSync: true}
	if d := time.Duration(l.firstHead.Load()); d > 0 {
		t.headBy = time.Now().Add(d)
	}
	l.mu.Lock()
	l.conns[t] = struct{}{}
	l.mu.Unlock()
	return t, nil
}

// closeAll closes every open connection and returns how many there were.
func (l *trackingListener) closeAll() int {
	l.mu.Lock()
	conns := make([]*trackedConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	return len(conns)
}

type trackedConn struct {
	net.Conn
	l    *trackingListener
	once sync.Once

	writeDeadline time.Time // the write deadline set last
	writeSet      time.Time // when it was set
	headBy        time.Time // until the first head is read: when it must be; zero after

	raw     syscall.RawConn // for Pending, made on first use
	peek    func(fd uintptr) bool
	pending bool

	// The head scan: the engine accepts a bare LF as a line end, and waits
	// for more when a head ends in bare LFs, so the scan refuses such heads
	// before the engine sees them. It runs from the start of the connection
	// and, after each response, until the end of the next head; it is cheap
	// (one IndexByte per line). It must never see body bytes, so it stays
	// off for good once the connection's reads are no longer known to start
	// at a head: when a read went on past the end of a head (a body or a
	// pipelined request in the same packet), or a body was read.
	scanning bool
	inSync   bool // every read so far ended where a head ended
	capNext  bool // the next read likely starts a head: cap it at headRead
	seenLine bool // a non-empty line of the head was seen
	lineLen  int  // bytes of the current line so far, CR excluded
	lastCR   bool // the previous byte was CR
}

// errBareLF is a request head with a bare LF line ending.
var errBareLF = errors.New("request head with a bare LF line ending")

// Pending reports whether bytes from the client are waiting in the socket,
// with one non-blocking peek that consumes nothing.
func (c *trackedConn) Pending() bool {
	if c.raw == nil {
		sc, ok := c.Conn.(syscall.Conn)
		if !ok {
			return false
		}
		raw, err := sc.SyscallConn()
		if err != nil {
			return false
		}
		c.raw = raw
		c.peek = func(fd uintptr) bool {
			var b [1]byte
			n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			c.pending = err == nil && n > 0
			return true
		}
	}
	c.pending = false
	if c.raw.Read(c.peek) != nil {
		return false
	}
	return c.pending
}

// NetConn returns the connection under the tracking, for splicing.
func (c *trackedConn) NetConn() net.Conn { return c.Conn }

// Write writes p within the listener's write-stall bound. The deadline is
// moved only when it would move by more than an eighth of the bound, which
// spares a timer update on most writes of a busy connection.
func (c *trackedConn) Write(p []byte) (int, error) {
	if d := time.Duration(c.l.writeStall.Load()); d > 0 {
		// time.Since reads only the monotonic clock: cheaper than Now.
		if c.writeDeadline.IsZero() || time.Since(c.writeSet) > d/8 {
			now := time.Now()
			c.writeSet, c.writeDeadline = now, now.Add(d)
			c.Conn.SetWriteDeadline(c.writeDeadline)
		}
	}
	return c.Conn.Write(p)
}

// SetReadDeadline sets the read deadline, but never past the time the
// connection's first head is due while that head is being read.
func (c *trackedConn) SetReadDeadline(t time.Time) error {
	if !c.headBy.IsZero() && (t.IsZero() || t.After(c.headBy)) {
		t = c.headBy
	}
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline sets both deadlines, the read one as SetReadDeadline does.
func (c *trackedConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

// headRead caps each read while a request head is being read. The engine's
// read buffer is as large as max_header_bytes, and filling it whole would
// pull up to that much of a body into it, from where it is copied again;
// with the cap, a body is mostly read straight into the proxy's own buffer.
// Heads longer than the cap take more reads, up to the limit as before.
const headRead = 4 << 10

func (c *trackedConn) Read(p []byte) (int, error) {
	if (c.scanning || c.capNext) && len(p) > headRead {
		p = p[:headRead]
	}
	c.capNext = false
	n, err := c.Conn.Read(p)
	if !c.scanning {
		c.inSync = c.inSync && n == 0
		return n, err
	}
	if n > 0 && !c.scanHead(p[:n]) {
		c.scanning = false
		c.Conn.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 36\r\nConnection: close\r\n\r\nrequest lines must end in CR LF: 400"))
		return 0, errBareLF
	}
	return n, err
}

// ExpectHead restarts the head scan: the next bytes read begin a request.
func (c *trackedConn) ExpectHead() {
	c.scanning, c.seenLine, c.lineLen, c.lastCR = c.inSync, false, 0, false
	c.capNext = true
}

// scanHead checks b, the next bytes of a request head, and reports false
// when a line of it ends in a bare LF.
func (c *trackedConn) scanHead(b []byte) bool {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			c.lineLen += len(b)
			c.lastCR = b[len(b)-1] == '\r'
			if c.lastCR {
				c.lineLen--
			}
			return true
		}
		cr := i > 0 && b[i-1] == '\r' || i == 0 && c.lastCR
		if !cr {
			return false
		}
		line := c.lineLen + i - 1
		c.lineLen, c.lastCR = 0, false
		b = b[i+1:]
		if line > 0 {
			c.seenLine = true
		} else if c.seenLine {
			// The empty line: the head is complete. Bytes after it are a
			// body or another request, which the scan cannot follow.
			c.scanning, c.headBy = false, time.Time{}
			c.inSync = len(b) == 0
			return true
		}
	}
	return true
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// SyscallConn exposes the raw connection, which the proxy peeks at to learn
// that a client has gone while its request waits on a backend.
func (c *trackedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("not a syscall.Conn")
	}
	return sc.SyscallConn()
}
