package gcfloor

import (
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		floor, live, roots uint64
		want               int
	}{
		{16 * mib, 2 * mib, 1 * mib, 400},      // (16-2)/3 = 466%, but the 4 MiB minimum × 4 is the floor already
		{64 * mib, 2 * mib, 1 * mib, 1600},     // (64-2)/3 = 2,066%, but the minimum × 16 is the floor already
		{64 * mib, 8 * mib, 8 * mib, 350},      // (64-8)/16 = 350%
		{64 * mib, 10 * mib, 9 * mib, 280},     // 284% rounded down
		{16 * mib, 6 * mib, 2 * mib, 120},      // (16-6)/8 = 125% rounded down
		{16 * mib, 8 * mib, 0, 100},            // twice the live heap reaches the floor
		{16 * mib, 5 * mib, 6 * mib, 100},      // Go's goal, 5 + 11, reaches it
		{16 * mib, 100 * mib, 1 * mib, 100},    // far above it: Go's default
		{16 * mib, 4 * mib, 4 * mib, 150},      // (16-4)/8: the scan counts
		{16 * mib, 0, 0, 400},                  // nothing live yet: the minimum
		{2 * mib, 100 * 1024, 100 * 1024, 100}, // a floor under Go's minimum
	} {
		if got := Percent(c.floor, c.live, c.roots); got != c.want {
			t.Errorf("Percent(%d, %d, %d) = %d, want %d", c.floor, c.live, c.roots, got, c.want)
		}
	}
}

// gogc returns the GOGC percentage in force.
func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// awaitGOGC collects until GOGC satisfies ok, or fails after a while: the
// keeper adjusts from a cleanup, which runs after a collection, not in it.
func awaitGOGC(t *testing.T, ok func(uint64) bool, what string) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !ok(gogc()); {
		if time.Now().After(end) {
			t.Fatalf("GOGC is %d after collections, want %s", gogc(), what)
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
}

// TestFloorRaisesGOGC: with a floor far above this test's live heap, the
// percentage rises after a collection, to put the goal at the floor; stop
// brings Go's default back.
func TestFloorRaisesGOGC(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	if gogc() != 100 {
		t.Fatalf("GOGC is %d before the test, want 100", gogc())
	}
	stop, on := Floor(1 << 30)
	if !on {
		t.Fatal("Floor is off without GOGC or GOMEMLIMIT")
	}
	awaitGOGC(t, func(p uint64) bool { return p > 1000 }, "far above 100 for a 1 GiB floor")
	stop()
	if p := gogc(); p != 100 {
		t.Fatalf("GOGC is %d after stop, want 100", p)
	}
	runtime.GC()
	runtime.GC()
	if p := gogc(); p != 100 {
		t.Fatalf("GOGC is %d after stop and collections, want 100", p)
	}
}

// TestOperatorsGOGCWins: GOGC or GOMEMLIMIT in the environment turns the
// floor off.
func TestOperatorsGOGCWins(t *testing.T) {
	for _, env := range []string{"GOGC", "GOMEMLIMIT"} {
		t.Run(env, func(t *testing.T) {
			t.Setenv("GOGC", "")
			t.Setenv("GOMEMLIMIT", "")
			t.Setenv(env, map[string]string{"GOGC": "100", "GOMEMLIMIT": "1GiB"}[env])
			stop, on := Floor(1 << 30)
			defer stop()
			if on {
				t.Fatalf("Floor is on with %s set", env)
			}
			for i := 0; i < 3; i++ {
				runtime.GC()
			}
			if p := gogc(); p != 100 {
				t.Fatalf("GOGC is %d with %s set, want 100", p, env)
			}
		})
	}
}
