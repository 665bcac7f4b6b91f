package proxy

import (
	"bytes"
)

// field is one header field of a message: name and value are slices of the
// raw header block they were parsed from.
type field struct {
	name, value []byte
}

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
	errTEUnsupported = &headerError{501, "unsupported Transfer-Encoding"}
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
		if !isToken(name) {
			return errHeaderName
		}
		value := trimOWS(line[colon+1:])
		if !validFieldValue(value) {
			return errHeaderValue
		}
		switch {
		case equalFold(name, "host"):
			h.hostCount++
			h.host = value
		case equalFold(name, "content-length"):
			n, ok := parseContentLength(value)
			if !ok {
				return errCLValue
			}
			if h.contentLength >= 0 && h.contentLength != n {
				return errCLConflict
			}
			h.contentLength = n
		case equalFold(name, "transfer-encoding"):
			te = value
			teCount++
		case equalFold(name, "connection"):
			h.connection = append(h.connection, value)
		case equalFold(name, "expect"):
			h.expect = true
		case equalFold(name, "x-request-id"):
			h.requestID = value
		case equalFold(name, "idempotency-key"):
			h.idemKey = true
		case equalFold(name, "upgrade"):
			h.upgrade = value
		}
		h.fields = append(h.fields, field{name: name, value: value})
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
		if teCount > 1 || !equalFold(te, "chunked") {
			return errTEUnsupported
		}
		if h.contentLength >= 0 {
			return errTEAndCL
		}
		h.chunked = true
	}
	return nil
}

// parseContentLength accepts 1*DIGIT, also a list of identical values
// ("5, 5") as RFC 9110 section 8.6 allows.
func parseContentLength(v []byte) (int64, bool) {
	var first int64 = -1
	for len(v) > 0 {
		part := v
		if i := bytes.IndexByte(v, ','); i >= 0 {
			part, v = trimOWS(v[:i]), v[i+1:]
		} else {
			v = nil
		}
		part = trimOWS(part)
		if len(part) == 0 || len(part) > 18 {
			return 0, false
		}
		var n int64
		for _, c := range part {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int64(c-'0')
		}
		if first >= 0 && n != first {
			return 0, false
		}
		first = n
	}
	return first, first >= 0
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
			if !(isHex(c) || c == ':' || c == '.') {
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
		if !(isAlnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '%' ||
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

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// tokenChars marks the tchar of RFC 9110 section 5.6.2.
var tokenChars = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = isAlnum(byte(c))
	}
	for _, c := range []byte("!#$%&'*+-.^_`|~") {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenChars[c] {
			return false
		}
	}
	return true
}

// validFieldValue refuses control characters other than HTAB, and DEL.
func validFieldValue(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold compares b with the lower-case ASCII string s, ignoring case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// hasToken reports whether the comma-separated list v holds token t
// (lower-case), ignoring case.
func hasToken(v []byte, t string) bool {
	for len(v) > 0 {
		var part []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			part, v = v[:i], v[i+1:]
		} else {
			part, v = v, nil
		}
		if equalFold(trimOWS(part), t) {
			return true
		}
	}
	return false
}

// wantsUpgrade reports a request for a protocol upgrade that the proxy
// carries through (WebSocket, say): an Upgrade header named in Connection.
// h2c is never carried: HTTP/2 cleartext through an HTTP/1.1 hop is request
// smuggling waiting to happen.
func (h *requestHead) wantsUpgrade() bool {
	if len(h.upgrade) == 0 || hasToken(h.upgrade, "h2c") {
		return false
	}
	for _, c := range h.connection {
		if hasToken(c, "upgrade") {
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
		if hasToken(v, "close") {
			return false
		}
		if !http11 && hasToken(v, "keep-alive") {
			return true
		}
	}
	return http11
}
