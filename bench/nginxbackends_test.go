package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// TestNginxBackends: -backends nginx starts one nginx that answers
// /api/users on two ports with the same body as the fasthttp backends, and
// 404 elsewhere, with keep-alive; stop ends it.
func TestNginxBackends(t *testing.T) {
	bin := needTool(t, "nginx")
	dir := t.TempDir()
	nb, addrs, err := startNginxBackends(context.Background(), bin, nil, filepath.Join(dir, "nginx"), filepath.Join(dir, "error.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer nb.stop()
	if len(addrs) != 2 || addrs[0] == addrs[1] {
		t.Fatalf("addresses %v, want two different ones", addrs)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for _, addr := range addrs {
		for _, c := range []struct {
			path   string
			status int
			body   string
		}{{"/api/users", 200, string(usersJSON)}, {"/health", 200, "ok"}, {"/other", 404, ""}} {
			resp, err := client.Get("http://" + addr + c.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status || c.body != "" && string(body) != c.body {
				t.Errorf("GET %s%s: %d %q, want %d %q", addr, c.path, resp.StatusCode, body, c.status, c.body)
			}
		}
	}
	nb.stop()
	select {
	case <-nb.exited:
	default:
		t.Error("nginx still runs after stop")
	}
}

// TestNginxBackendsScenarios: only the scenarios that ask the healthy
// backends for /api/users and need no count of what they served run on the
// nginx backends; run refuses the others with a message naming what they
// need.
func TestNginxBackendsScenarios(t *testing.T) {
	ok := map[string]bool{"healthy_get": true, "many_conns": true, "https_get": true, "h2_get": true, "tls_handshake": true}
	for _, sc := range scenarios {
		if got := sc.needsGoBackends() == ""; got != ok[sc.name] {
			t.Errorf("%s: runs on the nginx backends = %v, want %v", sc.name, got, ok[sc.name])
		}
	}
	o := defaultOptions()
	o.backends, o.scenarios = "nginx", "retry_get"
	if _, err := run(context.Background(), o); err == nil {
		t.Error("retry_get was accepted with -backends nginx")
	}
	o.backends, o.scenarios = "apache", "healthy_get"
	if _, err := run(context.Background(), o); err == nil {
		t.Error("-backends apache was accepted")
	}
}
