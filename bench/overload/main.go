// Command overload is the benchmark scenario "overload": two backends
// answer in 1 ms; half-way through the run one of them slows to 500 ms.
// 256 clients, each on its own keep-alive connection, send at a steady
// pace (while a client waits for an answer it sends nothing, as a real
// client would). It runs sluice with circuit_breaker.max_requests_per_backend,
// nginx with max_conns and HAProxy with maxconn on each server (the same
// limit), and sluice without a limit for comparison, and reports for each:
// the p50 and p99 latency of the answers that came from the healthy
// backend before and after the slowdown, the requests served, and the
// shares of fast failures, of slow answers and of sends the clients missed
// while waiting.
//
// Usage (from the module root; Linux, nginx and HAProxy optional):
//
//	go run ./bench/overload [-proxies sluice,sluice-nocb,nginx,haproxy]
//	    [-conns 256] [-rate 5000] [-limit 32] [-phase 8s] [-slow 500ms] [-out dir]
//
// The proxy runs pinned to the first CPU it may use, the clients and the
// backends (this process) to the second, when there are two and taskset
// is installed; each proxy gets one core (sluice GOMAXPROCS=1, nginx one
// worker, HAProxy one thread).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	proxies string
	conns   int
	rate    float64
	limit   int
	phase   time.Duration
	warmup  time.Duration
	fast    time.Duration
	slow    time.Duration
	out     string
	sluice  string
	reps    int
}

func main() {
	var o options
	flag.StringVar(&o.proxies, "proxies", "sluice,sluice-nocb,nginx,haproxy", "comma-separated proxies: sluice (with the circuit breaker), sluice-nocb (without), nginx, haproxy")
	flag.IntVar(&o.conns, "conns", 256, "clients, one connection each")
	flag.Float64Var(&o.rate, "rate", 5000, "requests a second the clients send together while none waits")
	flag.IntVar(&o.limit, "limit", 32, "requests in flight per backend: sluice max_requests_per_backend, nginx max_conns, HAProxy maxconn")
	flag.DurationVar(&o.phase, "phase", 8*time.Second, "length of each phase: before the slowdown, and after it")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before the first phase")
	flag.DurationVar(&o.fast, "fast", time.Millisecond, "the backends' answer time")
	flag.DurationVar(&o.slow, "slow", 500*time.Millisecond, "the slowed backend's answer time after the slowdown")
	flag.StringVar(&o.out, "out", "", "results folder (default bench/results/overload-<UTC timestamp>)")
	flag.StringVar(&o.sluice, "sluice", "", "a prebuilt sluice binary instead of building ./cmd/sluice")
	flag.IntVar(&o.reps, "reps", 3, "repetitions, the proxies taking turns; each figure is the median")
	flag.Parse()

	pinned := os.Getenv("SLUICE_OVERLOAD_PINNED")
	loadPin, proxyPin, note := "", "", ""
	if pinned == "" {
		loadPin, proxyPin, note = pin()
	}
	if loadPin != "" {
		// Run again on the load CPU; the proxies get the other.
		self, _ := os.Executable()
		cmd := exec.Command("taskset", append([]string{"-c", loadPin, self}, os.Args[1:]...)...)
		cmd.Env = append(os.Environ(), "SLUICE_OVERLOAD_PINNED="+proxyPin)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			os.Exit(1)
		}
		return
	}
	if note != "" {
		fmt.Println("note:", note)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, o, pinned); err != nil {
		fmt.Fprintln(os.Stderr, "overload:", err)
		os.Exit(1)
	}
}

// pin returns the CPUs for the load and the proxy, "" when not pinning,
// and why not.
func pin() (load, proxy, note string) {
	if _, err := exec.LookPath("taskset"); err != nil {
		return "", "", "taskset is not installed: not pinning"
	}
	var cpus []int
	for i := range runtime.NumCPU() {
		cpus = append(cpus, i)
	}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if list, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
				cpus = cpus[:0]
				for _, part := range strings.Split(strings.TrimSpace(list), ",") {
					lo, hi, _ := strings.Cut(part, "-")
					a, _ := strconv.Atoi(lo)
					b := a
					if hi != "" {
						b, _ = strconv.Atoi(hi)
					}
					for c := a; c <= b; c++ {
						cpus = append(cpus, c)
					}
				}
			}
		}
	}
	if len(cpus) < 2 {
		return "", "", "fewer than two CPUs: not pinning"
	}
	return strconv.Itoa(cpus[1]), strconv.Itoa(cpus[0]), ""
}

// figures are one proxy's results.
type figures struct {
	Proxy string `json:"proxy"`
	// Before and after the slowdown: answers from the healthy backend.
	BeforeP50ms float64 `json:"before_healthy_p50_ms"`
	BeforeP99ms float64 `json:"before_healthy_p99_ms"`
	AfterP50ms  float64 `json:"after_healthy_p50_ms"`
	AfterP99ms  float64 `json:"after_healthy_p99_ms"`
	P99Ratio    float64 `json:"healthy_p99_ratio"`
	// Served is 2xx answers a second, before and after.
	BeforeServed float64 `json:"before_served_per_s"`
	AfterServed  float64 `json:"after_served_per_s"`
	// Shares of the requests sent after the slowdown.
	AfterAllP99ms   float64 `json:"after_all_p99_ms"`
	SlowShare       float64 `json:"after_slow_backend_share"`
	FastFailShare   float64 `json:"after_fast_failure_share"`
	OtherFailShare  float64 `json:"after_other_failure_share"`
	MissedShare     float64 `json:"after_missed_share"`
	Sent            int     `json:"sent"`
	FastFailureCode string  `json:"fast_failure_codes"`
}

func run(ctx context.Context, o options, proxyCPU string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	if o.out == "" {
		o.out = filepath.Join(root, "bench", "results", "overload-"+time.Now().UTC().Format("20060102T150405Z"))
	}
	tmp, err := os.MkdirTemp("", "sluice-overload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	os.Chmod(tmp, 0o755)
	if o.sluice == "" {
		o.sluice = filepath.Join(tmp, "sluice")
		build := exec.Command("go", "build", "-trimpath", "-o", o.sluice, "./cmd/sluice")
		build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("building sluice: %v\n%s", err, out)
		}
	}
	var pinArgs []string
	if proxyCPU != "" {
		pinArgs = []string{"taskset", "-c", proxyCPU}
	}
	ps, skipped := proxies(strings.Split(o.proxies, ","), o.sluice)
	for _, s := range skipped {
		fmt.Println("skipped:", s)
	}
	// The proxies take turns (A B C A B C), so that drift in the
	// machine's speed hits them alike.
	samples := map[string][]figures{}
	for i := 1; i <= max(o.reps, 1); i++ {
		for _, p := range ps {
			f, err := measure(ctx, o, p, filepath.Join(tmp, "run-"+p.name), pinArgs)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			fmt.Printf("rep %d %-12s healthy p99 %7.2f ms -> %7.2f ms (x%.2f)  served %6.0f/s -> %6.0f/s  after: slow backend %4.1f%%  fast failures %4.1f%%  missed sends %4.1f%%\n",
				i, f.Proxy, f.BeforeP99ms, f.AfterP99ms, f.P99Ratio, f.BeforeServed, f.AfterServed, 100*f.SlowShare, 100*f.FastFailShare, 100*f.MissedShare)
			samples[p.name] = append(samples[p.name], f)
		}
	}
	var all []figures
	for _, p := range ps {
		all = append(all, median(samples[p.name]))
	}
	md := markdown(o, all)
	fmt.Println()
	fmt.Print(md)
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	data, _ := json.MarshalIndent(map[string]any{"options": map[string]any{
		"conns": o.conns, "rate": o.rate, "limit": o.limit, "phase": o.phase.String(), "fast": o.fast.String(),
		"slow": o.slow.String(), "pinned": proxyCPU != "", "go": runtime.Version(),
		"reps": o.reps,
	}, "results": all, "samples": samples}, "", "  ")
	os.WriteFile(filepath.Join(o.out, "results.json"), data, 0o644)
	os.WriteFile(filepath.Join(o.out, "results.md"), []byte(md), 0o644)
	fmt.Println("wrote", o.out)
	return nil
}

// measure runs the scenario against p.
func measure(ctx context.Context, o options, p proxySpec, dir string, pinArgs []string) (figures, error) {
	healthy, err := startUpstream("healthy", o.fast)
	if err != nil {
		return figures{}, err
	}
	defer healthy.close()
	slowing, err := startUpstream("slowing", o.fast)
	if err != nil {
		return figures{}, err
	}
	defer slowing.close()
	ports, err := freePorts(2)
	if err != nil {
		return figures{}, err
	}
	limit := o.limit
	if p.name == "sluice-nocb" {
		limit = 0
	}
	r, err := start(ctx, p, dir, pinArgs, ports[0], ports[1], limit, []string{healthy.addr, slowing.addr})
	if err != nil {
		return figures{}, err
	}
	defer r.stop()

	l := &load{addr: "127.0.0.1:" + strconv.Itoa(ports[0]), conns: o.conns, rate: o.rate, start: time.Now()}
	runCtx, stop := context.WithTimeout(ctx, o.warmup+2*o.phase)
	defer stop()
	done := make(chan struct{})
	go func() { l.run(runCtx); close(done) }()
	switchAt := o.warmup + o.phase
	var missedBefore int64
	select {
	case <-time.After(time.Until(l.start.Add(switchAt))):
		missedBefore = l.missed.Load()
		slowing.delay.Store(int64(o.slow))
	case <-ctx.Done():
		<-done
		return figures{}, ctx.Err()
	}
	<-done
	if ctx.Err() != nil {
		return figures{}, ctx.Err()
	}
	return summarize(p.name, o, l.res, switchAt, l.missed.Load()-missedBefore), nil
}

// summarize computes the figures of one run from its results.
func summarize(name string, o options, res []result, switchAt time.Duration, missedAfter int64) figures {
	f := figures{Proxy: name}
	var before, after, afterAll []time.Duration
	var servedBefore, servedAfter, sentAfter, slow, fastFail, otherFail int
	codes := map[int]int{}
	for _, r := range res {
		switch {
		case r.at < o.warmup:
			continue
		case r.at < switchAt:
			if r.status >= 200 && r.status < 300 {
				servedBefore++
				if r.backend == "healthy" {
					before = append(before, r.latency)
				}
			}
		default:
			sentAfter++
			afterAll = append(afterAll, r.latency)
			ok := r.status >= 200 && r.status < 300
			switch {
			case ok && r.backend == "healthy":
				servedAfter++
				after = append(after, r.latency)
			case ok:
				servedAfter++
				slow++
			case r.latency < 50*time.Millisecond:
				fastFail++
				codes[r.status]++
			default:
				otherFail++
			}
		}
	}
	f.BeforeP50ms, f.BeforeP99ms = pct(before, 50), pct(before, 99)
	f.AfterP50ms, f.AfterP99ms = pct(after, 50), pct(after, 99)
	if f.BeforeP99ms > 0 {
		f.P99Ratio = f.AfterP99ms / f.BeforeP99ms
	}
	f.AfterAllP99ms = pct(afterAll, 99)
	f.BeforeServed = float64(servedBefore) / o.phase.Seconds()
	f.AfterServed = float64(servedAfter) / o.phase.Seconds()
	f.Sent = sentAfter
	if sentAfter > 0 {
		f.SlowShare = float64(slow) / float64(sentAfter)
		f.FastFailShare = float64(fastFail) / float64(sentAfter)
		f.OtherFailShare = float64(otherFail) / float64(sentAfter)
	}
	if due := sentAfter + int(missedAfter); due > 0 {
		f.MissedShare = float64(missedAfter) / float64(due)
	}
	var cs []string
	for c, n := range codes {
		cs = append(cs, fmt.Sprintf("%d×%d", n, c))
	}
	slices.Sort(cs)
	f.FastFailureCode = strings.Join(cs, " ")
	return f
}

// median returns the figures of fs, each the median of its samples.
func median(fs []figures) figures {
	m := fs[0]
	for _, field := range []func(f *figures) *float64{
		func(f *figures) *float64 { return &f.BeforeP50ms },
		func(f *figures) *float64 { return &f.BeforeP99ms },
		func(f *figures) *float64 { return &f.AfterP50ms },
		func(f *figures) *float64 { return &f.AfterP99ms },
		func(f *figures) *float64 { return &f.P99Ratio },
		func(f *figures) *float64 { return &f.BeforeServed },
		func(f *figures) *float64 { return &f.AfterServed },
		func(f *figures) *float64 { return &f.AfterAllP99ms },
		func(f *figures) *float64 { return &f.SlowShare },
		func(f *figures) *float64 { return &f.FastFailShare },
		func(f *figures) *float64 { return &f.OtherFailShare },
		func(f *figures) *float64 { return &f.MissedShare },
	} {
		v := make([]float64, len(fs))
		for i := range fs {
			v[i] = *field(&fs[i])
		}
		slices.Sort(v)
		*field(&m) = v[len(v)/2]
	}
	return m
}

// pct returns the p-th percentile of ds in milliseconds, 0 for none.
func pct(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(float64(len(ds))*p/100+0.5) - 1
	return float64(ds[min(max(i, 0), len(ds)-1)]) / 1e6
}

func markdown(o options, fs []figures) string {
	var b strings.Builder
	fmt.Fprintf(&b, "overload: %d clients sending %.0f req/s together, backends answering in %v, one slowed to %v after %v; limit %d in flight per backend (sluice-nocb: none); medians of %d runs; %s\n\n",
		o.conns, o.rate, o.fast, o.slow, o.phase, o.limit, max(o.reps, 1), runtime.Version())
	b.WriteString("| proxy | healthy p50 before → after | healthy p99 before → after | p99 ratio | served/s before → after | all p99 after | answered by the slow backend | fast failures | other failures | sends missed (client waiting) |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, f := range fs {
		fmt.Fprintf(&b, "| %s | %.2f → %.2f ms | %.2f → %.2f ms | %.2f× | %.0f → %.0f | %.0f ms | %.1f%% | %.1f%% | %.1f%% | %.1f%% |\n",
			f.Proxy, f.BeforeP50ms, f.AfterP50ms, f.BeforeP99ms, f.AfterP99ms, f.P99Ratio, f.BeforeServed, f.AfterServed,
			f.AfterAllP99ms, 100*f.SlowShare, 100*f.FastFailShare, 100*f.OtherFailShare, 100*f.MissedShare)
	}
	return b.String()
}

func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// moduleRoot returns the directory of go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run from within the sluice module")
	}
	return filepath.Dir(mod), nil
}
