package retry

import (
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/config"
)

func TestDecide(t *testing.T) {
	ok := Facts{Retryable: true, Sent: true, Idempotent: true, BodyIntact: true, TriesLeft: 1,
		TimeLeft: time.Second, OthersLeft: true, SameAvailable: true, BudgetOK: true}
	const (
		another = "another backend"
		race    = "a reused connection failed before any response byte"
		unsafe  = "the request may have reached the backend and is not idempotent"
	)
	tests := []struct {
		name  string
		edit  func(f *Facts)
		want  Verdict
		cause string
	}{
		{"idempotent failure retried", func(f *Facts) {}, Retry, another},
		{"not retryable", func(f *Facts) { f.Retryable = false }, Stop, "not a retryable failure"},
		{"no tries left", func(f *Facts) { f.TriesLeft = 0 }, Stop, "no attempts left"},
		{"no time left", func(f *Facts) { f.TimeLeft = 0 }, Stop, "total_timeout spent"},
		{"no other backend", func(f *Facts) { f.OthersLeft = false }, Stop, "every available backend has been tried"},
		{"sent POST", func(f *Facts) { f.Idempotent = false }, Stop, unsafe},
		{"POST not sent (connect failure)", func(f *Facts) { f.Idempotent, f.Sent = false, false }, Retry, another},
		{"POST with idempotency key", func(f *Facts) { f.Idempotent = true }, Retry, another},
		{"streamed body already read", func(f *Facts) { f.BodyIntact = false }, Stop, "the request body cannot be replayed"},
		{"streamed body, connect failure before reading", func(f *Facts) { f.Sent = false; f.BodyIntact = true }, Retry, another},
		{"budget spent", func(f *Facts) { f.BudgetOK = false }, StopBudget, "retry budget exhausted"},
		{"budget spent but unsafe anyway", func(f *Facts) { f.BudgetOK = false; f.Idempotent = false }, Stop, unsafe},

		// The keep-alive race: a reused connection that failed before
		// any response byte.
		{"reused, no response byte: resent on the same backend", func(f *Facts) { f.Reused = true }, Resend, race},
		{"resent whatever attempts says", func(f *Facts) { f.Reused, f.TriesLeft, f.OthersLeft = true, 0, false }, Resend, race},
		{"resent once only", func(f *Facts) { f.Reused, f.Resent, f.OthersLeft = true, true, false }, Stop, "every available backend has been tried"},
		{"reused, a response byte arrived: no resend", func(f *Facts) { f.Reused, f.ResponseBytes, f.TriesLeft = true, true, 0 }, Stop, "no attempts left"},
		{"reused, a response byte arrived, retry allowed", func(f *Facts) { f.Reused, f.ResponseBytes = true, true }, Retry, another},
		{"reused, timed out: the backend is slow, not the connection", func(f *Facts) { f.Reused, f.TimedOut, f.TriesLeft = true, true, 0 }, Stop, "no attempts left"},
		{"reused, sent POST: never again", func(f *Facts) { f.Reused, f.Idempotent = true, false }, Stop, unsafe},
		{"reused, POST nothing written: resent", func(f *Facts) { f.Reused, f.Idempotent, f.Sent, f.TriesLeft = true, false, false, 0 }, Resend, race},
		{"reused, the backend was ejected meanwhile", func(f *Facts) { f.Reused, f.SameAvailable = true, false }, Retry, another},
		{"reused, budget spent", func(f *Facts) { f.Reused, f.BudgetOK = true, false }, StopBudget, "retry budget exhausted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := ok
			tt.edit(&f)
			v, why := Decide(f)
			if v != tt.want || why != tt.cause {
				t.Fatalf("Decide(%+v) = %v %q, want %v %q", f, v, why, tt.want, tt.cause)
			}
		})
	}
}

func TestPolicy(t *testing.T) {
	p := NewPolicy(config.Retry{Attempts: 2, OnStatus: []int{502, 503}, Methods: []string{"GET", "PUT"}})
	if !p.RetryStatus(503) || p.RetryStatus(500) || p.RetryStatus(700) {
		t.Error("RetryStatus is wrong")
	}
	if !p.Idempotent([]byte("GET"), false) || p.Idempotent([]byte("POST"), false) || !p.Idempotent([]byte("POST"), true) {
		t.Error("Idempotent is wrong")
	}
}

func TestBackoff(t *testing.T) {
	max := func(n int64) int64 { return n - 1 }
	if got := Backoff(50*time.Millisecond, 1, time.Second, max); got != 50*time.Millisecond-1 {
		t.Errorf("first backoff ceiling %v", got)
	}
	if got := Backoff(50*time.Millisecond, 3, time.Second, max); got != 200*time.Millisecond-1 {
		t.Errorf("third backoff ceiling %v", got)
	}
	if got := Backoff(50*time.Millisecond, 3, 10*time.Millisecond, max); got != 10*time.Millisecond {
		t.Errorf("backoff not cut by the deadline: %v", got)
	}
	if got := Backoff(0, 3, time.Second, max); got != 0 {
		t.Errorf("zero base gives %v", got)
	}
}

type fakeClock struct{ t time.Time }

func TestBudget(t *testing.T) {
	c := &fakeClock{t: time.Unix(1000, 0)}
	b := NewBudget(20, 3)
	// 100 requests a second for 10 s, each asking for a retry.
	allowed := 0
	for s := 0; s < 10; s++ {
		for i := 0; i < 100; i++ {
			b.Request(c.t)
			if b.Allow(c.t) {
				b.Retry(c.t)
				allowed++
			}
		}
		c.t = c.t.Add(time.Second)
	}
	// 20% of 1000 requests, give or take the floor of 3 a second.
	if allowed < 190 || allowed > 230 {
		t.Fatalf("%d retries allowed for 1000 requests at 20%%", allowed)
	}
	// The floor: with no requests at all, 3 retries a second.
	c.t = c.t.Add(time.Minute)
	n := 0
	for i := 0; i < 10; i++ {
		if b.Allow(c.t) {
			b.Retry(c.t)
			n++
		}
	}
	if n != 3 {
		t.Fatalf("%d retries allowed by the floor, want 3", n)
	}
	// No floor, no requests: nothing.
	z := NewBudget(20, 0)
	if z.Allow(c.t) {
		t.Fatal("a budget with no floor and no requests allowed a retry")
	}
}

func BenchmarkBudgetRequest(b *testing.B) {
	bg := NewBudget(20, 3)
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bg.Request(now)
		}
	})
}
