package wire

import (
	"testing"
	"time"
)

// TestMoveDeadline: a deadline moves when unset, when later than wanted (a
// shorter limit must not be loosened by a longer one set before), or when
// more than an eighth of the limit early; otherwise it is kept.
func TestMoveDeadline(t *testing.T) {
	now := time.Unix(1000, 0)
	d := 8 * time.Second
	want := now.Add(d)
	for _, tt := range []struct {
		name string
		cur  time.Time
		move bool
	}{
		{"unset", time.Time{}, true},
		{"later than wanted", now.Add(15 * time.Second), true},
		{"a little early", want.Add(-500 * time.Millisecond), false},
		{"the same", want, false},
		{"an eighth early", want.Add(-time.Second), true},
		{"passed", now.Add(-time.Second), true},
	} {
		if got := MoveDeadline(tt.cur, want, d); got != tt.move {
			t.Errorf("%s: MoveDeadline = %v, want %v", tt.name, got, tt.move)
		}
	}
}
