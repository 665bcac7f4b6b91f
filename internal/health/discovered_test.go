package health

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/backend"
	"go.uber.org/goleak"
)

// TestProbeDiscovered checks that a backend found by service discovery,
// whose URL holds an address, is probed at that address with the name it
// was found under as Host and, over https, as the TLS server name.
func TestProbeDiscovered(t *testing.T) {
	defer goleak.VerifyNone(t)
	var host atomic.Value
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host.Store(r.Host)
	}))
	defer plain.Close()
	var sni atomic.Value
	secure := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	secure.TLS = &tls.Config{GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		sni.Store(hello.ServerName)
		return nil, nil
	}}
	secure.StartTLS()
	defer secure.Close()

	b := backend.New(plain.URL, "", plain.URL, "", 1, 0)
	b.ServerName = "api.test"
	s := backend.New(secure.URL, "", secure.URL, "", 1, 1)
	s.ServerName = "secure.test"
	a := NewActive(&recorder{})
	defer a.Stop()
	a.Sync([]Target{{Route: "api", Backend: b, Config: activeConfig(20 * time.Millisecond)},
		{Route: "api", Backend: s, Config: activeConfig(20 * time.Millisecond)}})
	eventually(t, 2*time.Second, "both probed", func() bool { return host.Load() != nil && sni.Load() != nil })
	if got := host.Load(); got != "api.test" {
		t.Errorf("probe Host = %q, want the name the backend was found under", got)
	}
	if got := sni.Load(); got != "secure.test" {
		t.Errorf("probe SNI = %q, want the configured name", got)
	}
}
