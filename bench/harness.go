package main

// The benchmark loop: scenarios, pinning, and one measured run.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// scenario is one load pattern, run against every proxy.
type scenario struct {
	name   string
	desc   string
	path   string // request path
	upload bool   // POST uploadSize-byte bodies (upload.lua)
	conns  int    // fixed wrk connections; 0 uses -connections
	retry  bool   // upstreams are a 503-only backend and a healthy one, retries on
	logged bool   // sluice-log (sluice with its access log on) runs here too
	// slow, in the balancer scenarios, is the mode of the third of three
	// backends: "slow" (slowDelay added to every answer) or "flap" (the
	// same every other flapPeriod; see backends.go). nginx runs least_conn
	// there, HAProxy leastconn, and sluice-lr and sluice-ewma run too.
	slow string
	// tls, in the HTTPS scenarios (tls.go), is how the load is made: "h1"
	// (wrk on keep-alive connections), "h2" (h2load) or "handshake" (a new
	// connection per request); "" for plain HTTP.
	tls string
}

// needsGoBackends says what keeps sc from running on -backends nginx, or
// returns "" when it can: nginx answers /api/users only, and does not count
// what it serves.
func (sc scenario) needsGoBackends() string {
	switch {
	case sc.retry:
		return "the failing backend and the upstream counts"
	case sc.slow != "":
		return "the slow backend and the upstream counts"
	case sc.upload:
		return "the upload endpoint"
	case sc.path != "/api/users":
		return sc.path
	}
	return ""
}

// balancers reports whether sc is a balancer scenario.
func (sc scenario) balancers() bool { return sc.slow != "" }

// scenarios are all scenarios, in report order.
var scenarios = []scenario{
	{name: "healthy_get", path: "/api/users", logged: true, desc: "~100-byte JSON GETs, round robin over two healthy backends"},
	{name: "large_response", path: "/large", desc: "256 KiB GET responses"},
	{name: "retry_get", path: "/api/users", retry: true, desc: "one backend always 503, one healthy; one retry on 503"},
	{name: "upload_post", path: "/upload", upload: true, desc: "64 KiB POST bodies"},
	{name: "many_conns", path: "/api/users", conns: 1000, desc: "small GETs over 1,000 keep-alive connections"},
	{name: "slow_backend", path: "/api/users", slow: "slow", desc: "three backends, one adding 20 ms to every answer; nginx least_conn, HAProxy leastconn, sluice by balancer"},
	{name: "flapping_backend", path: "/api/users", slow: "flap", desc: "three backends, one adding 20 ms in every other 2 s; nginx least_conn, HAProxy leastconn, sluice by balancer"},
}

// scenarioNames returns the names of all scenarios.
func scenarioNames() []string {
	var names []string
	for _, s := range scenarios {
		names = append(names, s.name)
	}
	return names
}

// selectScenarios returns the scenarios named in list ("" or "all": all).
func selectScenarios(list string) ([]scenario, error) {
	names := splitList(list)
	if len(names) == 0 || (len(names) == 1 && names[0] == "all") {
		return scenarios, nil
	}
	var out []scenario
	for _, n := range names {
		found := false
		for _, s := range scenarios {
			if s.name == n {
				out = append(out, s)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown scenario %q (want %s)", n, strings.Join(scenarioNames(), ", "))
		}
	}
	return out, nil
}

// env is what every measured run shares.
type env struct {
	o          options
	rep        *report
	wrk        string   // wrk's path
	pinProxy   []string // taskset prefix for the proxy, or nil
	pinLoad    []string // taskset prefix for wrk and the backends, or nil
	pinLoadGen []string // pinLoad and the nice prefix for wrk and h2load (clientPin)
	proxyCPU   int      // the CPU the proxy is pinned to, or -1
	loadCPU    int      // the CPU wrk and the backends are pinned to, or -1
	be         *backends
	script     string // upload.lua's path
	tmp        string // scratch directory, removed at the end
	out        string // results folder
	logDir     string // results/logs
	rawDir     string // results/raw
}

// run runs the benchmark described by o and writes the results folder. It
// returns an error when the benchmark cannot run at all; the failure of a
// single measured run is recorded in the report's Failures instead, and the
// other runs go on.
func run(ctx context.Context, o options) (*report, error) {
	scs, err := selectScenarios(o.scenarios)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(backendKinds, o.backends) {
		return nil, fmt.Errorf("-backends %q: want go or nginx", o.backends)
	}
	if o.backends == "nginx" {
		for _, sc := range scs {
			if need := sc.needsGoBackends(); need != "" {
				return nil, fmt.Errorf("scenario %s needs the go backends (it uses %s), not -backends nginx", sc.name, need)
			}
		}
	}
	if o.reps < 1 || o.connections < 1 || o.threads < 1 || o.duration <= 0 || o.warmup < 0 {
		return nil, errors.New("-reps, -connections and -threads must be at least 1, -duration positive and -warmup not negative")
	}
	if o.clientNice < 0 || o.clientNice > 19 {
		return nil, fmt.Errorf("-client-nice %d: want 0 to 19", o.clientNice)
	}
	if o.h1Rate < 0 || o.h1Rate > 0 && o.h1Rate < o.connections {
		return nil, fmt.Errorf("-h1-rate %d: want 0, or at least %d (one request a second for each of the -connections)", o.h1Rate, o.connections)
	}
	if o.h2Rate < 0 || o.h2Rate > 0 && o.h2Rate < h2Clients {
		return nil, fmt.Errorf("-h2-rate %d: want 0, or at least %d (one request a second for each h2load connection)", o.h2Rate, h2Clients)
	}
	e, ps, err := setup(ctx, o, scs)
	if e != nil {
		defer e.close()
	}
	if err != nil {
		return nil, err
	}

	// Proxies are interleaved within each repetition (A B C A B C) so that
	// drift in the machine's speed hits all of them alike.
	for _, sc := range scs {
		for i := 1; i <= o.reps; i++ {
			for _, p := range ps {
				if !runsIn(p, sc) {
					continue
				}
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				s, err := e.measure(ctx, p, sc, i)
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				if err != nil {
					msg := fmt.Sprintf("%s %s rep %d: %v", sc.name, p.name(), i, err)
					e.rep.Failures = append(e.rep.Failures, msg)
					e.logf("FAILED: %s", msg)
					continue
				}
				e.rep.Samples = append(e.rep.Samples, s)
				e.logf("%-14s rep %d %-8s %9.0f req/s  p99 %8s  cpu %7.2f µs/req  busy %3.0f%%  rss %6.1f MiB  errors %d  upstream/req %.2f",
					sc.name, i, p.name(), s.RPS, fmtMs(s.P99ms), s.CPUPerRequestUS, 100*s.Busy, float64(s.PeakRSSKiB)/1024, s.Errors(), s.UpstreamPerRequest)
				e.review(sc, s)
			}
		}
	}

	e.rep.summarize()
	if err := e.rep.write(); err != nil {
		return e.rep, err
	}
	e.logf("\n%s", e.rep.markdown())
	e.logf("wrote %s", e.out)
	return e.rep, nil
}

// runsIn reports whether proxy p runs in scenario sc: sluice-log only where
// sc.logged, sluice-lr and sluice-ewma only in the balancer scenarios,
// go-std (which forwards nothing) only in the HTTPS scenarios, the others
// everywhere.
func runsIn(p proxy, sc scenario) bool {
	switch p.name() {
	case "go-std":
		return sc.tls != ""
	case "sluice-log":
		return sc.logged
	case "sluice-lr", "sluice-ewma":
		return sc.balancers()
	}
	return true
}

// setup finds wrk, pins, builds or finds the proxies, creates the results
// folder and starts the backends. It returns the env (to be closed, when not
// nil, even with an error) and the proxies to run.
func setup(ctx context.Context, o options, scs []scenario) (*env, []proxy, error) {
	wrkBin, err := exec.LookPath("wrk")
	if err != nil {
		return nil, nil, fmt.Errorf("wrk is not installed (apt-get install wrk): %w", err)
	}
	raiseFileLimit()
	root, err := moduleRoot()
	if err != nil {
		return nil, nil, err
	}
	started := time.Now().UTC()
	e := &env{o: o, wrk: wrkBin, out: o.out}
	if e.out == "" {
		e.out = filepath.Join(root, "bench", "results", started.Format("20060102T150405Z"))
	}
	e.rep = newReport(o, started, e.out)
	if e.tmp, err = os.MkdirTemp("", "sluice-bench-"); err != nil {
		return nil, nil, err
	}
	if err := os.Chmod(e.tmp, 0o755); err != nil { // see startProxy
		return e, nil, err
	}

	var note string
	e.pinProxy, e.pinLoad, e.proxyCPU, e.loadCPU, note = pinning()
	if note != "" {
		e.warnf("%s; the proxy competes with wrk and the backends for CPU", note)
	}
	e.rep.Pinned = note == ""
	if e.pinLoadGen, e.rep.ClientNice, note = clientPin(e.pinLoad, o.clientNice); note != "" {
		e.warnf("%s", note)
	}

	ps, skipped, err := newProxies(splitList(o.proxies), root, e.tmp, o.sluiceBin, o.baselineBin)
	for _, s := range skipped {
		e.warnf("%s", s)
	}
	if err != nil {
		return e, nil, err
	}
	for _, p := range ps {
		e.rep.Proxies = append(e.rep.Proxies, p.name())
		e.rep.Versions[p.name()] = proxyVersion(p)
	}
	for _, sc := range scs {
		e.rep.Scenarios = append(e.rep.Scenarios, scenarioInfo{Name: sc.name, Description: sc.desc, Path: sc.path, Slow: sc.slow})
	}

	e.logDir, e.rawDir = filepath.Join(e.out, "logs"), filepath.Join(e.out, "raw")
	for _, d := range []string{e.logDir, e.rawDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return e, nil, err
		}
	}
	e.logf("results: %s", e.out)
	if e.script, err = writeUploadScript(e.tmp); err != nil {
		return e, nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return e, nil, err
	}
	if e.be, err = startBackends(ctx, self, e.pinLoad, filepath.Join(e.logDir, "backends.log")); err != nil {
		return e, nil, err
	}
	if o.backends == "nginx" {
		bin, err := exec.LookPath("nginx")
		if err != nil {
			return e, nil, fmt.Errorf("-backends nginx: nginx is not installed (apt-get install nginx): %w", err)
		}
		if err := e.be.useNginx(ctx, bin, e.pinLoad, filepath.Join(e.tmp, "nginx-backends"), filepath.Join(e.logDir, "nginx-backends.log")); err != nil {
			return e, nil, err
		}
	}
	return e, ps, nil
}

// close stops the backends and removes the scratch directory.
func (e *env) close() {
	if e.be != nil {
		e.be.stop()
	}
	if e.tmp != "" {
		_ = os.RemoveAll(e.tmp)
	}
}

// logf writes a line of progress.
func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.o.log, format+"\n", args...)
}

// warnf prints a warning and records it in the report.
func (e *env) warnf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	e.rep.Warnings = append(e.rep.Warnings, msg)
	e.logf("WARNING: %s", msg)
}

// review warns about a sample that should not be taken at face value:
// errors, a retry path not exercised, a disturbed machine, or a proxy that
// was not the bottleneck.
func (e *env) review(sc scenario, s sample) {
	id := fmt.Sprintf("%s %s rep %d", s.Scenario, s.Proxy, s.Rep)
	if s.Errors() > 0 {
		e.warnf("%s: %d errors (%d non-2xx/3xx responses, %d socket errors); see %s and the proxy's log in logs/",
			id, s.Errors(), s.Non2xx3xx, s.SocketErrors, s.Raw)
	}
	if sc.retry && s.FailedTryShare < 0.1 {
		e.warnf("%s: the failing backend saw only %.1f%% as many requests as the clients made, so the retry path was hardly exercised (was it ejected?)",
			id, 100*s.FailedTryShare)
	}
	if s.disturbed() {
		e.warnf("%s: other work took %.0f%% of the proxy's CPU and %.0f%% of the load CPU (other processes on the machine, or hypervisor steal), so this run's figures are disturbed",
			id, 100*s.ProxyCPUOther, 100*s.LoadCPUOther)
	} else if s.Busy < busyThreshold {
		e.warnf("%s: the proxy used only %.1f%% of its CPU, so it was not the bottleneck and its req/s understates it: %s",
			id, 100*s.Busy, bottleneck(s))
	}
}

// busyThreshold is the proxy CPU busy fraction below which a run warns that
// the proxy was not the bottleneck.
const busyThreshold = 0.90

// measure starts a fresh proxy p configured for sc (fresh so that its peak
// RSS belongs to this run), warms it up, and measures one wrk run.
func (e *env) measure(ctx context.Context, p proxy, sc scenario, rep int) (sample, error) {
	if sc.tls != "" {
		return e.measureTLS(ctx, p, sc, rep)
	}
	name := fmt.Sprintf("%s-%s-rep%d", sc.name, p.name(), rep)
	port, err := freePort()
	if err != nil {
		return sample{}, err
	}
	adminPort, err := freePort()
	if err != nil {
		return sample{}, err
	}
	ups := []string{e.be.ok1, e.be.ok2}
	slowAddr := ""
	switch {
	case sc.retry:
		ups = []string{e.be.fail, e.be.ok1}
	case sc.slow == "slow":
		slowAddr = e.be.slow
	case sc.slow == "flap":
		slowAddr = e.be.flap
	}
	if slowAddr != "" {
		ups = append(ups, slowAddr)
	}
	dir := filepath.Join(e.tmp, name)
	pp, err := startProxy(ctx, p, proxyConfig{
		dir: dir, logDir: e.logDir, logName: name,
		port: port, adminPort: adminPort, upstreams: ups, retry: sc.retry,
		leastConn: sc.balancers(),
	}, e.pinProxy, "/api/users")
	if err != nil {
		return sample{}, err
	}
	defer func() {
		pp.stop()
		// Scratch files go with the run; sluice-log's access log grows by
		// some 100 MiB a run.
		_ = os.RemoveAll(dir)
	}()

	url := fmt.Sprintf("http://127.0.0.1:%d%s", port, sc.path)
	w := wrkRun{url: url, threads: e.o.threads, conns: e.o.connections}
	if sc.conns > 0 {
		w.conns = sc.conns
	}
	if sc.upload {
		w.script = e.script
	}
	load := func(d time.Duration) loadRun {
		w.duration = d
		return wrkLoad{w: w, bin: e.wrk}
	}
	if e.o.h1Rate > 0 && sc.name == "healthy_get" {
		bin, err := exec.LookPath("h2load")
		if err != nil {
			return sample{}, errors.New("h2load is not installed (apt-get install nghttp2-client); -h1-rate needs it")
		}
		logFile := filepath.Join(e.tmp, name+".h2load.log")
		defer os.Remove(logFile)
		load = func(d time.Duration) loadRun {
			return h2loadRun{bin: bin, url: url, h1: true, clients: w.conns, streams: 1, rps: e.o.h1Rate / w.conns, duration: d, logFile: logFile}
		}
	}

	if e.o.warmup > 0 {
		if _, _, err := load(e.o.warmup).run(ctx, e.pinLoadGen); err != nil {
			return sample{}, fmt.Errorf("warm-up: %w", errors.Join(err, pp.exitError()))
		}
	}

	// The process tree again: nginx may have replaced its worker.
	pids := processTree(pp.cmd.Process.Pid)
	l := load(e.o.duration)
	served0, err := e.be.served(ctx)
	if err != nil {
		return sample{}, err
	}
	cpu0, err := totalCPUSeconds(pids)
	if err != nil {
		return sample{}, err
	}
	beCPU0, beErr0 := totalCPUSeconds(e.be.pids())
	jiffies0, _ := readCPUJiffies()
	t0 := time.Now()
	out, wrkCPU, runErr := l.run(ctx, e.pinLoadGen)
	wall := time.Since(t0).Seconds()
	cpu1, cpuErr := totalCPUSeconds(pids)
	jiffies1, _ := readCPUJiffies()
	beCPU1, beErr1 := totalCPUSeconds(e.be.pids())
	rss, _, rssErr := maxPeakRSSKiB(pids)
	served1, servedErr := e.be.served(ctx)

	raw := filepath.Join(e.rawDir, name+".txt")
	header := "# " + l.commandLine() + "\n"
	if err := os.WriteFile(raw, []byte(header+out), 0o644); err != nil {
		return sample{}, err
	}
	if err := errors.Join(runErr, pp.exitError(), cpuErr, rssErr, servedErr, beErr0, beErr1); err != nil {
		return sample{}, err
	}
	res, err := l.parse(out)
	if err != nil {
		return sample{}, err
	}
	s := sample{
		Scenario:    sc.name,
		Proxy:       p.name(),
		Rep:         rep,
		wrkResult:   res,
		Connections: w.conns,
		WallSeconds: wall,
		CPUSeconds:  cpu1 - cpu0,
		PeakRSSKiB:  rss,
		Processes:   len(pids),
		Raw:         filepath.Join("raw", name+".txt"),
		LoadSeconds: wrkCPU + beCPU1 - beCPU0,
		// Until measured, the CPUs' use is unknown.
		ProxyCPUBusy: -1, LoadCPUBusy: -1, ProxyCPUOther: -1, LoadCPUOther: -1,
	}
	if u, ok := cpuUsage(jiffies0, jiffies1, e.proxyCPU, s.CPUSeconds); ok {
		s.ProxyCPUBusy, s.ProxyCPUOther = u.busy, u.other
	}
	if u, ok := cpuUsage(jiffies0, jiffies1, e.loadCPU, s.LoadSeconds); ok {
		s.LoadCPUBusy, s.LoadCPUOther = u.busy, u.other
	}
	if res.Requests > 0 {
		s.CPUPerRequestUS = s.CPUSeconds / float64(res.Requests) * 1e6
		var upstream, failed int64
		for addr, n := range served1 {
			upstream += n - served0[addr]
		}
		failed = served1[e.be.fail] - served0[e.be.fail]
		if e.be.nginx == nil {
			s.UpstreamPerRequest = float64(upstream) / float64(res.Requests)
		}
		s.FailedTryShare = float64(failed) / float64(res.Requests)
		if slowAddr != "" && upstream > 0 {
			s.SlowShare = float64(served1[slowAddr]-served0[slowAddr]) / float64(upstream)
		}
	}
	if wall > 0 {
		s.Busy = s.CPUSeconds / wall
	}
	return s, nil
}

// otherThreshold is the share of either pinned CPU that other work may take
// before a run is reported as disturbed.
const otherThreshold = 0.10

// disturbed reports whether other work took more than otherThreshold of
// either pinned CPU during the run.
func (s sample) disturbed() bool {
	return s.ProxyCPUOther > otherThreshold || s.LoadCPUOther > otherThreshold
}

// bottleneck explains, from how busy the two CPUs were, why the proxy's CPU
// was not saturated in s.
func bottleneck(s sample) string {
	switch {
	case s.ProxyCPUBusy < 0 || s.LoadCPUBusy < 0:
		return "wrk, the backends or other processes were (CPUs not pinned)"
	case s.LoadCPUBusy >= busyThreshold:
		return fmt.Sprintf("the load CPU was %.0f%% busy (wrk and backends %.0f%%), so wrk and the backends were",
			100*s.LoadCPUBusy, 100*s.LoadSeconds/s.WallSeconds)
	case s.ProxyCPUBusy >= busyThreshold:
		return fmt.Sprintf("the proxy's CPU was %.0f%% busy in all; the kernel's network processing (softirq) took the rest", 100*s.ProxyCPUBusy)
	default:
		return fmt.Sprintf("neither CPU was saturated (proxy CPU %.0f%%, load CPU %.0f%% busy): the run was latency-bound", 100*s.ProxyCPUBusy, 100*s.LoadCPUBusy)
	}
}
