package accesslog

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// closeRecorder is a writer that remembers what it got and whether it was
// closed, and refuses writes after the close.
type closeRecorder struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	closed chan struct{}
	late   int // writes after the close
}

func newCloseRecorder() *closeRecorder { return &closeRecorder{closed: make(chan struct{})} }

func (r *closeRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.closed:
		r.late++
		return 0, errors.New("closed")
	default:
	}
	return r.buf.Write(p)
}

func (r *closeRecorder) Close() error { close(r.closed); return nil }

func (r *closeRecorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

// TestSwappedLogClosesAfterItsHolders: a request that took the log before a
// reload swapped it writes its line to that log after the swap, and the
// log closes only once that line is written; one nobody holds closes at
// once.
func TestSwappedLogClosesAfterItsHolders(t *testing.T) {
	oldW, newW := newCloseRecorder(), newCloseRecorder()
	var h Holder
	h.Store(New(oldW, oldW, nil))

	held := h.Acquire() // a request in flight
	h.Swap(New(newW, newW, nil))
	select {
	case <-oldW.closed:
		t.Fatal("the old log closed while a request still held it")
	case <-time.After(50 * time.Millisecond): // the behaviour under test: no close meanwhile
	}
	held.Write(entry("in-flight"))
	held.Release()
	select {
	case <-oldW.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the old log did not close after its last holder released it")
	}
	if !strings.Contains(oldW.String(), `"request_id":"in-flight"`) || oldW.late != 0 {
		t.Fatalf("the old log got %q (%d writes after its close), want the in-flight request's line before the close", oldW.String(), oldW.late)
	}

	// A new request gets the new log; a swap with no holder closes the
	// replaced log straight away.
	l := h.Acquire()
	if l == held {
		t.Fatal("Acquire after the swap returned the old log")
	}
	l.Release()
	h.Swap(nil)
	select {
	case <-newW.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("a log nobody held did not close when swapped out")
	}
}

// failing is a writer whose every write fails after n bytes.
type failing struct{ n int }

func (f failing) Write(p []byte) (int, error) { return min(f.n, len(p)), errors.New("disk full") }

// TestLostLinesAreReported: lines a failing writer did not take whole, and
// lines dropped because the writer could not keep up, are told to Lost.
func TestLostLinesAreReported(t *testing.T) {
	var mu sync.Mutex
	lost := map[string]int{}
	report := func(cause string, n int) { mu.Lock(); lost[cause] += n; mu.Unlock() }

	line := appendEntry(nil, entry("x"))
	l := New(failing{n: 0}, nil, report)
	l.Write(entry("x"))
	l.Write(entry("x"))
	l.Write(entry("x"))
	l.Close()
	mu.Lock()
	if lost["write_error"] != 3 {
		t.Errorf("write_error lines = %d, want 3", lost["write_error"])
	}
	mu.Unlock()

	// A write that stops inside a batch loses the line it cut and those
	// after it.
	lost["write_error"] = 0
	l = New(failing{n: len(line) + 10}, nil, report)
	l.mu.Lock()
	for i := 0; i < 3; i++ {
		l.pending = appendEntry(l.pending, entry("x"))
	}
	l.mu.Unlock()
	l.Close()
	mu.Lock()
	if lost["write_error"] != 2 {
		t.Errorf("write_error lines = %d, want 2 (one cut, one not written)", lost["write_error"])
	}
	mu.Unlock()

	release := make(chan struct{})
	l = New(stuck{release}, nil, report)
	for i := 0; i < 2*maxPending/len(line); i++ { // twice the room: one flush may have taken some
		l.Write(entry("x"))
	}
	close(release)
	l.Close()
	mu.Lock()
	defer mu.Unlock()
	if lost["dropped"] == 0 || int64(lost["dropped"]) != l.Dropped() {
		t.Errorf("dropped lines reported %d, counted %d; want the same, above 0", lost["dropped"], l.Dropped())
	}
}
