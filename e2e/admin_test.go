package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestAdminHealthAndReady(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	p := start(t, simpleRoute(b.URL))

	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready"} {
		resp, body := get(t, p.AdminURL(path))
		if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != want {
			t.Errorf("GET %s = %d %q, want 200 %q", path, resp.StatusCode, body, want)
		}
	}
}

func TestAdminToken(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	p := start(t, `
admin:
  listen: "{{admin}}"
  token: "s3cret-token"
`+simpleRoute(b.URL))

	for _, path := range []string{"/healthz", "/readyz"} {
		if resp, body := get(t, p.AdminURL(path)); resp.StatusCode != 200 {
			t.Errorf("GET %s without token = %d %q, want 200", path, resp.StatusCode, body)
		}
	}
	for _, path := range []string{"/backends", "/config", "/metrics"} {
		if resp, _ := get(t, p.AdminURL(path)); resp.StatusCode != 401 {
			t.Errorf("GET %s without token = %d, want 401", path, resp.StatusCode)
		}
		if resp, _ := get(t, p.AdminURL(path), "Authorization", "Bearer wrong"); resp.StatusCode != 401 {
			t.Errorf("GET %s with a wrong token = %d, want 401", path, resp.StatusCode)
		}
		if resp, body := get(t, p.AdminURL(path), "Authorization", "Bearer s3cret-token"); resp.StatusCode != 200 {
			t.Errorf("GET %s with the token = %d %q, want 200", path, resp.StatusCode, body)
		}
	}
	_, body := get(t, p.AdminURL("/config"), "Authorization", "Bearer s3cret-token")
	if strings.Contains(string(body), "s3cret-token") {
		t.Errorf("/config shows the admin token: %s", body)
	}
	var cfg struct {
		Admin struct {
			Token string `json:"token"`
		} `json:"admin"`
	}
	if err := json.Unmarshal(body, &cfg); err != nil || cfg.Admin.Token != "REDACTED" {
		t.Errorf("/config admin.token = %q (err %v), want REDACTED", cfg.Admin.Token, err)
	}
}

func TestAdminBackends(t *testing.T) {
	t.Parallel()
	a, b, c := newBackend(t, "a", nil), newBackend(t, "b", nil), newBackend(t, "c", nil)
	p := start(t, fmt.Sprintf(`
routes:
  - name: second
    path_prefix: /z
    backends: [%s, %s]
  - name: first
    path_prefix: /a
    backends: [%s]
`, b.URL, c.URL, a.URL))

	resp, body := get(t, p.AdminURL("/backends"))
	if resp.StatusCode != 200 {
		t.Fatalf("GET /backends = %d %q", resp.StatusCode, body)
	}
	var got struct {
		Routes []struct {
			Name     string `json:"name"`
			Backends []struct {
				URL          string `json:"url"`
				State        string `json:"state"`
				Since        string `json:"since"`
				InFlight     *int   `json:"in_flight"`
				ConsecFails  *int   `json:"consecutive_failures"`
				EjectionTime string `json:"ejection_time"`
			} `json:"backends"`
		} `json:"routes"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("/backends is not the documented JSON: %v\n%s", err, body)
	}
	want := []struct {
		name string
		urls []string
	}{{"second", []string{b.URL, c.URL}}, {"first", []string{a.URL}}}
	if len(got.Routes) != len(want) {
		t.Fatalf("/backends has %d routes, want %d:\n%s", len(got.Routes), len(want), body)
	}
	for i, w := range want {
		r := got.Routes[i]
		if r.Name != w.name || len(r.Backends) != len(w.urls) {
			t.Errorf("route %d = %s with %d backends, want %s with %d (config order)", i, r.Name, len(r.Backends), w.name, len(w.urls))
			continue
		}
		for j, u := range w.urls {
			be := r.Backends[j]
			if be.URL != u || be.State != "healthy" || be.EjectionTime != "0s" || be.InFlight == nil || *be.InFlight != 0 ||
				be.ConsecFails == nil || *be.ConsecFails != 0 || be.Since == "" {
				t.Errorf("route %s backend %d = %+v, want url %s, healthy, in_flight 0, consecutive_failures 0, ejection_time 0s, a since time", w.name, j, be, u)
			}
		}
	}
}
