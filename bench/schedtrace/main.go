// Command schedtrace reads a Go execution trace (Go 1.22+, as written by
// runtime/trace or /debug/pprof/trace) of a proxy under load and reports
// where goroutines wait to be scheduled:
//
//  1. the scheduling latency (Runnable → Running) of goroutines, by what
//     made them runnable: the netpoller (an unblock with no goroutine
//     running, after a network block), another goroutine, a preemption, ...
//  2. netpoll batches: the goroutines one netpoll made runnable
//     (consecutive netpoll unblocks on one thread), their sizes, and the
//     wait of each position in a batch until it runs;
//  3. the phases of each request on a connection goroutine: blocked on
//     the client socket → unblocked (t0) → running (t1) → blocks on the
//     upstream socket (t2) → unblocked (t3) → running (t4) → blocks on the
//     client socket again (t5); the blocks are told apart by the
//     functions in their stacks (-client, -upstream);
//  4. other activity: GC, stop and block reasons, syscalls, and the run
//     time of each kind of goroutine.
//
// Usage:
//
//	go run ./bench/schedtrace [-client RE] [-upstream RE] TRACEFILE
//
// The output is markdown. See docs/bench/tail-trace.md.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"regexp"
)

func main() {
	d := Defaults()
	client := flag.String("client", d.Client.String(), "a stack frame `regexp` of a goroutine's wait for its client")
	upstream := flag.String("upstream", d.Upstream.String(), "a stack frame `regexp` of a goroutine's wait for its upstream")
	maxPos := flag.Int("maxpos", d.MaxPos, "batch positions shown one by one")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: schedtrace [flags] TRACEFILE\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	opts := Options{MaxPos: *maxPos}
	var err error
	if opts.Client, err = regexp.Compile(*client); err != nil {
		fatal(err)
	}
	if opts.Upstream, err = regexp.Compile(*upstream); err != nil {
		fatal(err)
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		fatal(err)
	}
	defer f.Close()
	rep, err := Analyze(bufio.NewReaderSize(f, 1<<20), opts)
	if err != nil {
		fatal(err)
	}
	out := bufio.NewWriter(os.Stdout)
	rep.Write(out)
	if err := out.Flush(); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "schedtrace:", err)
	os.Exit(1)
}
