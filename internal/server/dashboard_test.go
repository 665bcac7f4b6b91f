package server

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/config"
)

// TestStatsDocument runs a server, sends traffic, reloads it once badly
// and once well, and reads /stats: the process figures, each route and
// backend in config order with its figures, a reload's result, and an
// ejection both as a transition and in the counts.
func TestStatsDocument(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(ok.Close)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	t.Cleanup(failing.Close)
	yaml := `listen: "127.0.0.1:0"
admin:
  listen: "127.0.0.1:0"
access_log: "off"
health:
  active:
    path: ""
  passive:
    consecutive_failures: 2
retry:
  attempts: 1
routes:
  - name: api
    path_prefix: /api
    backends: [` + ok.URL + `, ` + failing.URL + `]
  - name: web
    path_prefix: /
    host: example.com
    backends: [` + ok.URL + `]
`
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, path, slog.New(slog.NewTextHandler(io.Discard, nil)), WithVersion("v9.9.9-test"))
	if err != nil {
		t.Fatal(err)
	}
	s.Serve()
	t.Cleanup(func() { s.Shutdown() })

	client := &http.Client{Timeout: 5 * time.Second}
	statuses := map[int]int{}
	for range 8 {
		resp, err := client.Get("http://" + s.Addr().String() + "/api/x")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		statuses[resp.StatusCode]++
	}
	if err := os.WriteFile(path, []byte("routes: ["), 0o644); err != nil {
		t.Fatal(err)
	}
	if problems := s.ReloadFile(); len(problems) == 0 {
		t.Fatal("a broken file reloaded")
	}
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	if problems := s.ReloadFile(); len(problems) != 0 {
		t.Fatal(problems)
	}

	resp, err := client.Get("http://" + s.AdminAddr().String() + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /stats = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var doc struct {
		Time          time.Time `json:"time"`
		WindowSeconds int       `json:"window_seconds"`
		Process       struct {
			Version         string   `json:"version"`
			UptimeSeconds   *float64 `json:"uptime_seconds"`
			ConnectionsOpen *int     `json:"connections_open"`
			Config          struct {
				Loaded        time.Time `json:"loaded"`
				ReloadsOK     int       `json:"reloads_ok"`
				ReloadsFailed int       `json:"reloads_failed"`
				LastReload    struct {
					Result string   `json:"result"`
					Errors []string `json:"errors"`
				} `json:"last_reload"`
			} `json:"config"`
		} `json:"process"`
		Routes []struct {
			Name          string           `json:"name"`
			Host          string           `json:"host"`
			PathPrefix    string           `json:"path_prefix"`
			Balancer      string           `json:"balancer"`
			RequestsTotal int              `json:"requests_total"`
			Requests      int              `json:"requests"`
			Errors        int              `json:"errors"`
			ErrorRate     *float64         `json:"error_rate"`
			P50           *float64         `json:"p50_ms"`
			P99           *float64         `json:"p99_ms"`
			Ejections     int              `json:"ejections"`
			Codes         map[string]int   `json:"codes"`
			ErrorsByWord  map[string]int   `json:"errors_by_word"`
			Series        map[string][]any `json:"series"`
			Backends      []map[string]any `json:"backends"`
		} `json:"routes"`
		Transitions []struct {
			Route, Backend, From, To, Reason string
		} `json:"transitions"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	p := doc.Process
	if p.Version != "v9.9.9-test" || p.UptimeSeconds == nil || p.ConnectionsOpen == nil || doc.WindowSeconds != 60 {
		t.Errorf("process = %+v, window %d", p, doc.WindowSeconds)
	}
	if c := p.Config; c.ReloadsOK != 1 || c.ReloadsFailed != 1 || c.LastReload.Result != "ok" || c.LastReload.Errors == nil || time.Since(c.Loaded) > time.Minute {
		t.Errorf("config = %+v, want one failed and then one good reload, the last one ok", c)
	}
	if len(doc.Routes) != 2 || doc.Routes[0].Name != "api" || doc.Routes[1].Name != "web" || doc.Routes[1].Host != "example.com" || doc.Routes[0].PathPrefix != "/api" || doc.Routes[0].Balancer != "round_robin" {
		t.Fatalf("routes = %+v", doc.Routes)
	}
	api := doc.Routes[0]
	if api.RequestsTotal != 8 || api.Requests != 8 || api.Errors != statuses[500]+statuses[503] || api.Codes["2xx"] != statuses[200] {
		t.Errorf("api: total %d requests %d errors %d 2xx %d; statuses sent %v", api.RequestsTotal, api.Requests, api.Errors, api.Codes["2xx"], statuses)
	}
	if api.P50 == nil || api.P99 == nil || api.ErrorRate == nil || len(api.Series["requests_per_second"]) != 60 || len(api.Series["p99_ms"]) != 60 {
		t.Errorf("api: p50 %v p99 %v error rate %v series %d/%d", api.P50, api.P99, api.ErrorRate, len(api.Series["requests_per_second"]), len(api.Series["p99_ms"]))
	}
	if web := doc.Routes[1]; web.P50 != nil || web.ErrorRate != nil || web.Requests != 0 {
		t.Errorf("web, without traffic: p50 %v error rate %v requests %d; want null, null, 0", web.P50, web.ErrorRate, web.Requests)
	}
	if len(api.Backends) != 2 || api.Backends[0]["url"] != ok.URL || api.Backends[1]["url"] != failing.URL {
		t.Fatalf("api backends = %v", api.Backends)
	}
	bad := api.Backends[1]
	if bad["state"] != "ejected" || bad["ejections"] != 1.0 || bad["ejections_total"] != 1.0 || api.Ejections != 1 || bad["error_rate"] != 1.0 {
		t.Errorf("failing backend = %v, route ejections %d; want it ejected once, every try failed", bad, api.Ejections)
	}
	for _, k := range []string{"requests_per_second", "p50_ms", "p99_ms", "retries", "in_flight", "reason", "since", "weight", "consecutive_failures", "ejection_time", "series", "requests_total"} {
		if _, ok := bad[k]; !ok {
			t.Errorf("a backend lacks %q: %v", k, bad)
		}
	}
	if len(doc.Transitions) != 1 || doc.Transitions[0].To != "ejected" || doc.Transitions[0].Backend != failing.URL || !strings.Contains(doc.Transitions[0].Reason, "500") {
		t.Errorf("transitions = %+v, want the ejection", doc.Transitions)
	}
}

// TestStopDashboardAtOnce: shutdowns racing each other stop the sampler
// once; none of them closes its channel a second time (a panic).
func TestStopDashboardAtOnce(t *testing.T) {
	var s Server
	for round := 0; round < 2000; round++ {
		s.dash.stop, s.dash.done = nil, nil
		s.startDashboard()
		var start, wg sync.WaitGroup
		start.Add(1)
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				start.Wait()
				s.stopDashboard()
			}()
		}
		start.Done()
		wg.Wait()
	}
}
