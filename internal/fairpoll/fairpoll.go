// Package fairpoll wakes the goroutines that wait for sockets to become
// readable in the order the kernel saw them become readable.
//
// Go's poller hands the goroutines of one batch of ready sockets to the
// scheduler in the reverse of the order epoll reported them (it builds a
// list by pushing on its head), so with one scheduler thread the socket
// that became ready first in a batch is served last. At saturation that
// costs the tail: a request can wait for the whole batch twice. A Poller
// keeps an epoll set of its own: a connection's socket is added to it once,
// a goroutine that waits for its socket waits on its Waiter, and one
// goroutine takes the ready sockets from the set, oldest first, and wakes
// their waiters in that order. The set's own descriptor is waited on
// through Go's poller, so nothing blocks a thread.
//
// A Waiter only says "look again": a wake can be spurious (the data it
// announced was read already), and the waiting side reads until the socket
// has nothing, then waits. Deadlines are the socket's own, recorded on the
// Waiter too: the Poller wakes a waiter whose deadline has passed within
// Sweep, looking only when one is due, and a Wait after the look has seen
// the deadline pass returns the read's timeout (ErrExpired) instead of
// waiting again. Wait reads no clock: the look's time stands for now.
package fairpoll

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-proxy/sluice/internal/wire"
)

// Sweep is the most a Poller lets a waiter's deadline pass unnoticed, and
// the least time between two of its looks for waiters past their deadline.
// It looks only when a deadline is due, so an idle proxy whose connections
// have minutes to go is not woken for nothing.
const Sweep = 20 * time.Millisecond

// Poller is an epoll set and the goroutine that wakes its waiters. The zero
// value is not usable; use New.
type Poller struct {
	epfd   int
	file   *os.File
	raw    syscall.RawConn
	events [128]syscall.EpollEvent

	mu      sync.Mutex
	waiters map[int32]*Waiter

	closed atomic.Bool
	done   chan struct{}

	// next is when the poller's goroutine will next look for waiters past
	// their deadline (Unix nanoseconds; 0: no deadline is pending). A
	// deadline set earlier than that brings the look forward (plan).
	next   atomic.Int64
	planMu sync.Mutex

	// looked is the time of the poller's latest look for waiters past
	// their deadline (Unix nanoseconds). A Wait takes its deadline as
	// passed once a look has seen it pass, so that it reads no clock: a
	// deadline passed and not yet looked at waits for the look, which
	// wakes it within Sweep.
	looked atomic.Int64

	// woken is the wake list of one batch, kept between batches.
	woken []*Waiter
}

// Waiter is one socket in a Poller's set, waited on by one goroutine at a
// time.
type Waiter struct {
	p        *Poller
	fd       int32
	token    chan struct{}
	deadline atomic.Int64 // Unix nanoseconds of the socket's read deadline; 0 for none
	gone     atomic.Bool  // Remove or Detach was called: the socket waits in Go's poller
}

// New makes a Poller and starts its goroutine.
func New() (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	// Non-blocking, so that os.NewFile hands the descriptor to Go's
	// poller: an epoll set is readable while it has ready members.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	f := os.NewFile(uintptr(epfd), "fairpoll")
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	p := &Poller{epfd: epfd, file: f, raw: raw, waiters: map[int32]*Waiter{}, done: make(chan struct{})}
	go p.run()
	return p, nil
}

// Close stops the Poller's goroutine. Waiters still registered are woken,
// so that none waits forever.
func (p *Poller) Close() error {
	if !p.closed.CompareAndSwap(false, true) {
		return nil
	}
	p.file.SetReadDeadline(time.Unix(1, 0)) // ends the wait in run
	<-p.done
	p.mu.Lock()
	for _, w := range p.waiters {
		w.Wake()
	}
	p.mu.Unlock()
	return p.file.Close()
}

// Add puts the socket fd in the set and returns its Waiter. fd must stay
// open until Remove.
func (p *Poller) Add(fd int) (*Waiter, error) {
	if p.closed.Load() {
		return nil, ErrClosed
	}
	w := &Waiter{p: p, fd: int32(fd), token: make(chan struct{}, 1)}
	p.mu.Lock()
	p.waiters[w.fd] = w
	p.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: w.fd}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.forget(w)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	return w, nil
}

// AddConn puts the socket under raw (a connection's SyscallConn) in the set
// and returns its Waiter, as Add does.
func (p *Poller) AddConn(raw syscall.RawConn) (*Waiter, error) {
	var (
		w   *Waiter
		err error
	)
	if cerr := raw.Control(func(fd uintptr) { w, err = p.Add(int(fd)) }); cerr != nil {
		return nil, cerr
	}
	return w, err
}

// NoPark wraps f, a RawConn read callback, so that where f asks to wait in
// Go's poller (returns false) the call returns instead and sets *parked:
// the caller then waits on its Waiter and calls again.
func NoPark(f func(fd uintptr) bool, parked *bool) func(fd uintptr) bool {
	return func(fd uintptr) bool {
		if !f(fd) {
			*parked = true
		}
		return true
	}
}

// Remove takes w out of the set. Call it before the socket is closed:
// closing it takes it out of the kernel's set, and its number may then be
// reused by a socket whose waiter must not be forgotten. From then on Live
// reports false and Wait returns ErrClosed, so that a reader woken to find
// the socket not yet closed goes on in Go's poller, which the close then
// wakes, instead of waiting here for a wake that will not come. Like every
// method of Waiter but Wait, it does nothing on a nil Waiter (a connection
// that waits in Go's poller).
func (w *Waiter) Remove() {
	if w != nil {
		w.p.forget(w)
	}
}

// Detach takes w out of the set while its socket stays open (a connection
// handed over to a tunnel that reads in Go's poller): the kernel stops
// reporting the socket to the set, which a Remove before a close leaves to
// the close.
func (w *Waiter) Detach() {
	if w == nil {
		return
	}
	w.p.forget(w)
	unix.EpollCtl(w.p.epfd, unix.EPOLL_CTL_DEL, int(w.fd), nil)
}

func (p *Poller) forget(w *Waiter) {
	w.gone.Store(true)
	p.mu.Lock()
	if p.waiters[w.fd] == w {
		delete(p.waiters, w.fd)
	}
	p.mu.Unlock()
}

// SetDeadline records the socket's read deadline (the zero time for none),
// after which a Wait ends within Sweep.
func (w *Waiter) SetDeadline(t time.Time) {
	if w == nil {
		return
	}
	if t.IsZero() {
		w.deadline.Store(0)
		return
	}
	d := t.UnixNano()
	w.deadline.Store(d)
	if n := w.p.next.Load(); n == 0 || d < n {
		w.p.plan(d)
	}
}

// plan makes the poller's goroutine look for waiters past their deadline
// at d (Unix nanoseconds; 0 for no look), unless a look is planned at or
// before d already.
func (p *Poller) plan(d int64) {
	p.planMu.Lock()
	defer p.planMu.Unlock()
	if n := p.next.Load(); n != 0 && (d == 0 || n <= d) {
		return
	}
	p.next.Store(d)
	if d == 0 {
		p.file.SetReadDeadline(time.Time{})
		return
	}
	p.file.SetReadDeadline(time.Unix(0, d))
}

// unplan clears the planned look at n as it begins; from then on every
// deadline set plans a look of its own, so that none set during the look
// is missed.
func (p *Poller) unplan(n int64) {
	p.planMu.Lock()
	if p.next.Load() == n {
		p.next.Store(0)
	}
	p.planMu.Unlock()
}

// expired reports whether the deadline set (SetDeadline) has passed, as the
// poller's latest look for such waiters saw it.
func (w *Waiter) expired() bool {
	d := w.deadline.Load()
	return d != 0 && d <= w.p.looked.Load()
}

// ErrExpired is Wait's error when the deadline set has passed: a read's
// timeout, as the socket would report it.
var ErrExpired error = &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}

// ErrClosed is Wait's error when the Poller has closed or the Waiter was
// taken out of it (Remove, Detach): the caller waits in Go's poller from
// then on (Live reports false).
var ErrClosed = errors.New("fairpoll: poller closed")

// Live reports whether the connection waits on w: w is not nil, still in
// its Poller, and the Poller has not closed.
func (w *Waiter) Live() bool {
	return w != nil && !w.gone.Load() && !w.p.closed.Load()
}

// Wait waits until the socket may have become readable, its deadline has
// passed, or Wake is called; the caller reads to find out which, and calls
// Wait again when the read finds nothing. It returns ErrExpired at once
// when the poller has seen the deadline pass (its look wakes a waiter once,
// and the runtime's own deadline on the socket may fire a moment after it),
// and ErrClosed when the Poller has closed or w was taken out of it.
func (w *Waiter) Wait() error {
	switch {
	case !w.Live():
		return ErrClosed
	case w.expired():
		return ErrExpired
	}
	<-w.token
	if !w.Live() {
		return ErrClosed
	}
	return nil
}

// Wake ends the current or the next Wait.
func (w *Waiter) Wake() {
	if w == nil {
		return
	}
	select {
	case w.token <- struct{}{}:
	default:
	}
}

// run waits, through Go's poller, for the set to have ready members, and
// wakes their waiters; when a deadline is due it wakes those past theirs.
func (p *Poller) run() {
	defer close(p.done)
	for !p.closed.Load() {
		err := p.raw.Read(p.harvest)
		if p.closed.Load() {
			return
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			// The set cannot be waited on: wake everyone every sweep
			// rather than no one (their reads then find what is there).
			time.Sleep(Sweep)
			p.wakeAll()
		}
		if n := p.next.Load(); n != 0 && time.Now().UnixNano() >= n {
			p.unplan(n)
			now := time.Now()
			next := p.sweep(now)
			if next != 0 {
				next = max(next, now.Add(Sweep).UnixNano())
			}
			// The deadline that ended the wait has passed: plan the next
			// look, or none, so that the wait is not ended again at once.
			p.plan(next)
		}
	}
}

// harvest is run's RawConn callback: it takes every ready member from the
// set, oldest first, and wakes its waiter. It always asks to wait again.
func (p *Poller) harvest(uintptr) bool {
	for {
		n, err := wire.EpollPollFD(p.epfd, p.events[:])
		if err == syscall.EINTR {
			continue
		}
		if n <= 0 {
			return false
		}
		p.mu.Lock()
		for i := range n {
			if w := p.waiters[p.events[i].Fd]; w != nil {
				p.woken = append(p.woken, w)
			}
		}
		p.mu.Unlock()
		p.wake(p.woken)
		clear(p.woken)
		p.woken = p.woken[:0]
		if n < len(p.events) {
			return false
		}
	}
}

// wake wakes ws so that they run in their order. A goroutine woken by
// another goes to the head of the run queue and pushes the one woken before
// it to the tail; so the first is woken last, after the others have gone to
// the tail in order.
func (p *Poller) wake(ws []*Waiter) {
	if len(ws) == 0 {
		return
	}
	for _, w := range ws[1:] {
		w.Wake()
	}
	ws[0].Wake()
}

// sweep wakes the waiters whose deadline is at or before now, and returns
// the earliest deadline still ahead (0 for none).
func (p *Poller) sweep(now time.Time) (next int64) {
	t := now.UnixNano()
	// Before the wakes: a waiter woken finds its deadline passed.
	p.looked.Store(t)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.waiters {
		switch d := w.deadline.Load(); {
		case d == 0:
		case d <= t:
			w.Wake()
		case next == 0 || d < next:
			next = d
		}
	}
	return next
}

// wakeAll wakes every waiter.
func (p *Poller) wakeAll() {
	p.mu.Lock()
	for _, w := range p.waiters {
		w.Wake()
	}
	p.mu.Unlock()
}
