package e2e

import (
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// launchReadyNow starts sluice on cfg and returns as soon as its admin
// /readyz first answers 200, polling as fast as it can: the moment an
// operator's script or a supervisor takes as "started".
func launchReadyNow(t *testing.T, cfg string) *proc {
	t.Helper()
	path, listen, admin := writeConfig(t, cfg)
	p := launch(t, "-config", path)
	p.Addr, p.Admin, p.CfgPath = listen, admin, path
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	ready := poll(15*time.Second, func() bool {
		if p.Exited() {
			return true
		}
		resp, err := c.Get(p.AdminURL("/readyz"))
		if err != nil {
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if !ready || p.Exited() {
		t.Fatalf("sluice did not become ready (exited: %v)\nstderr:\n%s", p.Exited(), p.Stderr())
	}
	return p
}

// TestSignalsRightAfterStart sends SIGHUP, and in other runs SIGTERM, the
// moment /readyz first answers: a reload must reload and a stop must drain
// and exit 0, never take the default action of a signal nobody listens for
// (which ends the process at once).
func TestSignalsRightAfterStart(t *testing.T) {
	t.Parallel()
	be := newBackend(t, "a", nil)
	cfg := "routes:\n  - name: r\n    path_prefix: /\n    backends:\n      - url: " + be.URL + "\n"
	const runs = 8
	for i := 0; i < runs; i++ {
		p := launchReadyNow(t, cfg)
		p.Signal(syscall.SIGHUP)
		eventually(t, 10*time.Second, func() bool { return p.Exited() || reloadsOK(t, p) >= 1 },
			"run %d: the SIGHUP sent as /readyz turned 200 was not taken as a reload", i)
		if p.Exited() {
			t.Fatalf("run %d: SIGHUP right after start ended the process (code %d)\nstderr:\n%s", i, p.code, p.Stderr())
		}
		if resp, body := get(t, p.URL("/x")); resp.StatusCode != 200 {
			t.Fatalf("run %d: after the reload GET /x = %d %q", i, resp.StatusCode, body)
		}
		if code := p.Stop(10 * time.Second); code != 0 {
			t.Fatalf("run %d: exit code %d after SIGTERM, want 0", i, code)
		}
	}
	for i := 0; i < runs; i++ {
		p := launchReadyNow(t, cfg)
		p.Signal(syscall.SIGTERM)
		if code := p.Wait(10 * time.Second); code != 0 {
			t.Fatalf("run %d: SIGTERM sent as /readyz turned 200: exit code %d, want 0 (a drain)\nstderr:\n%s", i, code, p.Stderr())
		}
	}
}
