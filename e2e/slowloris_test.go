package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// slowConn is the fate of one slowloris connection.
type slowConn struct {
	dialErr error
	lasted  time.Duration // from the dial to the proxy closing the connection
	got     string        // what the proxy sent before closing
	readErr error
}

// TestSlowloris opens 200 connections that each dribble a request head one
// byte every 500 ms. Meanwhile normal requests must keep being served, at
// once, and each slow connection must be closed after client_header (2 s)
// plus slack.
func TestSlowloris(t *testing.T) {
	t.Parallel()
	const (
		conns        = 200
		clientHeader = 2 * time.Second
		every        = 500 * time.Millisecond
	)
	ok := newBackend(t, "ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	p := start(t, fmt.Sprintf(`
timeouts:
  client_header: 2s
%s`, peerRoutes(peerRoute{name: "ok", backends: []string{ok.URL}})))
	steady := startSteady(t, p.URL("/ok/steady"), "ok", 2)

	head := "GET /ok/slow HTTP/1.1\r\nHost: test.example\r\nX-Slow: " + strings.Repeat("s", 100) + "\r\n\r\n"
	results := make([]slowConn, conns)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	defer func() {
		close(stop)
		wg.Wait()
	}()
	var started sync.WaitGroup
	for i := 0; i < conns; i++ {
		wg.Add(1)
		started.Add(1)
		go func(res *slowConn) {
			defer wg.Done()
			t0 := time.Now()
			c, err := net.DialTimeout("tcp", p.Addr, 5*time.Second)
			started.Done()
			if err != nil {
				res.dialErr = err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(clientHeader + 5*time.Second))
			done := make(chan struct{})
			go func() { // the dribbler
				defer close(done)
				for j := 0; j < len(head); j++ {
					if _, err := c.Write([]byte{head[j]}); err != nil {
						return
					}
					select {
					case <-time.After(every):
					case <-stop:
						return
					}
				}
			}()
			got, err := io.ReadAll(c)
			res.lasted = time.Since(t0)
			res.got, res.readErr = string(got), err
			c.Close()
			<-done
		}(&results[i])
	}
	started.Wait()

	// Normal requests, each on a fresh connection, while the 200 dribble.
	c, tr := newClient(t)
	tr.DisableKeepAlives = true
	var slowest time.Duration
	for i := 0; i < 20; i++ {
		t0 := time.Now()
		resp, err := c.Get(p.URL("/ok/normal"))
		if err != nil {
			t.Errorf("normal request %d during the slowloris: %v", i, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		d := time.Since(t0)
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Errorf("normal request %d during the slowloris = %d %q, want 200 ok", i, resp.StatusCode, body)
		}
		if d > slowest {
			slowest = d
		}
		time.Sleep(50 * time.Millisecond) // spread over the first second of the attack
	}
	if slowest > 500*time.Millisecond {
		t.Errorf("slowest normal request during the slowloris took %v, want under 500ms", slowest)
	}

	wg.Wait()
	steady.finish(t, time.Second)

	var bad, with408 int
	minLast, maxLast := time.Hour, time.Duration(0)
	for i, r := range results {
		minLast, maxLast = min(minLast, r.lasted), max(maxLast, r.lasted)
		if r.got != "" {
			with408++
		}
		if r.dialErr != nil {
			t.Errorf("slow connection %d: dial: %v", i, r.dialErr)
			continue
		}
		if ne, ok := r.readErr.(net.Error); ok && ne.Timeout() {
			t.Errorf("slow connection %d was still open after %v, want closed after client_header (%v)", i, r.lasted.Round(time.Millisecond), clientHeader)
			bad++
		} else if r.lasted < clientHeader-earlySlack || r.lasted > clientHeader+timeoutSlack {
			t.Errorf("slow connection %d closed after %v, want within [%v, %v]", i, r.lasted.Round(time.Millisecond), clientHeader-earlySlack, clientHeader+timeoutSlack)
			bad++
		}
		// Cut off silently, or with a 408; never served.
		if r.got != "" && !strings.HasPrefix(r.got, "HTTP/1.1 408 ") && !strings.HasPrefix(r.got, "HTTP/1.0 408 ") {
			t.Errorf("slow connection %d got %q, want the connection closed (or a 408)", i, truncate(r.got, 100))
			bad++
		}
		if bad > 5 {
			t.Fatal("too many bad slow connections")
		}
	}
	t.Logf("%d slow connections closed after %v to %v; %d got an answer before the close", conns,
		minLast.Round(time.Millisecond), maxLast.Round(time.Millisecond), with408)
	if ok.Count() == 0 {
		t.Error("the backend got no request at all")
	}
	for _, r := range ok.Requests() {
		if r.Path == "/ok/slow" {
			t.Errorf("a dribbled request reached the backend")
			break
		}
	}
}
