package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTLSALPN: a client offering h2 gets HTTP/2, one offering only
// http/1.1 or nothing gets HTTP/1.1, and with http2: false nobody gets h2;
// each connection is counted under its protocol once its handshake is done.
func TestTLSALPN(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	cases := []struct {
		name   string
		tlsCfg string
		offer  []string
		want   string // negotiated protocol
	}{
		{"h2 offered", "", []string{"h2", "http/1.1"}, "h2"},
		{"h2 only", "", []string{"h2"}, "h2"},
		{"http/1.1 offered", "", []string{"http/1.1"}, "http/1.1"},
		{"no ALPN", "", nil, ""},
		{"http2 off, h2 offered", "  http2: false\n", []string{"h2", "http/1.1"}, "http/1.1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startTLS(t, simpleRoute(b.URL), tc.tlsCfg)
			c, err := tls.Dial("tcp", p.TLSAddr, p.tlsClientConfig("localhost", tc.offer...))
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			defer c.Close()
			if got := c.ConnectionState().NegotiatedProtocol; got != tc.want {
				t.Fatalf("ALPN chose %q, want %q", got, tc.want)
			}
			proto := "HTTP/1.1"
			if tc.want == "h2" {
				proto = "HTTP/2.0"
			} else {
				// HTTP/1.1 on the connection: sluice's own engine answers.
				fmt.Fprintf(c, "GET /api/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatalf("HTTP/1.1 over TLS: %v", err)
				}
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 || string(body) != "b" {
					t.Fatalf("HTTP/1.1 over TLS: %d %q", resp.StatusCode, body)
				}
			}
			eventually(t, 5*time.Second, func() bool {
				return metricOrZero(t, p.proc, "sluice_connections_total", "listener", "https", "proto", proto) == 1
			}, "sluice_connections_total{listener=https,proto=%s} = 1", proto)
		})
	}
}

// TestTLSHTTP2Requests: requests over h2 and over HTTP/1.1 on TLS reach the
// backend as HTTP/1.1 with X-Forwarded-Proto https and Forwarded's proto
// https, while the plain listener still says http; the access log has the
// protocol of each.
func TestTLSHTTP2Requests(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	logPath := filepath.Join(t.TempDir(), "access.log")
	p := startTLS(t, fmt.Sprintf("access_log: %q\n", logPath)+simpleRoute(b.URL), "")
	for _, h2 := range []bool{true, false} {
		resp, err := p.client(t, h2).Get(p.HTTPS("/api/x?h2=" + fmt.Sprint(h2)))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		wantProto := map[bool]string{true: "HTTP/2.0", false: "HTTP/1.1"}[h2]
		if resp.StatusCode != 200 || string(body) != "b" || resp.Proto != wantProto {
			t.Fatalf("h2=%v: %s %d %q", h2, resp.Proto, resp.StatusCode, body)
		}
		if resp.Header.Get("X-Request-Id") == "" {
			t.Errorf("h2=%v: no X-Request-Id", h2)
		}
		got := b.Last(t)
		if got.Proto != "HTTP/1.1" {
			t.Errorf("h2=%v: backend got %s, want HTTP/1.1", h2, got.Proto)
		}
		if xfp := got.Header.Get("X-Forwarded-Proto"); xfp != "https" {
			t.Errorf("h2=%v: X-Forwarded-Proto = %q, want https", h2, xfp)
		}
		if fwd := got.Header.Get("Forwarded"); !strings.Contains(fwd, ";proto=https;") {
			t.Errorf("h2=%v: Forwarded = %q, want proto=https", h2, fwd)
		}
		if got.Host != p.TLSAddr {
			t.Errorf("h2=%v: Host = %q", h2, got.Host)
		}
	}
	_, _ = get(t, p.URL("/api/plain"))
	if xfp := b.Last(t).Header.Get("X-Forwarded-Proto"); xfp != "http" {
		t.Errorf("plain listener: X-Forwarded-Proto = %q, want http", xfp)
	}
	tc := tls.Client(mustDial(t, p.TLSAddr), p.tlsClientConfig("localhost", "http/1.1"))
	fmt.Fprintf(tc, "GET /api/ten HTTP/1.0\r\nHost: localhost\r\n\r\n")
	io.ReadAll(tc)
	tc.Close()
	lines := accessLines(t, logPath, 4)
	for i, want := range []string{"HTTP/2.0", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0"} {
		if lines[i]["proto"] != want {
			t.Errorf("access log line %d (%v) proto = %v, want %s", i, lines[i]["path"], lines[i]["proto"], want)
		}
	}
}

func mustDial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// TestTLSSNI: among three certificates, the server name picks the one
// with that DNS name, then one whose wildcard matches, and a name none has
// (or none at all) gets the first.
func TestTLSSNI(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	ca := newTestCA(t)
	first := ca.issue(false, "localhost", "127.0.0.1")
	exact := ca.issue(false, "api.example.com")
	wild := ca.issue(false, "*.example.com")
	p := startTLSWith(t, ca, first, simpleRoute(b.URL), "", wild, exact)
	cases := []struct {
		name string
		want issued
	}{
		{"api.example.com", exact},
		{"API.Example.COM", exact},
		{"www.example.com", wild},
		{"a.b.example.com", first}, // a wildcard matches one label only
		{"example.com", first},
		{"other.test", first},
		{"", first},
	}
	for _, tc := range cases {
		cfg := p.tlsClientConfig(tc.name)
		cfg.InsecureSkipVerify = true // the mismatches are the point
		st, err := p.handshake(t, cfg)
		if err != nil {
			t.Fatalf("SNI %q: %v", tc.name, err)
		}
		if got := st.PeerCertificates[0].SerialNumber; got.Cmp(tc.want.Serial) != 0 {
			t.Errorf("SNI %q: served certificate %v (%v), want %v", tc.name, got, st.PeerCertificates[0].DNSNames, tc.want.Serial)
		}
	}
}

// TestTLSVersions: TLS 1.1 is always refused, TLS 1.2 under
// min_version "1.3"; each refusal counts as a failed handshake.
func TestTLSVersions(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	p12 := startTLS(t, simpleRoute(b.URL), "")
	p13 := startTLS(t, simpleRoute(b.URL), "  min_version: \"1.3\"\n")
	cases := []struct {
		name     string
		p        *tlsProc
		min, max uint16
		ok       bool
		want     uint16
	}{
		{"1.1 against 1.2", p12, tls.VersionTLS10, tls.VersionTLS11, false, 0},
		{"1.2 against 1.2", p12, tls.VersionTLS12, tls.VersionTLS12, true, tls.VersionTLS12},
		{"1.3 against 1.2", p12, tls.VersionTLS12, tls.VersionTLS13, true, tls.VersionTLS13},
		{"1.2 against 1.3", p13, tls.VersionTLS12, tls.VersionTLS12, false, 0},
		{"1.1 against 1.3", p13, tls.VersionTLS10, tls.VersionTLS11, false, 0},
		{"1.3 against 1.3", p13, tls.VersionTLS13, tls.VersionTLS13, true, tls.VersionTLS13},
	}
	for _, tc := range cases {
		cfg := tc.p.tlsClientConfig("localhost")
		cfg.MinVersion, cfg.MaxVersion = tc.min, tc.max
		st, err := tc.p.handshake(t, cfg)
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case !tc.ok && err == nil:
			t.Errorf("%s: handshake succeeded with %x, want it refused", tc.name, st.Version)
		case tc.ok && st.Version != tc.want:
			t.Errorf("%s: version %x, want %x", tc.name, st.Version, tc.want)
		}
	}
	// TLS 1.2 offers ECDHE with AEAD ciphers only.
	cfg := p12.tlsClientConfig("localhost")
	cfg.MaxVersion = tls.VersionTLS12
	cfg.CipherSuites = []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
	if _, err := p12.handshake(t, cfg); err == nil {
		t.Errorf("TLS 1.2 with only a static-RSA and a CBC suite succeeded, want it refused")
	}
	for _, c := range []struct {
		p    *tlsProc
		want float64
	}{{p12, 2}, {p13, 2}} {
		eventually(t, 5*time.Second, func() bool {
			return metricOrZero(t, c.p.proc, "sluice_tls_handshake_errors_total") == c.want
		}, "sluice_tls_handshake_errors_total = %v", c.want)
	}
}

// TestTLSClientCA: with client_ca, a client without a certificate, or with
// one another CA signed, fails the handshake; one the CA signed is served.
func TestTLSClientCA(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	ca := newTestCA(t)
	first := ca.issue(false, "localhost", "127.0.0.1")
	p := startTLSWith(t, ca, first, simpleRoute(b.URL), fmt.Sprintf("  client_ca: %q\n", ca.Path))
	other := newTestCA(t)
	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
		ok    bool
	}{
		{"no certificate", nil, false},
		{"another CA's", []tls.Certificate{other.issue(true, "client").TLS}, false},
		{"the CA's", []tls.Certificate{ca.issue(true, "client").TLS}, true},
	} {
		cfg := p.tlsClientConfig("localhost", "http/1.1")
		cfg.Certificates = tc.certs
		c, err := tls.Dial("tcp", p.TLSAddr, cfg)
		if err == nil {
			// TLS 1.3 reports the server's refusal on the first read.
			fmt.Fprintf(c, "GET /api/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			var resp *http.Response
			if resp, err = http.ReadResponse(bufio.NewReader(c), nil); err == nil && resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
			c.Close()
		}
		if tc.ok != (err == nil) {
			t.Errorf("%s: err = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
	if n := b.Count(); n != 1 {
		t.Errorf("backend got %d requests, want 1 (the one with the CA's certificate)", n)
	}
}

// TestTLSLargeBodies: a 1 MiB response (spliced on the plain listener) and
// a 1 MiB upload arrive intact over HTTPS, on HTTP/1.1 and HTTP/2: a
// response body is never spliced to a TLS connection.
func TestTLSLargeBodies(t *testing.T) {
	t.Parallel()
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i*7 + i>>8)
	}
	want := sha256.Sum256(big)
	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" {
			body, _ := io.ReadAll(r.Body) // already read by the recorder
			sum := sha256.Sum256(body)
			fmt.Fprintf(w, "%x %d", sum, len(body))
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(big)))
		w.Write(big)
	})
	p := startTLS(t, simpleRoute(b.URL), "")
	for _, h2 := range []bool{false, true} {
		c := p.client(t, h2)
		resp, err := c.Get(p.HTTPS("/api/big"))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || sha256.Sum256(body) != want {
			t.Errorf("h2=%v: download of %d bytes (err %v) does not match what the backend sent", h2, len(body), err)
		}
		resp, err = c.Post(p.HTTPS("/api/up"), "application/octet-stream", bytes.NewReader(big))
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := fmt.Sprintf("%x %d", want, len(big)); string(body) != got {
			t.Errorf("h2=%v: upload: backend saw %q, want %q", h2, body, got)
		}
	}
}

// TestTLSReloadCertificate: a certificate replaced on disk is served after
// SIGHUP; a certificate file that does not parse fails the reload and the
// running certificate stays.
func TestTLSReloadCertificate(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	ca := newTestCA(t)
	old := ca.issue(false, "localhost", "127.0.0.1")
	dir := t.TempDir()
	live := issued{Cert: filepath.Join(dir, "live.crt"), Key: filepath.Join(dir, "live.key")}
	copyFile(t, old.Cert, live.Cert)
	copyFile(t, old.Key, live.Key)
	p := startTLSWith(t, ca, live, simpleRoute(b.URL), "")
	serving := func() string {
		st, err := p.handshake(t, p.tlsClientConfig("localhost"))
		if err != nil {
			return "error: " + err.Error()
		}
		return st.PeerCertificates[0].SerialNumber.String()
	}
	if got := serving(); got != old.Serial.String() {
		t.Fatalf("serving %s, want %s", got, old.Serial)
	}
	renewed := ca.issue(false, "localhost", "127.0.0.1")
	copyFile(t, renewed.Cert, live.Cert)
	copyFile(t, renewed.Key, live.Key)
	p.Signal(syscall.SIGHUP)
	eventually(t, 5*time.Second, func() bool { return serving() == renewed.Serial.String() },
		"the renewed certificate %s served after SIGHUP", renewed.Serial)

	// A broken file: the reload fails and the renewed certificate stays.
	before := metricOrZero(t, p.proc, "sluice_config_reloads_total", "result", "error")
	if err := os.WriteFile(live.Cert, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.Signal(syscall.SIGHUP)
	eventually(t, 5*time.Second, func() bool {
		return metricOrZero(t, p.proc, "sluice_config_reloads_total", "result", "error") == before+1
	}, "the reload with a broken certificate counted as an error")
	if got := serving(); got != renewed.Serial.String() {
		t.Errorf("after a failed reload: serving %s, want %s", got, renewed.Serial)
	}
	if !strings.Contains(p.Stderr(), "holds no PEM certificate") {
		t.Errorf("stderr does not say why the reload failed:\n%s", p.Stderr())
	}
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRedirectHTTP: with redirect_http, the plain listener answers every
// request with 308 to the same target on https, at the HTTPS listener's
// port, with an X-Request-Id; no backend is contacted; HTTPS serves.
func TestRedirectHTTP(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	p := startTLS(t, simpleRoute(b.URL), "  redirect_http: true\n")
	port := portOf(p.TLSAddr)
	cases := []struct {
		method, target, host, want string
	}{
		{"GET", "/api/x?q=1", "example.com", "https://example.com:" + port + "/api/x?q=1"},
		{"POST", "/nowhere", "example.com:8080", "https://example.com:" + port + "/nowhere"},
		{"DELETE", "/api", "[::1]:80", "https://[::1]:" + port + "/api"},
		{"GET", "http://other.example/a/b", "example.com", "https://other.example:" + port + "/a/b"},
		// Any method: CONNECT and OPTIONS * too, to the root.
		{"CONNECT", "example.com:443", "example.com:443", "https://example.com:" + port + "/"},
		{"OPTIONS", "*", "example.com", "https://example.com:" + port + "/"},
	}
	for _, tc := range cases {
		if tc.target[0] != '/' {
			r := rawDo(t, p.Addr, tc.method+" "+tc.target+" HTTP/1.1\r\nHost: "+tc.host+"\r\n\r\n")
			if r.Resp == nil || r.Resp.StatusCode != 308 || r.Resp.Header.Get("Location") != tc.want {
				t.Errorf("%s %s: %v, want 308 Location %q", tc.method, tc.target, r, tc.want)
			} else if got := r.Resp.Header.Get("Location"); got != tc.want {
				t.Errorf("%s %s: Location %q, want %q", tc.method, tc.target, got, tc.want)
			}
			continue
		}
		resp, _ := do(t, tc.method, p.URL(tc.target), "", "Host", tc.host)
		if resp.StatusCode != 308 || resp.Header.Get("Location") != tc.want || resp.Header.Get("X-Request-Id") == "" {
			t.Errorf("%s %s Host %s: %d Location %q X-Request-Id %q, want 308 %q", tc.method, tc.target, tc.host,
				resp.StatusCode, resp.Header.Get("Location"), resp.Header.Get("X-Request-Id"), tc.want)
		}
	}
	if n := b.Count(); n != 0 {
		t.Errorf("backend got %d requests, want 0", n)
	}
	resp, err := p.client(t, true).Get(p.HTTPS("/api/x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("HTTPS: %d, want 200", resp.StatusCode)
	}
}

// TestTLSHandshakeTimeout: a client that connects and sends nothing is
// closed after client_header, and counted as a failed handshake.
func TestTLSHandshakeTimeout(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	p := startTLS(t, "timeouts: {client_header: 300ms}\n"+simpleRoute(b.URL), "")
	c := mustDial(t, p.TLSAddr)
	defer c.Close()
	start := time.Now()
	n, err := c.Read(make([]byte, 1))
	if err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("read %d bytes, err %v after %v; want the connection closed after about 300ms", n, err, time.Since(start))
	}
	eventually(t, 5*time.Second, func() bool {
		return metricOrZero(t, p.proc, "sluice_tls_handshake_errors_total") == 1
	}, "the timed-out handshake counted")
}

// TestTLSOnly: with listen "" only the HTTPS listener serves.
func TestTLSOnly(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	p := startTLS(t, "listen: \"\"\n"+simpleRoute(b.URL), "")
	resp, err := p.client(t, true).Get(p.HTTPS("/api/x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if strings.Contains(p.Stderr(), `"listen":"[::]`) {
		t.Errorf("a plain listener was bound:\n%s", p.Stderr())
	}
}

// TestTLSClientGone: a client over TLS that leaves while its request waits
// on a slow backend (closing with close_notify, as clients do) is noticed,
// and the backend's request is abandoned.
func TestTLSClientGone(t *testing.T) {
	t.Parallel()
	abandoned := make(chan struct{})
	b := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			close(abandoned)
		case <-time.After(10 * time.Second):
		}
	})
	p := startTLS(t, "retry: {attempts: 1}\n"+simpleRoute(b.URL), "")
	c, err := tls.Dial("tcp", p.TLSAddr, p.tlsClientConfig("localhost", "http/1.1"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET /api/slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
	eventually(t, 5*time.Second, func() bool { return b.Count() == 1 }, "the request reached the backend")
	c.Close()
	waitChan(t, abandoned, 3*time.Second, "the backend's request abandoned after the client left")
}
