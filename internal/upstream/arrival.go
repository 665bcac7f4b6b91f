package upstream

import (
	"github.com/sluice-proxy/sluice/internal/wire"
	"syscall"
	"time"
	"unsafe"
)

// arrivalStamp is what a first read needs to take the kernel's receive
// time of the bytes it reads (SO_TIMESTAMPNS): the message header, its one
// buffer and room for the control message, kept with the connection so
// that a read does not allocate.
type arrivalStamp struct {
	msg syscall.Msghdr
	iov syscall.Iovec
	oob [64]byte
}

// TimeArrivals makes c take, from then on, the time the kernel received the
// first bytes of each response (see Arrived). It does nothing on a
// connection it cannot do that on (TLS, or a socket refusing the option).
func (c *Conn) TimeArrivals() {
	if c.stampAsked || c.first == nil {
		return
	}
	c.stampAsked = true // once: a socket that refused is not asked again
	var err error
	if cerr := c.raw.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	}); cerr != nil || err != nil {
		return
	}
	c.stamp = new(arrivalStamp)
}

// Arrived returns when the kernel received the first bytes of the response
// to this request, when c times arrivals (TimeArrivals) and read them from
// the socket; the zero time otherwise. Unlike the time the response is read,
// it leaves out how long the proxy took to get to it.
func (c *Conn) Arrived() time.Time {
	if c.arrived == 0 {
		return time.Time{}
	}
	return time.Unix(0, c.arrived)
}

// readStamped reads from fd into p as read(2) does, and notes the bytes'
// receive time in c.arrived when c times arrivals.
func (c *Conn) readStamped(fd uintptr, p []byte) (int, error) {
	s := c.stamp
	if s == nil {
		return wire.ReadFD(fd, p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	s.iov.Base = &p[0]
	s.iov.SetLen(len(p))
	s.msg = syscall.Msghdr{Iov: &s.iov, Iovlen: 1, Control: &s.oob[0]}
	s.msg.SetControllen(len(s.oob))
	r, err := wire.RecvmsgFD(fd, &s.msg)
	s.iov.Base = nil // p goes back to its pool
	if err != nil {
		return 0, err
	}
	if t := receiveTime(s.oob[:s.msg.Controllen]); t != 0 {
		c.arrived = t
	}
	return r, nil
}

// receiveTime returns the SCM_TIMESTAMPNS time (unix ns) among the control
// messages in oob, 0 when there is none.
func receiveTime(oob []byte) int64 {
	data := syscall.CmsgLen(0) // where a message's data begins
	for len(oob) >= data {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
		n := int(h.Len)
		if n < data || n > len(oob) {
			return 0
		}
		if h.Level == syscall.SOL_SOCKET && h.Type == syscall.SCM_TIMESTAMPNS && n-data >= int(unsafe.Sizeof(syscall.Timespec{})) {
			return (*syscall.Timespec)(unsafe.Pointer(&oob[data])).Nano()
		}
		next := syscall.CmsgSpace(n - data)
		if next >= len(oob) {
			return 0
		}
		oob = oob[next:]
	}
	return 0
}
