package server

import (
	"net"
	"testing"
)

// pipeConn is a net.Conn whose reads return the given chunks in turn.
type pipeConn struct {
	net.Conn
	chunks []string
	wrote  []byte
}

func (p *pipeConn) Read(b []byte) (int, error) {
	if len(p.chunks) == 0 {
		return 0, net.ErrClosed
	}
	n := copy(b, p.chunks[0])
	p.chunks = p.chunks[1:]
	return n, nil
}

func (p *pipeConn) Write(b []byte) (int, error) { p.wrote = append(p.wrote, b...); return len(b), nil }
func (p *pipeConn) Close() error                { return nil }

func TestHeadScan(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string // reads, with ExpectHead between requests marked by ""
		bad    bool     // a read is refused as a bare-LF head
	}{
		{"clean head", []string{"GET / HTTP/1.1\r\nHost: a\r\n\r\n"}, false},
		{"bare LF head", []string{"GET / HTTP/1.1\nHost: a\n\n"}, true},
		{"bare LF request line", []string{"GET / HTTP/1.1\nHost: a\r\n\r\n"}, true},
		{"head split across reads", []string{"GET / HTTP/1.1\r", "\nHost: a\r\n", "\r\n"}, false},
		{"second head bare LF", []string{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "", "GET / HTTP/1.1\nHost: a\n\n"}, true},
		// A body (or a pipelined request) in the same read as the head: the
		// scan cannot tell where the next head starts, so it stops for good
		// rather than mistake body bytes for a head.
		{"body with bare LF after head", []string{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\na\nb\n", "", "x\ny\n"}, false},
		{"body read later", []string{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n", "a\nb\n", "", "c\nd\n"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newTrackingListener(nil)
			pc := &pipeConn{}
			c := &trackedConn{Conn: pc, l: l, scanning: true, inSync: true}
			bad := false
			buf := make([]byte, 64)
			for _, ch := range tt.chunks {
				if ch == "" {
					c.ExpectHead()
					continue
				}
				pc.chunks = []string{ch}
				if _, err := c.Read(buf); err == errBareLF {
					bad = true
				}
			}
			if bad != tt.bad {
				t.Fatalf("refused=%v, want %v", bad, tt.bad)
			}
		})
	}
}
