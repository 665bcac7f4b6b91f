package main

import (
	"bytes"
	"time"
)

// response is the answer to every request: 100 bytes, keep-alive.
var response = []byte("HTTP/1.1 200 OK\r\nServer: schedrepro\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nhello, world!\n")

var headEnd = []byte("\r\n\r\n")

// maxHead bounds the bytes kept for an incomplete request head.
const maxHead = 16 << 10

// session is one connection's parser: the bytes of a request head that has
// not been completed yet. Every mode uses it the same way.
type session struct {
	work    time.Duration
	pending []byte
}

// feed takes the bytes just read, and for each complete request head (ended
// by "\r\n\r\n"; requests have no body) spins s.work and appends response to
// out. It keeps an incomplete head for the next call, so pipelined and split
// heads both work. It returns false if a head grows beyond maxHead.
func (s *session) feed(data, out []byte) ([]byte, bool) {
	buf := data
	if len(s.pending) > 0 {
		s.pending = append(s.pending, data...)
		buf = s.pending
	}
	for {
		i := bytes.Index(buf, headEnd)
		if i < 0 {
			break
		}
		spin(s.work)
		out = append(out, response...)
		buf = buf[i+len(headEnd):]
	}
	if len(buf) > maxHead {
		return out, false
	}
	// buf may alias s.pending; append copies with memmove semantics.
	s.pending = append(s.pending[:0], buf...)
	return out, true
}

// spin busy-loops for d, standing in for a request's CPU work.
func spin(d time.Duration) {
	if d <= 0 {
		return
	}
	for start := time.Now(); time.Since(start) < d; {
	}
}
