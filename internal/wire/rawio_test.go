package wire

import (
	"bytes"
	"syscall"
	"testing"
)

// TestRawSocketIO: the raw calls behave as the syscall package's on a real
// non-blocking socket pair: bytes go across whole, an empty socket says
// EAGAIN (comparable with ==, as the callers do), a closed peer reads 0,
// and a bad descriptor is an error with n 0.
func TestRawSocketIO(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := uintptr(fds[0]), uintptr(fds[1])
	defer syscall.Close(fds[0])

	buf := make([]byte, 64)
	if n, err := ReadFD(b, buf); err != syscall.EAGAIN || n != 0 {
		t.Fatalf("read of an empty socket = %d, %v; want 0, EAGAIN", n, err)
	}
	msg := []byte("GET / HTTP/1.1\r\n\r\n")
	if n, err := WriteFD(a, msg); err != nil || n != len(msg) {
		t.Fatalf("WriteFD = %d, %v", n, err)
	}
	n, err := ReadFD(b, buf)
	if err != nil || !bytes.Equal(buf[:n], msg) {
		t.Fatalf("ReadFD = %q, %v; want %q", buf[:n], err, msg)
	}

	if _, err := WriteFD(a, []byte("again")); err != nil {
		t.Fatal(err)
	}
	iov := syscall.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	m := syscall.Msghdr{Iov: &iov, Iovlen: 1}
	if n, err := RecvmsgFD(b, &m); err != nil || string(buf[:n]) != "again" {
		t.Fatalf("RecvmsgFD = %q, %v", buf[:n], err)
	}
	if n, err := RecvmsgFD(b, &m); err != syscall.EAGAIN || n != 0 {
		t.Fatalf("recvmsg of an empty socket = %d, %v; want 0, EAGAIN", n, err)
	}

	// Filling the buffer ends in EAGAIN with the bytes that went in.
	big := make([]byte, 1<<20)
	if n, err := WriteFD(a, big); err != syscall.EAGAIN || n <= 0 || n >= len(big) {
		t.Fatalf("WriteFD of more than the buffer = %d, %v; want part of it, EAGAIN", n, err)
	}

	syscall.Close(fds[1])
	if n, err := ReadFD(b, buf); err != syscall.EBADF || n != 0 {
		t.Fatalf("read of a closed descriptor = %d, %v; want 0, EBADF", n, err)
	}
	if n, err := ReadFD(a, nil); err != nil || n != 0 {
		t.Fatalf("empty read = %d, %v; want 0, nil", n, err)
	}
}

// TestPeekFD: a peek says whether a byte waits, without consuming it or
// waiting, and tells a peer's close (0, nil) from an empty socket (EAGAIN).
func TestPeekFD(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := uintptr(fds[0]), uintptr(fds[1])
	defer syscall.Close(fds[1])
	if n, err := PeekFD(b); err != syscall.EAGAIN || n != 0 {
		t.Fatalf("peek of an empty socket = %d, %v; want 0, EAGAIN", n, err)
	}
	if _, err := WriteFD(a, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if n, err := PeekFD(b); err != nil || n != 1 {
		t.Fatalf("peek with a byte waiting = %d, %v; want 1, nil", n, err)
	}
	buf := make([]byte, 4)
	if n, err := ReadFD(b, buf); err != nil || string(buf[:n]) != "x" {
		t.Fatalf("read after the peek = %q, %v; want the byte the peek left", buf[:n], err)
	}
	syscall.Close(fds[0])
	if n, err := PeekFD(b); err != nil || n != 0 {
		t.Fatalf("peek after the peer closed = %d, %v; want 0, nil", n, err)
	}
	if n, err := PeekFD(a); err != syscall.EBADF || n != 0 {
		t.Fatalf("peek of a closed descriptor = %d, %v; want 0, EBADF", n, err)
	}
}

// TestSpliceFD: bytes move from a socket into a pipe and from the pipe to
// another socket without passing through the process, and an empty
// socket gives EAGAIN rather than a wait.
func TestSpliceFD(t *testing.T) {
	const flags = 0x1 | 0x2 // SPLICE_F_MOVE | SPLICE_F_NONBLOCK
	pair := func() (uintptr, uintptr) {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Close(fds[0]); syscall.Close(fds[1]) })
		return uintptr(fds[0]), uintptr(fds[1])
	}
	a, b := pair()
	c, d := pair()
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(p[0])
	defer syscall.Close(p[1])
	if n, err := SpliceFD(b, uintptr(p[1]), 64, flags); err != syscall.EAGAIN || n != 0 {
		t.Fatalf("splice from an empty socket = %d, %v; want 0, EAGAIN", n, err)
	}
	if _, err := WriteFD(a, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if n, err := SpliceFD(b, uintptr(p[1]), 64, flags); err != nil || n != 5 {
		t.Fatalf("splice into the pipe = %d, %v; want 5, nil", n, err)
	}
	if n, err := SpliceFD(uintptr(p[0]), c, 5, flags); err != nil || n != 5 {
		t.Fatalf("splice out of the pipe = %d, %v; want 5, nil", n, err)
	}
	buf := make([]byte, 16)
	if n, err := ReadFD(d, buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read = %q, %v; want \"hello\"", buf[:n], err)
	}
}

// TestEpollPollFD: a poll of an epoll set returns at once, with nothing
// when no member is ready and with the member that is.
func TestEpollPollFD(t *testing.T) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(epfd)
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fds[0])
	defer syscall.Close(fds[1])
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fds[1])}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, fds[1], &ev); err != nil {
		t.Fatal(err)
	}
	events := make([]syscall.EpollEvent, 4)
	if n, err := EpollPollFD(epfd, events); err != nil || n != 0 {
		t.Fatalf("poll of a set with nothing ready = %d, %v; want 0, nil", n, err)
	}
	if _, err := WriteFD(uintptr(fds[0]), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if n, err := EpollPollFD(epfd, events); err != nil || n != 1 || events[0].Fd != int32(fds[1]) {
		t.Fatalf("poll with one member ready = %d, %v, fd %d; want 1, nil, fd %d", n, err, events[0].Fd, fds[1])
	}
}
