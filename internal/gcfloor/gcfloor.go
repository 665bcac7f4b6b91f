// Package gcfloor keeps the garbage collector's heap goal from falling
// below a floor. Go's default goal is the live heap plus as much again as
// the collector scans (the live heap, goroutine stacks and globals), and
// at least 4 MiB; a proxy's live heap is a few MiB while it allocates per
// request, so at tens of thousands of requests a second the default
// collects dozens of times a second, each cycle costing the same however
// little it frees. With a floor of a few tens of MiB the cycles become
// rare, for that much more memory at most; where Go's own goal is above
// the floor, it stands.
//
// The goal is kept by setting GOGC's percentage after each collection,
// from what that collection left: the percentage whose goal is the floor,
// never below Go's default of 100. An operator's own GOGC or GOMEMLIMIT
// turns it off.
package gcfloor

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// The collector's figures after its last cycle: the heap it found live,
// and the goroutine stacks and globals it scanned.
var metricNames = [...]string{"/gc/heap/live:bytes", "/gc/scan/stack:bytes", "/gc/scan/globals:bytes"}

// heapMinimum is Go's least heap goal at GOGC=100; it scales with GOGC.
const heapMinimum = 4 << 20

// Floor keeps the heap goal at least bytes from the next collection on,
// and returns a function that stops keeping it (Go's default comes back),
// and whether it keeps it: not when the environment sets GOGC or
// GOMEMLIMIT (the operator's tuning wins) or bytes is 0; stop is then a
// no-op.
func Floor(bytes uint64) (stop func(), on bool) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" || bytes == 0 {
		return func() {}, false
	}
	k := &keeper{floor: bytes, percent: 100}
	for i, name := range metricNames {
		k.samples[i].Name = name
	}
	k.arm()
	return k.stop, true
}

// keeper adjusts GOGC after every collection: a sentinel object with a
// cleanup, which the collector runs once it found the sentinel dead,
// adjusts and makes the next sentinel.
type keeper struct {
	mu      sync.Mutex
	floor   uint64
	percent int
	stopped bool
	samples [len(metricNames)]metrics.Sample
}

// sentinel is allocated for its death only; it must not be tiny, or the
// allocator may pack it with other objects and delay its cleanup.
type sentinel struct{ _ [16]uint64 }

func (k *keeper) arm() {
	s := new(sentinel)
	runtime.AddCleanup(s, (*keeper).adjust, k)
}

// adjust sets GOGC from what the last collection left, and arms the next
// look.
func (k *keeper) adjust() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return
	}
	metrics.Read(k.samples[:])
	var v [len(metricNames)]uint64
	for i, s := range k.samples {
		if s.Value.Kind() != metrics.KindUint64 {
			k.arm() // not this runtime's figures: look again next time
			return
		}
		v[i] = s.Value.Uint64()
	}
	if p := Percent(k.floor, v[0], v[1]+v[2]); p != k.percent {
		k.percent = p
		debug.SetGCPercent(p)
	}
	k.arm()
}

func (k *keeper) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.stopped {
		k.stopped = true
		k.percent = 100
		debug.SetGCPercent(100)
	}
}

// Percent returns the GOGC percentage that puts the heap goal at floor
// after a collection that left live bytes of heap and scanned roots bytes
// of stacks and globals, never below Go's default of 100. Go's goal is
// live + (live + roots) × GOGC/100, and at least heapMinimum × GOGC/100:
// the percentage is kept where that minimum stays under the floor too. It
// is rounded down to two significant digits, so that a live heap that
// wobbles does not change it after every collection.
func Percent(floor, live, roots uint64) int {
	scan := max(live+roots, 1)
	if live+scan >= floor {
		return 100
	}
	p := min((floor-live)*100/scan, floor*100/heapMinimum)
	if p <= 100 {
		return 100
	}
	step := uint64(1)
	for step*10 <= p/10 {
		step *= 10
	}
	return int(p / step * step)
}
