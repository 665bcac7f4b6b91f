package main

// Running wrk and reading its report.

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// uploadSize is the request body size of upload_post.
const uploadSize = 64 << 10

// uploadScript is the wrk Lua script of upload_post: every request is a
// POST of uploadSize bytes.
var uploadScript = fmt.Sprintf(`-- upload_post: POST a %d-byte body on every request (generated)
wrk.method = "POST"
wrk.body = string.rep("x", %d)
wrk.headers["Content-Type"] = "application/octet-stream"
`, uploadSize, uploadSize)

// writeUploadScript writes uploadScript into dir and returns its path.
func writeUploadScript(dir string) (string, error) {
	path := filepath.Join(dir, "upload.lua")
	return path, os.WriteFile(path, []byte(uploadScript), 0o644)
}

// wrkRun is one invocation of wrk.
type wrkRun struct {
	url      string
	threads  int
	conns    int
	duration time.Duration
	script   string // a Lua script path, or ""
}

// args returns wrk's command line arguments. wrk takes whole seconds, so the
// duration is rounded up to at least one second.
func (r wrkRun) args() []string {
	secs := max(1, int(math.Ceil(r.duration.Seconds())))
	threads := min(max(1, r.threads), r.conns) // wrk needs connections >= threads
	a := []string{
		"-t", strconv.Itoa(threads),
		"-c", strconv.Itoa(r.conns),
		"-d", strconv.Itoa(secs) + "s",
		"--timeout", "5s",
		"--latency",
	}
	if r.script != "" {
		a = append(a, "-s", r.script)
	}
	return append(a, r.url)
}

// run executes wrk, pinned with pin (a taskset prefix, or nil), and returns
// its standard output and the CPU seconds it used (taskset execs wrk, so
// the rusage is wrk's).
func (r wrkRun) run(ctx context.Context, wrkBin string, pin []string) (string, float64, error) {
	argv := append(append(append([]string{}, pin...), wrkBin), r.args()...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	var cpu float64
	if ps := cmd.ProcessState; ps != nil {
		cpu = (ps.UserTime() + ps.SystemTime()).Seconds()
	}
	if err != nil {
		return stdout.String(), cpu, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), cpu, nil
}

// wrkResult is what wrk reports about a run.
type wrkResult struct {
	Requests     int64   `json:"requests"`      // completed requests
	Seconds      float64 `json:"seconds"`       // the run's duration as wrk measured it
	RPS          float64 `json:"rps"`           // Requests/sec
	MeanMs       float64 `json:"mean_ms"`       // mean latency, in milliseconds (wrk only; 0 for h2load)
	P50ms        float64 `json:"p50_ms"`        // latency percentiles, in milliseconds
	P90ms        float64 `json:"p90_ms"`        //
	P99ms        float64 `json:"p99_ms"`        //
	Non2xx3xx    int64   `json:"non_2xx_3xx"`   // responses with another status
	SocketErrors int64   `json:"socket_errors"` // connect + read + write + timeout
}

// Errors is the number of failed requests: non-2xx/3xx answers plus socket
// errors.
func (w wrkResult) Errors() int64 { return w.Non2xx3xx + w.SocketErrors }

var (
	wrkMean       = regexp.MustCompile(`(?m)^\s+Latency\s+(\S+)\s`)
	wrkPercentile = regexp.MustCompile(`(?m)^\s+(50|90|99)%\s+(\S+)\s*$`)
	wrkRequests   = regexp.MustCompile(`(?m)^\s+(\d+) requests in (\S+),`)
	wrkRPS        = regexp.MustCompile(`(?m)^Requests/sec:\s+([\d.]+)`)
	wrkSocket     = regexp.MustCompile(`(?m)Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx     = regexp.MustCompile(`(?m)Non-2xx or 3xx responses: (\d+)`)
)

// parseWrk reads wrk's --latency report.
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	m := wrkRequests.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk output has no request count:\n%s", out)
	}
	r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	d, err := parseWrkDuration(strings.TrimSuffix(m[2], ","))
	if err != nil {
		return r, err
	}
	r.Seconds = d.Seconds()

	m = wrkRPS.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk output has no Requests/sec:\n%s", out)
	}
	r.RPS, _ = strconv.ParseFloat(m[1], 64)

	if m := wrkMean.FindStringSubmatch(out); m != nil {
		d, err := parseWrkDuration(m[1])
		if err != nil {
			return r, err
		}
		r.MeanMs = float64(d) / float64(time.Millisecond)
	}
	for _, p := range wrkPercentile.FindAllStringSubmatch(out, -1) {
		d, err := parseWrkDuration(p[2])
		if err != nil {
			return r, err
		}
		ms := float64(d) / float64(time.Millisecond)
		switch p[1] {
		case "50":
			r.P50ms = ms
		case "90":
			r.P90ms = ms
		case "99":
			r.P99ms = ms
		}
	}

	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.SocketErrors += n
		}
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		r.Non2xx3xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return r, nil
}

// parseWrkDuration reads one of wrk's time figures: "812.00us", "1.23ms",
// "10.00s", "1.50m" or "1.00h". These are Go duration strings too.
func parseWrkDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("wrk: bad duration %q", s)
	}
	return d, nil
}
