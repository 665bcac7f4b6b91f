package accesslog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func entry(id string) *Entry {
	return &Entry{
		Time: time.Date(2026, 11, 28, 19, 0, 0, 0, time.UTC), RequestID: []byte(id),
		Client: netip.MustParseAddr("127.0.0.1"), Method: []byte("GET"), Path: []byte("/api/x?q=\"1\""),
		Route: "api", Backend: "http://127.0.0.1:3001", Status: 200, BytesIn: 3, BytesOut: 100,
		Duration: 1500 * time.Microsecond, Attempts: 1,
	}
}

func TestLinesAreJSONWithEveryKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	l, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 250; j++ {
				l.Write(entry("id\x01\xff"))
			}
		}()
	}
	wg.Wait()
	// Close writes everything still pending: no line is lost.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d is not JSON: %v: %s", n, err, sc.Bytes())
		}
		for _, k := range []string{"time", "request_id", "client", "method", "path", "route", "backend", "status", "bytes_in", "bytes_out", "duration_ms", "attempts", "error"} {
			if _, ok := m[k]; !ok {
				t.Fatalf("line %d has no %q: %s", n, k, sc.Bytes())
			}
		}
		if m["path"] != `/api/x?q="1"` || m["duration_ms"] != 1.5 || m["time"] != "2026-11-28T19:00:00Z" {
			t.Fatalf("line %d: %s", n, sc.Bytes())
		}
	}
	if n != 1000 {
		t.Fatalf("%d lines, want 1000", n)
	}
}

// stuck is a writer that blocks until released, like a disk that hangs.
type stuck struct{ release chan struct{} }

func (s stuck) Write(p []byte) (int, error) { <-s.release; return len(p), nil }

func TestSlowWriterNeverBlocksRequests(t *testing.T) {
	s := stuck{release: make(chan struct{})}
	l := New(s, nil, nil)
	done := make(chan struct{})
	go func() {
		for i := 0; i < 200000; i++ {
			l.Write(entry("x"))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("writing to the access log blocked on a stuck writer")
	}
	if l.Dropped() == 0 {
		t.Fatal("nothing was dropped though the writer never took a line")
	}
	close(s.release)
	l.Close()
}

func TestNilLogIsOff(t *testing.T) {
	l, err := Open("off", nil)
	if err != nil || l != nil {
		t.Fatalf("Open(off) = %v, %v", l, err)
	}
	l.Write(entry("x"))
	l.Close()
}

// BenchmarkWrite is what the access log adds to one request.
func BenchmarkWrite(b *testing.B) {
	l := New(io.Discard, nil, nil)
	defer l.Close()
	e := entry("18c0a1b2c3d4-1f")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Write(e)
		}
	})
}

func BenchmarkAppendEntry(b *testing.B) {
	e := entry("18c0a1b2c3d4-1f")
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = appendEntry(buf[:0], e)
	}
	_ = bytes.Clone(buf)
}
