package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestReload(t *testing.T) {
	t.Parallel()
	a, b := newBackend(t, "a", nil), newBackend(t, "b", nil)
	p := start(t, simpleRoute(a.URL))

	answer := func(path string) string {
		resp, body := get(t, p.URL(path))
		return fmt.Sprintf("%d %s", resp.StatusCode, body)
	}
	if got := answer("/api/x"); got != "200 a" {
		t.Fatalf("before reload: %s", got)
	}

	t.Run("SIGHUP valid", func(t *testing.T) {
		p.Rewrite(fmt.Sprintf(`
routes:
  - name: api
    path_prefix: /api
    backends: [%s]
  - name: new
    path_prefix: /new
    backends: [%s]
`, b.URL, b.URL))
		p.Signal(syscall.SIGHUP)
		eventually(t, 5*time.Second, func() bool { return answer("/api/x") == "200 b" }, "the new route table after SIGHUP")
		if got := answer("/new/x"); got != "200 b" {
			t.Errorf("new route after SIGHUP: %s, want 200 b", got)
		}
	})

	t.Run("POST reload invalid", func(t *testing.T) {
		p.Rewrite("routes:\n  - path_prefix: /api\n    backends: [\"ftp://127.0.0.1:21\"]\n")
		resp, body := do(t, "POST", p.AdminURL("/reload"), "")
		var r struct {
			Result string   `json:"result"`
			Errors []string `json:"errors"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatalf("POST /reload body %q: %v", body, err)
		}
		if resp.StatusCode != 400 || r.Result != "error" || len(r.Errors) == 0 {
			t.Errorf("POST /reload = %d %s, want 400 {\"result\":\"error\",\"errors\":[...]}", resp.StatusCode, body)
		}
		if got := answer("/api/x"); got != "200 b" {
			t.Errorf("after an invalid reload: %s, want the running config (200 b)", got)
		}
	})

	t.Run("SIGHUP invalid keeps running", func(t *testing.T) {
		p.Signal(syscall.SIGHUP)
		eventually(t, 5*time.Second, func() bool {
			ss, _ := scrape(t, p)
			v, _ := metricValue(ss, "sluice_config_reloads_total", "result", "error")
			return v == 2
		}, "sluice_config_reloads_total{result=\"error\"} to reach 2")
		if p.Exited() {
			t.Fatalf("sluice exited on an invalid SIGHUP reload")
		}
		if got := answer("/api/x"); got != "200 b" {
			t.Errorf("after an invalid SIGHUP: %s, want 200 b", got)
		}
	})

	t.Run("POST reload valid", func(t *testing.T) {
		p.Rewrite(simpleRoute(a.URL))
		resp, body := do(t, "POST", p.AdminURL("/reload"), "")
		var r map[string]any
		if err := json.Unmarshal(body, &r); err != nil || resp.StatusCode != 200 || r["result"] != "ok" {
			t.Fatalf("POST /reload = %d %s, want 200 {\"result\":\"ok\"}", resp.StatusCode, body)
		}
		// "200 once the new config is live": no waiting needed.
		if got := answer("/api/x"); got != "200 a" {
			t.Errorf("right after POST /reload: %s, want 200 a", got)
		}
		if got := answer("/new/x"); got[:3] != "404" {
			t.Errorf("removed route still answers: %s", got)
		}
		ss, _ := scrape(t, p)
		if v, _ := metricValue(ss, "sluice_config_reloads_total", "result", "ok"); v != 2 {
			t.Errorf("sluice_config_reloads_total{result=\"ok\"} = %v, want 2", v)
		}
	})
}

// TestReloadListenerLimits: a reload puts a new max_header_bytes and
// client_idle in force on the next request, on a keep-alive connection
// opened before it too.
func TestReloadListenerLimits(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	p := start(t, simpleRoute(b.URL))
	big := "X-Big: " + strings.Repeat("a", 4000)
	c, br := dialRaw(t, p.Addr, 10*time.Second)
	defer c.Close()
	ask := func() *http.Response {
		t.Helper()
		io.WriteString(c, rawReq("GET /api/x HTTP/1.1", "Host: test.example", big, "Connection: keep-alive"))
		r := readRaw(br, "GET")
		if r.Resp == nil {
			t.Fatalf("no response: %v", r.Err)
		}
		return r.Resp
	}
	if resp := ask(); resp.StatusCode != 200 {
		t.Fatalf("before the reload: %d, want 200", resp.StatusCode)
	}
	p.Rewrite("limits: {max_header_bytes: 1KiB}\ntimeouts: {client_idle: 300ms}\n" + simpleRoute(b.URL))
	if code, _, body := postReload(t, p); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	if resp := ask(); resp.StatusCode != 431 {
		t.Errorf("after the reload, on the same connection: %d, want 431", resp.StatusCode)
	}
	// A new connection idle for longer than the new client_idle is closed.
	c2, br2 := dialRaw(t, p.Addr, 10*time.Second)
	defer c2.Close()
	io.WriteString(c2, rawReq("GET /api/y HTTP/1.1", "Host: test.example", "Connection: keep-alive"))
	if r := readRaw(br2, "GET"); r.Resp == nil || r.Resp.StatusCode != 200 {
		t.Fatalf("a small request after the reload: %v", r)
	}
	start := time.Now()
	if _, err := br2.ReadByte(); err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("idle connection: %v after %v, want it closed after about 300ms", err, time.Since(start))
	}
}
