//go:build race

package fairpoll

const raceEnabled = true
