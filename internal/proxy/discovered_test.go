package proxy

import (
	"bytes"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/backend"
	"github.com/sluice-proxy/sluice/internal/config"
	"github.com/sluice-proxy/sluice/internal/discovery"
	"github.com/sluice-proxy/sluice/internal/upstream"
)

func endpoint(addr string, port uint16, weight int) discovery.Endpoint {
	return discovery.Endpoint{Addr: netip.MustParseAddr(addr), Port: port, Weight: weight}
}

func parseRoutes(t *testing.T, routes string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte("access_log: \"off\"\nhealth: {active: {path: \"\"}}\n" + routes))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestMembers(t *testing.T) {
	cfg := parseRoutes(t, `routes:
  - name: api
    path_prefix: /
    backends:
      - http://10.0.0.1:8080
      - {url: "http://api.test:8080/v1/", discovery: dns, weight: 3}
      - {url: "https://secure.test", discovery: dns}
      - {url: "http://_http._tcp.svc.test", discovery: srv}
      - {url: "https://_https._tcp.web.test/p", discovery: srv}
      - {url: "http://plain.test", discovery: dns}
`)
	found := discovery.Sets{
		{Route: "api", URL: "http://api.test:8080/v1/"}:       {endpoint("10.0.0.1", 0, 0), endpoint("10.0.0.2", 0, 0), endpoint("fd00::1", 0, 0)},
		{Route: "api", URL: "https://secure.test"}:            {endpoint("10.0.0.3", 0, 0)},
		{Route: "api", URL: "http://_http._tcp.svc.test"}:     {endpoint("10.0.0.4", 9000, 5), endpoint("10.0.0.1", 8080, 2)},
		{Route: "api", URL: "https://_https._tcp.web.test/p"}: {endpoint("fd00::2", 8443, 1)},
		{Route: "api", URL: "http://plain.test"}:              {endpoint("fd00::3", 0, 0), endpoint("10.0.0.9", 0, 0)},
		{Route: "other", URL: "http://plain.test"}:            {endpoint("10.9.9.9", 0, 0)},
	}
	want := []member{
		{URL: "http://10.0.0.1:8080", Weight: 1},
		// The URL's port and path kept; the configured weight.
		{URL: "http://10.0.0.1:8080/v1/", Weight: 3, ServerName: "api.test"},
		{URL: "http://10.0.0.2:8080/v1/", Weight: 3, ServerName: "api.test"},
		{URL: "http://[fd00::1]:8080/v1/", Weight: 3, ServerName: "api.test"},
		{URL: "https://10.0.0.3", Weight: 1, ServerName: "secure.test"},
		// SRV: the records' ports and weights; an address listed by hand
		// (http://10.0.0.1:8080) is not listed twice.
		{URL: "http://10.0.0.4:9000", Weight: 5, ServerName: "svc.test"},
		{URL: "https://[fd00::2]:8443/p", Weight: 1, ServerName: "web.test"},
		// No port: none in the URL either; IPv6 in brackets.
		{URL: "http://[fd00::3]", Weight: 1, ServerName: "plain.test"},
		{URL: "http://10.0.0.9", Weight: 1, ServerName: "plain.test"},
	}
	if got := members(cfg.Routes[0], found, nil, nil); !slices.Equal(got, want) {
		t.Errorf("members:\n got %v\nwant %v", got, want)
	}
	if got := members(cfg.Routes[0], nil, nil, nil); !slices.Equal(got, want[:1]) {
		t.Errorf("members with nothing found = %v, want the configured backend only", got)
	}
}

func TestBuildWithDiscovered(t *testing.T) {
	cfg := parseRoutes(t, `routes:
  - name: api
    path_prefix: /
    slow_start: 10s
    backends:
      - {url: "http://api.test:8080", discovery: dns}
      - {url: "https://secure.test:8443", discovery: dns}
`)
	tr := upstream.NewTransport(0)
	t.Cleanup(tr.Close)
	key := discovery.Key{Route: "api", URL: "http://api.test:8080"}
	tls := discovery.Key{Route: "api", URL: "https://secure.test:8443"}

	// At start nothing is found yet: the route has no backend.
	rt0 := Build(cfg, tr, nil, nopEvents{}, nil)
	if n := len(rt0.Routes[0].Backends); n != 0 {
		t.Fatalf("backends before any answer = %d", n)
	}

	rt1 := BuildWith(cfg, tr, rt0, nopEvents{}, nil, discovery.Sets{
		key: {endpoint("127.0.0.2", 0, 0), endpoint("127.0.0.3", 0, 0)},
		tls: {endpoint("127.0.0.4", 0, 0)},
	})
	urls := func(rt *Runtime) []string {
		var out []string
		for _, b := range rt.Routes[0].Backends {
			out = append(out, b.URL)
		}
		return out
	}
	if got := urls(rt1); !slices.Equal(got, []string{"http://127.0.0.2:8080", "http://127.0.0.3:8080", "https://127.0.0.4:8443"}) {
		t.Fatalf("backends = %v", got)
	}
	b2, b3 := rt1.Routes[0].Backends[0], rt1.Routes[0].Backends[1]
	if b2.Addr != "127.0.0.2:8080" || b2.Origin != "http://127.0.0.2:8080" || b2.ServerName != "api.test" {
		t.Errorf("backend %+v", b2)
	}
	// The first answer for a name the process started with: present from
	// the start, at full weight (no slow start).
	for _, b := range rt1.Routes[0].Backends {
		if b.UpSince() != 0 {
			t.Errorf("%s of the first answer is in slow start", b.URL)
		}
	}
	b3.SetState(backend.Unhealthy, time.Now(), "test")

	// The set changes: .3 stays with its state, .2 goes, .5 joins (slow
	// start); the https backend dials an address and checks its name.
	rt2 := BuildWith(cfg, tr, rt1, nopEvents{}, nil, discovery.Sets{
		key: {endpoint("127.0.0.3", 0, 0), endpoint("127.0.0.5", 0, 0)},
		tls: {endpoint("127.0.0.4", 0, 0)},
	})
	if got := urls(rt2); !slices.Equal(got, []string{"http://127.0.0.3:8080", "http://127.0.0.5:8080", "https://127.0.0.4:8443"}) {
		t.Fatalf("backends after the change = %v", got)
	}
	kept, joined := rt2.Routes[0].Backends[0], rt2.Routes[0].Backends[1]
	if kept.State() != backend.Unhealthy {
		t.Errorf("kept backend state = %v, want unhealthy as before", kept.State())
	}
	if joined.State() != backend.Healthy || joined.UpSince() == 0 {
		t.Errorf("joined backend: state %v, up since %d; want healthy, in slow start", joined.State(), joined.UpSince())
	}
	addrs := rt2.Addrs()
	for _, k := range []string{"http://127.0.0.3:8080", "http://127.0.0.5:8080", "https://127.0.0.4:8443 secure.test"} {
		if !addrs[k] {
			t.Errorf("pool key %q missing from %v", k, addrs)
		}
	}
	if addrs["http://127.0.0.2:8080"] {
		t.Errorf("the pool of the address gone is kept: %v", addrs)
	}
	if p := rt2.Routes[0].Pools[2]; p != tr.Pool("https", "127.0.0.4:8443", "secure.test") {
		t.Errorf("the https backend's pool is not the one of its server name")
	}

	// An empty answer: no backend, and requests get 503 no_healthy_backend.
	rt3 := BuildWith(cfg, tr, rt2, nopEvents{}, nil, discovery.Sets{key: {}, tls: {}})
	if n := len(rt3.Routes[0].Backends); n != 0 {
		t.Fatalf("backends after an empty answer = %d", n)
	}
	cl := serveEngine(t, NewHandler(rt3, nil))
	status, body := cl.do(t, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
	if status != 503 || !bytes.Contains(body, []byte(`"no_healthy_backend"`)) {
		t.Errorf("request to a route without backends: %d %s", status, body)
	}
}

// TestDiscoveredAddedByReload: a discovered backend a reload adds joins
// the route, so the endpoints of its first answer slow-start.
func TestDiscoveredAddedByReload(t *testing.T) {
	before := parseRoutes(t, "routes:\n  - name: api\n    path_prefix: /\n    slow_start: 10s\n    backends: [http://127.0.0.1:1]\n")
	after := parseRoutes(t, "routes:\n  - name: api\n    path_prefix: /\n    slow_start: 10s\n    backends:\n      - http://127.0.0.1:1\n      - {url: \"http://api.test:8080\", discovery: dns}\n")
	tr := upstream.NewTransport(0)
	t.Cleanup(tr.Close)
	rt0 := Build(before, tr, nil, nopEvents{}, nil)
	rt1 := Build(after, tr, rt0, nopEvents{}, nil) // the reload
	rt2 := BuildWith(after, tr, rt1, nopEvents{}, nil, discovery.Sets{
		{Route: "api", URL: "http://api.test:8080"}: {endpoint("127.0.0.2", 0, 0)},
	})
	bs := rt2.Routes[0].Backends
	if len(bs) != 2 || bs[1].URL != "http://127.0.0.2:8080" {
		t.Fatalf("backends %v", bs)
	}
	if bs[0].UpSince() != 0 || bs[1].UpSince() == 0 {
		t.Errorf("up since: listed %d, discovered %d; want the listed one at full weight and the discovered one in slow start", bs[0].UpSince(), bs[1].UpSince())
	}
}
