package h1

import (
	"io"
	"net"
	"testing"
	"time"
)

// FuzzConn feeds arbitrary bytes to a connection, as one client's whole
// stream, and requires that the engine neither panics nor hangs: every
// connection ends once its client has sent everything and closed.
func FuzzConn(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"\r\n\r\nGET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		"POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n",
		"POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: 1\r\n\r\n",
		"POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\nfffffffffffffffff\r\n",
		"GET / HTTP/1.1\nHost: x\n\n",
		"G\x00T /\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		// Short timeouts: a stream that ends mid-head or mid-body ends the
		// connection when they pass.
		s := &Server{Handler: &echo{timeout: 20 * time.Millisecond}, MaxHeaderBytes: 1 << 10,
			HeaderTimeout: 20 * time.Millisecond, IdleTimeout: 20 * time.Millisecond}
		s.conns = map[*Conn]struct{}{}
		client, server := net.Pipe()
		c := newConn(s, server)
		s.conns[c] = struct{}{}
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.serve()
		}()
		go client.Write(in)
		// Whatever the engine answers is read until it closes; a client
		// that has sent everything gets its answers, then the end.
		client.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, client)
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("the connection did not end for %q", in)
		}
	})
}
