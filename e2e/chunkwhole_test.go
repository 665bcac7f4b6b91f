package e2e

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestStreamedChunkGoesOutWhole: a chunk of a streamed response reaches
// the client whole, its closing CRLF included, while the backend holds the
// next one. Clients that wait for the CRLF before handing a chunk on
// (line-oriented readers of server-sent events) would otherwise get every
// event one event late.
func TestStreamedChunkGoesOutWhole(t *testing.T) {
	t.Parallel()
	next := make(chan struct{})
	be := newStreamBackend(t, "sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i, ev := range []string{"data: one\n\n", "data: two\n\n", "data: three\n\n"} {
			if i > 0 {
				select {
				case <-next:
				case <-r.Context().Done():
					return
				}
			}
			io.WriteString(w, ev)
			w.(http.Flusher).Flush()
		}
	})
	p := start(t, simpleRoute(be.URL))
	c, br := dialProxy(t, p)
	io.WriteString(c, "GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the head: %v", err)
		}
		if line == "\r\n" {
			break
		}
	}
	for i, ev := range []string{"data: one\n\n", "data: two\n\n", "data: three\n\n"} {
		// The whole chunk, CRLF and all, before the backend sends the next.
		want := hexLen(len(ev)) + "\r\n" + ev + "\r\n"
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		got := make([]byte, len(want))
		if _, err := io.ReadFull(br, got); err != nil {
			t.Fatalf("event %d: read %q, %v; want the whole chunk %q while the backend holds the next one", i+1, got, err, want)
		}
		if !bytes.Equal(got, []byte(want)) {
			t.Fatalf("event %d: got %q, want %q", i+1, got, want)
		}
		if i < 2 {
			next <- struct{}{}
		}
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	end := make([]byte, 5)
	if _, err := io.ReadFull(br, end); err != nil || string(end) != "0\r\n\r\n" {
		t.Fatalf("the last chunk: %q, %v", end, err)
	}
}

func hexLen(n int) string {
	const digits = "0123456789abcdef"
	s := ""
	for {
		s = string(digits[n%16]) + s
		if n < 16 {
			return s
		}
		n /= 16
	}
}
