package main

import (
	"math"
	"testing"
	"time"
)

// wrkSample is a real wrk 4.1 --latency report with errors.
const wrkSample = `Running 3s test @ http://127.0.0.1:42215/api/users
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     8.86ms   14.52ms 116.69ms   91.34%
    Req/Sec     6.63k     3.90k   15.52k    60.00%
  Latency Distribution
     50%  812.00us
     75%    9.51ms
     90%   21.16ms
     99%    1.02s
  39742 requests in 3.01s, 9.13MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 19871
Requests/sec:  13203.75
Transfer/sec:      3.03MB
`

func TestParseWrk(t *testing.T) {
	got, err := parseWrk(wrkSample)
	if err != nil {
		t.Fatal(err)
	}
	want := wrkResult{
		Requests: 39742, Seconds: 3.01, RPS: 13203.75,
		MeanMs: 8.86, P50ms: 0.812, P90ms: 21.16, P99ms: 1020,
		Non2xx3xx: 19871, SocketErrors: 10,
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9*math.Max(1, math.Abs(b)) }
	if got.Requests != want.Requests || got.Non2xx3xx != want.Non2xx3xx || got.SocketErrors != want.SocketErrors ||
		!near(got.Seconds, want.Seconds) || !near(got.RPS, want.RPS) || !near(got.MeanMs, want.MeanMs) ||
		!near(got.P50ms, want.P50ms) || !near(got.P90ms, want.P90ms) || !near(got.P99ms, want.P99ms) {
		t.Errorf("parseWrk:\n got %+v\nwant %+v", got, want)
	}
	if got.Errors() != 19881 {
		t.Errorf("Errors() = %d, want 19881", got.Errors())
	}
	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused"); err == nil {
		t.Error("parseWrk accepted output without a report")
	}
}

func TestWrkArgs(t *testing.T) {
	tests := []struct {
		name string
		run  wrkRun
		want string
	}{
		{"rounds up", wrkRun{url: "http://x/", threads: 2, conns: 64, duration: 1500 * time.Millisecond}, "-t 2 -c 64 -d 2s --timeout 5s --latency http://x/"},
		{"threads capped", wrkRun{url: "http://x/", threads: 4, conns: 2, duration: time.Second, script: "u.lua"}, "-t 2 -c 2 -d 1s --timeout 5s --latency -s u.lua http://x/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			for i, a := range tt.run.args() {
				if i > 0 {
					got += " "
				}
				got += a
			}
			if got != tt.want {
				t.Errorf("args = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNiceScale(t *testing.T) {
	tests := []struct {
		max, step, top float64
	}{
		{0, 1, 5},
		{45756, 10000, 50000},
		{251.3, 100, 300},
		{9.3, 2, 10},
	}
	for _, tt := range tests {
		step, top := niceScale(tt.max)
		if step != tt.step || top != tt.top {
			t.Errorf("niceScale(%v) = %v, %v; want %v, %v", tt.max, step, top, tt.step, tt.top)
		}
	}
}

func TestFormatting(t *testing.T) {
	tests := []struct{ got, want string }{
		{fmtInt(41234.4), "41,234"},
		{fmtInt(999), "999"},
		{fmtInt(1234567), "1,234,567"},
		{fmtMs(0.812), "812 µs"},
		{fmtMs(1.234), "1.23 ms"},
		{fmtMs(1020), "1.02 s"},
		{fmtCompact(45756), "45.8k"},
		{fmtCompact(2500), "2.5k"},
		{fmtCompact(20), "20"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
