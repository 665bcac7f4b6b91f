package upstream

import (
	"golang.org/x/sys/unix"
	"io"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// TestArrivedIsReceiveTime: a connection timing arrivals reports when the
// kernel received the answer, not when it was read: an answer read well
// after it arrived is stamped between the backend's write and the moment
// the test saw it waiting in the socket. Without TimeArrivals there is no
// stamp.
func TestArrivedIsReceiveTime(t *testing.T) {
	// The kernel turns receive times on a moment after the first socket
	// asks for them (a deferred switch), so the first answers may come
	// without one: the exchange is repeated, on new connections, until
	// one has it.
	var got, sent, seen time.Time
	for end := time.Now().Add(5 * time.Second); got.IsZero(); {
		if time.Now().After(end) {
			t.Fatal("no receive time for an answer read by a connection timing arrivals")
		}
		_, c, server := dialTestPool(t)
		c.TimeArrivals()
		if c.stamp == nil {
			t.Fatal("TimeArrivals did not turn receive times on for a plain TCP connection")
		}
		sent = exchangeOnce(t, c, server)
		// The answer is in the socket; only now is it read.
		waitInSocket(t, c)
		seen = time.Now()
		var h Head
		if err := c.AwaitHead(&h, time.Now(), 5*time.Second, false, nil); err != nil {
			t.Fatalf("AwaitHead: %v", err)
		}
		got = c.Arrived()
		if !got.IsZero() {
			c.begin(true)
			if !c.Arrived().IsZero() {
				t.Error("a new request on the connection kept the last answer's receive time")
			}
		}
	}
	if got.Before(sent) || got.After(seen) {
		t.Fatalf("receive time %v is not between the backend's write (%v) and the answer seen waiting (%v)",
			got.Format(time.StampMicro), sent.Format(time.StampMicro), seen.Format(time.StampMicro))
	}

	_, plain, server := dialTestPool(t)
	exchangeOnce(t, plain, server)
	var h Head
	if err := plain.AwaitHead(&h, time.Now(), 5*time.Second, false, nil); err != nil {
		t.Fatalf("AwaitHead: %v", err)
	}
	if !plain.Arrived().IsZero() {
		t.Error("a connection not timing arrivals reported a receive time")
	}
}

// exchangeOnce writes a request on c and has server answer it with a head;
// it returns a time before the answer was written.
func exchangeOnce(t *testing.T, c *Conn, server io.ReadWriter) time.Time {
	t.Helper()
	req := "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	if err := c.Write([]byte(req), time.Second); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, len(req))
	if _, err := io.ReadFull(server, b); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	if _, err := io.WriteString(server, "HTTP/1.1 204 No Content\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	return sent
}

// waitInSocket waits until c's socket holds bytes to read.
func waitInSocket(t *testing.T, c *Conn) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var n int
		c.raw.Control(func(fd uintptr) {
			n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		})
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the answer never reached the socket")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestReceiveTime: the receive time is found among control messages, after
// another one too, and a malformed buffer yields none rather than a read
// past its end.
func TestReceiveTime(t *testing.T) {
	msg := func(level, typ int32, data []byte) []byte {
		b := make([]byte, syscall.CmsgSpace(len(data)))
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level, h.Type = level, typ
		h.SetLen(syscall.CmsgLen(len(data)))
		copy(b[syscall.CmsgLen(0):], data)
		return b
	}
	ts := syscall.NsecToTimespec(1_700_000_000_123_456_789)
	stamp := unsafe.Slice((*byte)(unsafe.Pointer(&ts)), unsafe.Sizeof(ts))
	good := msg(syscall.SOL_SOCKET, syscall.SCM_TIMESTAMPNS, stamp)
	other := msg(syscall.SOL_SOCKET, syscall.SCM_RIGHTS, []byte{1, 2, 3, 4})
	long := append([]byte(nil), good...)
	(*syscall.Cmsghdr)(unsafe.Pointer(&long[0])).SetLen(len(long) + 8)
	for _, c := range []struct {
		name string
		oob  []byte
		want int64
	}{
		{"none", nil, 0},
		{"the stamp", good, 1_700_000_000_123_456_789},
		{"after another message", append(append([]byte(nil), other...), good...), 1_700_000_000_123_456_789},
		{"another message only", other, 0},
		{"a length past the buffer", long, 0},
		{"a header cut short", good[:syscall.CmsgLen(0)-1], 0},
		{"data cut short", good[:syscall.CmsgLen(4)], 0},
	} {
		if got := receiveTime(c.oob); got != c.want {
			t.Errorf("%s: receiveTime = %d, want %d", c.name, got, c.want)
		}
	}
}
