package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// prometheusBin returns the Prometheus server binary. Without one the test
// is skipped, except in CI (CI=true), where .ci/run installs it and its
// absence is a failure.
func prometheusBin(t *testing.T) string {
	t.Helper()
	if path, err := exec.LookPath("prometheus"); err == nil {
		return path
	}
	if _, err := os.Stat("/usr/bin/prometheus"); err == nil {
		return "/usr/bin/prometheus"
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("the prometheus binary is not installed, but CI=true: .ci/run installs Debian's prometheus package")
	}
	t.Skip("the prometheus binary is not installed (apt-get install prometheus); skipping the real-Prometheus scrape test")
	return ""
}

// promServer is a Prometheus server started by a test.
type promServer struct {
	t      *testing.T
	cmd    *exec.Cmd
	addr   string
	stderr *syncBuffer
	done   chan struct{}
}

// startPrometheus starts Prometheus with a config scraping target every
// second (with bearer token when not empty), its own data directory, and a
// listener on a free 127.0.0.1 port; it waits until /-/ready answers 200.
// Prometheus is stopped at cleanup by its PID: SIGTERM, then wait.
func startPrometheus(t *testing.T, bin, target, token string) *promServer {
	t.Helper()
	dir := t.TempDir()
	var auth string
	if token != "" {
		auth = fmt.Sprintf("    bearer_token: %q\n", token)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: sluice
    metrics_path: /metrics
    scheme: http
%s    static_configs:
      - targets: [%q]
`, auth, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	for attempt := 1; ; attempt++ {
		addr := freeAddr(t)
		ps := &promServer{t: t, addr: addr, stderr: &syncBuffer{}, done: make(chan struct{})}
		// Only the scrape target is contacted: no alertmanager, no remote
		// write, no rule files; the external URL is set so that nothing is
		// derived from the host name.
		ps.cmd = exec.Command(bin,
			"--config.file="+cfgPath,
			"--storage.tsdb.path="+filepath.Join(dir, "data"),
			"--web.listen-address="+addr,
			"--web.external-url=http://"+addr+"/",
			"--web.console.templates="+filepath.Join(dir, "consoles"),
			"--web.console.libraries="+filepath.Join(dir, "console_libraries"),
			"--log.level=info",
		)
		ps.cmd.Dir = dir
		ps.cmd.Stdout = ps.stderr
		ps.cmd.Stderr = ps.stderr
		if err := ps.cmd.Start(); err != nil {
			t.Fatalf("starting prometheus: %v", err)
		}
		go func() {
			ps.cmd.Wait()
			close(ps.done)
		}()
		t.Cleanup(ps.stop)
		err := ps.waitReady()
		if err == nil {
			return ps
		}
		if attempt < 3 && ps.exited() && strings.Contains(ps.stderr.String(), "address already in use") {
			continue
		}
		t.Fatal(err)
	}
}

func (ps *promServer) exited() bool {
	select {
	case <-ps.done:
		return true
	default:
		return false
	}
}

func (ps *promServer) waitReady() error {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if ps.exited() {
			return fmt.Errorf("prometheus exited before becoming ready:\n%s", ps.stderr.String())
		}
		if resp, err := c.Get("http://" + ps.addr + "/-/ready"); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("prometheus not ready within 20s:\n%s", ps.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM to the Prometheus PID and waits for it to exit (killing
// it after 10 s).
func (ps *promServer) stop() {
	if ps.exited() {
		return
	}
	ps.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-ps.done:
	case <-time.After(10 * time.Second):
		ps.t.Errorf("prometheus (pid %d) did not exit within 10s of SIGTERM", ps.cmd.Process.Pid)
		ps.cmd.Process.Kill()
		<-ps.done
	}
	if ps.t.Failed() {
		ps.t.Logf("prometheus output:\n%s", truncate(ps.stderr.String(), 4000))
	}
}

// query runs an instant query and returns the value of each result series
// keyed by the label named by key.
func (ps *promServer) query(q, key string) (map[string]float64, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + ps.addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("query %s: %v: %s", q, err, body)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %s: %s %s", q, r.Status, r.Error)
	}
	out := map[string]float64{}
	for _, s := range r.Data.Result {
		str, _ := s.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %v: %v", q, s.Value, err)
		}
		out[s.Metric[key]] = v
	}
	return out, nil
}

// TestPrometheusScrapes runs a real Prometheus server against sluice's admin
// listener, without and with admin.token, and waits until sluice's request
// counter and backend health gauge arrive there with the expected values.
func TestPrometheusScrapes(t *testing.T) {
	t.Parallel()
	bin := prometheusBin(t)
	for _, tc := range []struct {
		name, token string
	}{
		{"no token", ""},
		{"admin token", "prom-s3cret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			good := newBackend(t, "good", nil)
			down := refusedURL(t)
			admin := ""
			if tc.token != "" {
				admin = fmt.Sprintf("admin:\n  listen: \"{{admin}}\"\n  token: %q\n", tc.token)
			}
			// The refused backend is tried once, fails to connect, is
			// ejected after that one failure, and the request is retried
			// on the good one: every client request gets 200.
			p := start(t, admin+fmt.Sprintf(`
retry:
  backoff: 1ms
routes:
  - name: api
    path_prefix: /api
    health:
      passive:
        consecutive_failures: 1
        ejection_time: 5m
    backends: [%s, %s]
`, down, good.URL))
			if tc.token != "" {
				// The token is really needed: without it /metrics is 401.
				if resp, _ := get(t, p.AdminURL("/metrics")); resp.StatusCode != 401 {
					t.Fatalf("GET /metrics without the token = %d, want 401", resp.StatusCode)
				}
			}

			const n = 7
			for i := 0; i < n; i++ {
				resp, body := get(t, p.URL(fmt.Sprintf("/api/%d", i)))
				if resp.StatusCode != 200 || string(body) != "good" {
					t.Fatalf("GET /api/%d = %d %q, want 200 good", i, resp.StatusCode, body)
				}
			}

			ps := startPrometheus(t, bin, p.Admin, tc.token)
			checks := []struct {
				query, key string
				want       map[string]float64
			}{
				{`up{job="sluice"}`, "job", map[string]float64{"sluice": 1}},
				{`sluice_requests_total{job="sluice",route="api"} > 0`, "code", map[string]float64{"200": n}},
				{`sluice_backend_healthy{job="sluice",route="api"}`, "backend", map[string]float64{good.URL: 1, down: 0}},
			}
			var last []string
			ok := poll(30*time.Second, func() bool {
				last = nil
				for _, c := range checks {
					got, err := ps.query(c.query, c.key)
					if err != nil {
						last = append(last, err.Error())
						continue
					}
					if fmt.Sprint(got) != fmt.Sprint(c.want) {
						last = append(last, fmt.Sprintf("%s = %v, want %v", c.query, got, c.want))
					}
				}
				if len(last) > 0 {
					time.Sleep(200 * time.Millisecond) // queries are not free; the scrape is every second
				}
				return len(last) == 0
			})
			if !ok {
				t.Errorf("Prometheus did not get the expected values within 30s:\n  %s", strings.Join(last, "\n  "))
				if tgt, err := ps.targets(); err == nil {
					t.Logf("prometheus targets: %s", tgt)
				}
			}
			ps.stop()
			if code := ps.cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("prometheus exited with code %d after SIGTERM", code)
			}
		})
	}
}

// targets returns Prometheus's view of its scrape targets, for messages.
func (ps *promServer) targets() (string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + ps.addr + "/api/v1/targets")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return truncate(string(b), 2000), err
}
