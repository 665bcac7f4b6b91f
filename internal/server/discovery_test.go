package server

import (
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/sluice-proxy/sluice/internal/backend"
	"github.com/sluice-proxy/sluice/internal/config"
	"github.com/sluice-proxy/sluice/internal/discovery/dnstest"
	"go.uber.org/goleak"
)

// TestRediscoverWithReloads changes a name's records while reloads run:
// every runtime is built from the running config and the latest sets,
// under the reload lock, a kept backend keeps its state, and Shutdown
// stops every resolver goroutine.
func TestRediscoverWithReloads(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // after the DNS server's cleanup
	ns := dnstest.Start(t)
	ns.Set("api.test.", dns.TypeA, "api.test. 1 IN A 127.0.0.2")
	cfg, err := config.Parse(fmt.Appendf(nil, `listen: "127.0.0.1:0"
admin: {listen: ""}
access_log: "off"
health: {active: {path: ""}}
discovery: {resolvers: [%q]}
routes:
  - name: api
    path_prefix: /
    backends: [{url: "http://api.test:8080", discovery: dns}]
`, ns.Addr))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s.Serve()
	backends := func() []*backend.Backend { return s.handler.Runtime().Routes[0].Backends }
	urls := func() []string {
		var out []string
		for _, b := range backends() {
			out = append(out, b.URL)
		}
		return out
	}
	waitFor := func(want ...string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !slices.Equal(urls(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("backends %v, want %v", urls(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("http://127.0.0.2:8080")
	backends()[0].SetState(backend.Unhealthy, time.Now(), "test")

	// Reloads, all the while: they keep the name's set and its loop.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.Reload(cfg.Clone())
			if n := len(backends()); n == 0 {
				t.Errorf("a reload lost the discovered backends")
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	ns.Set("api.test.", dns.TypeA, "api.test. 1 IN A 127.0.0.2", "api.test. 1 IN A 127.0.0.3")
	waitFor("http://127.0.0.2:8080", "http://127.0.0.3:8080")
	close(stop)
	wg.Wait()
	if st := backends()[0].State(); st != backend.Unhealthy {
		t.Errorf("127.0.0.2 is %v after the change, want unhealthy as before", st)
	}
	if st := backends()[1].State(); st != backend.Healthy {
		t.Errorf("127.0.0.3 is %v, want healthy", st)
	}

	// Shutdown stops the resolvers; no rebuild comes after it.
	s.Shutdown()
	ns.Set("api.test.", dns.TypeA, "api.test. 1 IN A 127.0.0.4")
	time.Sleep(10 * time.Millisecond)
	if got := urls(); len(got) != 2 {
		t.Errorf("backends changed after Shutdown: %v", got)
	}
}
