package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/config"
)

// renderConfig writes p's configuration for scenario sc into a temporary
// directory and returns its path and text.
func renderConfig(t *testing.T, p proxy, sc scenario) (string, string) {
	t.Helper()
	dir := t.TempDir()
	ups := []string{"127.0.0.1:10001", "127.0.0.1:10002"}
	if sc.retry {
		ups = []string{"127.0.0.1:10003", "127.0.0.1:10001"}
	}
	if sc.balancers() {
		ups = append(ups, "127.0.0.1:10004")
	}
	c := proxyConfig{
		dir: dir, logDir: dir, logName: "test",
		port: 18080, adminPort: 18081, upstreams: ups, retry: sc.retry,
		leastConn: sc.balancers(),
	}
	if _, _, err := p.command(c); err != nil {
		t.Fatal(err)
	}
	names := map[string]string{"nginx": "nginx.conf", "haproxy": "haproxy.cfg"}
	name, ok := names[p.name()]
	if !ok {
		name = "sluice.yaml"
	}
	path := filepath.Join(dir, name)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, string(b)
}

// findScenario returns the scenario named name.
func findScenario(t *testing.T, name string) scenario {
	t.Helper()
	scs, err := selectScenarios(name)
	if err != nil || len(scs) != 1 {
		t.Fatalf("scenario %s: %v", name, err)
	}
	return scs[0]
}

// needTool returns the path of an installed tool, or skips the test without
// it; with CI=true a missing tool fails the test instead.
func needTool(t *testing.T, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed, and CI=true requires this test to run (apt-get install %s): %v", name, name, err)
		}
		t.Skipf("%s is not installed, skipping (apt-get install %s; with CI=true this fails): %v", name, name, err)
	}
	return bin
}

// TestSluiceConfigBalancer: sluice's variants write their balancer into the
// route, plain sluice writes none (round_robin), and each configuration is
// one sluice accepts (config.Load is what -check runs).
func TestSluiceConfigBalancer(t *testing.T) {
	slow := findScenario(t, "slow_backend")
	for _, tt := range []struct {
		name, balancer string
	}{
		{"sluice", ""},
		{"sluice-lr", "least_request"},
		{"sluice-ewma", "ewma"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := sluiceProxy{bin: "sluice", balancer: sluiceVariants[tt.name]}
			if p.name() != tt.name {
				t.Fatalf("name() = %q, want %q", p.name(), tt.name)
			}
			path, text := renderConfig(t, p, slow)
			if got := strings.Contains(text, "balancer:"); got != (tt.balancer != "") {
				t.Errorf("balancer key present = %v, want %v:\n%s", got, tt.balancer != "", text)
			}
			if tt.balancer != "" && !strings.Contains(text, "\n    balancer: "+tt.balancer+"\n") {
				t.Errorf("config lacks the route's balancer %s:\n%s", tt.balancer, text)
			}
			if n := strings.Count(text, "      - http://127.0.0.1:1000"); n != 3 {
				t.Errorf("config has %d backends, want 3:\n%s", n, text)
			}
			cfg, err := config.Load(path)
			if err != nil {
				t.Fatalf("sluice rejects the configuration: %v\n%s", err, text)
			}
			want := tt.balancer
			if want == "" {
				want = "round_robin"
			}
			if got := cfg.Routes[0].Balancer; got != want && (got != "" || want != "round_robin") {
				t.Errorf("loaded balancer = %q, want %q", got, want)
			}
		})
	}
}

// TestBalancerScenarioConfigs: in the balancer scenarios nginx balances by
// least_conn and HAProxy by leastconn over three servers; in the others
// neither changes (round robin, two servers).
func TestBalancerScenarioConfigs(t *testing.T) {
	for _, tt := range []struct {
		scenario string
		least    bool
	}{
		{"slow_backend", true},
		{"flapping_backend", true},
		{"healthy_get", false},
		{"retry_get", false},
	} {
		t.Run(tt.scenario, func(t *testing.T) {
			sc := findScenario(t, tt.scenario)
			servers := 2
			if tt.least {
				servers = 3
			}
			_, ng := renderConfig(t, nginxProxy{bin: "nginx"}, sc)
			if got := strings.Contains(ng, "\n        least_conn;\n"); got != tt.least {
				t.Errorf("nginx least_conn = %v, want %v:\n%s", got, tt.least, ng)
			}
			if n := strings.Count(ng, " max_fails=0;"); n != servers {
				t.Errorf("nginx has %d servers, want %d", n, servers)
			}
			_, hp := renderConfig(t, haproxyProxy{bin: "haproxy"}, sc)
			want := "\n    balance roundrobin\n"
			if tt.least {
				want = "\n    balance leastconn\n"
			}
			if !strings.Contains(hp, want) {
				t.Errorf("HAProxy config lacks %q:\n%s", strings.TrimSpace(want), hp)
			}
			if n := len(regexp.MustCompile(`(?m)^    server s\d `).FindAllString(hp, -1)); n != servers {
				t.Errorf("HAProxy has %d servers, want %d", n, servers)
			}
			_, sl := renderConfig(t, sluiceProxy{bin: "sluice"}, sc)
			if strings.Contains(sl, "balancer:") {
				t.Errorf("plain sluice sets a balancer in %s:\n%s", tt.scenario, sl)
			}
		})
	}
}

// TestNginxAcceptsLeastConn checks the slow_backend configuration with
// nginx -t.
func TestNginxAcceptsLeastConn(t *testing.T) {
	bin := needTool(t, "nginx")
	p := nginxProxy{bin: bin}
	path, text := renderConfig(t, p, findScenario(t, "slow_backend"))
	dir := filepath.Dir(path)
	out, err := exec.Command(bin, "-t", "-p", dir, "-c", path, "-e", filepath.Join(dir, "test.error.log")).CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t: %v\n%s\n%s", err, out, text)
	}
}

// TestHAProxyAcceptsLeastconn checks the slow_backend configuration with
// haproxy -c.
func TestHAProxyAcceptsLeastconn(t *testing.T) {
	bin := needTool(t, "haproxy")
	path, text := renderConfig(t, haproxyProxy{bin: bin}, findScenario(t, "slow_backend"))
	out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy -c: %v\n%s\n%s", err, out, text)
	}
}

// TestRunsIn: sluice-log runs in healthy_get only, sluice-lr and
// sluice-ewma in the balancer scenarios only, the others everywhere.
func TestRunsIn(t *testing.T) {
	for _, sc := range scenarios {
		for _, p := range []proxy{
			sluiceProxy{}, sluiceProxy{accessLog: true},
			sluiceProxy{balancer: "least_request"}, sluiceProxy{balancer: "ewma"},
			nginxProxy{}, haproxyProxy{}, goStdProxy{},
		} {
			want := true
			switch p.name() {
			case "go-std":
				want = sc.tls != ""
			case "sluice-log":
				want = sc.name == "healthy_get"
			case "sluice-lr", "sluice-ewma":
				want = sc.name == "slow_backend" || sc.name == "flapping_backend"
			}
			if got := runsIn(p, sc); got != want {
				t.Errorf("runsIn(%s, %s) = %v, want %v", p.name(), sc.name, got, want)
			}
		}
	}
}

// TestNewProxiesVariants: the variant names are accepted and keep their
// names; an unknown one is an error.
func TestNewProxiesVariants(t *testing.T) {
	ps, _, err := newProxies([]string{"sluice", "sluice-lr", "sluice-ewma", "sluice-baseline"}, "", "", "/bin/true", "/bin/false")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range ps {
		names = append(names, p.name())
	}
	if got := strings.Join(names, ","); got != "sluice,sluice-lr,sluice-ewma,sluice-baseline" {
		t.Errorf("names = %s", got)
	}
	if b := ps[3].(sluiceProxy); b.bin != "/bin/false" || b.balancer != "" || b.accessLog {
		t.Errorf("sluice-baseline = %+v, want plain sluice's configuration with the -baseline build", b)
	}
	if ps, _, err := newProxies([]string{"go-std"}, "", "", "", ""); err != nil || len(ps) != 1 || ps[0].name() != "go-std" {
		t.Errorf("newProxies(go-std) = %v, %v", ps, err)
	}
	if _, _, err := newProxies([]string{"sluice-rr"}, "", "", "/bin/true", ""); err == nil {
		t.Error("an unknown proxy name was accepted")
	}
	if _, _, err := newProxies([]string{"sluice-baseline"}, "", "", "/bin/true", ""); err == nil {
		t.Error("sluice-baseline without -baseline was accepted")
	}
}

// TestModeDelay: the slow backend always adds slowDelay, the flapping one
// in every other flapPeriod of the wall clock, the others never.
func TestModeDelay(t *testing.T) {
	fast := time.Unix(0, 0).Add(flapPeriod / 2)     // phase 0
	slow := time.Unix(0, 0).Add(flapPeriod * 3 / 2) // phase 1
	for _, tt := range []struct {
		mode string
		at   time.Time
		want time.Duration
	}{
		{"ok", slow, 0},
		{"fail", slow, 0},
		{"slow", fast, slowDelay},
		{"slow", slow, slowDelay},
		{"flap", fast, 0},
		{"flap", slow, slowDelay},
		{"flap", slow.Add(flapPeriod), 0},
		{"flap", slow.Add(2 * flapPeriod), slowDelay},
	} {
		if got := modeDelay(tt.mode, tt.at); got != tt.want {
			t.Errorf("modeDelay(%s, %v) = %v, want %v", tt.mode, tt.at.UnixNano(), got, tt.want)
		}
	}
}
