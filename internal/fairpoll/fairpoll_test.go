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
	"golang.org/x/sys/unix"
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

// oneWaiter returns a poller, a connected pair and the waiter of the pair's
// read side.
func oneWaiter(t *testing.T) (*Poller, pair, *Waiter) {
	t.Helper()
	p := newPoller(t)
	pr := newPairs(t, 1)[0]
	w, err := p.Add(pr.fd)
	if err != nil {
		t.Fatal(err)
	}
	return p, pr, w
}

// waitAsync runs w.Wait on a goroutine of its own and closes the channel
// it returns when the wait ends.
func waitAsync(w *Waiter) <-chan struct{} {
	done := make(chan struct{})
	go func() { w.Wait(); close(done) }()
	return done
}

// waiters returns how many waiters p has.
func waiters(p *Poller) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.waiters)
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
	_, pr, w := oneWaiter(t)
	if w.expired() {
		t.Fatal("a waiter without a deadline reports it expired")
	}
	w.SetDeadline(time.Now().Add(Sweep))
	if w.expired() {
		t.Fatal("a deadline ahead reports expired")
	}
	waitFor(t, waitAsync(w), "a wait past its deadline")
	if !w.expired() {
		t.Fatal("woken at its deadline, the waiter does not report it expired")
	}
	// Past its deadline, a wait ends at once with the read's timeout.
	if err := w.Wait(); err != ErrExpired {
		t.Fatalf("Wait past the deadline = %v, want ErrExpired", err)
	}
	if readable(pr.fd) {
		t.Fatal("the socket has data nobody sent")
	}
}

// TestPassedDeadlineEndsAfterLook: a deadline set in the past is taken as
// passed once the poller has looked (no clock read in Wait): the wait it
// is set during ends, and the next returns ErrExpired at once.
func TestPassedDeadlineEndsAfterLook(t *testing.T) {
	p, _, w := oneWaiter(t)
	before := p.looked.Load()
	w.SetDeadline(time.Now().Add(-time.Second))
	if err := boundedWait(t, w, "a wait with its deadline passed"); err != nil && err != ErrExpired {
		t.Fatalf("Wait = %v, want nil (woken by the look) or ErrExpired", err)
	}
	if p.looked.Load() == before {
		t.Fatal("the wait ended without the poller looking for passed deadlines")
	}
	if err := w.Wait(); err != ErrExpired {
		t.Fatalf("Wait after the look = %v, want ErrExpired", err)
	}
	// A later deadline is not passed until a look sees it pass.
	w.SetDeadline(time.Now().Add(time.Hour))
	if w.expired() {
		t.Fatal("a deadline an hour ahead reports expired")
	}
}

// TestNoDeadlineNoWake: without a deadline and without data, a waiter
// stays asleep through several sweeps; Wake then ends the wait.
func TestNoDeadlineNoWake(t *testing.T) {
	_, _, w := oneWaiter(t)
	done := waitAsync(w)
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
	_, pr, w := oneWaiter(t)
	done := waitAsync(w)
	pr.w.Close()
	waitFor(t, done, "a waiter whose peer closed")
}

// TestRemovedWaiterIsForgotten: after Remove, data on the socket wakes
// nobody, and the poller holds nothing of it.
func TestRemovedWaiterIsForgotten(t *testing.T) {
	p, pr, w := oneWaiter(t)
	w.Remove()
	pr.w.Write([]byte("x"))
	select {
	case <-w.token:
		t.Fatal("a removed waiter was woken")
	case <-time.After(5 * Sweep):
	}
	if n := waiters(p); n != 0 {
		t.Fatalf("%d waiters left after Remove", n)
	}
}

// TestRemovedWaiterWaitsNoMore: once its waiter is removed, a connection
// is not live and Wait returns ErrClosed at once, also after the wake that
// a close gives (Remove, Wake, then the socket's close) has been taken:
// a reader woken before the socket closed, who finds it empty, goes on in
// Go's poller, which the close wakes, rather than waiting here for good.
func TestRemovedWaiterWaitsNoMore(t *testing.T) {
	_, _, w := oneWaiter(t)
	woken := waitAsync(w)
	w.Remove()
	w.Wake()
	waitFor(t, woken, "the wait a Remove and Wake should end")
	if w.Live() {
		t.Error("a removed waiter reports itself live")
	}
	// The wake was taken: nothing else comes.
	if err := boundedWait(t, w, "Wait after Remove"); err != ErrClosed {
		t.Errorf("Wait after Remove = %v, want ErrClosed", err)
	}
}

// TestDetachedWaiterIsNotLive: a connection handed to a tunnel (Detach)
// waits in Go's poller from then on.
func TestDetachedWaiterIsNotLive(t *testing.T) {
	_, _, w := oneWaiter(t)
	w.Detach()
	if w.Live() {
		t.Error("a detached waiter reports itself live")
	}
	if err := boundedWait(t, w, "Wait after Detach"); err != ErrClosed {
		t.Errorf("Wait after Detach = %v, want ErrClosed", err)
	}
}

// boundedWait returns what w.Wait returns, failing the test (what says
// which wait) when it has not returned within 10 s.
func boundedWait(t *testing.T, w *Waiter, what string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- w.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		w.Wake() // let the goroutine end
		t.Fatalf("%s still waits after 10s", what)
		return nil
	}
}

// TestCloseWakesWaiters: closing the poller ends every wait.
func TestCloseWakesWaiters(t *testing.T) {
	p, pr, w := oneWaiter(t)
	done := waitAsync(w)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, done, "a waiter of a closed poller")
	if w.Live() {
		t.Error("a waiter of a closed poller reports itself live")
	}
	if err := w.Wait(); err != ErrClosed {
		t.Errorf("Wait on a closed poller = %v, want ErrClosed", err)
	}
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
	if n := waiters(p); n != 0 {
		t.Fatalf("%d waiters left after a failed Add", n)
	}
}

// TestAddConnAndNoPark: AddConn takes the socket under a connection's
// RawConn; a callback wrapped by NoPark returns instead of waiting in Go's
// poller, and says so, and a wake then lets the read find the data.
func TestAddConnAndNoPark(t *testing.T) {
	p := newPoller(t)
	pr := newPairs(t, 1)[0]
	raw, err := pr.r.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	w, err := p.AddConn(raw)
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	read := func(fd uintptr) bool {
		b := make([]byte, 8)
		n, err := syscall.Read(int(fd), b)
		if err == syscall.EAGAIN {
			return false
		}
		got = b[:max(n, 0)]
		return true
	}
	var parked bool
	f := NoPark(read, &parked)
	if err := raw.Read(f); err != nil || !parked {
		t.Fatalf("a read that found nothing: err %v, parked %v; want nil, true", err, parked)
	}
	done := waitAsync(w)
	pr.w.Write([]byte("hi"))
	waitFor(t, done, "a waiter whose socket got data")
	parked = false
	if err := raw.Read(f); err != nil || parked || string(got) != "hi" {
		t.Fatalf("the read after the wake: err %v, parked %v, got %q; want nil, false, \"hi\"", err, parked, got)
	}
}

// TestDetachedSocketLeavesTheSet: a socket detached while it stays open is
// no longer reported by the kernel to the set: data on it leaves the set
// with nothing ready, and wakes nobody.
func TestDetachedSocketLeavesTheSet(t *testing.T) {
	p, pr, w := oneWaiter(t)
	w.Detach()
	pr.w.Write([]byte("x"))
	for !readable(pr.fd) {
		runtime.Gosched()
	}
	var evs [1]unix.EpollEvent
	if n, err := unix.EpollWait(p.epfd, evs[:], 0); err != nil || n != 0 {
		t.Fatalf("epoll_wait on the set after Detach = %d, %v; want 0 ready", n, err)
	}
	if n := waiters(p); n != 0 {
		t.Fatalf("%d waiters left after Detach", n)
	}
}

// TestLooksOnlyWhenDue: a deadline an hour away plans the poller's look for
// then, not every Sweep; a nearer one set later brings the look forward
// and its waiter is woken, while the far one's is not.
func TestLooksOnlyWhenDue(t *testing.T) {
	p := newPoller(t)
	ps := newPairs(t, 2)
	far, err := p.Add(ps[0].fd)
	if err != nil {
		t.Fatal(err)
	}
	near, err := p.Add(ps[1].fd)
	if err != nil {
		t.Fatal(err)
	}
	farAt := time.Now().Add(time.Hour)
	far.SetDeadline(farAt)
	if got := p.next.Load(); got != farAt.UnixNano() {
		t.Fatalf("planned look at %v, want the only deadline, %v", time.Unix(0, got), farAt)
	}
	farDone := waitAsync(far)
	near.SetDeadline(time.Now().Add(Sweep))
	waitFor(t, waitAsync(near), "a wait past the nearer deadline")
	select {
	case <-farDone:
		t.Fatal("the waiter an hour from its deadline was woken")
	case <-time.After(3 * Sweep):
	}
	// After the look, the next one is planned for the far deadline again.
	deadline := time.Now().Add(5 * time.Second)
	for p.next.Load() != farAt.UnixNano() {
		if time.Now().After(deadline) {
			t.Fatalf("after the look, the next is planned at %v, want %v", time.Unix(0, p.next.Load()), farAt)
		}
		time.Sleep(time.Millisecond)
	}
	far.Wake()
	waitFor(t, farDone, "the far waiter, woken")
}

// TestNilWaiter: a connection without a waiter (it waits in Go's poller)
// may call every method but Wait on its nil Waiter, and it is not live.
func TestNilWaiter(t *testing.T) {
	var w *Waiter
	if w.Live() {
		t.Fatal("a nil waiter is live")
	}
	w.SetDeadline(time.Now())
	w.Wake()
	w.Detach()
	w.Remove()
}
