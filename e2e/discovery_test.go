package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/sluice-proxy/sluice/internal/discovery/dnstest"
)

// Service discovery (docs/configuration.md, "Service discovery"): a DNS
// server runs in the test process (UDP and TCP on one port of 127.0.0.1)
// with records the test changes, and backends listen on several loopback
// addresses (127.0.0.2, 127.0.0.3, ...) on one port, so that the addresses
// DNS gives are the backends.

// addrBackend is a backend on one loopback address.
type addrBackend struct {
	*httptest.Server
	IP    string
	count atomic.Int64
	mu    sync.Mutex
	hosts []string // the Host of each request
}

func (b *addrBackend) Count() int { return int(b.count.Load()) }

// URL returns the backend's URL as sluice lists a discovered backend.
func (b *addrBackend) AddrURL(scheme string, port int) string {
	return fmt.Sprintf("%s://%s:%d", scheme, b.IP, port)
}

// loopbackListeners listens on 127.0.0.2 ... 127.0.0.(n+1), all on one
// port, and returns the port and the listeners.
func loopbackListeners(t testing.TB, n int) (int, []net.Listener) {
	t.Helper()
	for range 20 {
		first, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Fatalf("listening on 127.0.0.2: %v", err)
		}
		port := first.Addr().(*net.TCPAddr).Port
		lns := []net.Listener{first}
		for i := 1; i < n && err == nil; i++ {
			var ln net.Listener
			if ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.%d:%d", i+2, port)); err == nil {
				lns = append(lns, ln)
			}
		}
		if err == nil {
			return port, lns
		}
		for _, ln := range lns {
			ln.Close()
		}
	}
	t.Fatal("no port free on every loopback address")
	return 0, nil
}

// loopbackBackends starts n backends on 127.0.0.2 ... on one port. h, when
// not nil, answers instead of the default, which writes the backend's
// address as the body and as X-Backend.
func loopbackBackends(t testing.TB, n int, h func(b *addrBackend, w http.ResponseWriter, r *http.Request)) (int, []*addrBackend) {
	t.Helper()
	port, lns := loopbackListeners(t, n)
	bs := make([]*addrBackend, n)
	for i, ln := range lns {
		b := &addrBackend{IP: fmt.Sprintf("127.0.0.%d", i+2)}
		b.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/health" {
				return
			}
			b.count.Add(1)
			b.mu.Lock()
			b.hosts = append(b.hosts, r.Host)
			b.mu.Unlock()
			if h != nil {
				h(b, w, r)
				return
			}
			w.Header().Set("X-Backend", b.IP)
			io.WriteString(w, b.IP)
		}))
		b.Server.Listener.Close()
		b.Server.Listener = ln
		b.Server.Start()
		t.Cleanup(b.Server.Close)
		bs[i] = b
	}
	return port, bs
}

// aRecords returns A records for name, one per address, with ttl.
func aRecords(name string, ttl int, ips ...string) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = fmt.Sprintf("%s %d IN A %s", dns.Fqdn(name), ttl, ip)
	}
	return out
}

// discoveryRoute is a config whose route api (path /api) has backends,
// asking resolver, with extra top-level YAML.
func discoveryRoute(resolver, backends, extra string) string {
	return fmt.Sprintf(`
discovery:
  resolvers: [%q]
  refresh: 30s
%s
routes:
  - name: api
    path_prefix: /api
    backends:
%s
`, resolver, extra, backends)
}

// apiTestBackend is the backends entry of http://api.test:port, found by
// discovery: dns.
func apiTestBackend(port int) string {
	return fmt.Sprintf(`      - {url: "http://api.test:%d", discovery: dns}`, port)
}

// backendURLs returns the URLs /backends lists for route, sorted.
func backendURLs(t testing.TB, p *proc, route string) []string {
	var out []string
	for _, b := range routeBackends(t, p, route) {
		out = append(out, b.URL)
	}
	slices.Sort(out)
	return out
}

// waitBackends waits until /backends lists exactly want for route.
func waitBackends(t testing.TB, p *proc, route string, within time.Duration, want ...string) {
	t.Helper()
	slices.Sort(want)
	var got []string
	eventually(t, within, func() bool {
		got = backendURLs(t, p, route)
		return slices.Equal(got, want)
	}, "route %s backends to be %v (last %v)", route, want, &got)
}

// resolutions returns sluice_discovery_resolutions_total for route, name
// and result.
func resolutions(t testing.TB, p *proc, name, result string) float64 {
	return metricOrZero(t, p, "sluice_discovery_resolutions_total", "route", "api", "name", name, "result", result)
}

// TestDiscoveryFollowsRecords: a name's A records point at backends; as the
// records change, the backends follow within TTL + 1 s, without a reload;
// requests keep the client's Host; an address that goes gets no request
// and its series go.
func TestDiscoveryFollowsRecords(t *testing.T) {
	t.Parallel()
	ns := dnstest.Start(t)
	port, bs := loopbackBackends(t, 3, nil)
	ns.Set("api.test.", dns.TypeA, aRecords("api.test", 1, "127.0.0.2")...)
	p := start(t, discoveryRoute(ns.Addr, apiTestBackend(port), ""))
	u2, u3, u4 := bs[0].AddrURL("http", port), bs[1].AddrURL("http", port), bs[2].AddrURL("http", port)
	waitBackends(t, p, "api", 3*time.Second, u2)

	resp, body := get(t, p.URL("/api/x"), "Host", "shop.example")
	if resp.StatusCode != 200 || string(body) != "127.0.0.2" {
		t.Fatalf("GET = %d %q, want 200 from 127.0.0.2", resp.StatusCode, body)
	}
	bs[0].mu.Lock()
	h := bs[0].hosts[len(bs[0].hosts)-1]
	bs[0].mu.Unlock()
	if h != "shop.example" {
		t.Errorf("the backend got Host %q, want the client's", h)
	}

	// Two more addresses: within TTL (1 s) + 1 s, with scheduling slack.
	ns.Set("api.test.", dns.TypeA, aRecords("api.test", 1, "127.0.0.2", "127.0.0.3", "127.0.0.4")...)
	waitBackends(t, p, "api", 3*time.Second, u2, u3, u4)
	for range 9 {
		get(t, p.URL("/api/x"))
	}
	for _, b := range bs {
		if b.Count() == 0 {
			t.Errorf("backend %s got no request after it was discovered", b.IP)
		}
	}

	// 127.0.0.2 goes: it gets no new request, and its series go.
	ns.Set("api.test.", dns.TypeA, aRecords("api.test", 1, "127.0.0.3", "127.0.0.4")...)
	waitBackends(t, p, "api", 3*time.Second, u3, u4)
	before := bs[0].Count()
	for range 10 {
		if resp, body := get(t, p.URL("/api/x")); resp.StatusCode != 200 || string(body) == "127.0.0.2" {
			t.Errorf("GET after 127.0.0.2 went = %d %q", resp.StatusCode, body)
		}
	}
	if n := bs[0].Count(); n != before {
		t.Errorf("127.0.0.2 got %d requests after DNS dropped it", n-before)
	}
	ss, _ := scrape(t, p)
	if _, ok := metricValue(ss, "sluice_backend_healthy", "route", "api", "backend", u2); ok {
		t.Errorf("sluice_backend_healthy of %s kept after it went", u2)
	}
	if _, ok := metricValue(ss, "sluice_upstream_requests_total", "route", "api", "backend", u2, "outcome", "ok"); ok {
		t.Errorf("sluice_upstream_requests_total of %s kept after it went", u2)
	}
	if v, _ := metricValue(ss, "sluice_upstream_requests_total", "route", "api", "backend", u3, "outcome", "ok"); v == 0 {
		t.Errorf("sluice_upstream_requests_total of %s is not labelled with its address URL", u3)
	}
	if v := resolutions(t, p, "api.test", "ok"); v < 3 {
		t.Errorf("resolutions ok = %v, want at least 3", v)
	}
	if n := reloadsOK(t, p); n != 0 {
		t.Errorf("sluice_config_reloads_total{result=\"ok\"} = %v: discovery is not a reload", n)
	}
}

// TestDiscoveryFailureKeepsSet: SERVFAIL and a resolver that does not answer
// keep the last set, counted as errors; an answer without records
// (NXDOMAIN) empties it, and the route answers 503 no_healthy_backend.
func TestDiscoveryFailureKeepsSet(t *testing.T) {
	t.Parallel()
	ns := dnstest.Start(t)
	port, bs := loopbackBackends(t, 1, nil)
	ns.Set("api.test.", dns.TypeA, aRecords("api.test", 1, "127.0.0.2")...)
	p := start(t, discoveryRoute(ns.Addr, apiTestBackend(port), ""))
	u2 := bs[0].AddrURL("http", port)
	waitBackends(t, p, "api", 3*time.Second, u2)

	checkServed := func(when string) {
		t.Helper()
		if got := backendURLs(t, p, "api"); !slices.Equal(got, []string{u2}) {
			t.Errorf("%s: backends %v, want the last set kept", when, got)
		}
		if resp, body := get(t, p.URL("/api/x")); resp.StatusCode != 200 {
			t.Errorf("%s: GET = %d %q", when, resp.StatusCode, body)
		}
	}
	ns.Fail("api.test.", dns.TypeA, dns.RcodeServerFailure)
	eventually(t, 3*time.Second, func() bool { return resolutions(t, p, "api.test", "error") >= 2 },
		"two SERVFAILs to be counted as errors")
	checkServed("after SERVFAIL")

	ns.Silence(true)
	errs := resolutions(t, p, "api.test", "error")
	eventually(t, 10*time.Second, func() bool { return resolutions(t, p, "api.test", "error") > errs },
		"a resolver that does not answer to be counted as an error")
	checkServed("while the resolver does not answer")
	if !strings.Contains(p.Stderr(), "service discovery failed") {
		t.Errorf("the failure was not logged")
	}

	ns.Silence(false)
	ns.Remove("api.test.")
	waitBackends(t, p, "api", 20*time.Second) // failures back off: at most refresh
	resp, body := get(t, p.URL("/api/x"))
	checkProxyError(t, resp, body, 503, "no_healthy_backend")
}

// TestDiscoverySRV: only the lowest priority's targets are backends, with
// the records' ports and weights.
func TestDiscoverySRV(t *testing.T) {
	t.Parallel()
	ns := dnstest.Start(t)
	port, bs := loopbackBackends(t, 3, nil)
	ns.Set("_http._tcp.api.test.", dns.TypeSRV,
		fmt.Sprintf("_http._tcp.api.test. 1 IN SRV 10 3 %d a.test.", port),
		fmt.Sprintf("_http._tcp.api.test. 1 IN SRV 10 1 %d b.test.", port),
		fmt.Sprintf("_http._tcp.api.test. 1 IN SRV 20 100 %d c.test.", port))
	ns.Set("a.test.", dns.TypeA, aRecords("a.test", 1, "127.0.0.2")...)
	ns.Set("b.test.", dns.TypeA, aRecords("b.test", 1, "127.0.0.3")...)
	ns.Set("c.test.", dns.TypeA, aRecords("c.test", 1, "127.0.0.4")...)
	p := start(t, discoveryRoute(ns.Addr, `      - {url: "http://_http._tcp.api.test", discovery: srv}`, ""))
	waitBackends(t, p, "api", 3*time.Second, bs[0].AddrURL("http", port), bs[1].AddrURL("http", port))
	for range 40 {
		if resp, body := get(t, p.URL("/api/x")); resp.StatusCode != 200 {
			t.Fatalf("GET = %d %q", resp.StatusCode, body)
		}
	}
	if a, b, c := bs[0].Count(), bs[1].Count(), bs[2].Count(); a != 30 || b != 10 || c != 0 {
		t.Errorf("requests = %d, %d, %d; want 30, 10 (weights 3 and 1) and 0 (a higher priority value)", a, b, c)
	}
	if v := resolutions(t, p, "_http._tcp.api.test", "ok"); v < 1 {
		t.Errorf("resolutions ok = %v", v)
	}
}

// TestDiscoveryKeepsState: an address present before and after a change
// keeps its state (an ejection here) and its series; one that joins starts
// healthy; one that goes leaves /backends and the metrics.
func TestDiscoveryKeepsState(t *testing.T) {
	t.Parallel()
	ns := dnstest.Start(t)
	port, bs := loopbackBackends(t, 3, func(b *addrBackend, w http.ResponseWriter, r *http.Request) {
		if b.IP == "127.0.0.2" {
			w.WriteHeader(500)
		}
		io.WriteString(w, b.IP)
	})
	u2, u3, u4 := bs[0].AddrURL("http", port), bs[1].AddrURL("http", port), bs[2].AddrURL("http", port)
	ns.Set("api.test.", dns.TypeA, aRecords("api.test", 1, "127.0.0.2", "127.0.0.3")...)
	p := start(t, discoveryRoute(ns.Addr, apiTestBackend(port), `
retry: {attempts: 1}
health: {active: {path: ""}, passive: {consecutive_failures: 2, ejection_time: 1m}}`))
	waitBackends(t, p, "api", 3*time.Second, u2, u3)
	state := func(url string) string {
		for _, b := range routeBackends(t, p, "api") {
			if b.URL == url {
				return b.State
			}
		}
		return "absent"
	}
	eventually(t, 5*time.Second, func() bool {
		get(t, p.URL("/api/x"))
		return state(u2) == "ejected"
	}, "127.0.0.2 to be ejected")

	ns.Set("api.test.", dns.TypeA, aRecords("api.test", 1, "127.0.0.2", "127.0.0.4")...)
	waitBackends(t, p, "api", 3*time.Second, u2, u4)
	if s := state(u2); s != "ejected" {
		t.Errorf("127.0.0.2, kept by DNS, is %s, want still ejected", s)
	}
	if s := state(u4); s != "healthy" {
		t.Errorf("127.0.0.4, new, is %s, want healthy", s)
	}
	for range 5 {
		if resp, body := get(t, p.URL("/api/x")); resp.StatusCode != 200 || string(body) != "127.0.0.4" {
			t.Errorf("GET = %d %q, want 200 from 127.0.0.4 (127.0.0.2 is ejected)", resp.StatusCode, body)
		}
	}
	ss, _ := scrape(t, p)
	if v, _ := metricValue(ss, "sluice_backend_ejections_total", "route", "api", "backend", u2); v != 1 {
		t.Errorf("ejections of %s = %v, want its 1 kept", u2, v)
	}
	if v, _ := metricValue(ss, "sluice_upstream_requests_total", "route", "api", "backend", u2, "outcome", "http_error"); v < 2 {
		t.Errorf("http_error tries of %s = %v, want its count kept", u2, v)
	}
	if _, ok := metricValue(ss, "sluice_upstream_requests_total", "route", "api", "backend", u3, "outcome", "ok"); ok {
		t.Errorf("series of %s, gone, kept", u3)
	}
}

// TestDiscoveryRemovedFinishesInFlight: a backend that DNS drops while it
// serves a request finishes it, and gets no new one.
func TestDiscoveryRemovedFinishesInFlight(t *testing.T) {
	t.Parallel()
	ns := dnstest.Start(t)
	started, release := make(chan struct{}), make(chan struct{})
	port, bs := loopbackBackends(t, 2, func(b *addrBackend, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/slow" {
			close(started)
			<-release
		}
		io.WriteString(w, b.IP)
	})
	ns.Set("api.test.", dns.TypeA, aRecords("api.test", 1, "127.0.0.2")...)
	p := start(t, discoveryRoute(ns.Addr, apiTestBackend(port), ""))
	waitBackends(t, p, "api", 3*time.Second, bs[0].AddrURL("http", port))

	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		c := &http.Client{Timeout: 20 * time.Second}
		resp, err := c.Get(p.URL("/api/slow"))
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- result{resp.StatusCode, string(b), err}
	}()
	waitChan(t, started, 5*time.Second, "the slow request to reach 127.0.0.2")

	ns.Set("api.test.", dns.TypeA, aRecords("api.test", 1, "127.0.0.3")...)
	waitBackends(t, p, "api", 3*time.Second, bs[1].AddrURL("http", port))
	before := bs[0].Count()
	for range 5 {
		if resp, body := get(t, p.URL("/api/x")); resp.StatusCode != 200 || string(body) != "127.0.0.3" {
			t.Errorf("GET = %d %q, want 200 from 127.0.0.3", resp.StatusCode, body)
		}
	}
	close(release)
	r := waitChan(t, done, 10*time.Second, "the slow request")
	if r.err != nil || r.status != 200 || r.body != "127.0.0.2" {
		t.Errorf("the in-flight request = %d %q %v, want 200 from 127.0.0.2", r.status, r.body, r.err)
	}
	if n := bs[0].Count() - before; n != 0 {
		t.Errorf("127.0.0.2 got %d new requests after it went", n)
	}
}

// TestDiscoveryStartDoesNotWait: a name whose resolver never answers delays
// neither start nor /readyz; the route answers 503 until a backend is
// found; -check resolves nothing.
func TestDiscoveryStartDoesNotWait(t *testing.T) {
	t.Parallel()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	cfg := discoveryRoute(pc.LocalAddr().String(), `      - {url: "http://api.test:8080", discovery: dns}`, "")
	begin := time.Now()
	p := start(t, cfg)
	if d := time.Since(begin); d >= 2*time.Second {
		t.Errorf("ready after %v: start waited for DNS (a query times out after 2s)", d)
	}
	resp, body := get(t, p.URL("/api/x"))
	checkProxyError(t, resp, body, 503, "no_healthy_backend")
	eventually(t, 6*time.Second, func() bool { return resolutions(t, p, "api.test", "error") >= 1 },
		"the unanswered resolution to count as an error")

	begin = time.Now()
	stdout, stderr, code := runCLI(t, "-config", p.CfgPath, "-check")
	if code != 0 || !strings.Contains(stdout, "configuration ok") || time.Since(begin) > 2*time.Second {
		t.Errorf("-check = %d %q %q after %v, want ok at once", code, stdout, stderr, time.Since(begin))
	}
}

// TestDiscoveryTruncatedOverTCP: an answer truncated over UDP is asked
// again over TCP.
func TestDiscoveryTruncatedOverTCP(t *testing.T) {
	t.Parallel()
	ns := dnstest.Start(t)
	port, bs := loopbackBackends(t, 1, nil)
	ns.SetTruncated("api.test.", dns.TypeA, aRecords("api.test", 30, "127.0.0.2")...)
	p := start(t, discoveryRoute(ns.Addr, apiTestBackend(port), ""))
	waitBackends(t, p, "api", 3*time.Second, bs[0].AddrURL("http", port))
	if ns.Queries("tcp") == 0 {
		t.Errorf("no query over TCP")
	}
}

// TestDiscoveryReload: a reload that keeps a discovered backend keeps its
// addresses (no gap while the name is resolved again); one that drops it
// drops its resolutions' series.
func TestDiscoveryReload(t *testing.T) {
	t.Parallel()
	ns := dnstest.Start(t)
	port, bs := loopbackBackends(t, 2, nil)
	ns.Set("api.test.", dns.TypeA, aRecords("api.test", 30, "127.0.0.2")...)
	discovered := apiTestBackend(port)
	static := fmt.Sprintf(`      - %s`, bs[1].AddrURL("http", port))
	p := start(t, discoveryRoute(ns.Addr, discovered, ""))
	u2, u3 := bs[0].AddrURL("http", port), bs[1].AddrURL("http", port)
	waitBackends(t, p, "api", 3*time.Second, u2)

	reloadOK(t, p, discoveryRoute(ns.Addr, discovered+"\n"+static, ""), false)
	if got := backendURLs(t, p, "api"); !slices.Equal(got, []string{u2, u3}) {
		t.Errorf("backends right after a reload = %v, want %v", got, []string{u2, u3})
	}
	reloadOK(t, p, discoveryRoute(ns.Addr, static, ""), true)
	if got := backendURLs(t, p, "api"); !slices.Equal(got, []string{u3}) {
		t.Errorf("backends after the discovered one left the config = %v", got)
	}
	ss, _ := scrape(t, p)
	if _, ok := metricValue(ss, "sluice_discovery_resolutions_total", "route", "api", "name", "api.test", "result", "ok"); ok {
		t.Errorf("resolutions of api.test still exported after it left the config")
	}
}

// TestDiscoveryHTTPS: an https backend found by DNS is dialled at its
// address, sends the configured name as SNI and checks the certificate
// against it.
func TestDiscoveryHTTPS(t *testing.T) {
	// Not parallel: SSL_CERT_FILE is set for the sluice process.
	ns := dnstest.Start(t)
	port, lns := loopbackListeners(t, 1)
	caFile, cert := discoveryCA(t, "secure.test")
	t.Setenv("SSL_CERT_FILE", caFile)
	var sni, host atomic.Value
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host.Store(r.Host)
		io.WriteString(w, "secure")
	}))
	srv.Listener.Close()
	srv.Listener = lns[0]
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		sni.Store(h.ServerName)
		return nil, nil
	}}
	srv.StartTLS()
	defer srv.Close()
	ns.Set("secure.test.", dns.TypeA, aRecords("secure.test", 30, "127.0.0.2")...)
	p := start(t, discoveryRoute(ns.Addr, fmt.Sprintf(`      - {url: "https://secure.test:%d", discovery: dns}`, port), ""))
	waitBackends(t, p, "api", 3*time.Second, fmt.Sprintf("https://127.0.0.2:%d", port))
	resp, body := get(t, p.URL("/api/x"), "Host", "shop.example")
	if resp.StatusCode != 200 || string(body) != "secure" {
		t.Fatalf("GET = %d %q, want 200 from the https backend", resp.StatusCode, body)
	}
	if got := sni.Load(); got != "secure.test" {
		t.Errorf("SNI = %v, want secure.test", got)
	}
	if got := host.Load(); got != "shop.example" {
		t.Errorf("Host = %v, want the client's", got)
	}
}

// discoveryCA writes a CA certificate to a file and returns it with a
// certificate for name that it signed.
func discoveryCA(t *testing.T, name string) (string, tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sluice test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestDiscoveryUnderLoad: 32 keep-alive clients send for 10 s while the DNS
// answer changes every second, adding and removing addresses; removed
// backends keep running and answer what they have in flight. No client
// request may fail.
func TestDiscoveryUnderLoad(t *testing.T) {
	// Not parallel: a load test on two cores.
	if testing.Short() {
		t.Skip("a 10 s load test")
	}
	ns := dnstest.Start(t)
	port, bs := loopbackBackends(t, 5, func(b *addrBackend, w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		io.WriteString(w, echoBody(r.Method, r.RequestURI, string(body)))
	})
	ips := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"}
	ns.Set("api.test.", dns.TypeA, aRecords("api.test", 1, ips[:2]...)...)
	p := start(t, discoveryRoute(ns.Addr, apiTestBackend(port), ""))
	waitBackends(t, p, "api", 3*time.Second, bs[0].AddrURL("http", port), bs[1].AddrURL("http", port))

	stop := make(chan struct{})
	res := &loadResult{}
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runLoadClient(p.Addr, w, stop, false, res)
		}()
	}
	seen := map[string]bool{}
	for range 10 {
		time.Sleep(time.Second)
		// A different non-empty subset each second.
		var set []string
		for len(set) == 0 {
			set = set[:0]
			for _, ip := range ips {
				if mrand.IntN(2) == 0 {
					set = append(set, ip)
				}
			}
		}
		ns.Set("api.test.", dns.TypeA, aRecords("api.test", 1, set...)...)
		seen[strings.Join(backendURLs(t, p, "api"), ",")] = true
	}
	close(stop)
	wg.Wait()
	t.Logf("%d requests, %d client connections, %d distinct backend sets seen", res.ok, res.dials, len(seen))
	if res.nFailures != 0 {
		t.Errorf("%d client requests failed (of %d ok); first: %v", res.nFailures, res.ok, res.failures)
	}
	if res.ok < 1000 {
		t.Errorf("only %d requests succeeded in 10 s", res.ok)
	}
	if len(seen) < 4 {
		t.Errorf("the backends changed only %d times under load: %v", len(seen), seen)
	}
	served := 0
	for _, b := range bs {
		if b.Count() > 0 {
			served++
		}
	}
	if served < 4 {
		t.Errorf("only %d of 5 backends served requests", served)
	}
}
