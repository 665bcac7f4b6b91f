package h2

import (
	"net/http"
	"strconv"

	"github.com/sluice-proxy/sluice/internal/wire"
)

// Body framings of a rendered request.
const (
	bodyNone    uint8 = iota // no body: the request ends with its head
	bodyLength               // Content-Length bytes
	bodyChunked              // chunked, the stream's DATA as it comes
)

// request is a stream's request as the HTTP/2 server gives it: its
// pseudo-header fields, its regular fields (names canonical, as
// http.Header keys them) and what it says of its body.
type request struct {
	method, target, authority string
	header                    http.Header
	// contentLength is what the server made of the body: the declared
	// length when the stream stays open after HEADERS, -1 when it stays
	// open without one, 0 when HEADERS ended the stream.
	contentLength int64
}

// connectionSpecific are the fields RFC 9113 8.2.2 forbids in HTTP/2, as
// http.Header keys them.
var connectionSpecific = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade"}

// appendHead renders r as an HTTP/1.1 request head into dst and returns it
// with the body's framing, or ok false when r is malformed (RFC 9113
// section 8, as docs/configuration.md lists it) and must not be forwarded.
// Whatever r holds, the head holds no CR, LF or NUL but in its line ends,
// no field without a token name, and framing of its own making: nothing
// ambiguous becomes an HTTP/1.1 request.
func appendHead(dst []byte, r *request) (head []byte, body uint8, length int64, ok bool) {
	if !wire.IsToken([]byte(r.method)) || !cleanAuthority(r.authority) {
		return dst, 0, 0, false
	}
	for _, name := range connectionSpecific {
		if _, bad := r.header[name]; bad {
			return dst, 0, 0, false
		}
	}
	if te, ok := r.header["Te"]; ok && (len(te) != 1 || !equalFold(te[0], "trailers")) {
		return dst, 0, 0, false
	}
	if hosts, ok := r.header["Host"]; ok && (len(hosts) != 1 || r.authority != "" && !equalFold(hosts[0], r.authority)) {
		return dst, 0, 0, false
	}
	authority := r.authority
	if authority == "" {
		authority = r.header.Get("Host")
		if !cleanAuthority(authority) {
			return dst, 0, 0, false
		}
	}

	// The body: its declared length must be the one the server holds it
	// to, and there is none on a stream HEADERS ended.
	length = r.contentLength
	if cls, ok := r.header["Content-Length"]; ok {
		var n int64 = -1
		for _, v := range cls {
			m, ok := wire.ParseContentLength([]byte(v))
			if !ok || n >= 0 && m != n {
				return dst, 0, 0, false
			}
			n = m
		}
		if n != r.contentLength {
			return dst, 0, 0, false
		}
	}
	switch {
	case length > 0:
		body = bodyLength
	case length < 0:
		body = bodyChunked
	}

	dst = append(dst, r.method...)
	dst = append(dst, ' ')
	if r.method == "CONNECT" {
		// The proxy answers CONNECT itself (405); its target is the
		// authority.
		if authority == "" {
			return dst, 0, 0, false
		}
		dst = append(dst, authority...)
	} else {
		if !cleanTarget(r.target) {
			return dst, 0, 0, false
		}
		dst = append(dst, r.target...)
	}
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, authority...)
	dst = append(dst, '\r', '\n')
	for name, values := range r.header {
		switch name {
		case "Host", "Content-Length", "Expect":
			// Host is the authority; the framing is sluice's own; the HTTP/2
			// server answers an expectation itself when the body is read.
			continue
		}
		if !wire.IsToken([]byte(name)) {
			return dst, 0, 0, false
		}
		if name == "Cookie" && len(values) > 1 {
			// RFC 9113 8.2.3: cookie crumbs are joined for HTTP/1.1.
			dst = append(dst, "Cookie: "...)
			for i, v := range values {
				if !cleanValue(v) {
					return dst, 0, 0, false
				}
				if i > 0 {
					dst = append(dst, ';', ' ')
				}
				dst = append(dst, v...)
			}
			dst = append(dst, '\r', '\n')
			continue
		}
		for _, v := range values {
			if !cleanValue(v) {
				return dst, 0, 0, false
			}
			dst = append(dst, name...)
			dst = append(dst, ':', ' ')
			dst = append(dst, v...)
			dst = append(dst, '\r', '\n')
		}
	}
	switch {
	case body == bodyLength:
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, length, 10)
		dst = append(dst, '\r', '\n')
	case body == bodyChunked:
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	case r.header["Content-Length"] != nil || r.method == "POST" || r.method == "PUT" || r.method == "PATCH":
		dst = append(dst, "Content-Length: 0\r\n"...)
	}
	return append(dst, '\r', '\n'), body, length, true
}

// cleanTarget reports whether an HTTP/2 :path may be a request target:
// origin-form, visible ASCII only, or "*", which the proxy answers itself
// (200 to OPTIONS, 400 to any other method, as on HTTP/1.1).
func cleanTarget(t string) bool {
	if t == "*" {
		return true
	}
	if len(t) == 0 || t[0] != '/' {
		return false
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// cleanAuthority reports whether an authority may be written as Host:
// visible ASCII, nothing that ends or splits a line. The proxy checks its
// form as it checks any Host.
func cleanAuthority(a string) bool {
	for i := 0; i < len(a); i++ {
		if c := a[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}
