// Package gcfloor keeps the garbage collector's heap goal from falling
// below a floor. Go's default goal is twice the live heap, at least 4 MiB;
// a proxy's live heap is a few MiB while it allocates per request, so at
// tens of thousands of requests a second the default collects dozens of
// times a second, each cycle costing the same however little it frees. With
// a floor of a few tens of MiB the cycles become rare, for that much more
// memory at most; above the floor the goal is Go's own.
//
// The goal is kept by setting GOGC's percentage after each collection from
// the live heap it left: max(100, floor/live - 1). An operator's own GOGC
// or GOMEMLIMIT turns it off.
package gcfloor

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// liveMetric is the heap the last collection found live.
const liveMetric = "/gc/heap/live:bytes"

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
	k.sample[0].Name = liveMetric
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
	sample  [1]metrics.Sample
}

// sentinel is allocated for its death only; it must not be tiny, or the
// allocator may pack it with other objects and delay its cleanup.
type sentinel struct{ _ [16]uint64 }

func (k *keeper) arm() {
	s := new(sentinel)
	runtime.AddCleanup(s, func(k *keeper) { k.adjust() }, k)
}

// adjust sets GOGC from the live heap after a collection, and arms the
// next look.
func (k *keeper) adjust() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return
	}
	metrics.Read(k.sample[:])
	if k.sample[0].Value.Kind() == metrics.KindUint64 {
		if p := Percent(k.floor, k.sample[0].Value.Uint64()); p != k.percent {
			k.percent = p
			debug.SetGCPercent(p)
		}
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

// Percent returns the GOGC percentage that puts the heap goal at floor for
// a live heap of live bytes, and never below Go's default of 100. It is
// rounded down to two significant digits, so that a live heap that wobbles
// does not change it after every collection.
func Percent(floor, live uint64) int {
	if live == 0 {
		live = 1
	}
	if live*2 >= floor {
		return 100
	}
	p := floor*100/live - 100
	// p is at least 100 here.
	step := uint64(1)
	for step*10 <= p/10 {
		step *= 10
	}
	return int(p / step * step)
}
