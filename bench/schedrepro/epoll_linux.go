package main

import (
	"fmt"
	"log"
	"net"
	"runtime"
	"syscall"
	"time"
)

const (
	// epollET is EPOLLET as the uint32 an EpollEvent carries (the syscall
	// package declares it as a negative int).
	epollET = 1 << 31
	// maxEvents is the epoll_wait batch size, the same as the runtime's
	// netpoll (runtime/netpoll_epoll.go) so batches are comparable.
	maxEvents = 128
)

// listenRaw opens a non-blocking IPv4 listening socket, as net.Listen would.
func listenRaw(addr string) (int, *net.TCPAddr, error) {
	ta, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		return -1, nil, err
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, nil, err
	}
	sa := &syscall.SockaddrInet4{Port: ta.Port}
	if ip4 := ta.IP.To4(); ip4 != nil {
		copy(sa.Addr[:], ip4)
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		syscall.Close(fd)
		return -1, nil, err
	}
	if err := syscall.Bind(fd, sa); err != nil {
		syscall.Close(fd)
		return -1, nil, err
	}
	// The kernel caps the backlog at net.core.somaxconn; Go passes that value.
	if err := syscall.Listen(fd, 65535); err != nil {
		syscall.Close(fd)
		return -1, nil, err
	}
	got, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return -1, nil, err
	}
	g := got.(*syscall.SockaddrInet4)
	return fd, &net.TCPAddr{IP: net.IP(g.Addr[:]).To16(), Port: g.Port}, nil
}

// startEpoll is modes epoll-fifo and epoll-lifo: an event loop on one
// goroutine locked to its OS thread, its own edge-triggered epoll instance
// (registered like the runtime registers sockets: EPOLLIN|EPOLLOUT|
// EPOLLRDHUP|EPOLLET), each ready connection read until EAGAIN, and each
// batch of events handled in epoll_wait's order, or reversed if lifo.
func startEpoll(addr string, work time.Duration, lifo bool) (net.Addr, error) {
	lfd, a, err := listenRaw(addr)
	if err != nil {
		return nil, err
	}
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		syscall.Close(lfd)
		return nil, err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | epollET, Fd: int32(lfd)}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, lfd, &ev); err != nil {
		syscall.Close(lfd)
		syscall.Close(epfd)
		return nil, err
	}
	go func() {
		if err := eventLoop(epfd, lfd, work, lifo); err != nil {
			log.Fatal(err)
		}
	}()
	return a, nil
}

// econn is one connection of the event loop.
type econn struct {
	fd  int
	s   session
	out []byte // response bytes not written yet (out[sent:])
	pos int
}

func eventLoop(epfd, lfd int, work time.Duration, lifo bool) error {
	runtime.LockOSThread()
	conns := map[int32]*econn{}
	events := make([]syscall.EpollEvent, maxEvents)
	buf := make([]byte, 4096)
	for {
		n, err := syscall.EpollWait(epfd, events, -1) // blocks when nothing is ready
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		for k := 0; k < n; k++ {
			i := k
			if lifo {
				i = n - 1 - k
			}
			fd := events[i].Fd
			if int(fd) == lfd {
				acceptAll(epfd, lfd, conns, work)
				continue
			}
			c := conns[fd]
			if c == nil {
				continue
			}
			if !c.handle(buf) {
				// Closing the only descriptor removes it from the epoll set.
				// A later event of this batch for a reused fd number just
				// meets EAGAIN.
				syscall.Close(c.fd)
				delete(conns, fd)
			}
		}
	}
}

func acceptAll(epfd, lfd int, conns map[int32]*econn, work time.Duration) {
	for {
		nfd, _, err := syscall.Accept4(lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		switch err {
		case nil:
		case syscall.EINTR, syscall.ECONNABORTED:
			continue
		case syscall.EAGAIN:
			return
		default:
			log.Printf("accept4: %v", err)
			return
		}
		// Go sets TCP_NODELAY on every TCP connection; do the same.
		syscall.SetsockoptInt(nfd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | epollET, Fd: int32(nfd)}
		if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, nfd, &ev); err != nil {
			log.Printf("epoll_ctl: %v", err)
			syscall.Close(nfd)
			continue
		}
		conns[int32(nfd)] = &econn{fd: nfd, s: session{work: work}}
	}
}

// handle serves c after an event: it writes what is left of earlier
// responses, then reads until EAGAIN, answering every complete request. It
// returns false when the connection should be closed. With edge triggering
// it must leave the socket drained (EAGAIN on read) or blocked on writing,
// in which case EPOLLOUT brings it back.
func (c *econn) handle(buf []byte) bool {
	if blocked, ok := c.flush(); !ok || blocked {
		return ok
	}
	for {
		n, err := syscall.Read(c.fd, buf)
		switch {
		case err == syscall.EAGAIN:
			return true
		case err == syscall.EINTR:
			continue
		case err != nil || n == 0:
			return false
		}
		var ok bool
		if c.out, ok = c.s.feed(buf[:n], c.out); !ok {
			return false
		}
		if blocked, ok := c.flush(); !ok || blocked {
			return ok
		}
	}
}

// flush writes c.out[c.pos:]; blocked reports that the socket is full.
func (c *econn) flush() (blocked, ok bool) {
	for c.pos < len(c.out) {
		n, err := syscall.Write(c.fd, c.out[c.pos:])
		switch {
		case err == syscall.EAGAIN:
			return true, true
		case err == syscall.EINTR:
			continue
		case err != nil:
			return false, false
		}
		c.pos += n
	}
	c.out, c.pos = c.out[:0], 0
	return false, true
}
