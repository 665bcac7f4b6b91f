package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/config"
	"github.com/sluice-proxy/sluice/internal/metrics"
	"github.com/sluice-proxy/sluice/internal/upstream"
)

// countingBackend answers 200 "ok" and counts the requests it got.
func countingBackend(t *testing.T) (string, *atomic.Int64) {
	var n atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		io.WriteString(w, "ok")
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://"), &n
}

// overloadRuntime builds a handler over a config written as YAML.
func overloadRuntime(t testing.TB, doc string, prev *Runtime, m *metrics.Metrics) (*Handler, *Runtime) {
	t.Helper()
	cfg, err := config.Parse([]byte("access_log: \"off\"\nhealth: {active: {path: \"\"}}\n" + doc))
	if err != nil {
		t.Fatal(err)
	}
	tr := upstream.NewTransport(0)
	t.Cleanup(tr.Close)
	rt := Build(cfg, tr, prev, nopEvents{}, m)
	return NewHandler(rt, nil), rt
}

// rawResponse sends req on a new connection to the engine serving h and
// returns the response read with net/http.
func rawResponse(t *testing.T, addr, req string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func TestRateLimitKeys(t *testing.T) {
	addr, got := countingBackend(t)
	m := metrics.New(func() float64 { return 0 })
	h, _ := overloadRuntime(t, `trusted_proxies: [127.0.0.0/8]
routes:
  - name: header
    path_prefix: /h
    backends: [http://`+addr+`]
    rate_limit: {requests_per_second: 0.001, burst: 2, key: "header:X-Api-Key"}
  - name: ip
    path_prefix: /ip
    backends: [http://`+addr+`]
    rate_limit: {requests_per_second: 0.001, burst: 1}
  - name: whole
    path_prefix: /r
    backends: [http://`+addr+`]
    rate_limit: {requests_per_second: 0.001, burst: 3, key: route}
  - name: free
    path_prefix: /free
    backends: [http://`+addr+`]
`, nil, m)
	cl := serveEngine(t, h)
	req := func(path string, fields ...string) string {
		return "GET " + path + " HTTP/1.1\r\nHost: a\r\n" + strings.Join(fields, "") + "\r\n"
	}
	steps := []struct {
		name   string
		req    string
		status int
	}{
		{"header a 1", req("/h", "X-Api-Key: a\r\n"), 200},
		{"header a 2", req("/h", "x-api-key: a\r\n"), 200},
		{"header a 3: over", req("/h", "X-Api-Key: a\r\n"), 429},
		{"header b: its own bucket", req("/h", "X-Api-Key: b\r\n"), 200},
		{"first value counts", req("/h", "X-Api-Key: c\r\nX-Api-Key: a\r\n"), 200},
		{"missing 1", req("/h"), 200},
		{"empty shares with missing", req("/h", "X-Api-Key: \r\n"), 200},
		{"missing 3: over", req("/h"), 429},
		{"client 192.0.2.1", req("/ip", "X-Forwarded-For: 192.0.2.1\r\n"), 200},
		{"client 192.0.2.1 again: over", req("/ip", "X-Forwarded-For: 192.0.2.1\r\n"), 429},
		{"client 192.0.2.2", req("/ip", "X-Forwarded-For: 192.0.2.2\r\n"), 200},
		{"the peer itself", req("/ip"), 200},
		{"route 1", req("/r", "X-Forwarded-For: 192.0.2.1\r\n"), 200},
		{"route 2", req("/r", "X-Forwarded-For: 192.0.2.2\r\n"), 200},
		{"route 3", req("/r"), 200},
		{"route 4: over, whoever asks", req("/r", "X-Forwarded-For: 192.0.2.9\r\n"), 429},
		{"no limit", req("/free"), 200},
	}
	want := int64(0)
	for _, s := range steps {
		status, body := cl.do(t, s.req)
		if status != s.status {
			t.Fatalf("%s: status %d %q, want %d", s.name, status, body, s.status)
		}
		if status == 200 {
			want++
		}
	}
	if n := got.Load(); n != want {
		t.Errorf("backend got %d requests, want %d: a refused request reached it", n, want)
	}
	for route, n := range map[string]float64{"header": 2, "ip": 1, "whole": 1, "free": 0} {
		if v := counterValue(t, m, "sluice_rate_limited_total", "route", route); v != n {
			t.Errorf("sluice_rate_limited_total{route=%q} = %v, want %v", route, v, n)
		}
		if v := counterValue(t, m, "sluice_errors_total", "route", route, "error", "rate_limited"); v != n {
			t.Errorf("sluice_errors_total{route=%q,error=rate_limited} = %v, want %v", route, v, n)
		}
	}
}

// counterValue returns the value of the series of name with the label
// pairs, 0 when there is none.
func counterValue(t *testing.T, m *metrics.Metrics, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, s := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range s.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			return s.GetCounter().GetValue()
		}
	}
	return 0
}

func TestRateLimitAnswer(t *testing.T) {
	addr, got := countingBackend(t)
	h, _ := overloadRuntime(t, "routes:\n  - {name: api, path_prefix: /, backends: [http://"+addr+"], rate_limit: {requests_per_second: 0.4, burst: 1, key: route}}\n", nil, nil)
	proxyAddr := serveEngineAddr(t, h)
	if resp, _ := rawResponse(t, proxyAddr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatalf("first request: %d", resp.StatusCode)
	}
	resp, body := rawResponse(t, proxyAddr, "GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: abc\r\n\r\n")
	if resp.StatusCode != 429 {
		t.Fatalf("second request: %d %q, want 429", resp.StatusCode, body)
	}
	// One token every 2.5 s: the next is 2.5 s away, less the time since
	// the first request; whole seconds rounded up.
	if ra := resp.Header.Get("Retry-After"); ra != "3" && ra != "2" {
		t.Errorf("Retry-After = %q, want 3 (or 2 on a slow machine)", ra)
	}
	want := `{"error":"rate_limited","message":"rate limit of route api reached","request_id":"abc"}` + "\n"
	if body != want || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("X-Request-Id") != "abc" {
		t.Errorf("answer %q %q, want %q as application/json with its X-Request-Id", resp.Header, body, want)
	}
	if n := got.Load(); n != 1 {
		t.Errorf("backend got %d requests, want 1", n)
	}
}

// serveEngineAddr serves h on a loopback listener with the h1 engine and
// returns its address.
func serveEngineAddr(t *testing.T, h *Handler) string {
	cl := serveEngine(t, h)
	return cl.c.RemoteAddr().String()
}

// TestRateLimitReload checks that a reload keeps the buckets of a route
// whose name and rate_limit stay, and starts afresh otherwise.
func TestRateLimitReload(t *testing.T) {
	doc := func(name, rl string) string {
		return "routes:\n  - {name: " + name + ", path_prefix: /, backends: [http://127.0.0.1:1], rate_limit: " + rl + "}\n"
	}
	_, rt := overloadRuntime(t, doc("api", "{requests_per_second: 1}"), nil, nil)
	first := rt.Routes[0].overload.limit
	tests := []struct {
		name, doc string
		same      bool
	}{
		{"unchanged", doc("api", "{requests_per_second: 1}"), true},
		{"unchanged, written otherwise", doc("api", "{requests_per_second: 1.0, key: client_ip}"), true},
		{"rate changed", doc("api", "{requests_per_second: 2}"), false},
		{"key changed", doc("api", "{requests_per_second: 1, key: route}"), false},
		{"route renamed", doc("other", "{requests_per_second: 1}"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, next := overloadRuntime(t, tt.doc, rt, nil)
			if same := next.Routes[0].overload.limit == first; same != tt.same {
				t.Errorf("limiter kept = %v, want %v", same, tt.same)
			}
		})
	}
}

func TestClientAddress(t *testing.T) {
	nets := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:ffff::/48")}
	peerTrusted := netip.MustParseAddr("10.0.0.1")
	peerOther := netip.MustParseAddr("198.51.100.7")
	xff := func(vs ...string) []field {
		var fs []field
		for _, v := range vs {
			fs = append(fs, field{Name: []byte("X-Forwarded-For"), Value: []byte(v)})
		}
		return fs
	}
	tests := []struct {
		name   string
		peer   netip.Addr
		nets   []netip.Prefix
		fields []field
		want   string
	}{
		{"untrusted peer: its forgery ignored", peerOther, nets, xff("192.0.2.1"), "198.51.100.7"},
		{"no trusted proxies", peerTrusted, nil, xff("192.0.2.1"), "10.0.0.1"},
		{"trusted peer, one hop", peerTrusted, nets, xff("192.0.2.1"), "192.0.2.1"},
		{"a chain of trusted hops", peerTrusted, nets, xff("192.0.2.1, 10.1.1.1, 10.2.2.2"), "192.0.2.1"},
		{"a forged element left of the real client", peerTrusted, nets, xff("203.0.113.66, 192.0.2.1, 10.1.1.1"), "192.0.2.1"},
		{"an untrusted hop in the chain is the client", peerTrusted, nets, xff("192.0.2.1, 198.51.100.9, 10.1.1.1"), "198.51.100.9"},
		{"across several fields, last first", peerTrusted, nets, xff("192.0.2.1", "10.1.1.1, 10.2.2.2"), "192.0.2.1"},
		{"client in the last field", peerTrusted, nets, xff("203.0.113.66", "192.0.2.1"), "192.0.2.1"},
		{"all trusted: the peer", peerTrusted, nets, xff("10.9.9.9, 10.1.1.1"), "10.0.0.1"},
		{"no header: the peer", peerTrusted, nets, nil, "10.0.0.1"},
		{"garbage: the peer", peerTrusted, nets, xff("192.0.2.1, unknown"), "10.0.0.1"},
		{"garbage left of the client is not reached", peerTrusted, nets, xff("bogus, 192.0.2.1"), "192.0.2.1"},
		{"empty elements skipped", peerTrusted, nets, xff("192.0.2.1, , 10.1.1.1,"), "192.0.2.1"},
		{"IPv4 with a port", peerTrusted, nets, xff("192.0.2.1:4711"), "192.0.2.1"},
		{"IPv6", peerTrusted, nets, xff("2001:db8::1"), "2001:db8::1"},
		{"IPv6 in brackets with a port", peerTrusted, nets, xff("[2001:db8::1]:4711"), "2001:db8::1"},
		{"trusted IPv6 hop", peerTrusted, nets, xff("2001:db8::1, 2001:db8:ffff::5"), "2001:db8::1"},
		{"IPv4-mapped unmapped", peerTrusted, nets, xff("::ffff:192.0.2.1"), "192.0.2.1"},
		{"a zone is garbage", peerTrusted, nets, xff("fe80::1%eth0"), "10.0.0.1"},
		{"a bad port is garbage", peerTrusted, nets, xff("192.0.2.1:http"), "10.0.0.1"},
		{"other headers ignored", peerTrusted, nets, []field{{Name: []byte("Forwarded"), Value: []byte("for=192.0.2.1")}}, "10.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := clientAddress(tt.peer, tt.nets, tt.fields); got.String() != tt.want {
				t.Errorf("client = %v, want %s", got, tt.want)
			}
		})
	}
}

// BenchmarkServeRateLimited is BenchmarkServe's metrics case with a rate
// limit on the route, keyed by client address (X-Forwarded-For from a
// trusted peer) and by header, admitting every request: the limiter's
// cost on the request path, which must allocate nothing.
func BenchmarkServeRateLimited(b *testing.B) {
	addr := cannedBackend(b)
	for _, key := range []string{"client_ip", "header:X-Api-Key", "route"} {
		b.Run(key, func(b *testing.B) {
			m := metrics.New(func() float64 { return 0 })
			h, _ := overloadRuntime(b, "trusted_proxies: [127.0.0.1]\nroutes:\n  - path_prefix: /api\n    backends: [http://"+addr+"]\n"+
				"    rate_limit: {requests_per_second: 1e9, burst: 1000000, key: \""+key+"\"}\n", nil, m)
			cl := serveEngine(b, h)
			req := "GET /api/users?id=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: wrk\r\nAccept: */*\r\n" +
				"X-Forwarded-For: 192.0.2.1, 127.0.0.1\r\nX-Api-Key: k-123\r\n\r\n"
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if status, body := cl.do(b, req); status != 200 || len(body) != 100 {
					b.Fatalf("status %d body %q", status, body)
				}
			}
		})
	}
}
