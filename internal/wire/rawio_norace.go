//go:build !race

package wire

// Without the race detector there is nothing to tell it (rawio_race.go).

func raceReadDone([]byte) {}

func raceWriteBegin() {}
