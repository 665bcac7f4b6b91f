// Package wire holds the HTTP/1.1 wire helpers that both sides of the proxy
// share, so that the client-side engine, the request lifecycle and the
// upstream client judge bytes by the same rules: tokens, field values,
// optional whitespace, Content-Length, the deadline-moving rule, and the
// system calls on non-blocking sockets (rawio.go) with the write loop over
// them. It has no state and does no I/O but on the sockets it is given.
package wire

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"syscall"
	"time"
)

// IsAlnum reports an ASCII letter or digit.
func IsAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// IsHex reports an ASCII hexadecimal digit.
func IsHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// IsTokenChar reports whether c is a tchar (RFC 9110 section 5.6.2).
func IsTokenChar(c byte) bool { return charClass[c]&isTokenChar != 0 }

// IsToken reports whether b is a non-empty token (RFC 9110 section 5.6.2).
func IsToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if charClass[c]&isTokenChar == 0 {
			return false
		}
	}
	return true
}

// ValidFieldValue refuses control characters other than HTAB, and DEL.
func ValidFieldValue(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// TrimOWS trims optional whitespace (SP and HTAB) from both ends of b.
func TrimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// EqualFold compares b with the lower-case ASCII string s, ignoring case.
func EqualFold(b []byte, s string) bool {
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

// HasToken reports whether the comma-separated list v holds token t
// (lower-case), ignoring case.
func HasToken(v []byte, t string) bool {
	for len(v) > 0 {
		var part []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			part, v = v[:i], v[i+1:]
		} else {
			part, v = v, nil
		}
		if EqualFold(TrimOWS(part), t) {
			return true
		}
	}
	return false
}

// ParseContentLength accepts 1*DIGIT, also a list of identical values
// ("5, 5") as RFC 9110 section 8.6 allows, of at most 18 digits.
func ParseContentLength(v []byte) (int64, bool) {
	var first int64 = -1
	for len(v) > 0 {
		part := v
		if i := bytes.IndexByte(v, ','); i >= 0 {
			part, v = v[:i], v[i+1:]
		} else {
			v = nil
		}
		part = TrimOWS(part)
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

// MoveDeadline reports whether a deadline set at cur must move to want, d
// from now: when it is unset, later than want, or earlier by more than an
// eighth of d. Keeping one a little early spares a timer update on most
// reads and writes of a busy connection; a shorter limit is never kept
// loose by a longer one set before.
func MoveDeadline(cur, want time.Time, d time.Duration) bool {
	return cur.IsZero() || cur.After(want) || want.Sub(cur) >= d/8
}

// WriteFD writes p to the non-blocking socket fd, retrying interrupted
// calls, until all of it went out or the socket takes no more. It returns
// the bytes written and nil when all went out, syscall.EAGAIN when the
// socket's buffer filled first, or the system call's error.
func WriteFD(fd uintptr, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := writeFD(fd, p[n:])
		if m > 0 {
			n += m
		}
		switch {
		case err == syscall.EINTR:
		case err != nil:
			return n, err
		case m <= 0:
			return n, syscall.EAGAIN // took nothing: treat it as full
		}
	}
	return n, nil
}

// IsTimeout reports a deadline that passed.
func IsTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Field is one header field of a message: name and value are slices of the
// raw header block they were parsed from.
type Field struct {
	Name, Value []byte
}
