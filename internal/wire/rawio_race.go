//go:build race

package wire

import (
	"runtime"
	"unsafe"
)

// Under the race detector the raw calls tell it what the syscall package's
// would: a read writes the bytes it returns, and a write to one socket
// happens before a read that returns without error from another, so that
// a goroutine reading what another wrote through a socket of this process
// is not reported as racing with it.

// ioSync is the one variable every write releases and every read acquires.
var ioSync int64

// raceReadDone follows a read that succeeded and wrote got, the bytes it
// returned.
func raceReadDone(got []byte) {
	if len(got) > 0 {
		runtime.RaceWriteRange(unsafe.Pointer(&got[0]), len(got))
	}
	runtime.RaceAcquire(unsafe.Pointer(&ioSync))
}

func raceWriteBegin() { runtime.RaceReleaseMerge(unsafe.Pointer(&ioSync)) }
