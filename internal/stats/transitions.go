package stats

import (
	"sync"
	"time"
)

// Transition is one change of a backend's health state.
type Transition struct {
	Time     time.Time
	Route    string
	Backend  string
	From, To string
	Reason   string
}

// Transitions keeps the last health transitions of an instance, for the
// dashboard. Its zero value is ready; it is safe for concurrent use.
type Transitions struct {
	mu   sync.Mutex
	ring [TransitionsKept]Transition
	next int
	n    int
}

// TransitionsKept is how many transitions Transitions keeps.
const TransitionsKept = 20

// Add records t, forgetting the oldest one kept when there are
// TransitionsKept already.
func (l *Transitions) Add(t Transition) {
	l.mu.Lock()
	l.ring[l.next] = t
	l.next = (l.next + 1) % TransitionsKept
	l.n = min(l.n+1, TransitionsKept)
	l.mu.Unlock()
}

// Recent returns the transitions kept, newest first.
func (l *Transitions) Recent() []Transition {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Transition, 0, l.n)
	for k := 1; k <= l.n; k++ {
		out = append(out, l.ring[(l.next-k+TransitionsKept)%TransitionsKept])
	}
	return out
}
