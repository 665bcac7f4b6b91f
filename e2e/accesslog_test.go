package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAccessLog(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "backend-a", nil) // answers the 9-byte body "backend-a"
	logPath := filepath.Join(t.TempDir(), "access.log")
	p := start(t, fmt.Sprintf("access_log: %q\n", logPath)+simpleRoute(b.URL))

	resp, _ := do(t, "POST", p.URL("/api/x?q=1"), "hello")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	okID := resp.Header.Get("X-Request-Id")
	resp, _ = get(t, p.URL("/nowhere"))
	missID := resp.Header.Get("X-Request-Id")

	var lines []map[string]any
	eventually(t, 5*time.Second, func() bool {
		data, _ := os.ReadFile(logPath)
		lines = nil
		for _, l := range strings.Split(string(data), "\n") {
			if strings.TrimSpace(l) == "" {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("access log line is not JSON: %v: %q", err, l)
			}
			lines = append(lines, m)
		}
		return len(lines) >= 2
	}, "two access log lines in %s", logPath)
	if len(lines) != 2 {
		t.Fatalf("access log has %d lines, want 2: %v", len(lines), lines)
	}

	keys := []string{"time", "request_id", "client", "method", "path", "route", "backend", "status",
		"bytes_in", "bytes_out", "duration_ms", "attempts", "error", "proto"}
	for i, l := range lines {
		for _, k := range keys {
			if _, ok := l[k]; !ok {
				t.Errorf("line %d lacks key %q: %v", i, k, l)
			}
		}
		if ts, _ := l["time"].(string); ts == "" {
			t.Errorf("line %d time = %v", i, l["time"])
		} else if _, err := time.Parse(time.RFC3339, ts); err != nil {
			t.Errorf("line %d time %q is not RFC 3339: %v", i, ts, err)
		}
		if c, _ := l["client"].(string); !strings.HasPrefix(c, "127.0.0.1") {
			t.Errorf("line %d client = %v, want 127.0.0.1", i, l["client"])
		}
	}
	want := []map[string]any{
		{"request_id": okID, "method": "POST", "path": "/api/x?q=1", "route": "api", "backend": b.URL,
			"status": 200.0, "bytes_in": 5.0, "bytes_out": 9.0, "attempts": 1.0, "error": "", "proto": "HTTP/1.1"},
		{"request_id": missID, "method": "GET", "path": "/nowhere", "route": "", "backend": "",
			"status": 404.0, "error": "no_route"},
	}
	for i, w := range want {
		for k, v := range w {
			if lines[i][k] != v {
				t.Errorf("line %d %s = %#v, want %#v", i, k, lines[i][k], v)
			}
		}
	}
}
