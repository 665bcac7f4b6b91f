package e2e

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// spread sends n GETs to url from workers concurrent keep-alive clients and
// fails on any answer but 200.
func spread(t *testing.T, url string, n, workers int, hdr ...string) {
	t.Helper()
	var wg sync.WaitGroup
	var next atomic.Int64
	errs := make(chan string, n)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _ := newClient(t)
			for next.Add(1) <= int64(n) {
				req, _ := http.NewRequest("GET", url, nil)
				for i := 0; i+1 < len(hdr); i += 2 {
					req.Header.Set(hdr[i], hdr[i+1])
				}
				resp, err := c.Do(req)
				if err != nil {
					errs <- err.Error()
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- resp.Status
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatalf("a request failed: %s", e)
	}
}

// TestBalancersAvoidSlowBackend: of three backends, one answers 200 ms
// later. Under concurrency, round_robin sends it a third of the requests;
// least_request and ewma send it well under a third.
func TestBalancersAvoidSlowBackend(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		balancer string
		min, max float64 // bounds of the slow backend's share
	}{
		{"round_robin", 0.30, 0.37},
		{"least_request", 0, 0.2},
		{"ewma", 0, 0.2},
	} {
		t.Run(tt.balancer, func(t *testing.T) {
			t.Parallel()
			slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
				time.Sleep(200 * time.Millisecond) // the behaviour under test: a slow backend
				io.WriteString(w, "slow")
			})
			fast1, fast2 := newBackend(t, "fast1", nil), newBackend(t, "fast2", nil)
			p := start(t, peerRoutes(peerRoute{name: "lb", backends: []string{slow.URL, fast1.URL, fast2.URL},
				extra: "    balancer: " + tt.balancer}))
			const n = 600
			spread(t, p.URL("/lb/x"), n, 16)
			share := float64(slow.Count()) / n
			t.Logf("%s: slow %d, fast %d and %d of %d", tt.balancer, slow.Count(), fast1.Count(), fast2.Count(), n)
			if share < tt.min || share > tt.max {
				t.Fatalf("%s sent the slow backend %.0f%% of the requests, want %.0f%% to %.0f%%", tt.balancer, share*100, tt.min*100, tt.max*100)
			}
		})
	}
}

// TestHashKeepsKeyOnOneBackend: under balancer hash with a header key, a
// key's requests all go to one backend; when that backend is ejected, the
// key moves to another, while a key held by another backend does not move;
// requests without the header are still served.
func TestHashKeepsKeyOnOneBackend(t *testing.T) {
	t.Parallel()
	var sick atomic.Bool
	var bes []*backend
	for i := 0; i < 3; i++ {
		name := fmt.Sprint("b", i)
		var be *backend
		be = newBackend(t, name, func(w http.ResponseWriter, r *http.Request) {
			if sick.Load() && r.Header.Get("X-Sick") == be.Name {
				w.WriteHeader(503)
				return
			}
			io.WriteString(w, be.Name)
		})
		bes = append(bes, be)
	}
	p := start(t, `
health:
  active:
    path: ""
  passive:
    consecutive_failures: 1
    ejection_time: 1m
retry:
  attempts: 1
`+peerRoutes(peerRoute{name: "sticky", backends: []string{bes[0].URL, bes[1].URL, bes[2].URL},
		extra: "    balancer: hash\n    hash_key: header:X-User"}))

	owner := func(user string, hdr ...string) string {
		resp, body := get(t, p.URL("/sticky/x"), append([]string{"X-User", user}, hdr...)...)
		if resp.StatusCode != 200 {
			t.Fatalf("GET as %s: %d %q", user, resp.StatusCode, body)
		}
		return string(body)
	}
	alice := owner("alice")
	for i := 0; i < 100; i++ {
		if got := owner("alice"); got != alice {
			t.Fatalf("request %d of alice went to %s, the ones before to %s", i, got, alice)
		}
	}
	// A key held by another backend.
	var other, otherOwner string
	for i := 0; i < 200 && other == ""; i++ {
		if o := owner(fmt.Sprint("user-", i)); o != alice {
			other, otherOwner = fmt.Sprint("user-", i), o
		}
	}
	if other == "" {
		t.Fatal("every key went to alice's backend")
	}

	// alice's backend fails once and is ejected.
	sick.Store(true)
	resp, _ := get(t, p.URL("/sticky/x"), "X-User", "alice", "X-Sick", alice)
	if resp.StatusCode != 503 {
		t.Fatalf("the failing request got %d, want the backend's 503", resp.StatusCode)
	}
	eventually(t, 5*time.Second, func() bool {
		for _, st := range routeBackends(t, p, "sticky") {
			if st.State == "ejected" {
				return true
			}
		}
		return false
	}, "alice's backend was not ejected")
	moved := owner("alice")
	if moved == alice {
		t.Fatalf("alice's requests still go to the ejected backend %s", alice)
	}
	for i := 0; i < 50; i++ {
		if got := owner("alice"); got != moved {
			t.Fatalf("after the ejection alice's requests went to %s and %s, want one backend", moved, got)
		}
		if got := owner(other); got != otherOwner {
			t.Fatalf("%s moved from %s to %s when another backend was ejected", other, otherOwner, got)
		}
	}
	// Without the header: balanced, still served.
	for i := 0; i < 10; i++ {
		if resp, body := get(t, p.URL("/sticky/x")); resp.StatusCode != 200 {
			t.Fatalf("GET without the key: %d %q", resp.StatusCode, body)
		}
	}
}
