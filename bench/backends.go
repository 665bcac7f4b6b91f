package main

// The benchmark backends. They run in a child process (this same executable,
// re-executed with backendsEnv set) so that taskset can pin them to the load
// generator's CPU, away from the proxy under test. They are fasthttp servers
// with precomputed bodies so that they are never the bottleneck.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// backendsEnv, when set in the environment, turns this executable into the
// backend process. Its value is a comma-separated list of modes, one listener
// each: "ok" serves the normal endpoints, "fail" answers 503 on every path,
// "slow" serves them slowDelay late, and "flap" serves them slowDelay late
// in every other flapPeriod (fast, then slow, then fast...).
const backendsEnv = "SLUICE_BENCH_BACKENDS"

// backendModes are the backend process's listeners, in the order of the
// fields of backends.
const backendModes = "ok,ok,fail,slow,flap"

// slowDelay is what the "slow" backend adds to every answer, and the "flap"
// backend in its slow phases.
const slowDelay = 20 * time.Millisecond

// flapPeriod is the length of each of the "flap" backend's fast and slow
// phases. The phases follow the wall clock (slow when the Unix time in
// flapPeriods is odd), so that every run sees the same alternation.
const flapPeriod = 2 * time.Second

// largeSize is the body size of /large.
const largeSize = 256 << 10

// usersJSON is the ~100-byte body of /api/users.
var usersJSON = []byte(`[{"id":1,"name":"Ada Lovelace","email":"ada@example.com"},{"id":2,"name":"Alan Turing","email":"alan@example.com"}]`)

// largeBody is the body of /large, filled once.
var largeBody = func() []byte {
	b := make([]byte, largeSize)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}()

// countPath answers with the number of requests the backend has served
// (not counting these), so that the harness can see how many upstream
// requests a proxy made: in retry_get, whether it really retried.
const countPath = "/__count"

// backendHandler answers the benchmark endpoints in mode (see backendsEnv).
// In "fail" mode it answers 503 on every path, so that a proxy in front of it
// has to retry elsewhere; in "slow" and "flap" modes it answers as "ok" does,
// after modeDelay (countPath is never delayed). The sleep holds only the
// connection's own goroutine: the other connections are served meanwhile,
// as by a backend whose every request takes longer, not one that queues.
func backendHandler(mode string) fasthttp.RequestHandler {
	var served atomic.Int64
	fail := mode == "fail"
	return func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == countPath {
			ctx.SetBodyString(strconv.FormatInt(served.Load(), 10))
			return
		}
		served.Add(1)
		if d := modeDelay(mode, time.Now()); d > 0 {
			time.Sleep(d)
		}
		if fail {
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"error":"fail mode"}`)
			return
		}
		switch string(ctx.Path()) { // the conversion does not allocate in a switch
		case "/api/users":
			ctx.SetContentType("application/json")
			ctx.Response.SetBodyRaw(usersJSON)
		case "/large":
			ctx.SetContentType("application/octet-stream")
			ctx.Response.SetBodyRaw(largeBody)
		case "/upload":
			if !ctx.IsPost() {
				ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
				return
			}
			ctx.SetContentType("application/json")
			fmt.Fprintf(ctx, `{"received":%d}`, len(ctx.PostBody()))
		case "/fail":
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		case "/health":
			ctx.SetBodyString("ok")
		default:
			ctx.SetStatusCode(fasthttp.StatusNotFound)
		}
	}
}

// modeDelay returns how long a backend in mode waits at now before it
// answers: slowDelay for "slow", slowDelay in the slow phases of "flap"
// (flapSlow), nothing otherwise.
func modeDelay(mode string, now time.Time) time.Duration {
	if mode == "slow" || (mode == "flap" && flapSlow(now)) {
		return slowDelay
	}
	return 0
}

// flapSlow reports whether the "flap" backend is in a slow phase at now.
func flapSlow(now time.Time) bool {
	return (now.UnixNano()/int64(flapPeriod))%2 == 1
}

// backendsHello is the one JSON line the backend process writes to stdout
// once its listeners are open.
type backendsHello struct {
	Addrs []string `json:"addrs"`
}

// maybeServeBackends runs the backend process and returns true when
// backendsEnv is set; it returns false at once otherwise. main and TestMain
// call it first.
func maybeServeBackends() bool {
	modes := os.Getenv(backendsEnv)
	if modes == "" {
		return false
	}
	if err := serveBackends(strings.Split(modes, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "backends:", err)
		os.Exit(1)
	}
	return true
}

// serveBackends opens one listener per mode on a free loopback port, prints
// their addresses as a backendsHello line, and serves until stdin reaches EOF
// (the parent closed it or died) or a SIGTERM/SIGINT arrives.
func serveBackends(modes []string) error {
	var hello backendsHello
	var servers []*fasthttp.Server
	for _, mode := range modes {
		if !slices.Contains(strings.Split(backendModes, ","), mode) {
			return fmt.Errorf("unknown backend mode %q", mode)
		}
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		s := &fasthttp.Server{
			Handler:               backendHandler(mode),
			Name:                  "bench-backend",
			NoDefaultDate:         true,
			MaxRequestBodySize:    4 << 20,
			ReadBufferSize:        16 << 10,
			IdleTimeout:           2 * time.Minute,
			NoDefaultServerHeader: true,
		}
		servers = append(servers, s)
		hello.Addrs = append(hello.Addrs, ln.Addr().String())
		go func() { _ = s.Serve(ln) }()
	}
	if err := json.NewEncoder(os.Stdout).Encode(hello); err != nil {
		return err
	}

	stop := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-stop:
	case <-sig:
	}
	for _, s := range servers {
		_ = s.Shutdown()
	}
	return nil
}

// backends is the running backend process seen from the harness.
type backends struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	// ok1 and ok2 are the healthy backends; fail answers 503 everywhere;
	// slow answers slowDelay late, flap slowDelay late every other
	// flapPeriod (see backendsEnv).
	ok1, ok2, fail, slow, flap string
	// nginx, with -backends nginx, serves ok1 and ok2 in place of the
	// fasthttp process, which then serves the other modes only.
	nginx *nginxBackends
}

// counted returns the addresses of the backends that count what they
// serve (countPath): all but nginx's.
func (b *backends) counted() []string {
	if b.nginx != nil {
		return []string{b.fail, b.slow, b.flap}
	}
	return []string{b.ok1, b.ok2, b.fail, b.slow, b.flap}
}

// pids returns the backend processes, for their CPU time.
func (b *backends) pids() []int {
	p := []int{b.cmd.Process.Pid}
	if b.nginx != nil {
		p = append(p, b.nginx.cmd.Process.Pid)
	}
	return p
}

// useNginx starts nginx (bin) as ok1 and ok2, pinned with pin, its files in
// dir and its log at logFile.
func (b *backends) useNginx(ctx context.Context, bin string, pin []string, dir, logFile string) error {
	nb, addrs, err := startNginxBackends(ctx, bin, pin, dir, logFile)
	if err != nil {
		return err
	}
	b.nginx = nb
	b.ok1, b.ok2 = addrs[0], addrs[1]
	return nil
}

// startBackends re-executes self as the backend process, pinned with pin (a
// taskset prefix, or nil), and waits until it has reported its addresses and
// each answers /health.
func startBackends(ctx context.Context, self string, pin []string, logFile string) (*backends, error) {
	argv := append(append([]string{}, pin...), self)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), backendsEnv+"="+backendModes)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child keeps its own descriptor
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting backends: %w", err)
	}
	b := &backends{cmd: cmd, stdin: stdin}

	// Read the hello line, with a deadline in case the child hangs.
	type line struct {
		text string
		err  error
	}
	got := make(chan line, 1)
	go func() {
		s, err := bufio.NewReader(stdout).ReadString('\n')
		got <- line{s, err}
	}()
	var hello backendsHello
	select {
	case l := <-got:
		if l.err != nil {
			b.stop()
			return nil, fmt.Errorf("backends exited before listening (see %s): %w", logFile, l.err)
		}
		if err := json.Unmarshal([]byte(l.text), &hello); err != nil || len(hello.Addrs) != strings.Count(backendModes, ",")+1 {
			b.stop()
			return nil, fmt.Errorf("backends: bad hello line %q", l.text)
		}
	case <-time.After(15 * time.Second):
		b.stop()
		return nil, errors.New("backends did not start within 15s")
	}
	b.ok1, b.ok2, b.fail, b.slow, b.flap = hello.Addrs[0], hello.Addrs[1], hello.Addrs[2], hello.Addrs[3], hello.Addrs[4]

	for addr, want := range map[string]int{b.ok1: 200, b.ok2: 200, b.fail: 503, b.slow: 200, b.flap: 200} {
		if err := waitStatus(ctx, "http://"+addr+"/health", want, 10*time.Second, nil); err != nil {
			b.stop()
			return nil, fmt.Errorf("backend %s: %w", addr, err)
		}
	}
	return b, nil
}

// served returns the number of requests each backend has served so far,
// keyed by address.
func (b *backends) served(ctx context.Context) (map[string]int64, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	out := map[string]int64{}
	for _, addr := range b.counted() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+countPath, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(body)), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("backend %s: bad count %q", addr, body)
		}
		out[addr] = n
	}
	return out, nil
}

// stop ends the backend process: closing stdin asks it to shut down; it is
// killed if it has not exited within five seconds.
func (b *backends) stop() {
	if b.nginx != nil {
		b.nginx.stop()
	}
	_ = b.stdin.Close()
	done := make(chan struct{})
	go func() { _ = b.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = b.cmd.Process.Kill()
		<-done
	}
}

// waitStatus polls url with GET until it answers want, the deadline passes,
// or exited (when not nil) is closed because the server process died.
// It polls, rather than sleeping a fixed time, so that start-up costs only
// as long as it takes.
func waitStatus(ctx context.Context, url string, want int, timeout time.Duration, exited <-chan struct{}) error {
	client := &http.Client{
		Timeout:   time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
	}
	deadline := time.Now().Add(timeout)
	last := "no answer"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return nil
			}
			last = "status " + strconv.Itoa(resp.StatusCode)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("GET %s did not answer %d within %s (last: %s)", url, want, timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			return fmt.Errorf("process exited while waiting for GET %s to answer %d (last: %s)", url, want, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
