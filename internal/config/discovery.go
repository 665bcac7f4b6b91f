package config

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// minRefresh is the shortest discovery.refresh: a name is not resolved more
// often than once a second, whatever its TTL.
const minRefresh = Duration(time.Second)

// discovery checks the top-level discovery section.
func (v *validator) discovery(d Discovery) {
	for i, s := range d.Resolvers {
		if _, err := ResolverAddr(s); err != nil {
			p := "discovery.resolvers[" + strconv.Itoa(i) + "]"
			v.add(p, v.value(p, s), err.Error())
		}
	}
	if d.Refresh < minRefresh {
		v.add("discovery.refresh", v.value("discovery.refresh", shortDuration(d.Refresh)),
			reason("must be at least 1s (a name is not resolved more often than once a second)"))
	}
}

// backendDiscovery checks the discovery key of the backend b at path bp,
// and what it asks of the URL and the weight. A URL that does not parse is
// reported as such elsewhere.
func (v *validator) backendDiscovery(b Backend, bp string) {
	dp := bp + ".discovery"
	switch b.Discovery {
	case DiscoveryNone:
		return
	case DiscoveryDNS, DiscoverySRV:
	default:
		v.add(dp, v.value(dp, b.Discovery), reason(`unknown discovery; one of dns or srv, or "" for none`))
		return
	}
	u, err := parseBackendURL(b.URL)
	if err != nil {
		return
	}
	if _, err := netip.ParseAddr(u.Hostname()); err == nil {
		v.add(dp, v.value(dp, b.Discovery), reason("the URL's host is an IP address; discovery needs a name"))
		return
	}
	if b.Discovery != DiscoverySRV {
		return
	}
	if u.Port() != "" {
		v.add(bp, v.value(bp+".url", b.URL), reason("a port is not allowed with discovery: srv (the SRV records give the ports)"))
	}
	if v.written(bp + ".weight") {
		v.add(bp+".weight", v.value(bp+".weight", strconv.Itoa(b.Weight)),
			reason("not allowed with discovery: srv (the SRV records give the weights)"))
	}
}

// ResolverAddr returns a discovery.resolvers entry as ip:port: an IP
// address with a port, or a bare IP address, which means port 53.
func ResolverAddr(s string) (string, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return net.JoinHostPort(a.String(), "53"), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return "", errors.New(`not an IP address with an optional port (e.g. "10.0.0.2:53")`)
	}
	if ap.Port() == 0 {
		return "", errors.New("port must be 1-65535")
	}
	return ap.String(), nil
}
