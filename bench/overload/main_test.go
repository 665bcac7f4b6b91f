package main

import (
	"testing"
	"time"
)

// TestSummarize checks how answers are sorted into the figures: before and
// after the switch, healthy or slow backend, fast and other failures,
// warm-up left out.
func TestSummarize(t *testing.T) {
	o := options{warmup: time.Second, phase: 2 * time.Second}
	ms := time.Millisecond
	res := []result{
		{at: 500 * ms, latency: 99 * ms, status: 200, backend: "healthy"}, // warm-up
		{at: 1100 * ms, latency: 1 * ms, status: 200, backend: "healthy"},
		{at: 1200 * ms, latency: 3 * ms, status: 200, backend: "slowing"},
		{at: 3100 * ms, latency: 2 * ms, status: 200, backend: "healthy"},
		{at: 3200 * ms, latency: 500 * ms, status: 200, backend: "slowing"},
		{at: 3300 * ms, latency: 1 * ms, status: 503},
		{at: 3400 * ms, latency: 900 * ms, status: 504},
		{at: 3500 * ms, latency: 2 * ms, status: 0},
	}
	f := summarize("x", o, res, 3*time.Second, 5)
	tests := []struct {
		name      string
		got, want float64
	}{
		{"healthy p99 before", f.BeforeP99ms, 1},
		{"healthy p99 after", f.AfterP99ms, 2},
		{"ratio", f.P99Ratio, 2},
		{"served before", f.BeforeServed, 1},
		{"served after", f.AfterServed, 1},
		{"slow share", f.SlowShare, 1.0 / 5},
		{"fast failures", f.FastFailShare, 2.0 / 5},
		{"other failures", f.OtherFailShare, 1.0 / 5},
		{"missed", f.MissedShare, 5.0 / 10},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if f.FastFailureCode != "1×0 1×503" {
		t.Errorf("fast failure codes %q", f.FastFailureCode)
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	if p := pct(ds, 99); p != 99 {
		t.Errorf("p99 of 1..100 ms = %v, want 99", p)
	}
	if p := pct(ds, 50); p != 50 {
		t.Errorf("p50 of 1..100 ms = %v, want 50", p)
	}
	if p := pct(nil, 99); p != 0 {
		t.Errorf("p99 of nothing = %v, want 0", p)
	}
}
