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
		floor, live uint64
		want        int
	}{
		{16 * mib, 2 * mib, 700},      // goal 2 MiB × 8 = 16 MiB
		{16 * mib, 3 * mib, 430},      // 433 rounded down
		{16 * mib, 8 * mib, 100},      // twice the live heap reaches the floor
		{16 * mib, 100 * mib, 100},    // far above it: Go's default
		{16 * mib, 7 * mib, 120},      // 128 rounded down
		{16 * mib, 100 * 1024, 16000}, // 16,284 rounded down
		{16 * mib, 0, 1600000000},     // nothing live yet
		{16 * mib, 16*mib/2 - 1, 100}, // just under half the floor: 100.00001
		{64 * mib, 2 * mib, 3100},     // goal 64 MiB
	} {
		if got := Percent(c.floor, c.live); got != c.want {
			t.Errorf("Percent(%d, %d) = %d, want %d", c.floor, c.live, got, c.want)
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
