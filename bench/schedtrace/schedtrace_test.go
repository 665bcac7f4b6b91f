package main

import (
	"bytes"
	"io"
	"net"
	"regexp"
	"runtime/trace"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestAnalyze traces a tiny proxy (clients → proxy goroutines → an echo
// backend, over loopback TCP) and checks the analysis finds its requests.
func TestAnalyze(t *testing.T) {
	const clients, rounds = 4, 200

	backend := listen(t)
	front := listen(t)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the backend: echoes what it reads
		defer wg.Done()
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	wg.Add(1)
	go func() { // the proxy: one goroutine per client connection
		defer wg.Done()
		for {
			c, err := front.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				proxyServe(c, backend.Addr().String())
			}()
		}
	}()

	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Fatal(err)
	}
	var cw sync.WaitGroup
	for range clients {
		cw.Add(1)
		go func() {
			defer cw.Done()
			c, err := net.Dial("tcp", front.Addr().String())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			msg, got := []byte("ping"), make([]byte, 4)
			for range rounds {
				if _, err := c.Write(msg); err != nil {
					t.Error(err)
					return
				}
				if _, err := io.ReadFull(c, got); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	cw.Wait()
	trace.Stop()
	front.Close()
	backend.Close()
	wg.Wait()

	opts := Options{
		Client:   regexp.MustCompile(`schedtrace\.proxyReadClient`),
		Upstream: regexp.MustCompile(`schedtrace\.proxyReadUpstream`),
		MaxPos:   4,
	}
	rep, err := Analyze(bytes.NewReader(buf.Bytes()), opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Events == 0 || rep.Last < rep.First {
		t.Fatalf("events %d, span %d..%d", rep.Events, rep.First, rep.Last)
	}
	netpolled := len(rep.Waits[srcNetpollP]) + len(rep.Waits[srcNetpollNoP]) + len(rep.Waits[srcNetpollG])
	if netpolled == 0 || len(rep.Batches) == 0 {
		t.Errorf("netpoll wakeups %d, batches %d: want some", netpolled, len(rep.Batches))
	}
	for s, ws := range rep.Waits {
		for _, w := range ws {
			if w < 0 {
				t.Fatalf("%s: negative wait %v", sourceNames[s], w)
			}
		}
	}
	if rep.ConnGs == 0 || len(rep.Requests) < clients*rounds/4 {
		t.Errorf("%d connection goroutines, %d requests: want %d and most of %d", rep.ConnGs, len(rep.Requests), clients, clients*rounds)
	}
	for _, r := range rep.Requests {
		for i := 1; i < len(r.T); i++ {
			if r.T[i] < r.T[i-1] {
				t.Fatalf("request times out of order: %v", r.T)
			}
		}
		if r.OtherWait < 0 || r.OtherBlock < 0 || r.Unseen0 < 0 || r.Unseen3 < 0 {
			t.Fatalf("negative duration in %+v", r)
		}
	}
	for _, b := range rep.Batches {
		if len(b.members) == 0 {
			t.Fatal("empty batch")
		}
		for _, m := range b.members {
			if m.started && m.start < m.unblock {
				t.Fatalf("batch member started at %d before its unblock at %d", m.start, m.unblock)
			}
		}
	}

	var out strings.Builder
	rep.Write(&out)
	for _, want := range []string{"## 1.", "## 2.", "## 3.", "## 4.", "netpoll", "t1−t0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	if testing.Verbose() {
		t.Log("\n" + out.String())
	}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// proxyServe forwards each message from c to a connection of its own to
// the backend and the answer back, one at a time, like a proxy's
// connection goroutine.
func proxyServe(c net.Conn, backend string) {
	defer c.Close()
	up, err := net.DialTimeout("tcp", backend, 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	buf := make([]byte, 64)
	for {
		n, err := proxyReadClient(c, buf)
		if err != nil {
			return
		}
		if _, err := up.Write(buf[:n]); err != nil {
			return
		}
		if _, err := proxyReadUpstream(up, buf[:n]); err != nil {
			return
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}

//go:noinline
func proxyReadClient(c net.Conn, b []byte) (int, error) { return c.Read(b) }

//go:noinline
func proxyReadUpstream(c net.Conn, b []byte) (int, error) { return io.ReadFull(c, b) }
