package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/config"
)

// TestTLSConfigs: each proxy gets its HTTPS listener beside its plain one,
// TLS 1.3 only, and the configuration is one the proxy accepts (sluice's
// config check, nginx -t, haproxy -c).
func TestTLSConfigs(t *testing.T) {
	files, err := makeCertificate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sc := findScenario(t, "https_get")
	for _, tt := range []struct {
		inner proxy
		want  []string
		check func(t *testing.T, path string)
	}{
		{sluiceProxy{bin: "sluice"}, []string{`listen: "127.0.0.1:18443"`, `min_version: "1.3"`, files.key}, func(t *testing.T, path string) {
			if _, err := config.Load(path); err != nil {
				t.Errorf("sluice's config check: %v", err)
			}
		}},
		{nginxProxy{bin: "nginx"}, []string{"listen 127.0.0.1:18080 backlog=4096;", "listen 127.0.0.1:18443 ssl http2", "ssl_protocols TLSv1.3;"}, func(t *testing.T, path string) {
			bin := needTool(t, "nginx")
			dir := filepath.Dir(path)
			if out, err := exec.Command(bin, "-t", "-p", dir, "-c", path, "-e", filepath.Join(dir, "test.error.log")).CombinedOutput(); err != nil {
				t.Errorf("nginx -t: %v\n%s", err, out)
			}
		}},
		{haproxyProxy{bin: "haproxy"}, []string{"bind 127.0.0.1:18080\n", "bind 127.0.0.1:18443 ssl crt " + files.combined + " alpn h2,http/1.1 ssl-min-ver TLSv1.3"}, func(t *testing.T, path string) {
			bin := needTool(t, "haproxy")
			if out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput(); err != nil {
				t.Errorf("haproxy -c: %v\n%s", err, out)
			}
		}},
	} {
		t.Run(tt.inner.name(), func(t *testing.T) {
			path, text := renderConfig(t, tlsProxy{proxy: tt.inner, port: 18443, files: files}, sc)
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("configuration lacks %q:\n%s", w, text)
				}
			}
			tt.check(t, path)
		})
	}
}

// TestParseH2load reads h2load's report and its request log.
func TestParseH2load(t *testing.T) {
	log := filepath.Join(t.TempDir(), "h2load.log")
	var b strings.Builder
	for i := 1; i <= 100; i++ {
		b.WriteString("1765000000000000\t200\t" + strconv.Itoa(i*1000) + "\n") // i ms
	}
	if err := os.WriteFile(log, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := `starting benchmark...
finished in 10.00s, 21456.70 req/s, 3.05MB/s
requests: 214567 total, 214631 started, 214567 done, 214560 succeeded, 7 failed, 2 errored, 1 timeout
status codes: 214560 2xx, 0 3xx, 0 4xx, 4 5xx
traffic: 30.55MB (32033419) total, 1.23MB (1287402) headers (space savings 95.65%), 21.89MB (22958669) data
`
	res, err := h2loadRun{logFile: log}.parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 214567 || res.RPS != 21456.70 || res.Seconds != 10 {
		t.Errorf("requests %d, rps %v, seconds %v", res.Requests, res.RPS, res.Seconds)
	}
	if res.SocketErrors != 3 || res.Non2xx3xx != 4 {
		t.Errorf("socket errors %d, non-2xx %d; want 3 and 4", res.SocketErrors, res.Non2xx3xx)
	}
	if res.P50ms != 51 || res.P90ms != 91 || res.P99ms != 100 {
		t.Errorf("p50 %v p90 %v p99 %v", res.P50ms, res.P90ms, res.P99ms)
	}
	if _, err := (h2loadRun{logFile: log}).parse("nonsense"); err == nil {
		t.Error("nonsense parsed")
	}
}

// TestH2loadArgs: a fixed rate reaches h2load as --rps, each connection's
// share; without one, h2load runs as fast as the proxy answers.
func TestH2loadArgs(t *testing.T) {
	run := h2loadRun{bin: "h2load", url: "https://x/", clients: 8, streams: 8, duration: 1500 * time.Millisecond, logFile: "l"}
	if got, want := strings.Join(run.args(), " "), "-c 8 -m 8 -t 1 -D 2 --log-file=l https://x/"; got != want {
		t.Errorf("closed loop: args = %q, want %q", got, want)
	}
	run.rps = 2500
	if got, want := strings.Join(run.args(), " "), "-c 8 -m 8 -t 1 -D 2 --log-file=l --rps=2500 https://x/"; got != want {
		t.Errorf("fixed rate: args = %q, want %q", got, want)
	}
	h1 := h2loadRun{bin: "h2load", url: "http://x/", h1: true, clients: 64, streams: 1, rps: 400, duration: time.Second, logFile: "l"}
	if got, want := strings.Join(h1.args(), " "), "-c 64 -m 1 -t 1 -D 1 --log-file=l --rps=400 --h1 http://x/"; got != want {
		t.Errorf("HTTP/1.1 at a fixed rate: args = %q, want %q", got, want)
	}
}

// TestH1RateChecked: a rate that cannot be spread over the connections is
// refused before anything runs.
func TestH1RateChecked(t *testing.T) {
	for _, rate := range []int{-1, 63} {
		o := defaultOptions()
		o.scenarios, o.h1Rate = "healthy_get", rate
		if _, err := run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "-h1-rate") {
			t.Errorf("-h1-rate %d: err = %v, want one naming -h1-rate", rate, err)
		}
	}
}

// TestH2RateChecked: a rate that cannot be spread over h2load's
// connections is refused before anything runs.
func TestH2RateChecked(t *testing.T) {
	for _, rate := range []int{-1, h2Clients - 1} {
		o := defaultOptions()
		o.scenarios, o.h2Rate = "h2_get", rate
		if _, err := run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "-h2-rate") {
			t.Errorf("-h2-rate %d: err = %v, want one naming -h2-rate", rate, err)
		}
	}
}
