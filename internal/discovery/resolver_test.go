package discovery

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/sluice-proxy/sluice/internal/discovery/dnstest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// ep is an endpoint for comparisons.
func ep(addr string, port uint16, weight int) Endpoint {
	return Endpoint{Addr: netip.MustParseAddr(addr), Port: port, Weight: weight}
}

// deadServer returns the address of a UDP socket that reads nothing and
// answers nothing: a resolver that does not answer.
func deadServer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

// fastResolver is a resolver of servers whose queries time out after
// 200ms, so that tests of silent servers run quickly.
func fastResolver(servers ...string) *Resolver {
	r := NewResolver(servers)
	r.timeout = 200 * time.Millisecond
	return r
}

func TestLookupHost(t *testing.T) {
	s := dnstest.Start(t)
	s.Set("two.test.", dns.TypeA, "two.test. 30 IN A 127.0.0.2", "two.test. 7 IN A 127.0.0.3")
	s.Set("two.test.", dns.TypeAAAA, "two.test. 20 IN AAAA ::1")
	s.Set("v4.test.", dns.TypeA, "v4.test. 0 IN A 10.0.0.1")
	s.Set("empty.test.", dns.TypeA)
	s.Set("alias.test.", dns.TypeA, "alias.test. 9 IN CNAME v4.test.")
	s.Set("mapped.test.", dns.TypeAAAA, "mapped.test. 5 IN AAAA ::ffff:10.1.2.3")
	s.Fail("broken.test.", dns.TypeA, dns.RcodeServerFailure)
	s.Set("halfbroken.test.", dns.TypeA, "halfbroken.test. 5 IN A 10.0.0.9")
	s.Fail("halfbroken.test.", dns.TypeAAAA, dns.RcodeServerFailure)
	s.Fail("refused.test.", dns.TypeA, dns.RcodeRefused)
	s.SetTruncated("big.test.", dns.TypeA, "big.test. 60 IN A 10.9.9.9")

	tests := []struct {
		name    string
		host    string
		want    []Endpoint
		ttl     time.Duration
		wantErr bool
	}{
		{name: "A and AAAA, smallest TTL", host: "two.test", want: []Endpoint{ep("127.0.0.2", 0, 0), ep("127.0.0.3", 0, 0), ep("::1", 0, 0)}, ttl: 7 * time.Second},
		{name: "TTL 0", host: "v4.test", want: []Endpoint{ep("10.0.0.1", 0, 0)}, ttl: 0},
		{name: "NOERROR without records", host: "empty.test", want: nil},
		{name: "NXDOMAIN", host: "nowhere.test", want: nil},
		{name: "CNAME followed, its TTL counts", host: "alias.test", want: []Endpoint{ep("10.0.0.1", 0, 0)}, ttl: 0},
		{name: "IPv4-mapped AAAA unmapped", host: "mapped.test", want: []Endpoint{ep("10.1.2.3", 0, 0)}, ttl: 5 * time.Second},
		{name: "SERVFAIL is a failure", host: "broken.test", wantErr: true},
		{name: "SERVFAIL for AAAA fails the whole", host: "halfbroken.test", wantErr: true},
		{name: "REFUSED is a failure", host: "refused.test", wantErr: true},
		{name: "truncated over UDP, whole over TCP", host: "big.test", want: []Endpoint{ep("10.9.9.9", 0, 0)}, ttl: 60 * time.Second},
	}
	r := NewResolver([]string{s.Addr})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := r.LookupHost(context.Background(), tt.host)
			if tt.wantErr {
				var re *RcodeError
				if !errors.As(err, &re) {
					t.Fatalf("err = %v, want an RcodeError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := normalise(a.Endpoints); !slices.Equal(got, tt.want) && len(got)+len(tt.want) > 0 {
				t.Errorf("endpoints = %v, want %v", got, tt.want)
			}
			if len(tt.want) > 0 && a.TTL != tt.ttl {
				t.Errorf("TTL = %v, want %v", a.TTL, tt.ttl)
			}
		})
	}
	if s.Queries("tcp") == 0 {
		t.Errorf("the truncated answer was not asked again over TCP")
	}
}

func TestNegativeTTL(t *testing.T) {
	s := dnstest.Start(t)
	// An answer without records whose authority section has the zone's
	// SOA: its TTL and minimum bound the negative caching.
	s.SetWithExtra("gone.test.", dns.TypeA, nil, nil)
	r := NewResolver([]string{s.Addr})
	a, err := r.LookupHost(context.Background(), "gone.test")
	if err != nil || len(a.Endpoints) != 0 || a.TTL != 0 {
		t.Fatalf("got %+v, %v; want no endpoint, TTL 0 (no SOA)", a, err)
	}
	m := new(dns.Msg)
	soa, _ := dns.NewRR("test. 60 IN SOA ns.test. admin.test. 1 2 3 4 5")
	m.Ns = []dns.RR{soa}
	if got := negativeTTL(m); got != 5*time.Second {
		t.Errorf("negativeTTL = %v, want 5s (the SOA minimum, below its TTL)", got)
	}
}

func TestResolversInOrder(t *testing.T) {
	good := dnstest.Start(t)
	good.Set("api.test.", dns.TypeA, "api.test. 5 IN A 10.0.0.1")
	failing := dnstest.Start(t)
	failing.Fail("api.test.", dns.TypeA, dns.RcodeServerFailure)
	failing.Fail("api.test.", dns.TypeAAAA, dns.RcodeServerFailure)
	nx := dnstest.Start(t) // knows nothing: NXDOMAIN for everything

	tests := []struct {
		name    string
		servers []string
		want    int // endpoints
		wantErr bool
	}{
		{name: "silent, then good", servers: []string{deadServer(t), good.Addr}, want: 1},
		{name: "SERVFAIL, then good", servers: []string{failing.Addr, good.Addr}, want: 1},
		{name: "NXDOMAIN is an answer: the next is not asked", servers: []string{nx.Addr, good.Addr}, want: 0},
		{name: "all silent", servers: []string{deadServer(t), deadServer(t)}, wantErr: true},
		{name: "unreachable", servers: []string{"127.0.0.1:1"}, wantErr: true},
		{name: "none", servers: nil, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := fastResolver(tt.servers...).LookupHost(context.Background(), "api.test")
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if len(a.Endpoints) != tt.want {
				t.Errorf("endpoints = %v, want %d", a.Endpoints, tt.want)
			}
		})
	}
}

func TestQueryTimeoutBoundsEachServer(t *testing.T) {
	r := fastResolver(deadServer(t), deadServer(t))
	start := time.Now()
	_, err := r.LookupHost(context.Background(), "api.test")
	if err == nil {
		t.Fatal("a silent resolver gave an answer")
	}
	// Two servers, one query each (A fails: AAAA is not asked).
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v, want about 2 x 200ms", d)
	}
}

func TestLookupSRV(t *testing.T) {
	s := dnstest.Start(t)
	s.Set("_http._tcp.api.test.", dns.TypeSRV,
		"_http._tcp.api.test. 30 IN SRV 10 5 8080 a.test.",
		"_http._tcp.api.test. 30 IN SRV 10 0 8081 b.test.",
		"_http._tcp.api.test. 30 IN SRV 20 100 9090 c.test.") // a higher priority value: a backup, left out
	s.Set("a.test.", dns.TypeA, "a.test. 12 IN A 127.0.0.2", "a.test. 12 IN A 127.0.0.3")
	s.Set("b.test.", dns.TypeA, "b.test. 4 IN A 127.0.0.4")
	s.Set("b.test.", dns.TypeAAAA, "b.test. 40 IN AAAA ::1")
	s.Set("c.test.", dns.TypeA, "c.test. 1 IN A 127.0.0.9")
	// Consul puts the targets' addresses in the additional section.
	s.SetWithExtra("_web._tcp.consul.test.", dns.TypeSRV,
		[]string{"_web._tcp.consul.test. 0 IN SRV 1 1 7000 node1.test."},
		[]string{"node1.test. 0 IN A 10.0.0.7"})
	s.Set("_none._tcp.api.test.", dns.TypeSRV, "_none._tcp.api.test. 30 IN SRV 0 0 0 .")
	s.Set("_big._tcp.api.test.", dns.TypeSRV,
		"_big._tcp.api.test. 30 IN SRV 1 65535 80 a.test.",
		"_big._tcp.api.test. 30 IN SRV 1 10 80 b.test.")
	s.Set("_lame._tcp.api.test.", dns.TypeSRV, "_lame._tcp.api.test. 30 IN SRV 1 1 80 lame.test.")
	s.Fail("lame.test.", dns.TypeA, dns.RcodeServerFailure)

	tests := []struct {
		name    string
		srv     string
		want    []Endpoint
		ttl     time.Duration
		wantErr bool
	}{
		{name: "lowest priority, ports and weights, 0 counts as 1", srv: "_http._tcp.api.test",
			want: []Endpoint{ep("127.0.0.2", 8080, 5), ep("127.0.0.3", 8080, 5), ep("127.0.0.4", 8081, 1), ep("::1", 8081, 1)},
			ttl:  4 * time.Second},
		{name: "addresses from the additional section", srv: "_web._tcp.consul.test",
			want: []Endpoint{ep("10.0.0.7", 7000, 1)}, ttl: 0},
		{name: "target . means none", srv: "_none._tcp.api.test", want: nil},
		{name: "NXDOMAIN", srv: "_x._tcp.nowhere.test", want: nil},
		{name: "weights above 1000 scaled down", srv: "_big._tcp.api.test",
			want: []Endpoint{ep("127.0.0.2", 80, 1000), ep("127.0.0.3", 80, 1000), ep("127.0.0.4", 80, 1), ep("::1", 80, 1)},
			ttl:  4 * time.Second},
		{name: "a target that fails fails the whole", srv: "_lame._tcp.api.test", wantErr: true},
	}
	r := NewResolver([]string{s.Addr})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := r.LookupSRV(context.Background(), tt.srv)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if got := normalise(a.Endpoints); !slices.Equal(got, tt.want) && len(got)+len(tt.want) > 0 {
				t.Errorf("endpoints = %v, want %v", got, tt.want)
			}
			if len(tt.want) > 0 && a.TTL != tt.ttl {
				t.Errorf("TTL = %v, want %v", a.TTL, tt.ttl)
			}
		})
	}
}

func TestSystemResolver(t *testing.T) {
	s := dnstest.Start(t)
	s.Set("api.ns.svc.cluster.test.", dns.TypeA, "api.ns.svc.cluster.test. 5 IN A 10.0.0.1")
	host, port, _ := net.SplitHostPort(s.Addr)
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(conf, []byte("nameserver "+host+"\nsearch ns.svc.cluster.test svc.cluster.test\noptions ndots:5 port:"+port+"\n"), 0o644)
	r := SystemResolver(conf)
	r.servers = []string{s.Addr} // resolv.conf has no port option: point it at the test server
	a, err := r.LookupHost(context.Background(), "api")
	if err != nil || len(a.Endpoints) != 1 {
		t.Fatalf("api via the search list: %+v, %v", a, err)
	}
	if got := r.names("api.ns"); !slices.Equal(got, []string{"api.ns.ns.svc.cluster.test.", "api.ns.svc.cluster.test.", "api.ns."}) {
		t.Errorf("names(api.ns) with ndots 5 = %v", got)
	}
	if got := r.names("api.example."); !slices.Equal(got, []string{"api.example."}) {
		t.Errorf("names of an absolute name = %v", got)
	}

	missing := SystemResolver(filepath.Join(t.TempDir(), "none"))
	if got := missing.Servers(); !slices.Equal(got, []string{"127.0.0.1:53", "[::1]:53"}) {
		t.Errorf("servers without resolv.conf = %v", got)
	}
}

func TestServerName(t *testing.T) {
	for _, tt := range []struct{ kind, host, want string }{
		{"dns", "api.internal", "api.internal"},
		{"dns", "api.internal.", "api.internal"},
		{"srv", "_https._tcp.api.service.consul", "api.service.consul"},
		{"srv", "api.service.consul", "api.service.consul"},
		{"srv", "_x", "_x"},
	} {
		if got := ServerName(tt.kind, tt.host); got != tt.want {
			t.Errorf("ServerName(%s, %s) = %s, want %s", tt.kind, tt.host, got, tt.want)
		}
	}
}
