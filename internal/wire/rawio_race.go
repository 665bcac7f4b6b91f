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

func raceReadDone(p []byte, n int, err error) {
	if n > 0 {
		runtime.RaceWriteRange(unsafe.Pointer(&p[0]), n)
	}
	if err == nil {
		runtime.RaceAcquire(unsafe.Pointer(&ioSync))
	}
}

func raceWriteBegin() { runtime.RaceReleaseMerge(unsafe.Pointer(&ioSync)) }
