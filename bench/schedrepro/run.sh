#!/usr/bin/env bash
# Drives the schedrepro comparison (see main.go and docs/bench/tail-repro.md).
#
#   bench/schedrepro/run.sh [OUT] [REPS] [CONNS] [MODES]
#
# REP0=n numbers the repetitions from n+1, to add repetitions to an OUT.
#
# For each repetition, for each mode in turn (interleaved A B C D A B C D ...):
# start the server on CPU 0 with GOMAXPROCS=1, warm it up with 2 s of wrk,
# then measure 8 s of wrk on CPU 1, and read the server's CPU time
# (utime+stime from /proc/PID/stat) before and after the measured run, and
# the busy time of both CPUs that went neither to the server nor to wrk
# (the kernel's softirq work, and other people's processes on this shared
# machine: summarize -maxother leaves out the runs they disturbed).
# Every wrk run holds /tmp/bench.lock, one run per hold, so that it never
# overlaps another benchmark on the machine. Results: OUT/runs.tsv and the
# wrk outputs; summarize with go run ./bench/schedrepro/summarize OUT.
set -euo pipefail
out=${1:-/tmp/schedrepro-results}
reps=${2:-5}
conns=${3:-64}
modes=${4:-goroutine epoll-fifo epoll-lifo goroutine-dispatch}
work=${WORK:-15us}
dur=${DUR:-8s}
port=${PORT:-19100} # 19100-19199
rep0=${REP0:-0}
bin=/tmp/schedrepro

mkdir -p "$out"
go build -o "$bin" ./bench/schedrepro
tck=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# busy ticks of both CPUs (all but idle and iowait)
busy() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

for rep in $(seq $((rep0 + 1)) $((rep0 + reps))); do
	for mode in $modes; do
		addr=127.0.0.1:$port
		GOMAXPROCS=1 taskset -c 0 "$bin" -mode "$mode" -addr "$addr" -work "$work" 2>>"$out/server.log" &
		pid=$!
		for _ in $(seq 50); do
			(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
			sleep 0.1
		done
		kill -0 "$pid" # the server is up (it exits if it cannot listen)
		flock /tmp/bench.lock taskset -c 1 wrk -t1 -c"$conns" -d2s "http://$addr/" >/dev/null
		f="$out/$mode-c$conns-r$rep.txt"
		exec 9>>/tmp/bench.lock # the measured run, with its CPU readings, in one hold
		flock 9
		c0=$(cpu "$pid") b0=$(busy)
		/usr/bin/time -f "%U %S" -o "$out/wrk.time" taskset -c 1 wrk -t1 -c"$conns" -d"$dur" --latency "http://$addr/" >"$f"
		c1=$(cpu "$pid") b1=$(busy)
		exec 9>&-
		kill "$pid"
		wait "$pid" 2>/dev/null || true
		w=$(awk '{print $1 + $2}' "$out/wrk.time")
		# mode, conns, rep, server CPU s, wrk output, CPU s used by neither
		printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$conns" "$rep" \
			"$(awk -v a="$c0" -v b="$c1" -v t="$tck" 'BEGIN{printf "%.2f", (b-a)/t}')" "$f" \
			"$(awk -v a="$c0" -v b="$c1" -v x="$b0" -v y="$b1" -v t="$tck" -v w="$w" 'BEGIN{printf "%.2f", ((y-x)-(b-a))/t - w}')" >>"$out/runs.tsv"
		echo "$mode c$conns rep $rep: $(grep Requests/sec "$f")"
		port=$((port + 1))
		if [ "$port" -gt 19199 ]; then port=19100; fi
	done
done
