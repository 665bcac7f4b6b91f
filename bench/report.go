package main

// The report: samples, their medians, ratios to nginx, and the JSON and
// markdown files.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// sample is one measured run of one proxy in one scenario.
type sample struct {
	Scenario string `json:"scenario"`
	Proxy    string `json:"proxy"`
	Rep      int    `json:"rep"`
	wrkResult
	Connections     int     `json:"connections"`        // wrk connections
	WallSeconds     float64 `json:"wall_seconds"`       // wall time between the CPU readings
	CPUSeconds      float64 `json:"cpu_seconds"`        // the proxy's utime+stime over the run
	CPUPerRequestUS float64 `json:"cpu_per_request_us"` // CPUSeconds per request, in microseconds
	Busy            float64 `json:"cpu_busy"`           // CPUSeconds / WallSeconds; near 1 when the proxy was the bottleneck
	PeakRSSKiB      int64   `json:"peak_rss_kib"`       // VmHWM of the largest proxy process
	Processes       int     `json:"processes"`          // proxy processes measured (nginx: master and worker)
	// UpstreamPerRequest is the backends' requests per client request over
	// the run: 1 without retries, about 1.5 in retry_get (every other
	// request first meets the failing backend).
	UpstreamPerRequest float64 `json:"upstream_per_request"`
	// FailedTryShare is the failing backend's requests per client request
	// (retry_get only; 0 elsewhere).
	FailedTryShare float64 `json:"failed_try_share"`
	// SlowShare is, in the balancer scenarios, the slow (or flapping)
	// backend's share of the requests the backends served: a third under
	// round robin; 0 elsewhere.
	SlowShare float64 `json:"slow_share"`
	// LoadSeconds is the CPU time wrk and the backends used over the run.
	LoadSeconds float64 `json:"load_cpu_seconds"`
	// ProxyCPUBusy and LoadCPUBusy are how busy the proxy's CPU and the
	// load generator's CPU were in all (any process, kernel included), from
	// /proc/stat. ProxyCPUOther and LoadCPUOther are the shares of them that
	// processes other than the proxy, wrk and the backends took, plus
	// hypervisor steal: noise. All four are -1 when the CPUs are not pinned.
	ProxyCPUBusy  float64 `json:"proxy_cpu_total_busy"`
	LoadCPUBusy   float64 `json:"load_cpu_total_busy"`
	ProxyCPUOther float64 `json:"proxy_cpu_other"`
	LoadCPUOther  float64 `json:"load_cpu_other"`
	Raw           string  `json:"raw"` // wrk's output, relative to the results folder
}

// counted is the share of the closed loop's cycle that wrk's latency
// covers: its mean latency over the time one connection takes from a
// request to the next (connections / req/s). wrk times a request from its
// write to the read of the answer, so the rest of the cycle is the time
// between reading an answer and sending the next request, which wrk spends
// on other connections or waiting for its CPU. Near 1 when the requests
// queue in the proxy; well under it when they queue at the load CPU (wrk
// and the backends), whose wait wrk partly does not see. 0 when the mean
// latency is unknown (h2load). Over 1 where wrk's correction for
// coordinated omission added latencies to its mean (a slow backend's
// answers): then it says nothing of the cycle.
func (s sample) counted() float64 {
	if s.MeanMs <= 0 || s.RPS <= 0 || s.Connections <= 0 {
		return 0
	}
	return s.MeanMs / 1000 * s.RPS / float64(s.Connections)
}

// result is the summary of one proxy in one scenario: the median of each
// figure over the repetitions, and the figures as ratios to nginx's.
type result struct {
	Scenario        string  `json:"scenario"`
	Proxy           string  `json:"proxy"`
	Reps            int     `json:"reps"`
	RPS             float64 `json:"rps"`
	P50ms           float64 `json:"p50_ms"`
	P90ms           float64 `json:"p90_ms"`
	P99ms           float64 `json:"p99_ms"`
	CPUPerRequestUS float64 `json:"cpu_per_request_us"`
	PeakRSSMiB      float64 `json:"peak_rss_mib"`
	Busy            float64 `json:"cpu_busy"`
	Counted         float64 `json:"counted"` // median of the samples' (see sample.counted)
	// UpstreamPerRequest and SlowShare are the medians of the samples'
	// (see sample).
	UpstreamPerRequest float64 `json:"upstream_per_request"`
	SlowShare          float64 `json:"slow_share"`
	// Errors and Requests are totals over the repetitions, not medians:
	// an error in any run matters.
	Errors   int64 `json:"errors"`
	Requests int64 `json:"requests"`
	// VsNginx holds each figure divided by nginx's in the same scenario
	// (keys rps, p50, p90, p99, cpu_per_request, peak_rss); absent for
	// nginx itself or when nginx did not run.
	VsNginx map[string]float64 `json:"vs_nginx,omitempty"`
	// VsNginxPaired holds, for the same keys, the median over the
	// repetitions of the figure divided by nginx's in the same repetition.
	// Proxies take turns within a repetition, so a pair shares the
	// machine's state of the moment: steadier than the ratio of medians
	// when the machine's speed drifts between repetitions.
	VsNginxPaired map[string]float64 `json:"vs_nginx_paired,omitempty"`
}

// scenarioInfo describes a scenario in the report.
type scenarioInfo struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Path        string `json:"path"`
	// Slow is, in a balancer scenario, the mode of its slow backend:
	// "slow" or "flap" (see backends.go).
	Slow string `json:"slow_backend,omitempty"`
}

// report is everything a benchmark run produced. It is written as
// results.json; results.md and chart.svg are views of it.
type report struct {
	Started     time.Time         `json:"started"`
	Command     string            `json:"command"` // as a user types it (userCommand)
	Duration    string            `json:"duration"`
	Warmup      string            `json:"warmup"`
	Reps        int               `json:"reps"`
	Connections int               `json:"connections"`
	Threads     int               `json:"threads"`
	H2Rate      int               `json:"h2_rate,omitempty"` // h2_get's fixed rate, req/s (-h2-rate); 0 for closed loop
	H1Rate      int               `json:"h1_rate,omitempty"` // healthy_get's fixed rate, req/s (-h1-rate); 0 for wrk's closed loop
	Backends    string            `json:"backends"`          // "go" or "nginx" (-backends)
	Host        hostInfo          `json:"host"`
	Pinned      bool              `json:"pinned"`
	ClientNice  int               `json:"client_nice"` // wrk's and h2load's niceness (-client-nice)
	Versions    map[string]string `json:"versions"`
	Proxies     []string          `json:"proxies"`
	Scenarios   []scenarioInfo    `json:"scenarios"`
	Results     []result          `json:"results"`
	Targets     []target          `json:"targets,omitempty"` // slow_backend's, when it ran
	Samples     []sample          `json:"samples"`
	Warnings    []string          `json:"warnings"`
	Failures    []string          `json:"failures"`
	Dir         string            `json:"-"` // the results folder
}

// hostInfo describes the machine.
type hostInfo struct {
	CPUModel string `json:"cpu_model"`
	CPUs     int    `json:"cpus"`
	Kernel   string `json:"kernel"`
	Go       string `json:"go"`
}

// newReport starts a report for a run with options o.
func newReport(o options, started time.Time, dir string) *report {
	return &report{
		Started:     started,
		Command:     userCommand(os.Args),
		Duration:    o.duration.String(),
		Warmup:      o.warmup.String(),
		Reps:        o.reps,
		Connections: o.connections,
		Threads:     o.threads,
		H2Rate:      o.h2Rate,
		H1Rate:      o.h1Rate,
		Backends:    o.backends,
		Host:        readHostInfo(),
		Versions:    map[string]string{},
		Warnings:    []string{},
		Failures:    []string{},
		Dir:         dir,
	}
}

// readHostInfo reads the CPU model and kernel release from /proc.
func readHostInfo() hostInfo {
	h := hostInfo{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	return h
}

// summarize fills Results from Samples: medians per scenario and proxy, in
// scenario and proxy order, then the ratios to nginx.
func (r *report) summarize() {
	defer func() { r.Targets = r.targets() }()
	r.Results = nil
	for _, sc := range r.Scenarios {
		var nginx *result
		start := len(r.Results)
		for _, p := range r.Proxies {
			var ss []sample
			for _, s := range r.Samples {
				if s.Scenario == sc.Name && s.Proxy == p {
					ss = append(ss, s)
				}
			}
			if len(ss) == 0 {
				continue
			}
			res := result{Scenario: sc.Name, Proxy: p, Reps: len(ss)}
			res.RPS = median(ss, func(s sample) float64 { return s.RPS })
			res.P50ms = median(ss, func(s sample) float64 { return s.P50ms })
			res.P90ms = median(ss, func(s sample) float64 { return s.P90ms })
			res.P99ms = median(ss, func(s sample) float64 { return s.P99ms })
			res.CPUPerRequestUS = median(ss, func(s sample) float64 { return s.CPUPerRequestUS })
			res.PeakRSSMiB = median(ss, func(s sample) float64 { return float64(s.PeakRSSKiB) / 1024 })
			res.Busy = median(ss, func(s sample) float64 { return s.Busy })
			res.Counted = median(ss, sample.counted)
			res.UpstreamPerRequest = median(ss, func(s sample) float64 { return s.UpstreamPerRequest })
			res.SlowShare = median(ss, func(s sample) float64 { return s.SlowShare })
			for _, s := range ss {
				res.Errors += s.Errors()
				res.Requests += s.Requests
			}
			r.Results = append(r.Results, res)
		}
		for i := start; i < len(r.Results); i++ {
			if r.Results[i].Proxy == "nginx" {
				nginx = &r.Results[i]
			}
		}
		if nginx == nil {
			continue
		}
		for i := start; i < len(r.Results); i++ {
			res := &r.Results[i]
			if res.Proxy == "nginx" {
				continue
			}
			res.VsNginxPaired = r.pairedRatios(sc.Name, res.Proxy, "nginx")
			res.VsNginx = map[string]float64{}
			for k, pair := range map[string][2]float64{
				"rps":             {res.RPS, nginx.RPS},
				"p50":             {res.P50ms, nginx.P50ms},
				"p90":             {res.P90ms, nginx.P90ms},
				"p99":             {res.P99ms, nginx.P99ms},
				"cpu_per_request": {res.CPUPerRequestUS, nginx.CPUPerRequestUS},
				"peak_rss":        {res.PeakRSSMiB, nginx.PeakRSSMiB},
			} {
				if pair[1] > 0 {
					res.VsNginx[k] = pair[0] / pair[1]
				}
			}
		}
	}
}

// ratioFigures are the figures given as ratios to nginx's, by key.
var ratioFigures = map[string]func(sample) float64{
	"rps":             func(s sample) float64 { return s.RPS },
	"p50":             func(s sample) float64 { return s.P50ms },
	"p90":             func(s sample) float64 { return s.P90ms },
	"p99":             func(s sample) float64 { return s.P99ms },
	"cpu_per_request": func(s sample) float64 { return s.CPUPerRequestUS },
	"peak_rss":        func(s sample) float64 { return float64(s.PeakRSSKiB) },
}

// pairedRatios returns, for each figure, the median over the repetitions
// in which both proxy and ref ran scenario sc of proxy's figure divided by
// ref's; nil when there is no such repetition.
func (r *report) pairedRatios(sc, proxy, ref string) map[string]float64 {
	byRep := map[int]sample{}
	for _, s := range r.Samples {
		if s.Scenario == sc && s.Proxy == ref {
			byRep[s.Rep] = s
		}
	}
	out := map[string]float64{}
	for k, f := range ratioFigures {
		var ratios []float64
		for _, s := range r.Samples {
			if n, ok := byRep[s.Rep]; ok && s.Scenario == sc && s.Proxy == proxy && f(n) > 0 {
				ratios = append(ratios, f(s)/f(n))
			}
		}
		if len(ratios) > 0 {
			out[k] = medianOf(ratios)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// median returns the median of f over ss (the mean of the middle two for an
// even count).
func median(ss []sample, f func(sample) float64) float64 {
	v := make([]float64, len(ss))
	for i, s := range ss {
		v[i] = f(s)
	}
	return medianOf(v)
}

// medianOf returns the median of v (the mean of the middle two for an even
// count), reordering v.
func medianOf(v []float64) float64 {
	sort.Float64s(v)
	n := len(v)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// rewriteReport summarizes the samples saved in dir's results.json again
// and rewrites the folder's results.json, results.md and chart.svg, so that
// an earlier run can be seen in the current report's form.
func rewriteReport(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		return err
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(dir, "results.json"), err)
	}
	r.Dir = dir
	r.summarize()
	return r.write()
}

// write writes results.json, results.md and chart.svg into the results
// folder.
func (r *report) write() error {
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"results.json": append(js, '\n'),
		"results.md":   []byte(r.markdown()),
		"chart.svg":    []byte(chart(r)),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(r.Dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// markdown renders the results as a markdown document with one table.
func (r *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# sluice benchmark, %s\n\n", r.Started.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "`%s`\n\n", r.Command)
	be := "fasthttp backends"
	if r.Backends == "nginx" {
		be = "nginx as the two healthy backends (one worker)"
	}
	pin := "proxy on CPU 0, wrk and backends on CPU 1"
	if !r.Pinned {
		pin = "not pinned"
	}
	if r.ClientNice > 0 {
		pin += fmt.Sprintf(", wrk and h2load at nice %d (the backends first)", r.ClientNice)
	}
	fmt.Fprintf(&b, "%s, %d CPUs, Linux %s, %s; %s; %s. Each figure is the median of %d run(s) of %s after a %s warm-up; wrk with %d threads and %d connections (many_conns: 1000).\n\n",
		orDefault(r.Host.CPUModel, "unknown CPU"), r.Host.CPUs, r.Host.Kernel, r.Host.Go, be, pin, r.Reps, r.Duration, r.Warmup, r.Threads, r.Connections)
	if r.H2Rate > 0 {
		per := h2ClientRate(r.H2Rate)
		fmt.Fprintf(&b, "h2_get ran at a fixed rate of %d requests a second (h2load --rps %d on each of its %d connections), not as fast as each proxy answered: its CPU per request compares the proxies at the same load.\n\n", per*h2Clients, per, h2Clients)
	}
	if r.H1Rate > 0 {
		per := r.H1Rate / r.Connections
		fmt.Fprintf(&b, "healthy_get ran at a fixed rate of %d requests a second (h2load --h1 --rps %d on each of its %d connections), not with wrk as fast as each proxy answered: where every proxy keeps up, its latencies and CPU per request compare the proxies at the same load, and a req/s under the rate means the proxy fell behind.\n\n", per*r.Connections, per, r.Connections)
	}
	for _, p := range r.Proxies {
		fmt.Fprintf(&b, "- %s: %s\n", p, orDefault(r.Versions[p], "version unknown"))
	}
	b.WriteString("\n| scenario | proxy | req/s | p50 | p90 | p99 | CPU/request | peak RSS | errors | CPU busy | wrk counts | upstream/req |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, res := range r.Results {
		upstream := fmt.Sprintf("%.2f", res.UpstreamPerRequest)
		if r.Backends == "nginx" {
			upstream = "n/a" // nginx does not count what it serves
		}
		share := "n/a"
		if res.Counted > 0 && res.Counted <= 1 {
			share = fmt.Sprintf("%.0f%%", 100*res.Counted)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %d | %.0f%% | %s | %s |\n",
			res.Scenario, res.Proxy,
			withRatio(fmtInt(res.RPS), res.VsNginx, "rps"),
			withRatio(fmtMs(res.P50ms), res.VsNginx, "p50"),
			withRatio(fmtMs(res.P90ms), res.VsNginx, "p90"),
			withRatio(fmtMs(res.P99ms), res.VsNginx, "p99"),
			withRatio(fmt.Sprintf("%.1f µs", res.CPUPerRequestUS), res.VsNginx, "cpu_per_request"),
			withRatio(fmt.Sprintf("%.1f MiB", res.PeakRSSMiB), res.VsNginx, "peak_rss"),
			res.Errors, 100*res.Busy, share, upstream)
	}
	b.WriteString("\nRatios in parentheses are of the medians to nginx's in the same scenario. Errors are non-2xx/3xx responses plus socket errors, summed over the runs. " +
		"CPU busy is the proxy's CPU seconds over wall seconds; well under 100% means wrk or the backends, not the proxy, were the bottleneck. " +
		"wrk counts is its mean latency over the closed loop's cycle (connections over req/s): wrk times a request from its write to the read of the answer, not the time between reading an answer and sending the next request. " +
		"Near 100%, the requests queued in the proxy; well under it, they queued at the load CPU and wrk left part of that wait out, so the latencies of proxies with different shares do not compare: their req/s do. " +
		"It is n/a for h2load, and where wrk's correction for coordinated omission raised its mean over the cycle (a slow backend's answers). " +
		"Upstream/req is the backends' requests per client request: about 1.5 in retry_get when every 503 is retried.\n")
	paired := false
	for _, res := range r.Results {
		if res.VsNginxPaired != nil {
			paired = true
		}
	}
	if paired {
		b.WriteString("\nPaired ratios to nginx: in each repetition the proxies run one after the other, so each proxy's figure is divided by nginx's of the same repetition, and the median of those ratios is given; drift in the machine's speed between repetitions cancels out.\n\n")
		b.WriteString("| scenario | proxy | req/s | p50 | p99 | CPU/request | peak RSS |\n|---|---|--:|--:|--:|--:|--:|\n")
		for _, res := range r.Results {
			if res.VsNginxPaired == nil {
				continue
			}
			v := res.VsNginxPaired
			fmt.Fprintf(&b, "| %s | %s | %.2f× | %.2f× | %.2f× | %.2f× | %.2f× |\n", res.Scenario, res.Proxy, v["rps"], v["p50"], v["p99"], v["cpu_per_request"], v["peak_rss"])
		}
	}
	r.pairedTable(&b, "haproxy", "sluice against HAProxy, paired the same way:", "rps", "p99", "cpu_per_request")
	r.pairedTable(&b, "go-std", "sluice against go-std, paired the same way. go-std is Go's own HTTP server (net/http, crypto/tls, and its HTTP/2 server) answering from memory, forwarding nothing: "+
		"what serving through the standard library costs before any proxying.", "rps", "cpu_per_request")
	b.WriteString(r.balancerMarkdown())
	for _, sc := range r.Scenarios {
		off, ok1 := findResult(r, sc.Name, "sluice")
		on, ok2 := findResult(r, sc.Name, "sluice-log")
		if ok1 && ok2 && off.RPS > 0 && off.CPUPerRequestUS > 0 && off.P99ms > 0 {
			fmt.Fprintf(&b, "\nAccess log on (sluice-log) against off (sluice) in %s: req/s %.2f×, CPU/request %.2f×, p99 %.2f×.\n",
				sc.Name, on.RPS/off.RPS, on.CPUPerRequestUS/off.CPUPerRequestUS, on.P99ms/off.P99ms)
		}
	}
	if len(r.Warnings) > 0 {
		b.WriteString("\nWarnings:\n\n")
		for _, w := range r.Warnings {
			fmt.Fprintf(&b, "- %s\n", w)
		}
	}
	if len(r.Failures) > 0 {
		b.WriteString("\nFailed runs:\n\n")
		for _, f := range r.Failures {
			fmt.Fprintf(&b, "- %s\n", strings.ReplaceAll(f, "\n", " "))
		}
	}
	return b.String()
}

// balancerMarkdown renders the balancer scenarios' section: each proxy's
// share of requests sent to the slow backend and its figures paired with
// nginx's, HAProxy's and sluice round_robin's, then the targets of
// slow_backend. It is empty when no balancer scenario ran.
func (r *report) balancerMarkdown() string {
	var rows strings.Builder
	for _, sc := range r.Scenarios {
		if sc.Slow == "" {
			continue
		}
		for _, res := range r.Results {
			if res.Scenario != sc.Name {
				continue
			}
			fmt.Fprintf(&rows, "| %s | %s | %s | %s | %.1f%% | %s | %s | %s | %s | %s |\n",
				res.Scenario, proxyLabel(res.Proxy), fmtInt(res.RPS), fmtMs(res.P99ms), 100*res.SlowShare,
				r.pairedCell(sc.Name, res.Proxy, "nginx", "rps"), r.pairedCell(sc.Name, res.Proxy, "haproxy", "rps"),
				r.pairedCell(sc.Name, res.Proxy, "nginx", "p99"), r.pairedCell(sc.Name, res.Proxy, "haproxy", "p99"),
				r.pairedCell(sc.Name, res.Proxy, "sluice", "p99"))
		}
	}
	if rows.Len() == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\nBalancer scenarios: three backends, the third slow (slow_backend: 20 ms added to every answer; flapping_backend: 20 ms added in every other 2 s). " +
		"nginx balances by least_conn, HAProxy by leastconn; sluice by round_robin, sluice-lr by least_request, sluice-ewma by ewma. " +
		"Slow share is the slow backend's share of the requests the backends served (a third under round robin). Ratios are paired, as above.\n\n")
	b.WriteString("| scenario | proxy | req/s | p99 | slow share | req/s vs nginx | vs HAProxy | p99 vs nginx | vs HAProxy | vs sluice round_robin |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	b.WriteString(rows.String())
	if ts := r.targets(); len(ts) > 0 {
		b.WriteString("\nTargets in slow_backend (paired ratios):\n\n")
		for _, t := range ts {
			verdict := "not met"
			if t.Met {
				verdict = "met"
			}
			fmt.Fprintf(&b, "- %s: %.2f×, %s\n", t.What, t.Ratio, verdict)
		}
	}
	return b.String()
}

// proxyLabel names a proxy with its balancer in the balancer section.
func proxyLabel(p string) string {
	switch p {
	case "sluice":
		return "sluice (round_robin)"
	case "sluice-lr":
		return "sluice-lr (least_request)"
	case "sluice-ewma":
		return "sluice-ewma (ewma)"
	case "nginx":
		return "nginx (least_conn)"
	case "haproxy":
		return "haproxy (leastconn)"
	}
	return p
}

// pairedCell is proxy's paired ratio to ref for figure key in sc, or "" for
// ref itself or when they did not both run.
func (r *report) pairedCell(sc, proxy, ref, key string) string {
	if proxy == ref {
		return ""
	}
	v, ok := r.pairedRatios(sc, proxy, ref)[key]
	if !ok {
		return ""
	}
	return fmt.Sprintf("%.2f×", v)
}

// target is one of slow_backend's targets, checked on paired ratios.
type target struct {
	What  string  `json:"what"`
	Ratio float64 `json:"ratio"`
	Met   bool    `json:"met"`
}

// targets checks slow_backend's targets: sluice-ewma's p99 lower and req/s
// higher than nginx's and HAProxy's, and its p99 at most half of sluice
// round_robin's, each on the paired ratio. Those whose proxies did not run
// are left out.
func (r *report) targets() []target {
	const sc = "slow_backend"
	var out []target
	for _, c := range []struct {
		what, ref, key string
		met            func(float64) bool
	}{
		{"sluice-ewma p99 below nginx's", "nginx", "p99", func(v float64) bool { return v < 1 }},
		{"sluice-ewma p99 below HAProxy's", "haproxy", "p99", func(v float64) bool { return v < 1 }},
		{"sluice-ewma req/s above nginx's", "nginx", "rps", func(v float64) bool { return v > 1 }},
		{"sluice-ewma req/s above HAProxy's", "haproxy", "rps", func(v float64) bool { return v > 1 }},
		{"sluice-ewma p99 at most half of sluice round_robin's", "sluice", "p99", func(v float64) bool { return v <= 0.5 }},
	} {
		if v, ok := r.pairedRatios(sc, "sluice-ewma", c.ref)[c.key]; ok {
			out = append(out, target{What: c.what, Ratio: v, Met: c.met(v)})
		}
	}
	return out
}

// withRatio appends " (1.23×)" when ratios has key.
func withRatio(s string, ratios map[string]float64, key string) string {
	if v, ok := ratios[key]; ok {
		return fmt.Sprintf("%s (%.2f×)", s, v)
	}
	return s
}

// fmtInt formats v rounded, with thousands separators: 41,234.
func fmtInt(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// fmtMs formats a latency given in milliseconds: "812 µs", "1.23 ms",
// "45.6 ms", "1.20 s".
func fmtMs(ms float64) string {
	switch {
	case ms < 1:
		return fmt.Sprintf("%.0f µs", ms*1000)
	case ms < 10:
		return fmt.Sprintf("%.2f ms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.1f ms", ms)
	default:
		return fmt.Sprintf("%.2f s", ms/1000)
	}
}

// orDefault returns s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// pairedColumns are the headings of the figures pairedTable may show.
var pairedColumns = map[string]string{"rps": "req/s", "p99": "p99", "cpu_per_request": "CPU/request"}

// pairedTable writes, after intro, a table of sluice's paired ratios to
// ref in each scenario where both ran, one column per key; nothing when
// there is no such scenario.
func (r *report) pairedTable(b *strings.Builder, ref, intro string, keys ...string) {
	var rows []string
	for _, sc := range r.Scenarios {
		v := r.pairedRatios(sc.Name, "sluice", ref)
		if v == nil {
			continue
		}
		row := "| " + sc.Name + " |"
		for _, k := range keys {
			row += fmt.Sprintf(" %.2f× |", v[k])
		}
		rows = append(rows, row+"\n")
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("\n" + intro + "\n\n| scenario |")
	for _, k := range keys {
		b.WriteString(" " + pairedColumns[k] + " |")
	}
	b.WriteString("\n|---|" + strings.Repeat("--:|", len(keys)) + "\n")
	b.WriteString(strings.Join(rows, ""))
}
