package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sluice-proxy/sluice/internal/accesslog"
	"github.com/valyala/fasthttp"
)

// writeError answers the client with the SPEC's JSON error body, and
// returns the body's length.
func writeError(ctx *fasthttp.RequestCtx, status int, word, message string, requestID []byte) int {
	resp := &ctx.Response
	resp.Reset()
	resp.SetStatusCode(status)
	resp.Header.SetContentType("application/json")
	if len(requestID) > 0 {
		resp.Header.SetBytesKV(hdrRequestID, requestID)
	}
	b := resp.Body()[:0]
	b = append(b, `{"error":`...)
	b = accesslog.AppendString(b, word)
	b = append(b, `,"message":`...)
	b = accesslog.AppendString(b, message)
	b = append(b, `,"request_id":`...)
	b = accesslog.AppendString(b, string(requestID))
	b = append(b, "}\n"...)
	resp.SetBodyRaw(b)
	return len(b)
}

var hdrRequestID = []byte("X-Request-Id")

// idPrefix makes request IDs unique across processes.
var idPrefix = func() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return strconv.FormatInt(time.Now().UnixNano()&0xffffffffffff, 16)
	}
	return hex.EncodeToString(b[:])
}()

var idCounter atomic.Uint64

// NewRequestID returns a fresh request ID.
func NewRequestID() []byte { return appendRequestID(nil) }

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
