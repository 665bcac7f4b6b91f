package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAccessLogFollowsRotation: after the access log file is renamed (as
// logrotate does) and sluice gets SIGHUP, new lines go to a new file at the
// configured path.
func TestAccessLogFollowsRotation(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	logPath := filepath.Join(t.TempDir(), "access.log")
	p := start(t, fmt.Sprintf(`
access_log: %s
routes:
  - path_prefix: /
    backends: [%s]
`, logPath, b.URL))
	get := func(path string) {
		resp, err := http.Get(p.URL(path))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	get("/before-rotation")
	eventually(t, 5*time.Second, func() bool {
		data, _ := os.ReadFile(logPath)
		return strings.Contains(string(data), "/before-rotation")
	}, "the first line in %s", logPath)
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The reload is done once a request is logged at the configured path.
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; ; i++ {
		get(fmt.Sprintf("/after-rotation-%d", i))
		data, _ := os.ReadFile(logPath)
		if strings.Contains(string(data), "/after-rotation-") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line in a new %s after rotation and SIGHUP", logPath)
		}
		time.Sleep(50 * time.Millisecond) // the behaviour under test: a request per poll
	}
	old, _ := os.ReadFile(logPath + ".1")
	if !strings.Contains(string(old), "/before-rotation") {
		t.Errorf("the rotated file lost its lines: %q", old)
	}
}
