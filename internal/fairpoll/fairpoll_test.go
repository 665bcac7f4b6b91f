package fairpoll

import (
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair is a connected loopback TCP pair: w writes, r is read and waited on.
type pair struct {
	r, w net.Conn
	fd   int
}

func newPairs(t *testing.T, n int) []pair {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var ps []pair
	for range n {
		w, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		r, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := r.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var fd int
		raw.Control(func(f uintptr) { fd = int(f) })
		ps = append(ps, pair{r: r, w: w, fd: fd})
		t.Cleanup(func() { r.Close(); w.Close() })
	}
	return ps
}

func newPoller(t *testing.T) *Poller {
	t.Helper()
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// waitFor fails the test unless ch is closed within a generous bound: a
// wait that should end must not hang the test.
func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: still waiting after 10s", what)
	}
}

// readable reports whether fd has bytes to read, without consuming them.
func readable(fd int) bool {
	var b [1]byte
	n, _, err := syscall.Recvfrom(fd, b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err == nil && n > 0
}

// TestWakesInReadinessOrder: sockets that become readable one after the
// other wake their waiters in that order, the first first, the reverse of
// what Go's own poller does within a batch. With one scheduler thread the
// order is exact (the race detector shuffles the run queue, so there only
// the set of wakes is checked).
func TestWakesInReadinessOrder(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const n = 16
	p := newPoller(t)
	ps := newPairs(t, n)
	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
	)
	ready := make(chan struct{}, n)
	for i, pr := range ps {
		w, err := p.Add(pr.fd)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ready <- struct{}{}
			for !readable(pr.fd) {
				w.Wait()
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		}()
	}
	for range n {
		<-ready
	}
	runtime.Gosched() // let every waiter reach Wait
	// The writes are system calls that never yield: every socket is
	// readable before the poller's goroutine runs again.
	for _, pr := range ps {
		if _, err := pr.w.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	waitFor(t, done, "waiters")
	if len(order) != n {
		t.Fatalf("woke %d waiters, want %d", len(order), n)
	}
	if raceEnabled {
		return
	}
	for i, got := range order {
		if got != i {
			t.Fatalf("wake order %v, want 0..%d in order", order, n-1)
		}
	}
}

// TestDeadlineEndsWait: a waiter whose deadline passes is woken by the
// sweep, though its socket stays silent.
func TestDeadlineEndsWait(t *testing.T) {
	p := newPoller(t)
	pr := newPairs(t, 1)[0]
	w, err := p.Add(pr.fd)
	if err != nil {
		t.Fatal(err)
	}
	w.SetDeadline(time.Now().Add(Sweep))
	done := make(chan struct{})
	go func() { w.Wait(); close(done) }()
	waitFor(t, done, "a wait past its deadline")
	if readable(pr.fd) {
		t.Fatal("the socket has data nobody sent")
	}
}

// TestNoDeadlineNoWake: without a deadline and without data, a waiter
// stays asleep through several sweeps; Wake then ends the wait.
func TestNoDeadlineNoWake(t *testing.T) {
	p := newPoller(t)
	pr := newPairs(t, 1)[0]
	w, err := p.Add(pr.fd)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { w.Wait(); close(done) }()
	select {
	case <-done:
		t.Fatal("a waiter without data or deadline woke")
	case <-time.After(5 * Sweep):
	}
	w.Wake()
	waitFor(t, done, "a woken waiter")
}

// TestPeerCloseWakes: the peer closing the connection wakes the waiter
// (the read that follows finds the end).
func TestPeerCloseWakes(t *testing.T) {
	p := newPoller(t)
	pr := newPairs(t, 1)[0]
	w, err := p.Add(pr.fd)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { w.Wait(); close(done) }()
	pr.w.Close()
	waitFor(t, done, "a waiter whose peer closed")
}

// TestRemovedWaiterIsForgotten: after Remove, data on the socket wakes
// nobody, and a new socket with the same number gets its own wakes.
func TestRemovedWaiterIsForgotten(t *testing.T) {
	p := newPoller(t)
	pr := newPairs(t, 1)[0]
	w, err := p.Add(pr.fd)
	if err != nil {
		t.Fatal(err)
	}
	w.Remove()
	pr.w.Write([]byte("x"))
	select {
	case <-w.token:
		t.Fatal("a removed waiter was woken")
	case <-time.After(5 * Sweep):
	}
	p.mu.Lock()
	n := len(p.waiters)
	p.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d waiters left after Remove", n)
	}
}

// TestCloseWakesWaiters: closing the poller ends every wait.
func TestCloseWakesWaiters(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	pr := newPairs(t, 1)[0]
	w, err := p.Add(pr.fd)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { w.Wait(); close(done) }()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, done, "a waiter of a closed poller")
	if _, err := p.Add(pr.fd); err == nil {
		t.Fatal("Add on a closed poller succeeded")
	}
}

// TestAddBadDescriptor: a descriptor that is not open is refused with an
// error, not a panic, and leaves nothing behind.
func TestAddBadDescriptor(t *testing.T) {
	p := newPoller(t)
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	fd := int(f.Fd())
	f.Close()
	if _, err := p.Add(fd); err == nil {
		t.Fatal("Add of a closed descriptor succeeded")
	}
	p.mu.Lock()
	n := len(p.waiters)
	p.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d waiters left after a failed Add", n)
	}
}
