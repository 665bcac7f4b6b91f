package backend

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestCircuitBreakerLimit(t *testing.T) {
	b := New("http://a", "a:80", "http://a:80", "", 1, 0)
	for range 5 {
		if ok, _ := b.Admit(); !ok || !b.Available() || b.Full() {
			t.Fatal("a backend without a limit refused a request")
		}
	}
	b.SetMaxInFlight(6)
	if ok, _ := b.Admit(); !ok {
		t.Fatal("refused the 6th of 6")
	}
	if b.Available() || !b.Full() {
		t.Error("Available or not Full at the limit")
	}
	if !b.AvailableAgain() {
		t.Error("AvailableAgain false at the limit: the holder's request could go again")
	}
	if ok, _ := b.Admit(); ok {
		t.Fatal("admitted a 7th of 6")
	}
	if n := b.InFlight(); n != 6 {
		t.Errorf("in flight %d after a refused Admit, want 6: a refusal takes nothing", n)
	}
	b.Release()
	if !b.Available() || b.Full() {
		t.Error("not Available below the limit")
	}
	b.SetMaxInFlight(0)
	if ok, _ := b.Admit(); !ok {
		t.Error("refused with the limit lifted")
	}
}

// TestCircuitBreakerTrial checks that an ejected backend at its limit
// gives its trial slot back when it cannot take the trial request.
func TestCircuitBreakerTrial(t *testing.T) {
	b := New("http://a", "a:80", "http://a:80", "", 1, 0)
	b.SetMaxInFlight(1)
	b.Admit() // a request from before the ejection, still running
	b.SetState(Ejected, time.Now(), "test")
	b.Eject(time.Now(), -time.Second) // its ejection time has passed
	if ok, _ := b.Admit(); ok {
		t.Fatal("admitted a trial past the limit")
	}
	b.Release()
	if ok, trial := b.Admit(); !ok || !trial {
		t.Fatalf("Admit = %v, %v once there was room; want the trial", ok, trial)
	}
}

// TestCircuitBreakerConcurrent races many Admits: the limit is never
// passed (run with -race).
func TestCircuitBreakerConcurrent(t *testing.T) {
	b := New("http://a", "a:80", "http://a:80", "", 1, 0)
	var load atomic.Int64
	b.ShareLoad(&load)
	b.SetMaxInFlight(3)
	var peak atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2000 {
				if ok, _ := b.Admit(); ok {
					n := b.InFlight()
					for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
					}
					b.Release()
				}
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > 3 || p < 1 {
		t.Errorf("peak in flight %d, want 1 to 3", p)
	}
	if b.InFlight() != 0 || load.Load() != 0 {
		t.Errorf("in flight %d, route load %d after every Release; want 0", b.InFlight(), load.Load())
	}
}
