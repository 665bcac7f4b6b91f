package proxy

import (
	"bytes"

	"github.com/sluice-proxy/sluice/internal/wire"
)

// field is one header field of a message.
type field = wire.Field

// requestHead is what admit learns from a request's raw header block.
type requestHead struct {
	fields        []field
	host          []byte // the Host field's value
	hostCount     int
	contentLength int64 // -1 when absent
	chunked       bool  // Transfer-Encoding: chunked
	connection    [][]byte
	expect        bool
	idemKey       bool   // an Idempotency-Key header is present
	upgrade       []byte // the Upgrade header's value
	requestID     []byte
}

// headerError is a request the proxy refuses before forwarding it.
type headerError struct {
	status int
	reason string
}

func (e *headerError) Error() string { return e.reason }

var (
	errBareLF        = &headerError{400, "header lines must end in CRLF"}
	errObsFold       = &headerError{400, "obsolete line folding is not allowed"}
	errHeaderName    = &headerError{400, "invalid header field name"}
	errHeaderValue   = &headerError{400, "invalid header field value"}
	errNoColon       = &headerError{400, "header line without a colon"}
	errHostCount     = &headerError{400, "a request must carry exactly one Host header"}
	errHostValue     = &headerError{400, "invalid Host header"}
	errCLValue       = &headerError{400, "invalid Content-Length"}
	errCLConflict    = &headerError{400, "conflicting Content-Length values"}
	errTEAndCL       = &headerError{400, "Transfer-Encoding and Content-Length together"}
	errTEUnsupported = &headerError{400, "unsupported Transfer-Encoding"}
	errTEHTTP10      = &headerError{400, "Transfer-Encoding in an HTTP/1.0 request"}
)

// parseRequestHead parses and validates raw, the request's header block as
// received (each line ending in CRLF, the block ending in an empty line), as
// RFC 9110 and RFC 9112 say (the engine only finds the head's end and
// splits its request line): field names are tokens, values hold no control characters, no obs-fold, exactly one
// valid Host on HTTP/1.1, and unambiguous body framing.
func parseRequestHead(h *requestHead, raw []byte, http11 bool) *headerError {
	h.fields = h.fields[:0]
	h.connection = h.connection[:0]
	h.host, h.hostCount, h.contentLength, h.chunked, h.expect, h.requestID = nil, 0, -1, false, false, nil
	h.idemKey, h.upgrade = false, nil
	var te []byte
	teCount := 0
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			return errBareLF
		}
		if i == 0 || raw[i-1] != '\r' {
			return errBareLF
		}
		line := raw[:i-1]
		raw = raw[i+1:]
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return errObsFold
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return errNoColon
		}
		name := line[:colon]
		if !wire.IsToken(name) {
			return errHeaderName
		}
		value := wire.TrimOWS(line[colon+1:])
		if !wire.ValidFieldValue(value) {
			return errHeaderValue
		}
		switch {
		case wire.EqualFold(name, "host"):
			h.hostCount++
			h.host = value
		case wire.EqualFold(name, "content-length"):
			n, ok := wire.ParseContentLength(value)
			if !ok {
				return errCLValue
			}
			if h.contentLength >= 0 && h.contentLength != n {
				return errCLConflict
			}
			h.contentLength = n
		case wire.EqualFold(name, "transfer-encoding"):
			te = value
			teCount++
		case wire.EqualFold(name, "connection"):
			h.connection = append(h.connection, value)
		case wire.EqualFold(name, "expect"):
			h.expect = true
		case wire.EqualFold(name, "x-request-id"):
			h.requestID = value
		case wire.EqualFold(name, "idempotency-key"):
			h.idemKey = true
		case wire.EqualFold(name, "upgrade"):
			h.upgrade = value
		}
		h.fields = append(h.fields, field{Name: name, Value: value})
	}
	if http11 && h.hostCount != 1 || h.hostCount > 1 {
		return errHostCount
	}
	if h.hostCount == 1 && !validHost(h.host) {
		return errHostValue
	}
	if teCount > 0 {
		if !http11 {
			return errTEHTTP10
		}
		// Only a single "chunked" coding is forwarded; anything else
		// (identity, gzip, a list) is refused rather than guessed at.
		if teCount > 1 || !wire.EqualFold(te, "chunked") {
			return errTEUnsupported
		}
		if h.contentLength >= 0 {
			return errTEAndCL
		}
		h.chunked = true
	}
	return nil
}

// validHost accepts reg-name, IPv4 or a bracketed IPv6 literal, with an
// optional port; userinfo, paths and whitespace are refused.
func validHost(h []byte) bool {
	if len(h) == 0 {
		return true // an empty Host is allowed when the target has no authority
	}
	host := h
	if h[0] == '[' {
		end := bytes.IndexByte(h, ']')
		if end < 0 {
			return false
		}
		for _, c := range h[1:end] {
			if !(wire.IsHex(c) || c == ':' || c == '.') {
				return false
			}
		}
		host = h[end+1:]
		if len(host) == 0 {
			return true
		}
		if host[0] != ':' {
			return false
		}
		return allDigits(host[1:])
	}
	if i := bytes.LastIndexByte(h, ':'); i >= 0 {
		if !allDigits(h[i+1:]) {
			return false
		}
		host = h[:i]
	}
	if len(host) == 0 {
		return false
	}
	for _, c := range host {
		if !(wire.IsAlnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '%' ||
			c == '!' || c == '$' || c == '&' || c == '\'' || c == '(' || c == ')' ||
			c == '*' || c == '+' || c == ',' || c == ';' || c == '=') {
			return false
		}
	}
	return true
}

func allDigits(b []byte) bool {
	if len(b) > 5 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// wantsUpgrade reports a request for a protocol upgrade that the proxy
// carries through (WebSocket, say): an Upgrade header named in Connection.
// h2c is never carried: HTTP/2 cleartext through an HTTP/1.1 hop is request
// smuggling waiting to happen.
func (h *requestHead) wantsUpgrade() bool {
	if len(h.upgrade) == 0 || wire.HasToken(h.upgrade, "h2c") {
		return false
	}
	for _, c := range h.connection {
		if wire.HasToken(c, "upgrade") {
			return true
		}
	}
	return false
}

// keepAlive reports whether the client keeps its connection open after
// the response: HTTP/1.1 unless it sent "Connection: close", HTTP/1.0 only
// when it sent "Connection: keep-alive".
func (h *requestHead) keepAlive(http11 bool) bool {
	for _, v := range h.connection {
		if wire.HasToken(v, "close") {
			return false
		}
		if !http11 && wire.HasToken(v, "keep-alive") {
			return true
		}
	}
	return http11
}
