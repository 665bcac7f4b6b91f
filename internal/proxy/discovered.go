package proxy

import (
	"net"
	"net/url"
	"strconv"

	"github.com/sluice-proxy/sluice/internal/config"
	"github.com/sluice-proxy/sluice/internal/discovery"
	"github.com/sluice-proxy/sluice/internal/health"
	"github.com/sluice-proxy/sluice/internal/metrics"
	"github.com/sluice-proxy/sluice/internal/upstream"
)

// Build makes a runtime of cfg as BuildWith does, with no endpoint found
// yet for any discovered backend.
func Build(cfg *config.Config, t *upstream.Transport, prev *Runtime, events health.Events, m *metrics.Metrics) *Runtime {
	return BuildWith(cfg, t, prev, events, m, nil)
}

// member is one backend of a route as its runtime has it: a configured
// backend, or one endpoint found for a discovered one.
type member struct {
	URL    string
	Weight int
	// ServerName is the name a discovered backend was found under
	// (backend.Backend.ServerName); "" for a configured one.
	ServerName string
	// FirstAnswer marks an endpoint of the first answer for a name the
	// process started with (the runtime before had no answer for it): it
	// is present from the start, like the backends listed by hand.
	FirstAnswer bool
}

// members returns the backends of rc in config order, each discovered
// backend replaced by its endpoints in found (none when found has none
// for it), in found's order. An endpoint's URL is the configured one with
// its address in place of the host (IPv6 in brackets) and, for SRV, the
// record's port; its weight is the record's for SRV, else the configured
// one. An endpoint whose URL another backend of the route has already is
// left out: a name may resolve to an address listed by hand, or two names
// to one address, and each backend of a route has its own URL.
func members(rc config.Route, found, seenBefore discovery.Sets, atStart map[discovery.Key]bool) []member {
	out := make([]member, 0, len(rc.Backends))
	seen := make(map[string]bool, len(rc.Backends))
	for _, bc := range rc.Backends {
		if bc.Discovery == config.DiscoveryNone {
			seen[bc.URL] = true
		}
	}
	for _, bc := range rc.Backends {
		if bc.Discovery == config.DiscoveryNone {
			out = append(out, member{URL: bc.URL, Weight: bc.Weight})
			continue
		}
		u, err := url.Parse(bc.URL)
		if err != nil {
			continue // validated by config
		}
		name := discovery.ServerName(bc.Discovery, u.Hostname())
		key := discovery.Key{Route: rc.Name, URL: bc.URL}
		_, answeredBefore := seenBefore[key]
		first := !answeredBefore && atStart[key]
		for _, e := range found[key] {
			au := *u
			port := u.Port()
			if e.Port != 0 {
				port = strconv.Itoa(int(e.Port))
			}
			switch host := e.Addr.String(); {
			case port != "":
				au.Host = net.JoinHostPort(host, port)
			case e.Addr.Is6():
				au.Host = "[" + host + "]"
			default:
				au.Host = host
			}
			s := au.String()
			if seen[s] {
				continue
			}
			seen[s] = true
			w := bc.Weight
			if e.Weight > 0 {
				w = e.Weight
			}
			out = append(out, member{URL: s, Weight: w, ServerName: name, FirstAnswer: first})
		}
	}
	return out
}
