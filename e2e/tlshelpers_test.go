package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------
// Certificates the tests make.

// testCA is a certificate authority made for one test: it signs server and
// client certificates, and its pool is what clients (and sluice's
// client_ca) trust.
type testCA struct {
	t    testing.TB
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	Pool *x509.CertPool
	Path string // the CA certificate's PEM file
}

var serial atomic.Int64

// newKey makes a P-256 key.
func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: "sluice e2e CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{t: t, dir: t.TempDir(), cert: cert, key: key, Pool: x509.NewCertPool()}
	ca.Pool.AddCert(cert)
	ca.Path = filepath.Join(ca.dir, "ca.pem")
	writePEM(t, ca.Path, "CERTIFICATE", der)
	return ca
}

// issued is a certificate the CA signed, with its files.
type issued struct {
	Cert, Key string // PEM files
	Serial    *big.Int
	TLS       tls.Certificate
}

// issue signs a certificate for names (DNS names; an IP address becomes an
// IP SAN), for servers or, with client, for clients.
func (ca *testCA) issue(client bool, names ...string) issued {
	t := ca.t
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(ca.dir, strings.NewReplacer("*", "star", ":", "_").Replace(names[0])+"-"+tmpl.SerialNumber.String())
	is := issued{Cert: base + ".crt", Key: base + ".key", Serial: tmpl.SerialNumber}
	writePEM(t, is.Cert, "CERTIFICATE", der)
	writePEM(t, is.Key, "PRIVATE KEY", keyDER)
	is.TLS, err = tls.LoadX509KeyPair(is.Cert, is.Key)
	if err != nil {
		t.Fatal(err)
	}
	return is
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// ---------------------------------------------------------------------------
// sluice with an HTTPS listener.

// tlsProc is a sluice process with an HTTPS listener.
type tlsProc struct {
	*proc
	TLSAddr string
	CA      *testCA
	Cert    issued // the first certificate served, for "localhost" and 127.0.0.1
}

// HTTPS returns the HTTPS URL for path.
func (p *tlsProc) HTTPS(path string) string { return "https://" + p.TLSAddr + path }

// startTLS starts sluice with cfg plus a tls section: listen on a free
// port, the CA's certificate for localhost and 127.0.0.1 first, then the
// certificates of extra (cert/key lines of their own), and tlsExtra
// (further keys of the section, indented by two spaces).
func startTLS(t testing.TB, cfg, tlsExtra string, extra ...issued) *tlsProc {
	t.Helper()
	ca := newTestCA(t)
	first := ca.issue(false, "localhost", "127.0.0.1")
	return startTLSWith(t, ca, first, cfg, tlsExtra, extra...)
}

func startTLSWith(t testing.TB, ca *testCA, first issued, cfg, tlsExtra string, extra ...issued) *tlsProc {
	t.Helper()
	addr := freeAddr(t)
	var b strings.Builder
	fmt.Fprintf(&b, "tls:\n  listen: %q\n  certificates:\n", addr)
	for _, c := range append([]issued{first}, extra...) {
		fmt.Fprintf(&b, "    - {cert: %q, key: %q}\n", c.Cert, c.Key)
	}
	b.WriteString(tlsExtra)
	if tlsExtra != "" && !strings.HasSuffix(tlsExtra, "\n") {
		b.WriteString("\n")
	}
	cfg = b.String() + cfg
	var p *proc
	if !topKey("listen").MatchString(cfg) {
		// Ready means the HTTPS listener is bound too (all are bound before
		// any serves); a probe would count as a failed handshake.
		p = start(t, cfg)
	} else {
		p = startNoPlain(t, cfg)
	}
	return &tlsProc{proc: p, TLSAddr: addr, CA: ca, Cert: first}
}

// startNoPlain is start for a cfg whose listen is "": ready is /readyz
// alone.
func startNoPlain(t testing.TB, cfg string) *proc {
	t.Helper()
	path, _, admin := writeConfig(t, cfg)
	p := launch(t, "-config", path)
	p.Admin, p.CfgPath = admin, path
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	eventually(t, 15*time.Second, func() bool {
		if p.Exited() {
			t.Fatalf("sluice exited with code %d\nstderr:\n%s", p.code, p.Stderr())
		}
		resp, err := c.Get(p.AdminURL("/readyz"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "sluice ready")
	return p
}

// tlsClientConfig trusts the process's CA, names serverName (SNI) and
// offers protos by ALPN.
func (p *tlsProc) tlsClientConfig(serverName string, protos ...string) *tls.Config {
	return &tls.Config{RootCAs: p.CA.Pool, ServerName: serverName, NextProtos: protos}
}

// client returns an HTTP client of the HTTPS listener: HTTP/2 when h2, else
// HTTP/1.1 only. Its connections close at cleanup.
func (p *tlsProc) client(t testing.TB, h2 bool) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:    p.tlsClientConfig("localhost"),
		ForceAttemptHTTP2:  h2,
		DisableCompression: true,
	}
	if !h2 {
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// handshake dials the HTTPS listener with cfg and returns the connection
// state, or the handshake's error.
func (p *tlsProc) handshake(t testing.TB, cfg *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", p.TLSAddr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.ConnectionState(), nil
}
