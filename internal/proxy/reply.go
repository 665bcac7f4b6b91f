package proxy

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sluice-proxy/sluice/internal/accesslog"
	"github.com/sluice-proxy/sluice/internal/metrics"
	"github.com/sluice-proxy/sluice/internal/wire"
)

// writeError answers the client with the JSON error body, and returns
// the length of the body sent.
func (x *exchange) writeError(status int, word metrics.ErrorWord, message string) int {
	b := x.errBody[:0]
	b = append(b, `{"error":`...)
	b = accesslog.AppendString(b, word.String())
	b = append(b, `,"message":`...)
	b = accesslog.AppendString(b, message)
	b = append(b, `,"request_id":`...)
	b = accesslog.AppendString(b, string(x.requestID))
	b = append(b, "}\n"...)
	x.errBody = b
	out := appendStatusLine(x.client.Begin(), status, nil)
	out = append(out, "Content-Type: application/json\r\n"...)
	if x.retryAfter > 0 {
		out = append(out, "Retry-After: "...)
		out = strconv.AppendInt(out, x.retryAfter, 10)
		out = append(out, '\r', '\n')
	}
	out = appendContentLength(out, int64(len(b)))
	out = x.endHead(out, false)
	if string(x.method) == "HEAD" {
		x.client.Out = out
		return 0
	}
	x.client.Out = append(out, b...)
	return len(b)
}

// appendStatusLine appends an HTTP/1.1 status line, with the status's
// standard reason phrase, or reason for a status without one.
func appendStatusLine(out []byte, status int, reason []byte) []byte {
	out = append(out, "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(status), 10)
	out = append(out, ' ')
	if text := http.StatusText(status); text != "" {
		out = append(out, text...)
	} else {
		out = append(out, reason...)
	}
	return append(out, '\r', '\n')
}

func appendContentLength(out []byte, n int64) []byte {
	out = append(out, "Content-Length: "...)
	out = strconv.AppendInt(out, n, 10)
	return append(out, '\r', '\n')
}

// dateField is a Date field line, made again when the second changes.
type dateField struct {
	sec  int64
	line []byte
}

var date atomic.Pointer[dateField]

// appendDate appends a Date field of the current time.
func appendDate(out []byte) []byte {
	now := time.Now()
	d := date.Load()
	if d == nil || d.sec != now.Unix() {
		line := append([]byte("Date: "), now.UTC().AppendFormat(nil, http.TimeFormat)...)
		d = &dateField{sec: now.Unix(), line: append(line, '\r', '\n')}
		date.Store(d)
	}
	return append(out, d.line...)
}

// idPrefix makes request IDs unique across processes.
var idPrefix = func() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return strconv.FormatInt(time.Now().UnixNano()&0xffffffffffff, 16)
	}
	return hex.EncodeToString(b[:])
}()

var idCounter atomic.Uint64

// appendRequestID appends a fresh request ID: the process prefix and a
// counter, in hex.
func appendRequestID(dst []byte) []byte {
	dst = append(dst, idPrefix...)
	dst = append(dst, '-')
	return strconv.AppendUint(dst, idCounter.Add(1), 16)
}

// validRequestID reports whether a client's X-Request-Id may be kept: 1 to
// 128 visible ASCII characters.
func validRequestID(v []byte) bool {
	if len(v) == 0 || len(v) > 128 {
		return false
	}
	for _, c := range v {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// idOrNew appends to dst the client's request ID id when it is valid, a
// fresh one otherwise.
func idOrNew(dst, id []byte) []byte {
	if validRequestID(id) {
		return append(dst, id...)
	}
	return appendRequestID(dst)
}

// scanRequestID finds the X-Request-Id in a header block that did not
// parse (the last one, as parseRequestHead keeps): each CRLF- or LF-ended
// line whose name is X-Request-Id, its value without surrounding blanks.
// Lines that are not "name: value" are passed over.
func scanRequestID(raw []byte) []byte {
	var id []byte
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 || !wire.EqualFold(line[:colon], "x-request-id") {
			continue
		}
		id = wire.TrimOWS(bytes.TrimSuffix(line[colon+1:], []byte("\r")))
	}
	return id
}
