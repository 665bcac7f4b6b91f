package main

// The HTTPS scenarios (issue 16): the same small GET as healthy_get, over
// TLS 1.3 with an ECDSA P-256 certificate on all three proxies. https_get
// is HTTP/1.1 on keep-alive connections (wrk), h2_get HTTP/2 with 64
// streams over 8 connections (h2load, from Debian's nghttp2-client), and
// tls_handshake a new connection, so a full handshake, for every request
// (wrk with "Connection: close"). Each proxy keeps its plain listener (the
// harness waits on it) and gets an HTTPS listener beside it: its generated
// configuration is patched here, so that proxies.go stays as it is.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

func init() { scenarios = append(scenarios, tlsScenarios...) }

// tlsScenarios are the HTTPS scenarios; tls says how the load is made.
var tlsScenarios = []scenario{
	{name: "https_get", path: "/api/users", tls: "h1", desc: "~100-byte JSON GETs, HTTP/1.1 keep-alive over TLS 1.3 (ECDSA P-256), wrk"},
	{name: "h2_get", path: "/api/users", tls: "h2", desc: "the same GETs over HTTP/2, 64 streams over 8 connections, h2load"},
	{name: "tls_handshake", path: "/api/users", tls: "handshake", desc: "a new TLS 1.3 connection (full handshake, ECDSA P-256) for every GET, wrk"},
}

// The HTTP/2 load: h2Clients connections with h2Streams streams each.
const (
	h2Clients = 8
	h2Streams = 8
)

// tlsFiles are the certificate files every proxy serves.
type tlsFiles struct {
	cert, key, combined string // PEM; combined is cert then key, for HAProxy
	closeScript         string // wrk script: "Connection: close" on every request
}

var (
	tlsOnce sync.Once
	tlsMade tlsFiles
	tlsErr  error
)

// certificate makes, once per run, a self-signed ECDSA P-256 certificate for
// 127.0.0.1 in dir.
func certificate(dir string) (tlsFiles, error) {
	tlsOnce.Do(func() { tlsMade, tlsErr = makeCertificate(dir) })
	return tlsMade, tlsErr
}

func makeCertificate(dir string) (tlsFiles, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tlsFiles{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(30 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tlsFiles{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tlsFiles{}, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	f := tlsFiles{cert: filepath.Join(dir, "bench.crt"), key: filepath.Join(dir, "bench.key"),
		combined: filepath.Join(dir, "bench.pem"), closeScript: filepath.Join(dir, "close.lua")}
	for _, w := range []struct {
		path string
		data []byte
	}{
		{f.cert, certPEM}, {f.key, keyPEM}, {f.combined, append(append([]byte{}, certPEM...), keyPEM...)},
		{f.closeScript, []byte("-- tls_handshake: a new connection for every request (generated)\nwrk.headers[\"Connection\"] = \"close\"\n")},
	} {
		// nginx's worker may run as nobody: the files must be readable.
		if err := os.WriteFile(w.path, w.data, 0o644); err != nil {
			return tlsFiles{}, err
		}
	}
	return f, nil
}

// tlsProxy is a proxy with an HTTPS listener on port beside its plain one.
type tlsProxy struct {
	proxy
	port  int
	files tlsFiles
}

// command writes the inner proxy's configuration and adds the HTTPS
// listener to it: TLS 1.3 only, h2 and http/1.1 by ALPN.
func (p tlsProxy) command(c proxyConfig) ([]string, []string, error) {
	argv, env, err := p.proxy.command(c)
	if err != nil {
		return nil, nil, err
	}
	var file, old, add string
	switch p.proxy.(type) {
	case sluiceProxy:
		file = "sluice.yaml"
		add = fmt.Sprintf("tls:\n  listen: \"127.0.0.1:%d\"\n  certificates: [{cert: %q, key: %q}]\n  min_version: \"1.3\"\n",
			p.port, p.files.cert, p.files.key)
	case nginxProxy:
		file = "nginx.conf"
		old = fmt.Sprintf("        listen 127.0.0.1:%d backlog=4096;\n", c.port)
		add = old + fmt.Sprintf("        listen 127.0.0.1:%d ssl http2 backlog=4096;\n"+
			"        ssl_certificate %s;\n        ssl_certificate_key %s;\n        ssl_protocols TLSv1.3;\n",
			p.port, p.files.cert, p.files.key)
	case goStdProxy:
		return argv, goStdTLSEnv(env, p.port, p.files), nil
	case haproxyProxy:
		file = "haproxy.cfg"
		old = fmt.Sprintf("    bind 127.0.0.1:%d\n", c.port)
		add = old + fmt.Sprintf("    bind 127.0.0.1:%d ssl crt %s alpn h2,http/1.1 ssl-min-ver TLSv1.3\n", p.port, p.files.combined)
	default:
		return nil, nil, fmt.Errorf("%s has no HTTPS configuration", p.name())
	}
	path := filepath.Join(c.dir, file)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	s := string(data)
	if old == "" {
		s += add
	} else if strings.Count(s, old) != 1 {
		return nil, nil, fmt.Errorf("%s: no %q to add the HTTPS listener to", path, strings.TrimSpace(old))
	} else {
		s = strings.Replace(s, old, add, 1)
	}
	return argv, env, os.WriteFile(path, []byte(s), 0o644)
}

// loadRun is one run of a load generator: wrk or h2load.
type loadRun interface {
	run(ctx context.Context, pin []string) (out string, cpu float64, err error)
	parse(out string) (wrkResult, error)
	commandLine() string
}

type wrkLoad struct {
	w   wrkRun
	bin string
}

func (l wrkLoad) run(ctx context.Context, pin []string) (string, float64, error) {
	return l.w.run(ctx, l.bin, pin)
}
func (l wrkLoad) parse(out string) (wrkResult, error) { return parseWrk(out) }
func (l wrkLoad) commandLine() string                 { return l.bin + " " + strings.Join(l.w.args(), " ") }

// h2loadRun is one run of h2load, its latencies logged to logFile.
type h2loadRun struct {
	bin      string
	url      string
	clients  int
	streams  int
	rps      int  // each client's fixed rate (--rps); 0 for as fast as answered
	h1       bool // HTTP/1.1 (--h1) rather than HTTP/2
	duration time.Duration
	logFile  string
}

// h2ClientRate is each h2load connection's share (--rps) of a fixed rate of
// total requests a second; 0 for none.
func h2ClientRate(total int) int { return total / h2Clients }

func (r h2loadRun) args() []string {
	secs := max(1, int(math.Ceil(r.duration.Seconds())))
	args := []string{"-c", strconv.Itoa(r.clients), "-m", strconv.Itoa(r.streams), "-t", "1",
		"-D", strconv.Itoa(secs), "--log-file=" + r.logFile}
	if r.rps > 0 {
		args = append(args, "--rps="+strconv.Itoa(r.rps))
	}
	if r.h1 {
		args = append(args, "--h1")
	}
	return append(args, r.url)
}

func (r h2loadRun) commandLine() string { return r.bin + " " + strings.Join(r.args(), " ") }

func (r h2loadRun) run(ctx context.Context, pin []string) (string, float64, error) {
	os.Remove(r.logFile)
	argv := append(append(append([]string{}, pin...), r.bin), r.args()...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	out, err := cmd.CombinedOutput()
	var cpu float64
	if ps := cmd.ProcessState; ps != nil {
		cpu = (ps.UserTime() + ps.SystemTime()).Seconds()
	}
	if err != nil {
		return string(out), cpu, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, tail2(string(out)))
	}
	return string(out), cpu, nil
}

func tail2(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-3):], " | ")
}

var (
	h2Finished = regexp.MustCompile(`(?m)^finished in ([\d.]+)(m?s), ([\d.]+) req/s`)
	h2Requests = regexp.MustCompile(`(?m)^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2Status   = regexp.MustCompile(`(?m)^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
)

// parse reads h2load's report and its log of latencies.
func (r h2loadRun) parse(out string) (wrkResult, error) {
	var res wrkResult
	m := h2Finished.FindStringSubmatch(out)
	q := h2Requests.FindStringSubmatch(out)
	st := h2Status.FindStringSubmatch(out)
	if m == nil || q == nil || st == nil {
		return res, fmt.Errorf("h2load output not understood:\n%s", out)
	}
	res.Seconds, _ = strconv.ParseFloat(m[1], 64)
	if m[2] == "ms" {
		res.Seconds /= 1000
	}
	res.RPS, _ = strconv.ParseFloat(m[3], 64)
	done, _ := strconv.ParseInt(q[3], 10, 64)
	failed, _ := strconv.ParseInt(q[5], 10, 64)
	errored, _ := strconv.ParseInt(q[6], 10, 64)
	timedOut, _ := strconv.ParseInt(q[7], 10, 64)
	res.Requests = done
	res.SocketErrors = errored + timedOut
	n4, _ := strconv.ParseInt(st[3], 10, 64)
	n5, _ := strconv.ParseInt(st[4], 10, 64)
	res.Non2xx3xx = n4 + n5 + max(0, failed-n4-n5-errored-timedOut)
	lat, err := h2Latencies(r.logFile)
	if err != nil {
		return res, err
	}
	res.P50ms, res.P90ms, res.P99ms = percentile(lat, 0.50), percentile(lat, 0.90), percentile(lat, 0.99)
	return res, nil
}

// h2Latencies reads the request times h2load logged, in milliseconds,
// sorted: each line is start time, status and time taken in microseconds.
func h2Latencies(path string) ([]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lat []float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 3 {
			continue
		}
		us, err := strconv.ParseFloat(fs[2], 64)
		if err == nil {
			lat = append(lat, us/1000)
		}
	}
	slices.Sort(lat)
	return lat, sc.Err()
}

// percentile returns the p-quantile of sorted (0 when empty).
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

// measureTLS is measure for the HTTPS scenarios: the proxy gets an HTTPS
// listener, and wrk or h2load loads it.
func (e *env) measureTLS(ctx context.Context, p proxy, sc scenario, rep int) (sample, error) {
	name := fmt.Sprintf("%s-%s-rep%d", sc.name, p.name(), rep)
	files, err := certificate(e.tmp)
	if err != nil {
		return sample{}, err
	}
	var ports [3]int
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return sample{}, err
		}
	}
	port, adminPort, tlsPort := ports[0], ports[1], ports[2]
	dir := filepath.Join(e.tmp, name)
	pp, err := startProxy(ctx, tlsProxy{proxy: p, port: tlsPort, files: files}, proxyConfig{
		dir: dir, logDir: e.logDir, logName: name,
		port: port, adminPort: adminPort, upstreams: []string{e.be.ok1, e.be.ok2},
	}, e.pinProxy, "/api/users")
	if err != nil {
		return sample{}, err
	}
	defer func() {
		pp.stop()
		_ = os.RemoveAll(dir)
	}()

	url := fmt.Sprintf("https://127.0.0.1:%d%s", tlsPort, sc.path)
	conns := e.o.connections
	var load func(time.Duration) loadRun
	switch sc.tls {
	case "h2":
		bin, err := exec.LookPath("h2load")
		if err != nil {
			return sample{}, errors.New("h2load is not installed (apt-get install nghttp2-client)")
		}
		conns = h2Clients
		logFile := filepath.Join(e.tmp, name+".h2load.log")
		defer os.Remove(logFile)
		load = func(d time.Duration) loadRun {
			return h2loadRun{bin: bin, url: url, clients: h2Clients, streams: h2Streams, rps: h2ClientRate(e.o.h2Rate), duration: d, logFile: logFile}
		}
	default:
		w := wrkRun{url: url, threads: e.o.threads, conns: conns}
		if sc.tls == "handshake" {
			w.script = files.closeScript
		}
		load = func(d time.Duration) loadRun {
			w.duration = d
			return wrkLoad{w: w, bin: e.wrk}
		}
	}

	if e.o.warmup > 0 {
		if _, _, err := load(e.o.warmup).run(ctx, e.pinLoadGen); err != nil {
			return sample{}, fmt.Errorf("warm-up: %w", errors.Join(err, pp.exitError()))
		}
	}
	l := load(e.o.duration)
	pids := processTree(pp.cmd.Process.Pid)
	cpu0, err := totalCPUSeconds(pids)
	if err != nil {
		return sample{}, err
	}
	beCPU0, beErr0 := totalCPUSeconds(e.be.pids())
	jiffies0, _ := readCPUJiffies()
	t0 := time.Now()
	out, loadCPU, runErr := l.run(ctx, e.pinLoadGen)
	wall := time.Since(t0).Seconds()
	cpu1, cpuErr := totalCPUSeconds(pids)
	jiffies1, _ := readCPUJiffies()
	beCPU1, beErr1 := totalCPUSeconds(e.be.pids())
	rss, _, rssErr := maxPeakRSSKiB(pids)

	raw := filepath.Join(e.rawDir, name+".txt")
	if err := os.WriteFile(raw, []byte("# "+l.commandLine()+"\n"+out), 0o644); err != nil {
		return sample{}, err
	}
	if err := errors.Join(runErr, pp.exitError(), cpuErr, rssErr, beErr0, beErr1); err != nil {
		return sample{}, err
	}
	res, err := l.parse(out)
	if err != nil {
		return sample{}, err
	}
	s := sample{
		Scenario: sc.name, Proxy: p.name(), Rep: rep, wrkResult: res,
		Connections: conns, WallSeconds: wall, CPUSeconds: cpu1 - cpu0, PeakRSSKiB: rss,
		Processes: len(pids), Raw: filepath.Join("raw", name+".txt"),
		LoadSeconds:  loadCPU + beCPU1 - beCPU0,
		ProxyCPUBusy: -1, LoadCPUBusy: -1, ProxyCPUOther: -1, LoadCPUOther: -1,
		UpstreamPerRequest: 1,
	}
	if u, ok := cpuUsage(jiffies0, jiffies1, e.proxyCPU, s.CPUSeconds); ok {
		s.ProxyCPUBusy, s.ProxyCPUOther = u.busy, u.other
	}
	if u, ok := cpuUsage(jiffies0, jiffies1, e.loadCPU, s.LoadSeconds); ok {
		s.LoadCPUBusy, s.LoadCPUOther = u.busy, u.other
	}
	if res.Requests > 0 {
		s.CPUPerRequestUS = s.CPUSeconds / float64(res.Requests) * 1e6
	}
	if wall > 0 {
		s.Busy = s.CPUSeconds / wall
	}
	return s, nil
}
