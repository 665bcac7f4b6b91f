package proxy

import (
	"net"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/config"
	"github.com/sluice-proxy/sluice/internal/upstream"
)

// statsRuntime builds a handler over routes written as YAML.
func statsRuntime(t *testing.T, routes string) (*Handler, *upstream.Transport) {
	t.Helper()
	cfg, err := config.Parse([]byte("access_log: \"off\"\nhealth: {active: {path: \"\"}}\n" + routes))
	if err != nil {
		t.Fatal(err)
	}
	tr := upstream.NewTransport(0)
	t.Cleanup(tr.Close)
	return NewHandler(Build(cfg, tr, nil, nopEvents{}, nil), nil), tr
}

// TestStatsRecorded checks that a proxied request reaches the dashboard's
// meters of its route and backend, and that a request matching no route
// reaches none.
func TestStatsRecorded(t *testing.T) {
	h, _ := statsRuntime(t, "routes:\n  - {name: api, path_prefix: /api, backends: [http://"+cannedBackend(t)+"]}\n")
	cl := serveEngine(t, h)
	for range 3 {
		if status, _ := cl.do(t, "GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n"); status != 200 {
			t.Fatalf("status %d", status)
		}
	}
	if status, _ := cl.do(t, "GET /elsewhere HTTP/1.1\r\nHost: a\r\n\r\n"); status != 404 {
		t.Fatalf("status %d, want 404", status)
	}
	f := h.Runtime().Routes[0].Stats.Figures(time.Now())
	if f.Total != 3 || f.Codes[2] != 3 || f.Errors != 0 || !(f.P50 > 0) {
		t.Errorf("route figures: total %d 2xx %d errors %d p50 %v; want 3 3 0 and a latency", f.Total, f.Codes[2], f.Errors, f.P50)
	}
	if b := f.Backends[0]; b.Total != 3 || b.Errors != 0 || !(b.P99 > 0) {
		t.Errorf("backend figures: total %d errors %d p99 %v; want 3 0 and a latency", b.Total, b.Errors, b.P99)
	}
}

// TestStatsRetry checks that a try that fails and is retried counts as a
// failed try and a retry of the backend it failed on, and as a retry of
// the route; and that a reload keeping the route keeps its meters.
func TestStatsRetry(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	routes := "retry: {backoff: 1ms}\nroutes:\n  - {name: api, path_prefix: /api, backends: [http://" + refused + ", http://" + cannedBackend(t) + "]}\n"
	h, tr := statsRuntime(t, routes)
	cl := serveEngine(t, h)
	for range 4 {
		if status, _ := cl.do(t, "GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n"); status != 200 {
			t.Fatalf("status %d, want 200 after a retry", status)
		}
	}
	rt := h.Runtime()
	f := rt.Routes[0].Stats.Figures(time.Now())
	dead, live := f.Backends[0], f.Backends[1]
	if f.Total != 4 || f.Errors != 0 || f.Retries == 0 || f.Retries != dead.Total {
		t.Errorf("route: total %d errors %d retries %d; want 4, 0, and a retry per try of the refused backend (%d)", f.Total, f.Errors, f.Retries, dead.Total)
	}
	if dead.Errors != dead.Total || dead.Retries != dead.Total || !(dead.ErrorRate == 1) {
		t.Errorf("refused backend: tries %d errors %d retries %d rate %v; want every try failed and retried", dead.Total, dead.Errors, dead.Retries, dead.ErrorRate)
	}
	if live.Total != 4 || live.Errors != 0 {
		t.Errorf("live backend: tries %d errors %d, want 4 0", live.Total, live.Errors)
	}

	cfg, err := config.Parse([]byte("access_log: \"off\"\nhealth: {active: {path: \"\"}}\n" + routes))
	if err != nil {
		t.Fatal(err)
	}
	next := Build(cfg, tr, rt, nopEvents{}, nil)
	if got := next.Routes[0].Stats.Figures(time.Now()); got.Total != 4 || got.Backends[0].Total != dead.Total {
		t.Errorf("after a reload: route total %d, refused backend tries %d; want 4 and %d", got.Total, got.Backends[0].Total, dead.Total)
	}
}
