package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the backend process, as the bench
// binary does: the harness re-executes os.Executable() with backendsEnv set.
func TestMain(m *testing.M) {
	if maybeServeBackends() || maybeServeGoStd() {
		return
	}
	os.Exit(m.Run())
}

// TestSmoke runs the harness end to end for one second of healthy_get
// against sluice alone. It asserts no speed, only that requests were served
// without errors and that the result files were written.
func TestSmoke(t *testing.T) {
	if _, err := exec.LookPath("wrk"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("wrk is not installed, and CI=true requires the benchmark smoke test to run (apt-get install wrk): %v", err)
		}
		t.Skipf("wrk is not installed, skipping the benchmark smoke test (apt-get install wrk; with CI=true this fails): %v", err)
	}

	o := defaultOptions()
	o.scenarios = "healthy_get"
	o.proxies = "sluice"
	o.duration = time.Second
	o.warmup = 0
	o.reps = 1
	o.connections = 8
	o.threads = 1
	o.out = t.TempDir()
	o.log = testWriter{t}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := run(ctx, o)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if len(rep.Failures) > 0 {
		t.Fatalf("failed runs:\n%s", strings.Join(rep.Failures, "\n"))
	}
	if len(rep.Results) != 1 {
		t.Fatalf("got %d results, want 1 (sluice healthy_get)", len(rep.Results))
	}
	res := rep.Results[0]
	if res.Proxy != "sluice" || res.Scenario != "healthy_get" {
		t.Errorf("result is %s %s, want sluice healthy_get", res.Proxy, res.Scenario)
	}
	if res.Requests == 0 {
		t.Errorf("no requests were served")
	}
	if res.Errors != 0 {
		t.Errorf("%d errors (non-2xx/3xx or socket errors); see %s", res.Errors, rep.Samples[0].Raw)
	}
	if res.CPUPerRequestUS <= 0 || res.PeakRSSMiB <= 0 {
		t.Errorf("CPU per request %.2f µs and peak RSS %.1f MiB should both be positive", res.CPUPerRequestUS, res.PeakRSSMiB)
	}
	for _, name := range []string{"results.json", "results.md", "chart.svg", rep.Samples[0].Raw} {
		fi, err := os.Stat(filepath.Join(o.out, name))
		if err != nil {
			t.Errorf("%s was not written: %v", name, err)
		} else if fi.Size() == 0 {
			t.Errorf("%s is empty", name)
		}
	}
}

// testWriter sends the harness's progress output to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
