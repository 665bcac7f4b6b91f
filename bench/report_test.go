package main

import (
	"encoding/xml"
	"io"
	"math"
	"strings"
	"testing"
	"time"
)

// fakeReport returns a report with three repetitions of two proxies in two
// scenarios.
func fakeReport() *report {
	r := newReport(defaultOptions(), time.Date(2026, 11, 28, 20, 0, 0, 0, time.UTC), "")
	r.Proxies = []string{"sluice", "nginx"}
	r.Scenarios = []scenarioInfo{{Name: "healthy_get"}, {Name: "retry_get"}}
	for _, sc := range r.Scenarios {
		for rep := 1; rep <= 3; rep++ {
			for _, p := range r.Proxies {
				s := sample{Scenario: sc.Name, Proxy: p, Rep: rep}
				s.RPS = float64(1000 * rep) // medians: 2000
				s.P99ms = float64(rep)      // 2
				s.CPUPerRequestUS = 10 * float64(rep)
				s.PeakRSSKiB = 1024 * int64(rep)
				s.Requests = 100
				if p == "sluice" {
					s.RPS *= 2
					s.CPUPerRequestUS /= 2
					if sc.Name == "retry_get" {
						s.Non2xx3xx = 5
					}
				}
				r.Samples = append(r.Samples, s)
			}
		}
	}
	return r
}

func TestSummarize(t *testing.T) {
	r := fakeReport()
	r.summarize()
	if len(r.Results) != 4 {
		t.Fatalf("got %d results, want 4", len(r.Results))
	}
	s := r.Results[0]
	if s.Proxy != "sluice" || s.Scenario != "healthy_get" {
		t.Fatalf("first result is %s %s", s.Proxy, s.Scenario)
	}
	if s.RPS != 4000 || s.P99ms != 2 || s.PeakRSSMiB != 2 || s.Requests != 300 || s.Reps != 3 {
		t.Errorf("medians: %+v", s)
	}
	for k, want := range map[string]float64{"rps": 2, "p99": 1, "cpu_per_request": 0.5, "peak_rss": 1} {
		if got := s.VsNginx[k]; math.Abs(got-want) > 1e-9 {
			t.Errorf("VsNginx[%s] = %v, want %v", k, got, want)
		}
	}
	if r.Results[1].VsNginx != nil {
		t.Errorf("nginx has ratios to itself: %v", r.Results[1].VsNginx)
	}
	if r.Results[2].Errors != 15 {
		t.Errorf("retry_get sluice errors = %d, want 15 (summed)", r.Results[2].Errors)
	}
}

func TestViews(t *testing.T) {
	r := fakeReport()
	r.summarize()

	md := r.markdown()
	for _, want := range []string{"| healthy_get | sluice | 4,000 (2.00×) |", "| retry_get | nginx | 2,000 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "fixed rate") {
		t.Errorf("a closed-loop run's markdown speaks of a fixed rate:\n%s", md)
	}
	r.H2Rate = 15003 // not a multiple of h2load's connections: the rate run is 15,000
	if want := "h2_get ran at a fixed rate of 15000 requests a second (h2load --rps 1875 on each of its 8 connections)"; !strings.Contains(r.markdown(), want) {
		t.Errorf("a fixed-rate run's markdown lacks %q", want)
	}
	r.H2Rate = 0
	r.H1Rate = 20000 // 312 a connection: 19,968 in all
	if want := "healthy_get ran at a fixed rate of 19968 requests a second (h2load --h1 --rps 312 on each of its 64 connections)"; !strings.Contains(r.markdown(), want) {
		t.Errorf("an HTTP/1.1 fixed-rate run's markdown lacks %q", want)
	}
	r.H1Rate = 0

	svg := chart(r)
	dec := xml.NewDecoder(strings.NewReader(svg))
	rects := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("chart is not well-formed XML: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			rects++
		}
	}
	// background + 2 legend swatches + 3 panels × 2 scenarios × 2 proxies
	if rects != 1+2+12 {
		t.Errorf("chart has %d rects, want 15", rects)
	}
	if !strings.Contains(svg, "4k*") {
		t.Errorf("chart does not mark the run with errors")
	}
}

// TestCounted: the share of the closed loop's cycle wrk's latency covers is
// its mean latency over connections / req/s, and unknown (0) without a
// mean; results.md shows the median share, or n/a.
func TestCounted(t *testing.T) {
	for _, tt := range []struct {
		mean, rps float64
		conns     int
		want      float64
	}{
		{2, 32000, 64, 1},      // 64 connections, each a request every 2 ms, all of it timed
		{1.5, 32000, 64, 0.75}, // a quarter of each cycle outside wrk's timing
		{0, 32000, 64, 0},      // h2load: no mean
		{2, 0, 64, 0},          // no requests
		{2, 32000, 0, 0},       // no connections
	} {
		s := sample{wrkResult: wrkResult{MeanMs: tt.mean, RPS: tt.rps}, Connections: tt.conns}
		if got := s.counted(); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("counted(mean %v ms, %v req/s, %d conns) = %v, want %v", tt.mean, tt.rps, tt.conns, got, tt.want)
		}
	}
	r := fakeReport()
	for i := range r.Samples {
		switch s := &r.Samples[i]; {
		case s.Proxy == "sluice" && s.Scenario == "healthy_get":
			// 64 connections at 2,000 req/s: a 32 ms cycle, of which the
			// mean covers 80%, 90% and 100% (median 90%).
			s.Connections, s.MeanMs = 64, 32*(0.7+0.1*float64(s.Rep))
			s.RPS = 2000
		case s.Proxy == "sluice":
			// wrk's correction raised its mean over the cycle: 150%.
			s.Connections, s.MeanMs, s.RPS = 64, 48, 2000
		}
	}
	r.summarize()
	md := r.markdown()
	for _, want := range []string{"| wrk counts |", "| healthy_get | sluice |", "| 90% |", "| n/a |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "| 150% |") {
		t.Errorf("markdown shows a share over 100%%, which wrk's correction made:\n%s", md)
	}
}

// TestPairedRatios: each repetition's figure is divided by nginx's in the
// same repetition, and the median of those ratios is reported. Here the
// machine slows down threefold over the repetitions, sluice and nginx are
// equal in each, and sluice has a fourth, slower repetition that nginx
// missed: the ratio of medians says 1.25×, the pairs say 1×.
func TestPairedRatios(t *testing.T) {
	r := newReport(defaultOptions(), time.Date(2026, 11, 28, 20, 0, 0, 0, time.UTC), "")
	r.Proxies = []string{"sluice", "nginx"}
	r.Scenarios = []scenarioInfo{{Name: "upload_post"}}
	cpu := map[string][]float64{
		"sluice": {10, 20, 30},
		"nginx":  {10, 20, 30},
	}
	for rep := 1; rep <= 3; rep++ {
		for _, p := range r.Proxies {
			s := sample{Scenario: "upload_post", Proxy: p, Rep: rep}
			s.CPUPerRequestUS = cpu[p][rep-1]
			s.RPS = 1e6 / s.CPUPerRequestUS
			s.P50ms, s.P99ms, s.PeakRSSKiB, s.Requests = 1, 1, 1024, 100
			r.Samples = append(r.Samples, s)
		}
	}
	// A fourth repetition that nginx missed is left out of the pairs.
	extra := sample{Scenario: "upload_post", Proxy: "sluice", Rep: 4, CPUPerRequestUS: 90, PeakRSSKiB: 1024}
	extra.RPS, extra.P99ms, extra.Requests = 1, 9, 100
	r.Samples = append(r.Samples, extra)
	r.summarize()
	s := r.Results[0]
	if s.Proxy != "sluice" {
		t.Fatalf("first result is %s", s.Proxy)
	}
	if got := s.VsNginx["cpu_per_request"]; math.Abs(got-1.25) > 1e-9 {
		t.Errorf("ratio of medians = %v, want 1.25 (medians 25 and 20)", got)
	}
	for k, want := range map[string]float64{"cpu_per_request": 1, "rps": 1, "p50": 1, "p99": 1, "peak_rss": 1} {
		if got := s.VsNginxPaired[k]; math.Abs(got-want) > 1e-9 {
			t.Errorf("VsNginxPaired[%s] = %v, want %v", k, got, want)
		}
	}
	if r.Results[1].VsNginxPaired != nil {
		t.Errorf("nginx has paired ratios to itself: %v", r.Results[1].VsNginxPaired)
	}
	if md := r.markdown(); !strings.Contains(md, "| upload_post | sluice | 1.00× | 1.00× | 1.00× | 1.00× | 1.00× |") || strings.Contains(md, "against HAProxy") {
		t.Errorf("markdown lacks the paired row, or compares with a HAProxy that did not run:\n%s", md)
	}
}

// TestPairedAgainstHAProxy: with HAProxy in the run, sluice's paired
// ratios to it are given too.
func TestPairedAgainstHAProxy(t *testing.T) {
	r := fakeReport()
	addRetryRuns(r, "haproxy", 4000, 5) // sluice's req/s is 2000×rep: half
	r.summarize()
	md := r.markdown()
	if !strings.Contains(md, "| retry_get | 0.50× | 1.00× | 1.00× |") || strings.Contains(md, "| healthy_get | 0.") {
		t.Errorf("markdown lacks sluice's paired ratios to HAProxy in retry_get only:\n%s", md)
	}
}

// addRetryRuns adds three repetitions of retry_get by proxy to r, with
// req/s rps×rep and CPU per request cpu×rep µs.
func addRetryRuns(r *report, proxy string, rps, cpu float64) {
	r.Proxies = append(r.Proxies, proxy)
	for rep := 1; rep <= 3; rep++ {
		s := sample{Scenario: "retry_get", Proxy: proxy, Rep: rep}
		s.RPS = rps * float64(rep)
		s.P99ms, s.CPUPerRequestUS, s.PeakRSSKiB, s.Requests = float64(rep), cpu*float64(rep), 1024, 100
		r.Samples = append(r.Samples, s)
	}
}

// TestPairedAgainstGoStd: where go-std ran, sluice's paired ratios to it
// get a table of their own, and nowhere else.
func TestPairedAgainstGoStd(t *testing.T) {
	r := fakeReport()
	addRetryRuns(r, "go-std", 1000, 4) // sluice's req/s is 2000×rep: twice
	r.summarize()
	md := r.markdown()
	if !strings.Contains(md, "sluice against go-std") || !strings.Contains(md, "| retry_get | 2.00× | 1.25× |") || strings.Contains(md, "| healthy_get | 2.") {
		t.Errorf("markdown lacks sluice's paired ratios to go-std in retry_get only:\n%s", md)
	}
}

// balancerReport returns a report of slow_backend: three repetitions of
// sluice (round robin), sluice-lr, sluice-ewma, nginx and HAProxy, with the
// given req/s, p99 (ms) and slow share per proxy, the same in every
// repetition; sluice-log is among the proxies but did not run.
func balancerReport(figures map[string][3]float64) *report {
	r := newReport(defaultOptions(), time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC), "")
	r.Proxies = []string{"sluice", "sluice-log", "sluice-lr", "sluice-ewma", "nginx", "haproxy"}
	r.Scenarios = []scenarioInfo{{Name: "slow_backend", Slow: "slow"}}
	for rep := 1; rep <= 3; rep++ {
		for _, p := range r.Proxies {
			f, ok := figures[p]
			if !ok {
				continue
			}
			s := sample{Scenario: "slow_backend", Proxy: p, Rep: rep, SlowShare: f[2]}
			s.RPS, s.P99ms, s.CPUPerRequestUS, s.PeakRSSKiB, s.Requests = f[0], f[1], 30, 1024, 100
			r.Samples = append(r.Samples, s)
		}
	}
	r.summarize()
	return r
}

// TestBalancerSection: the balancer scenarios' table gives the slow share
// and the paired ratios to nginx, HAProxy and sluice round robin, and
// slow_backend's targets are checked on them.
func TestBalancerSection(t *testing.T) {
	r := balancerReport(map[string][3]float64{
		"sluice":      {8000, 24, 1.0 / 3},
		"sluice-lr":   {20000, 40, 0.04},
		"sluice-ewma": {22000, 10, 0.005},
		"nginx":       {20000, 20, 0.05},
		"haproxy":     {25000, 30, 0.05},
	})
	md := r.markdown()
	for _, want := range []string{
		"| slow_backend | sluice-ewma (ewma) | 22,000 | 10.0 ms | 0.5% | 1.10× | 0.88× | 0.50× | 0.33× | 0.42× |",
		"| slow_backend | sluice (round_robin) | 8,000 | 24.0 ms | 33.3% | 0.40× | 0.32× | 1.20× | 0.80× |  |",
		"| slow_backend | nginx (least_conn) | 20,000 | 20.0 ms | 5.0% |  | 0.80× |  | 0.67× | 0.83× |",
		"- sluice-ewma p99 below nginx's: 0.50×, met",
		"- sluice-ewma req/s above HAProxy's: 0.88×, not met",
		"- sluice-ewma p99 at most half of sluice round_robin's: 0.42×, met",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if len(r.Targets) != 5 {
		t.Fatalf("got %d targets, want 5: %+v", len(r.Targets), r.Targets)
	}
	met := 0
	for _, tg := range r.Targets {
		if tg.Met {
			met++
		}
	}
	if met != 4 {
		t.Errorf("%d targets met, want 4 (all but req/s above HAProxy's): %+v", met, r.Targets)
	}

	// The chart names only the proxies that ran: not sluice-log.
	svg := chart(r)
	if strings.Contains(svg, "sluice-log") || !strings.Contains(svg, "sluice vs sluice-lr vs sluice-ewma vs nginx vs haproxy") {
		t.Errorf("chart title or legend names a proxy that did not run, or lacks one that did:\n%s", svg[:min(len(svg), 800)])
	}
}

// TestNoBalancerSection: without a balancer scenario there is no balancer
// table and no targets.
func TestNoBalancerSection(t *testing.T) {
	r := fakeReport()
	r.summarize()
	if md := r.markdown(); strings.Contains(md, "Balancer scenarios") || strings.Contains(md, "Targets") || r.Targets != nil {
		t.Errorf("a report without balancer scenarios has a balancer section or targets:\n%s", md)
	}
}
