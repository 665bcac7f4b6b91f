// Command bench compares sluice with nginx and HAProxy under wrk.
//
// It builds sluice, starts its own fasthttp backends, runs every scenario
// against every installed proxy with equivalent configurations, the proxy
// pinned to CPU 0 and wrk and the backends to CPU 1, and writes the raw wrk
// outputs, a JSON file, a markdown table and an SVG chart to a results
// folder. See README.md in this directory for what each figure means.
//
// Usage:
//
//	go run ./bench [-scenarios healthy_get,...] [-proxies sluice,sluice-log,sluice-lr,sluice-ewma,nginx,haproxy]
//	               [-duration 10s] [-warmup 2s] [-reps 3] [-connections 64]
//	               [-threads 2] [-backends go|nginx] [-client-nice 5] [-out dir] [-sluice path] [-baseline path]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	// The same executable serves as the backend process (see backends.go).
	if maybeServeBackends() {
		return
	}
	// And as the go-std reference server (see gostd.go).
	if maybeServeGoStd() {
		return
	}

	o := defaultOptions()
	flag.StringVar(&o.scenarios, "scenarios", o.scenarios, "comma-separated scenarios to run: "+strings.Join(scenarioNames(), ", "))
	flag.StringVar(&o.proxies, "proxies", o.proxies, "comma-separated proxies to compare: sluice, sluice-log (access log on; healthy_get only), sluice-lr and sluice-ewma (least_request and ewma balancers; slow_backend and flapping_backend only), nginx, haproxy, go-std (Go's own HTTP server answering from memory, a reference; HTTPS scenarios only)")
	flag.DurationVar(&o.duration, "duration", o.duration, "length of each measured run (wrk rounds up to whole seconds)")
	flag.DurationVar(&o.warmup, "warmup", o.warmup, "length of the unmeasured warm-up before each run; 0 skips it")
	flag.IntVar(&o.reps, "reps", o.reps, "repetitions of each scenario per proxy; the median is reported")
	flag.IntVar(&o.connections, "connections", o.connections, "wrk connections (many_conns always uses 1000)")
	flag.IntVar(&o.threads, "threads", o.threads, "wrk threads (1 gives the single-threaded load of -threads 1)")
	flag.StringVar(&o.backends, "backends", o.backends, "the two healthy backends: go (fasthttp, in a child process) or nginx (one nginx worker answering from its configuration; healthy_get, many_conns and the HTTPS scenarios only)")
	flag.StringVar(&o.out, "out", "", "results folder (default bench/results/<UTC timestamp>)")
	flag.StringVar(&o.sluiceBin, "sluice", "", "a prebuilt sluice binary to use instead of building ./cmd/sluice")
	flag.IntVar(&o.h1Rate, "h1-rate", o.h1Rate, "run healthy_get at this fixed rate, requests a second in all (h2load --h1 --rps, spread over the -connections), rather than with wrk as fast as the proxy answers; 0 for the latter. At a rate every proxy keeps up with, their latencies compare at the same load")
	flag.IntVar(&o.h2Rate, "h2-rate", o.h2Rate, "run h2_get at this fixed rate, requests a second in all (h2load --rps, spread over its 8 connections), rather than as fast as the proxy answers; 0 for the latter")
	flag.IntVar(&o.clientNice, "client-nice", o.clientNice, "the niceness wrk and h2load run at, 0 to 19, so that on the CPU they share with the backends the backends come first; 0 runs them alongside")
	flag.StringVar(&o.baselineBin, "baseline", "", "another sluice build, run as the proxy sluice-baseline with plain sluice's configuration, to compare two builds in one run")
	rereport := flag.String("rereport", "", "write results.md, results.json and chart.svg of the results folder again from its saved samples, and run nothing")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	o.log = os.Stdout
	if *rereport != "" {
		if err := rewriteReport(*rereport); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	rep, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	if len(rep.Failures) > 0 {
		fmt.Fprintf(os.Stderr, "bench: %d run(s) failed; see %s\n", len(rep.Failures), rep.Dir)
		os.Exit(1)
	}
}

// options are the harness's settings; main fills them from flags and the
// smoke test directly.
type options struct {
	scenarios   string        // comma list of scenario names; "" or "all" for all
	proxies     string        // comma list of proxy names
	duration    time.Duration // measured run length
	warmup      time.Duration // warm-up length before each measured run; 0 skips it
	reps        int           // repetitions per scenario and proxy
	connections int           // wrk connections, except where a scenario fixes them
	threads     int           // wrk threads
	backends    string        // the healthy backends: "go" or "nginx" (backendKinds)
	out         string        // results folder; "" for bench/results/<timestamp>
	sluiceBin   string        // prebuilt sluice; "" builds ./cmd/sluice
	baselineBin string        // the build run as sluice-baseline; "" for none
	h2Rate      int           // h2_get's fixed rate, requests a second in all; 0 for as fast as answered
	h1Rate      int           // healthy_get's fixed rate, requests a second in all; 0 for wrk as fast as answered
	clientNice  int           // the niceness wrk and h2load run at (clientPin)
	log         io.Writer     // progress and the final table go here
}

// defaultOptions returns the flag defaults.
func defaultOptions() options {
	return options{
		scenarios:   "all",
		proxies:     "sluice,sluice-log,sluice-lr,sluice-ewma,nginx,haproxy",
		duration:    10 * time.Second,
		warmup:      2 * time.Second,
		reps:        3,
		connections: 64,
		threads:     2,
		backends:    "go",
		clientNice:  5,
	}
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
