package proxy

import (
	"net/netip"

	"github.com/sluice-proxy/sluice/internal/wire"
)

// hopByHop reports the hop-by-hop fields of RFC 9110 section 7.6.1 and the
// others the proxy never forwards as they are: framing (the proxy sets its
// own), the forwarding headers it rewrites, and h2c upgrade material.
func hopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return wire.EqualFold(name, "te")
	case 7:
		return wire.EqualFold(name, "trailer") || wire.EqualFold(name, "upgrade")
	case 10:
		return wire.EqualFold(name, "connection") || wire.EqualFold(name, "keep-alive")
	case 14:
		return wire.EqualFold(name, "content-length") || wire.EqualFold(name, "http2-settings")
	case 16:
		return wire.EqualFold(name, "proxy-connection")
	case 17:
		return wire.EqualFold(name, "transfer-encoding")
	case 18:
		return wire.EqualFold(name, "proxy-authenticate")
	case 19:
		return wire.EqualFold(name, "proxy-authorization")
	}
	return false
}

// protectedFromConnection are the fields a Connection token may not remove:
// removing them would change framing or routing, or let a client strip the
// proxy's own headers.
func protectedFromConnection(name []byte) bool {
	return wire.EqualFold(name, "host") || wire.EqualFold(name, "content-length") ||
		wire.EqualFold(name, "transfer-encoding") || wire.EqualFold(name, "x-request-id") ||
		len(name) > 12 && wire.EqualFold(name[:12], "x-forwarded-")
}

// namedIn reports whether name is a token of one of the Connection values.
func namedIn(connection [][]byte, name []byte) bool {
	for _, v := range connection {
		for len(v) > 0 {
			var part []byte
			i := 0
			for i < len(v) && v[i] != ',' {
				i++
			}
			part = wire.TrimOWS(v[:i])
			if i < len(v) {
				v = v[i+1:]
			} else {
				v = nil
			}
			if len(part) == len(name) && equalFoldBytes(part, name) {
				return true
			}
		}
	}
	return false
}

func equalFoldBytes(a, b []byte) bool {
	for i := range a {
		x, y := a[i], b[i]
		if x >= 'A' && x <= 'Z' {
			x += 'a' - 'A'
		}
		if y >= 'A' && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// forwardingField reports the fields whose values the proxy replaces (or,
// for a trusted peer, extends): X-Forwarded-For/-Proto/-Host, Forwarded and
// X-Request-Id.
func forwardingField(name []byte) bool {
	switch len(name) {
	case 9:
		return wire.EqualFold(name, "forwarded")
	case 12:
		return wire.EqualFold(name, "x-request-id")
	case 15:
		return wire.EqualFold(name, "x-forwarded-for")
	case 16:
		return wire.EqualFold(name, "x-forwarded-host")
	case 17:
		return wire.EqualFold(name, "x-forwarded-proto")
	}
	return false
}

// requestFieldDropped reports whether a client's header field stays behind.
func requestFieldDropped(name []byte, connection [][]byte) bool {
	if hopByHop(name) || forwardingField(name) || wire.EqualFold(name, "host") || wire.EqualFold(name, "expect") {
		return true
	}
	for _, c := range name {
		if c == '_' {
			return true // X_Forwarded_For aliases X-Forwarded-For in many backends
		}
	}
	return len(connection) > 0 && !protectedFromConnection(name) && namedIn(connection, name)
}

// responseFieldDropped reports whether a backend's header field stays
// behind.
func responseFieldDropped(name []byte, connection [][]byte) bool {
	if hopByHop(name) || wire.EqualFold(name, "x-request-id") {
		return true
	}
	return len(connection) > 0 && !protectedFromConnection(name) && namedIn(connection, name)
}

// appendField appends "name: value\r\n".
func appendField[N ~string | ~[]byte](dst []byte, name N, value []byte) []byte {
	dst = append(dst, name...)
	dst = append(dst, ':', ' ')
	dst = append(dst, value...)
	return append(dst, '\r', '\n')
}

// appendForwarding appends X-Forwarded-For, -Proto, -Host and Forwarded.
// When the peer is trusted the client's values are kept (the peer appended
// to X-Forwarded-For and the proxy's element to Forwarded); otherwise they
// are replaced by what the proxy saw. secure says the request came over
// TLS: its scheme is https.
func appendForwarding(dst []byte, fields []field, peer netip.Addr, trusted bool, host []byte, secure bool) []byte {
	var ipBuf [64]byte
	ip := peer.AppendTo(ipBuf[:0])
	sentXFF, sentFwd := false, false
	if trusted {
		for _, f := range fields {
			if wire.EqualFold(f.Name, "x-forwarded-for") {
				if !sentXFF {
					dst = append(dst, "X-Forwarded-For: "...)
					sentXFF = true
				} else {
					dst = append(dst[:len(dst)-2], ", "...)
				}
				dst = append(append(dst, f.Value...), '\r', '\n')
			}
		}
	}
	if sentXFF {
		dst = append(dst[:len(dst)-2], ", "...)
		dst = append(append(dst, ip...), '\r', '\n')
	} else {
		dst = appendField(dst, "X-Forwarded-For", ip)
	}
	// A trusted peer's X-Forwarded-Proto and -Host go on as sent, every
	// line of them; without them, or from anyone else, the proxy's own.
	var sentProto, sentHost bool
	dst, sentProto = appendTrusted(dst, fields, trusted, "x-forwarded-proto", "X-Forwarded-Proto")
	if !sentProto {
		proto := schemeHTTP
		if secure {
			proto = schemeHTTPS
		}
		dst = appendField(dst, "X-Forwarded-Proto", proto)
	}
	dst, sentHost = appendTrusted(dst, fields, trusted, "x-forwarded-host", "X-Forwarded-Host")
	if !sentHost && len(host) > 0 {
		dst = appendField(dst, "X-Forwarded-Host", host)
	}
	if trusted {
		for _, f := range fields {
			if wire.EqualFold(f.Name, "forwarded") {
				if !sentFwd {
					dst = append(dst, "Forwarded: "...)
					sentFwd = true
				} else {
					dst = append(dst[:len(dst)-2], ", "...)
				}
				dst = append(append(dst, f.Value...), '\r', '\n')
			}
		}
	}
	if sentFwd {
		dst = append(dst[:len(dst)-2], ", "...)
	} else {
		dst = append(dst, "Forwarded: "...)
	}
	dst = append(dst, "for="...)
	if peer.Is6() && !peer.Is4In6() {
		dst = append(dst, `"[`...)
		dst = append(dst, ip...)
		dst = append(dst, `]"`...)
	} else {
		dst = append(dst, ip...)
	}
	dst = append(dst, ";proto="...)
	if secure {
		dst = append(dst, schemeHTTPS...)
	} else {
		dst = append(dst, schemeHTTP...)
	}
	if len(host) > 0 {
		dst = append(dst, ";host="...)
		dst = appendForwardedValue(dst, host)
	}
	return append(dst, '\r', '\n')
}

// appendTrusted appends, when the peer is trusted, every field of fields
// named lower (in lower case) under the name canonical, with its value as
// sent, and reports whether there was one.
func appendTrusted(dst []byte, fields []field, trusted bool, lower, canonical string) ([]byte, bool) {
	if !trusted {
		return dst, false
	}
	sent := false
	for _, f := range fields {
		if wire.EqualFold(f.Name, lower) {
			dst = appendField(dst, canonical, f.Value)
			sent = true
		}
	}
	return dst, sent
}

// The schemes of X-Forwarded-Proto and Forwarded's proto.
var (
	schemeHTTP  = []byte("http")
	schemeHTTPS = []byte("https")
)

// appendForwardedValue appends v as a Forwarded token, or quoted when it
// holds characters a token may not (a host with a port has a colon).
func appendForwardedValue(dst, v []byte) []byte {
	if wire.IsToken(v) {
		return append(dst, v...)
	}
	dst = append(dst, '"')
	for _, c := range v {
		if c == '"' || c == '\\' {
			dst = append(dst, '\\')
		}
		dst = append(dst, c)
	}
	return append(dst, '"')
}
