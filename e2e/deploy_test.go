package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeploySystemdUnit checks deploy/sluice.service with systemd-analyze
// verify, which reports unknown directives, bad values and a command that
// is not there. The unit names the installed binary, /usr/local/bin/sluice,
// so a copy of it names the binary this test run built instead. Without
// systemd-analyze the test is skipped, in CI too: the unit is a convenience
// for users, not something the build depends on.
func TestDeploySystemdUnit(t *testing.T) {
	const installed = "/usr/local/bin/sluice"
	unit, err := os.ReadFile(filepath.Join("..", "deploy", "sluice.service"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(unit)
	// What docs/deploy.md promises of the unit.
	for _, want := range []string{
		"ExecStart=" + installed + " -config /etc/sluice/sluice.yaml\n",
		"ExecReload=/bin/kill -HUP $MAINPID\n",
		"AmbientCapabilities=CAP_NET_BIND_SERVICE\n",
		"CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n",
		"NoNewPrivileges=yes\n",
		"ProtectSystem=strict\n",
		"Restart=on-failure\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("deploy/sluice.service lacks the line %q", strings.TrimSpace(want))
		}
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not found; install systemd to verify deploy/sluice.service (not required in CI)")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "sluice.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, installed, sluiceBin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Problems with the unit are warnings, exit status 0: any line about it
	// is one. Lines about other units of the machine are not this test's.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "sluice.service") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
}
