package h1

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/wire"
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
		chunkedHead + "5;a=\"b\\\"c\" ; d\r\nhello\r\n0;e\r\nX: 1\r\n\r\n" + pipelined,
		chunkedHead + "0\r\n\r\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n",
		chunkedHead + "0\r\nX: a\rb\r\n\r\n" + pipelined,
		chunkedHead + "0\r\nX: a\r\n b\r\n\r\n" + pipelined,
		chunkedHead + "5;a=\"unterminated\r\nhello\r\n0\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		// Short timeouts: a stream that ends mid-head or mid-body ends the
		// connection when they pass.
		s := &Server{Handler: &echo{timeout: 20 * time.Millisecond}, MaxHeaderBytes: 1 << 10,
			HeaderTimeout: 20 * time.Millisecond, IdleTimeout: 20 * time.Millisecond}
		client, done := servePipe(s)
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

// FuzzParseChunkSize checks ParseChunkSize against refChunkSize, the
// grammar written as a regular expression.
func FuzzParseChunkSize(f *testing.F) {
	for _, tt := range chunkLines {
		f.Add([]byte(tt.line))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		n, ok := wire.ParseChunkSize(line)
		rn, rok := refChunkSize(line)
		if ok != rok || ok && n != rn {
			t.Fatalf("wire.ParseChunkSize(%q) = %d, %v; the reference says %d, %v", line, n, ok, rn, rok)
		}
	})
}

// FuzzValidTrailerLine checks ValidTrailerLine against refTrailerLine.
func FuzzValidTrailerLine(f *testing.F) {
	for _, tt := range trailerLines {
		f.Add([]byte(tt.line))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		if got, want := wire.ValidTrailerLine(line), refTrailerLine(line); got != want {
			t.Fatalf("wire.ValidTrailerLine(%q) = %v; the reference says %v", line, got, want)
		}
	})
}

// FuzzChunkedBody sends a chunked request with an arbitrary body (and
// whatever follows it) and checks how the engine reads the body against
// refDecode: the same bytes when the body ends well, ErrBadChunk when its
// framing is malformed, and some other error (an unexpected EOF) when the
// stream ends first. The connection is a stream of the bytes that ends
// after them, so that the engine serves it without waiting.
func FuzzChunkedBody(f *testing.F) {
	for _, tt := range chunkedBodies {
		f.Add([]byte(tt.send + pipelined))
	}
	f.Add([]byte("5\r\nhel"))
	f.Add([]byte("5;a=\"x"))
	f.Add([]byte("5\r\nhello\r"))
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 2<<10 {
			return // well within the line buffer and the trailer limit
		}
		data, outcome := refDecode(body)
		var want string
		switch outcome {
		case chunkOK:
			want = "/u ok " + string(data)
		case chunkBad:
			want = "/u err " + ErrBadChunk.Error()
		}

		s := &Server{Handler: framingEcho{}, MaxHeaderBytes: 8 << 10}
		s.conns = map[*Conn]struct{}{}
		nc := &streamConn{in: bytes.NewReader(append([]byte(chunkedHead), body...))}
		c := newConn(s, nc)
		s.conns[c] = struct{}{}
		c.serve()
		resp, err := http.ReadResponse(bufio.NewReader(&nc.out), nil)
		if err != nil {
			t.Fatalf("reading the response to %q: %v", body, err)
		}
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("reading the response to %q: %v", body, err)
		}
		if outcome == chunkIncomplete {
			if !bytes.HasPrefix(got, []byte("/u err ")) || bytes.Contains(got, []byte(ErrBadChunk.Error())) {
				t.Fatalf("body %q ends before its end; the engine read %q, want an error other than a malformed body", body, got)
			}
			return
		}
		if string(got) != want {
			t.Fatalf("body %q: the engine read %q, want %q", body, got, want)
		}
	})
}

// streamConn is a connection whose client sends in and then closes its
// side: reads return in, then io.EOF; writes are kept in out.
type streamConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (c *streamConn) Read(p []byte) (int, error)       { return c.in.Read(p) }
func (c *streamConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *streamConn) Close() error                     { return nil }
func (c *streamConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *streamConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *streamConn) SetDeadline(time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }
