// Package discovery owns service discovery over DNS. For every backend
// configured with discovery: dns or srv it runs one goroutine that resolves
// the backend's name (A and AAAA records, or SRV records and their
// targets' addresses), reads the records' TTLs, and keeps the set of
// addresses found until the next answer replaces it; a failure keeps the
// last set. When a set changes it tells its owner, which rebuilds the
// runtime from the configuration and the sets (see proxy.BuildWith). It
// holds no request and decides nothing about health.
package discovery

import (
	"cmp"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/sluice-proxy/sluice/internal/config"
)

// Endpoint is one address found for a discovered backend.
type Endpoint struct {
	// Addr is the address, IPv4 or IPv6.
	Addr netip.Addr
	// Port is the port to dial: an SRV record's; 0 for discovery: dns,
	// where the configured URL's port applies.
	Port uint16
	// Weight is the backend's weight, 1 to 1000, from the SRV record (0
	// counting as 1, and scaled down when the records' weights go above
	// 1000); 0 for discovery: dns, where the configured weight applies.
	Weight int
}

// Key names a discovered backend: its route and its URL as configured.
type Key struct {
	Route string
	URL   string
}

// Sets holds the endpoints found for each discovered backend, sorted by
// address and port. A backend with no entry, or an empty one, has no
// endpoint (yet). The slices are never changed once stored.
type Sets map[Key][]Endpoint

// target is one name to resolve: a discovered backend of cfg.
type target struct {
	Key
	kind string // config.DiscoveryDNS or config.DiscoverySRV
	name string // the URL's host
}

// targets returns the discovered backends of cfg by key.
func targets(cfg *config.Config) map[Key]target {
	out := map[Key]target{}
	for _, r := range cfg.Routes {
		for _, b := range r.Backends {
			if b.Discovery == config.DiscoveryNone {
				continue
			}
			u, err := url.Parse(b.URL)
			if err != nil {
				continue // a validated config has none
			}
			k := Key{Route: r.Name, URL: b.URL}
			out[k] = target{Key: k, kind: b.Discovery, name: u.Hostname()}
		}
	}
	return out
}

// ServerName returns the name a backend found under the host of its
// configured URL answers to, for TLS (SNI and certificate checks) and the
// Host of health checks: the host itself for discovery: dns; for srv, the
// SRV name without its leading _service._proto labels
// (_https._tcp.api.service.consul gives api.service.consul), since a
// certificate cannot name the SRV name itself. A final dot is dropped, as
// SNI has none.
func ServerName(kind, host string) string {
	host = strings.TrimSuffix(host, ".")
	if kind != config.DiscoverySRV {
		return host
	}
	for strings.HasPrefix(host, "_") {
		_, rest, ok := strings.Cut(host, ".")
		if !ok {
			break
		}
		host = rest
	}
	return host
}

// normalise sorts eps by address and port and merges duplicates, adding
// their weights.
func normalise(eps []Endpoint) []Endpoint {
	out := slices.Clone(eps)
	slices.SortFunc(out, compare)
	merged := out[:0]
	for _, e := range out {
		if n := len(merged); n > 0 && compare(merged[n-1], e) == 0 {
			merged[n-1].Weight = min(merged[n-1].Weight+e.Weight, maxWeight)
			continue
		}
		merged = append(merged, e)
	}
	return slices.Clip(merged)
}

func compare(a, b Endpoint) int {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	return cmp.Compare(a.Port, b.Port)
}

// maxWeight is the largest backend weight (config.Backend.Weight).
const maxWeight = 1000
