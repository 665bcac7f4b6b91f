package wire

import (
	"syscall"
	"unsafe"
)

// The read(2), write(2), recvmsg(2), splice(2) and peek of a non-blocking
// socket, and a poll of an epoll set that does not wait, made without
// telling the scheduler (syscall.RawSyscall): such a call never
// waits, so the runtime's bookkeeping around a system call that might
// (entersyscall and exitsyscall, letting another thread take the processor
// meanwhile) is pure cost, about a tenth of the user time of a proxied
// request on HTTP/1.1, which makes four of them. Only for sockets in
// non-blocking mode, which every socket Go's net package opens is. The
// error is a syscall.Errno; n is 0 with it. Under the race detector they
// tell it what the syscall package's calls do (rawio_race.go).

// ReadFD reads from the non-blocking socket fd into p.
func ReadFD(fd uintptr, p []byte) (int, error) {
	r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(bufPtr(p)), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	raceReadDone(p[:r])
	return int(r), nil
}

// writeFD makes one write of p to the non-blocking socket fd.
func writeFD(fd uintptr, p []byte) (int, error) {
	raceWriteBegin()
	r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(bufPtr(p)), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// RecvmsgFD makes one recvmsg of the non-blocking socket fd into msg,
// whose data goes to one buffer (msg.Iov).
func RecvmsgFD(fd uintptr, msg *syscall.Msghdr) (int, error) {
	r, _, e := syscall.RawSyscall(syscall.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(msg)), 0)
	if e != 0 {
		return 0, e
	}
	var got []byte
	if r > 0 {
		got = unsafe.Slice(msg.Iov.Base, r)
	}
	raceReadDone(got)
	return int(r), nil
}

// PeekFD looks at the next byte of the socket fd without consuming it or
// waiting (recvfrom with MSG_PEEK and MSG_DONTWAIT): n 1 and nil when a byte
// is there, 0 and nil when the peer has closed its side, and the error
// (syscall.EAGAIN when nothing has arrived) otherwise.
func PeekFD(fd uintptr) (int, error) {
	var b [1]byte
	r, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// SpliceFD moves up to n bytes from the descriptor in to out (one of them a
// pipe) with splice(2), made as a raw system call: with flags holding
// SPLICE_F_NONBLOCK, and the sockets non-blocking, it never waits.
func SpliceFD(in, out uintptr, n int, flags int) (int, error) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_SPLICE, in, 0, out, 0, uintptr(n), uintptr(flags))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// EpollPollFD takes the ready members of the epoll set epfd into events
// without waiting (epoll_pwait with a timeout of 0 and no signal mask).
func EpollPollFD(epfd int, events []syscall.EpollEvent) (int, error) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd),
		uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// zeroByte is what an empty buffer points at, as the syscall package does.
var zeroByte byte

func bufPtr(p []byte) unsafe.Pointer {
	if len(p) == 0 {
		return unsafe.Pointer(&zeroByte)
	}
	return unsafe.Pointer(&p[0])
}
