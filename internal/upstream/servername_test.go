package upstream

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestPoolServerName checks that an https pool sends its server name as
// SNI, the host of its address when it has none, and that pools of one
// address with two server names are apart.
func TestPoolServerName(t *testing.T) {
	sni := make(chan string, 4)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.TLS = &tls.Config{GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		sni <- hello.ServerName
		return nil, nil
	}}
	srv.StartTLS()
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "https://")
	tr := NewTransport(0)
	defer tr.Close()

	for _, tt := range []struct{ serverName, want string }{
		{"secure.test", "secure.test"},
		{"", ""}, // an IP address is not sent as SNI
	} {
		p := tr.Pool("https", addr, tt.serverName)
		if _, err := p.Dial(time.Second); err == nil {
			t.Errorf("server name %q: the test server's certificate was trusted", tt.serverName)
		}
		if got := <-sni; got != tt.want {
			t.Errorf("server name %q: SNI %q, want %q", tt.serverName, got, tt.want)
		}
	}
	if tr.Pool("https", addr, "a.test") == tr.Pool("https", addr, "b.test") {
		t.Errorf("two server names share a pool")
	}
	if tr.Pool("http", addr, "a.test") != tr.Pool("http", addr, "") {
		t.Errorf("an http pool depends on the server name")
	}
	if got := PoolKey("https://10.0.0.1:443", "a.test"); got != "https://10.0.0.1:443 a.test" {
		t.Errorf("PoolKey = %q", got)
	}
	tr.Retain(map[string]bool{PoolKey("https://"+addr, "a.test"): true})
	tr.mu.Lock()
	n := len(tr.pools)
	tr.mu.Unlock()
	if n != 1 {
		t.Errorf("pools after Retain = %d, want 1", n)
	}
}
