package proxy

import (
	"bytes"
	"net/netip"
	"unsafe"

	"github.com/sluice-proxy/sluice/internal/wire"
)

// clientAddr returns the request's client address as the access log
// records it (see clientAddress), worked out once per request.
func (x *exchange) clientAddr() netip.Addr {
	return clientAddress(x.client.RemoteIP(), x.rt.Trusted, x.head.fields)
}

// clientAddress returns the client's address: the direct peer's, or, when
// the peer is in trustedNets, the rightmost X-Forwarded-For address of
// fields that is not in trustedNets (the elements read from the last field
// back). The elements left of it were written by the client or by proxies
// nobody vouches for, so they are never believed. It is the peer's when
// every element is trusted, or when an element is not an address
// ("unknown", garbage): a trusted proxy that writes one says nothing about
// who its client was.
func clientAddress(peer netip.Addr, trustedNets []netip.Prefix, fields []field) netip.Addr {
	if len(trustedNets) == 0 || !trusted(trustedNets, peer) {
		return peer
	}
	for i := len(fields) - 1; i >= 0; i-- {
		if !wire.EqualFold(fields[i].Name, "x-forwarded-for") {
			continue
		}
		v := fields[i].Value
		for len(v) > 0 {
			elem := v
			if j := bytes.LastIndexByte(v, ','); j >= 0 {
				elem, v = v[j+1:], v[:j]
			} else {
				v = nil
			}
			elem = wire.TrimOWS(elem)
			if len(elem) == 0 {
				continue // an empty list element (RFC 9110 5.6.1)
			}
			a, ok := forwardedAddr(elem)
			if !ok {
				return peer
			}
			if !trusted(trustedNets, a) {
				return a
			}
		}
	}
	return peer
}

// forwardedAddr parses an X-Forwarded-For element: an IPv4 or IPv6
// address, optionally with a port as some load balancers append it
// ("192.0.2.1:4711", "[2001:db8::1]:4711"), or an IPv6 address in
// brackets. IPv4-mapped IPv6 addresses are unmapped; zones are refused.
func forwardedAddr(e []byte) (netip.Addr, bool) {
	if bytes.IndexByte(e, '%') >= 0 {
		return netip.Addr{}, false
	}
	if e[0] == '[' {
		end := bytes.IndexByte(e, ']')
		if end < 0 || !emptyOrPort(e[end+1:]) {
			return netip.Addr{}, false
		}
		e = e[1:end]
	} else if c := bytes.IndexByte(e, ':'); c >= 0 && bytes.IndexByte(e[c+1:], ':') < 0 {
		// One colon: an IPv4 address and a port.
		if !emptyOrPort(e[c:]) || c == len(e)-1 {
			return netip.Addr{}, false
		}
		e = e[:c]
	}
	a, err := netip.ParseAddr(unsafe.String(unsafe.SliceData(e), len(e)))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// emptyOrPort reports whether s is empty or ":" and digits.
func emptyOrPort(s []byte) bool {
	if len(s) == 0 {
		return true
	}
	if s[0] != ':' || len(s) < 2 || len(s) > 6 {
		return false
	}
	for _, c := range s[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
