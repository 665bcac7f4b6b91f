package h2

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
)

func TestResponseTranslation(t *testing.T) {
	tests := []struct {
		name     string
		head     bool // the request was HEAD
		wire     string
		status   int
		header   map[string]string // "" for absent
		body     string
		trailer  map[string]string
		complete bool
	}{
		{name: "length", wire: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\nConnection: close\r\nX-Request-Id: r1\r\n\r\nhello",
			status: 200, header: map[string]string{"Content-Length": "5", "Content-Type": "text/plain", "Connection": "", "X-Request-Id": "r1"},
			body: "hello", complete: true},
		{name: "chunked with trailers", wire: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\nConnection: x\r\n\r\n",
			status: 200, header: map[string]string{"Transfer-Encoding": "", "Trailer": "X-Sum"}, body: "hello world",
			trailer: map[string]string{"X-Sum": "42", "Connection": ""}, complete: true},
		{name: "cut in a chunk", wire: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
			status: 200, body: "hel", complete: false},
		{name: "cut in a length", wire: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
			status: 200, body: "hello", complete: false},
		{name: "head", head: true, wire: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
			status: 200, header: map[string]string{"Content-Length": "10"}, complete: true},
		{name: "no content", wire: "HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n", status: 204, complete: true},
		{name: "interim first", wire: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
			status: 201, body: "ok", complete: true},
		{name: "nothing", wire: "", complete: false},
	}
	for _, tt := range tests {
		for _, split := range []string{"whole", "bytes"} {
			t.Run(tt.name+"/"+split, func(t *testing.T) {
				rec := httptest.NewRecorder()
				o := response{headReq: tt.head}
				var err error
				if split == "whole" {
					err = o.write(rec, []byte(tt.wire))
				} else {
					for i := 0; i < len(tt.wire) && err == nil; i++ {
						err = o.write(rec, []byte{tt.wire[i]})
					}
				}
				if err != nil {
					t.Fatal(err)
				}
				if o.complete() != tt.complete {
					t.Fatalf("complete = %v, want %v", o.complete(), tt.complete)
				}
				if tt.status == 0 {
					return
				}
				res := rec.Result()
				if res.StatusCode != tt.status {
					t.Errorf("status %d, want %d", res.StatusCode, tt.status)
				}
				for k, v := range tt.header {
					if got := res.Header.Get(k); got != v {
						t.Errorf("header %s = %q, want %q", k, got, v)
					}
				}
				if got, _ := io.ReadAll(res.Body); string(got) != tt.body {
					t.Errorf("body %q, want %q", got, tt.body)
				}
				for k, v := range tt.trailer {
					if got := res.Trailer.Get(k); got != v {
						t.Errorf("trailer %s = %q, want %q (%v)", k, got, v, res.Trailer)
					}
				}
			})
		}
	}
}

// bodyOf is a request body that ends as a stream does: DATA then io.EOF,
// or an error.
type bodyOf struct {
	r   io.Reader
	end error
}

func (b *bodyOf) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		return n, b.end
	}
	return n, err
}

func (b *bodyOf) Close() error { return nil }

func readAll(s *stream) (string, error) {
	var out strings.Builder
	buf := make([]byte, 3)
	for {
		n, err := s.Read(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			return out.String(), nil
		}
		if err != nil {
			return out.String(), err
		}
	}
}

func TestStreamRequest(t *testing.T) {
	tooLong := errors.New("too long")
	tests := []struct {
		name    string
		body    uint8
		length  int64
		data    string
		end     error // what the body says after data: io.EOF for the end of the stream
		want    string
		wantErr bool
	}{
		{"no body", bodyNone, 0, "", io.EOF, "HEAD\r\n\r\n", false},
		{"no body but DATA", bodyNone, 0, "x", io.EOF, "HEAD\r\n\r", true},
		{"length", bodyLength, 5, "hello", io.EOF, "HEAD\r\n\r\nhello", false},
		{"length then more", bodyLength, 5, "hello!", io.EOF, "HEAD\r\n\r\nhell", true},
		{"length then an error", bodyLength, 5, "hello", tooLong, "HEAD\r\n\r\nhell", true},
		{"length cut short", bodyLength, 5, "hel", io.EOF, "HEAD\r\n\r\nhel", true},
		// DATA comes a byte at a time: a chunk each.
		{"chunked", bodyChunked, -1, "hey", io.EOF, "HEAD\r\n\r\n1\r\nh\r\n1\r\ne\r\n1\r\ny\r\n0\r\n\r\n", false},
		{"chunked cut", bodyChunked, -1, "hey", tooLong, "HEAD\r\n\r\n1\r\nh\r\n1\r\ne\r\n1\r\ny\r\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &stream{head: []byte("HEAD\r\n\r\n"), body: tt.body, left: tt.length}
			s.r = &http.Request{Body: &bodyOf{r: iotest.OneByteReader(strings.NewReader(tt.data)), end: tt.end}}
			got, err := readAll(s)
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Errorf("read %q, %v; want %q (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
