package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// runCLI runs the binary to completion (10 s at most) and returns stdout,
// stderr and the exit code.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	p := launch(t, args...)
	code = p.Wait(10 * time.Second)
	return p.stdout.String(), p.stderr.String(), code
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const validConfig = `
listen: "127.0.0.1:18080"
routes:
  - name: api
    path_prefix: /api
    backends:
      - http://127.0.0.1:3001
      - url: http://127.0.0.1:3002
        weight: 2
`

// invalidConfig has exactly three problems: an unknown key, an ftp backend
// and a bad duration.
const invalidConfig = `
listen: %q
admin:
  listen: %q
timeouts:
  upstream_header: 5 parsecs
routes:
  - name: api
    path_prefix: /api
    colour: red
    backends:
      - ftp://127.0.0.1:21
`

// wantProblems are, for each of invalidConfig's problems, the field path its
// line must start with and a word the line must contain.
var wantProblems = []struct{ path, word string }{
	{"timeouts.upstream_header", "5 parsecs"},
	{"routes[0]", "colour"},
	{"routes[0].backends[0]", "ftp://127.0.0.1:21"},
}

// problemLines returns the non-empty lines of s, sorted.
func problemLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out
}

// checkProblems asserts that stderr holds exactly the three problems of
// invalidConfig, one a line, each starting with its field path, in plain text.
func checkProblems(t *testing.T, stderr string) {
	t.Helper()
	lines := problemLines(stderr)
	if len(lines) != len(wantProblems) {
		t.Errorf("stderr has %d lines, want %d (one a problem):\n%s", len(lines), len(wantProblems), stderr)
	}
	for _, w := range wantProblems {
		found := false
		for _, l := range lines {
			// "routes[0].backends[0]" also starts with "routes[0]": the
			// unknown key's line must not be the backend's.
			if w.path == "routes[0]" && strings.HasPrefix(l, "routes[0].backends") {
				continue
			}
			if strings.HasPrefix(l, w.path) && strings.Contains(l, w.word) {
				found = true
			}
		}
		if !found {
			t.Errorf("no stderr line starts with %q and mentions %q:\n%s", w.path, w.word, stderr)
		}
	}
	for _, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "{") {
			t.Errorf("problem line is a JSON record, want plain text: %s", l)
		}
	}
}

func TestCLICheckValid(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-check", "-config"}, {"--check", "--config"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			path := writeFile(t, validConfig)
			stdout, stderr, code := runCLI(t, append(args, path)...)
			if code != 0 {
				t.Errorf("exit code = %d, want 0; stderr:\n%s", code, stderr)
			}
			if strings.TrimSpace(stdout) != "configuration ok" {
				t.Errorf("stdout = %q, want \"configuration ok\"", stdout)
			}
		})
	}
	t.Run("--config=path", func(t *testing.T) {
		path := writeFile(t, validConfig)
		stdout, _, code := runCLI(t, "--config="+path, "-check")
		if code != 0 || strings.TrimSpace(stdout) != "configuration ok" {
			t.Errorf("exit %d stdout %q, want 0 and configuration ok", code, stdout)
		}
	})
}

func TestCLICheckInvalid(t *testing.T) {
	t.Parallel()
	path := writeFile(t, fmt.Sprintf(invalidConfig, "127.0.0.1:18081", "127.0.0.1:19901"))
	stdout, stderr, code := runCLI(t, "-check", "-config", path)
	if code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
	if strings.Contains(stdout, "configuration ok") {
		t.Errorf("stdout = %q for an invalid config", stdout)
	}
	checkProblems(t, stderr)
}

func TestCLICheckSingleProblems(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, cfg, path, word string
	}{
		{"bad scheme", "routes:\n  - path_prefix: /api\n    backends: [\"htp://x\"]\n", "routes[0].backends[0]", "htp://x"},
		{"unknown top-level key", "bogus_key: 1\nroutes:\n  - path_prefix: /api\n    backends: [http://127.0.0.1:1]\n", "bogus_key", "bogus_key"},
		{"bad size", "limits:\n  max_request_body: 12 furlongs\nroutes:\n  - path_prefix: /api\n    backends: [http://127.0.0.1:1]\n", "limits.max_request_body", "12 furlongs"},
		{"listener-wide setting on a route", "routes:\n  - path_prefix: /api\n    timeouts:\n      client_header: 5s\n    backends: [http://127.0.0.1:1]\n", "routes[0].timeouts.client_header", "client_header"},
		{"no routes", "listen: \"127.0.0.1:18082\"\n", "routes", "routes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, stderr, code := runCLI(t, "-check", "-config", writeFile(t, tc.cfg))
			if code != 1 {
				t.Errorf("exit code = %d, want 1", code)
			}
			lines := problemLines(stderr)
			if len(lines) != 1 || !strings.HasPrefix(lines[0], tc.path) || !strings.Contains(lines[0], tc.word) {
				t.Errorf("stderr = %q, want one line starting with %q naming %q", stderr, tc.path, tc.word)
			}
		})
	}
}

// TestCLIStartInvalid: starting with an invalid config prints the same plain
// lines and exits 1 before binding. Both ports are held by the test, so a
// binary that bound first would fail with an address-in-use error instead.
func TestCLIStartInvalid(t *testing.T) {
	t.Parallel()
	hold := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	l1, l2 := hold(), hold()
	path := writeFile(t, fmt.Sprintf(invalidConfig, l1.Addr().String(), l2.Addr().String()))

	_, checkErr, _ := runCLI(t, "-check", "-config", path)
	_, stderr, code := runCLI(t, "-config", path)
	if code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
	checkProblems(t, stderr)
	if a, b := problemLines(checkErr), problemLines(stderr); strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Errorf("start printed other lines than -check:\n-check:\n%s\nstart:\n%s", checkErr, stderr)
	}
	if strings.Contains(stderr, "address already in use") {
		t.Errorf("the binary tried to bind before validating:\n%s", stderr)
	}
}

func TestCLIVersion(t *testing.T) {
	t.Parallel()
	for _, flag := range []string{"-version", "--version"} {
		t.Run(flag, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, flag)
			if code != 0 {
				t.Errorf("exit code = %d, want 0", code)
			}
			if strings.TrimSpace(stdout+stderr) == "" {
				t.Errorf("-version printed nothing")
			}
		})
	}
}

// TestCLIDoubleDashConfigRuns starts the proxy with the --config spelling.
func TestCLIDoubleDashConfigRuns(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	p := startArgs(t, simpleRoute(b.URL), func(path string) []string { return []string{"--config", path} })
	resp, body := get(t, p.URL("/api/x"))
	if resp.StatusCode != 200 || string(body) != "b" {
		t.Errorf("got %d %q, want 200 from the backend", resp.StatusCode, body)
	}
	if code := p.Stop(10 * time.Second); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
}
