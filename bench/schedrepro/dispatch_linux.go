package main

import (
	"log"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// dispatcher is mode goroutine-dispatch: connections are still served by a
// goroutine each, but a goroutine with nothing to read waits on its token
// channel, not in the netpoller. The dispatcher owns a second epoll
// instance holding every connection (EPOLLIN|EPOLLRDHUP|EPOLLET), waits for
// that epoll fd to become readable through Go's netpoller (an epoll fd is
// itself pollable), then takes the batch with epoll_wait(0) and hands out
// tokens in epoll order.
type dispatcher struct {
	epfd   int
	mu     sync.Mutex
	tokens map[int32]chan struct{}
}

func startDispatch(addr string, work time.Duration) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		ln.Close()
		return nil, err
	}
	// Non-blocking, so that os.NewFile puts it in the netpoller.
	if err := syscall.SetNonblock(epfd, true); err != nil {
		ln.Close()
		syscall.Close(epfd)
		return nil, err
	}
	d := &dispatcher{epfd: epfd, tokens: map[int32]chan struct{}{}}
	go d.run()
	go acceptLoop(ln, func(c net.Conn) { go d.handle(c.(*net.TCPConn), work) })
	return ln.Addr(), nil
}

func (d *dispatcher) run() {
	f := os.NewFile(uintptr(d.epfd), "dispatch-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		log.Fatal(err)
	}
	events := make([]syscall.EpollEvent, maxEvents)
	ready := make([]chan struct{}, 0, maxEvents)
	for {
		n := 0
		// Read calls the function, and while it returns false parks in the
		// netpoller until the epoll fd is readable again.
		err := rc.Read(func(fd uintptr) bool {
			var err error
			if n, err = syscall.EpollWait(int(fd), events, 0); err != nil {
				n = 0
			}
			return n > 0
		})
		if err != nil {
			log.Fatal(err)
		}
		ready = ready[:0]
		d.mu.Lock()
		for _, ev := range events[:n] {
			if tok := d.tokens[ev.Fd]; tok != nil {
				ready = append(ready, tok)
			}
		}
		d.mu.Unlock()
		if len(ready) == 0 {
			continue
		}
		// A send that wakes a parked receiver puts it in the P's runnext
		// slot (runtime ready → runqput with next=true), which runs before
		// the run queue, and the previous occupant moves to the queue's
		// tail: the last goroutine woken runs first. Waking ready[0] last
		// therefore gives the run order ready[0], ready[1], ... = epoll order.
		for _, tok := range ready[1:] {
			give(tok)
		}
		give(ready[0])
	}
}

// give hands out a token unless one is already waiting; a token that
// arrives while the goroutine is still running is kept by the buffer, and a
// spurious one costs a read that meets EAGAIN.
func give(tok chan struct{}) {
	select {
	case tok <- struct{}{}:
	default:
	}
}

func (d *dispatcher) handle(c *net.TCPConn, work time.Duration) {
	defer c.Close()
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	fd := -1
	rc.Control(func(f uintptr) { fd = int(f) })
	tok := make(chan struct{}, 1)
	d.mu.Lock()
	d.tokens[int32(fd)] = tok
	d.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | epollET, Fd: int32(fd)}
	if err := syscall.EpollCtl(d.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		log.Printf("epoll_ctl: %v", err)
		return
	}
	defer func() {
		syscall.EpollCtl(d.epfd, syscall.EPOLL_CTL_DEL, fd, nil)
		d.mu.Lock()
		if d.tokens[int32(fd)] == tok {
			delete(d.tokens, int32(fd))
		}
		d.mu.Unlock()
	}()

	s := session{work: work}
	buf := make([]byte, 4096)
	var out []byte
	for {
		var n int
		var rerr error
		// Returning true always: one read(2), never a park in the netpoller.
		if err := rc.Read(func(f uintptr) bool {
			n, rerr = syscall.Read(int(f), buf)
			return true
		}); err != nil {
			return
		}
		switch {
		case rerr == syscall.EAGAIN:
			<-tok
			continue
		case rerr == syscall.EINTR:
			continue
		case rerr != nil || n == 0:
			return
		}
		var ok bool
		if out, ok = s.feed(buf[:n], out[:0]); !ok {
			return
		}
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}
