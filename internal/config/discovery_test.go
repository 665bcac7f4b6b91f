package config

import (
	"testing"
	"time"
)

func TestDiscoveryValid(t *testing.T) {
	c := mustParse(t, `
discovery:
  resolvers: ["10.0.0.2", "10.0.0.3:5353", "::1", "[fd00::53]:53"]
  refresh: 1s
routes:
  - path_prefix: /
    backends:
      - {url: "http://api.internal:8080", discovery: dns, weight: 3}
      - {url: "https://_https._tcp.api.service.consul/v1", discovery: srv}
      - {url: "http://10.0.0.1", discovery: ""}
`)
	if c.Discovery.Refresh.D() != time.Second {
		t.Errorf("refresh = %v", c.Discovery.Refresh)
	}
	want := []string{"10.0.0.2:53", "10.0.0.3:5353", "[::1]:53", "[fd00::53]:53"}
	for i, s := range c.Discovery.Resolvers {
		if got, err := ResolverAddr(s); err != nil || got != want[i] {
			t.Errorf("ResolverAddr(%q) = %q, %v; want %q", s, got, err, want[i])
		}
	}
	b := c.Routes[0].Backends
	if b[0].Discovery != DiscoveryDNS || b[0].Weight != 3 || b[1].Discovery != DiscoverySRV || b[1].Weight != 1 || b[2].Discovery != DiscoveryNone {
		t.Errorf("backends = %+v", b)
	}
}
