package config

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"strconv"
	"time"
)

// TLS configures the HTTPS listener: TLS termination with HTTP/1.1 and
// HTTP/2 chosen by ALPN. See docs/configuration.md (TLS and HTTP/2).
type TLS struct {
	// Listen is the HTTPS listener's host:port, with the same rules as
	// Config.Listen; "" (the default) disables it. It must differ from
	// listen and admin.listen. A change takes effect only on restart.
	Listen string `yaml:"listen" json:"listen"`
	// Certificates are the certificates served, each a PEM certificate
	// file (the leaf first, then its intermediates) and its PEM private
	// key file; at least one when Listen is set. The server name a client
	// asks for (SNI) picks one: the first whose DNS names hold that name
	// exactly, else the first with a matching wildcard (*.example.com
	// matches one label), else the first. A relative path is taken from
	// sluice's working directory, like access_log. The files are read
	// again on every reload. Default [] (empty).
	Certificates []Certificate `yaml:"certificates" json:"certificates"`
	// MinVersion is the lowest TLS version accepted, "1.2" (the default)
	// or "1.3". Nothing below TLS 1.2 is ever accepted, and TLS 1.2 offers
	// only ECDHE key exchange with AEAD ciphers (forward secrecy, no CBC).
	MinVersion string `yaml:"min_version" json:"min_version"`
	// HTTP2 offers h2 by ALPN beside http/1.1; a client that offers h2
	// gets it. Default true.
	HTTP2 bool `yaml:"http2" json:"http2"`
	// MaxConcurrentStreams is how many streams one HTTP/2 connection may
	// have open at once, advertised in SETTINGS; a stream beyond them is
	// refused and reaches no backend. At least 1. Default 100.
	MaxConcurrentStreams int `yaml:"max_concurrent_streams" json:"max_concurrent_streams"`
	// ClientCA, when set, is a PEM file of CA certificates; every client
	// must then present a certificate one of them signs, or its handshake
	// fails (mutual TLS). Read again on every reload. Default "" (none).
	ClientCA string `yaml:"client_ca" json:"client_ca"`
	// RedirectHTTP makes the plain listener answer every request with 308
	// to the same target on https (the HTTPS listener's port, left out
	// when it is 443), contacting no backend, so that nothing is served
	// in clear. It needs both listen and tls.listen. Default false.
	RedirectHTTP bool `yaml:"redirect_http" json:"redirect_http"`

	// Keys are the Certificates loaded, in config order, each with its
	// parsed leaf; filled by Parse and Load.
	Keys []tls.Certificate `yaml:"-" json:"-"`
	// ClientCAs is ClientCA loaded, or nil when ClientCA is ""; filled by
	// Parse and Load.
	ClientCAs *x509.CertPool `yaml:"-" json:"-"`
}

// Certificate is a certificate and its private key, as PEM files.
type Certificate struct {
	// Cert is the certificate file: the leaf first, then its
	// intermediates. Required.
	Cert string `yaml:"cert" json:"cert"`
	// Key is the leaf's private key file (PKCS #8, PKCS #1 or SEC 1).
	// Required.
	Key string `yaml:"key" json:"key"`
}

// The values of tls.min_version.
const (
	TLS12 = "1.2"
	TLS13 = "1.3"
)

// defaultMaxStreams is the default of tls.max_concurrent_streams.
const defaultMaxStreams = 100

// Version returns MinVersion as a crypto/tls version number.
func (t TLS) Version() uint16 {
	if t.MinVersion == TLS13 {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// Port returns the port of Listen as a number; 0 when it has none.
func (t TLS) Port() int {
	_, port, _ := net.SplitHostPort(t.Listen)
	n, _ := strconv.Atoi(port)
	return n
}

// tlsSection checks the tls section and the listen rules that involve it,
// and loads its files into c.TLS.Keys and c.TLS.ClientCAs. An expired
// certificate is not a problem but a warning, in c.Warnings.
func (v *validator) tlsSection(c *Config) {
	t := &c.TLS
	if t.Listen != "" {
		if err := checkListen(t.Listen); err != nil {
			v.add("tls.listen", v.value("tls.listen", t.Listen), err.Error())
		} else if t.Listen == c.Listen && !isPortZero(t.Listen) {
			v.add("tls.listen", v.value("tls.listen", t.Listen), reason("same address as listen"))
		} else if t.Listen == c.Admin.Listen && !isPortZero(t.Listen) {
			v.add("tls.listen", v.value("tls.listen", t.Listen), reason("same address as admin.listen"))
		}
		if len(t.Certificates) == 0 {
			v.add("tls.certificates", v.value("tls.certificates", ""),
				reason("at least one certificate is required when tls.listen is set"))
		}
	}
	switch t.MinVersion {
	case TLS12, TLS13:
	default:
		v.add("tls.min_version", v.value("tls.min_version", t.MinVersion), reason(`must be "1.2" or "1.3"`))
	}
	v.between("tls.max_concurrent_streams", t.MaxConcurrentStreams, 1, -1)
	if t.RedirectHTTP {
		switch {
		case t.Listen == "":
			v.add("tls.redirect_http", v.value("tls.redirect_http", "true"), reason("needs tls.listen (where to redirect to)"))
		case c.Listen == "":
			v.add("tls.redirect_http", v.value("tls.redirect_http", "true"), reason(`needs listen (the plain listener is off: listen is "")`))
		}
	}
	t.Keys = nil
	for i, pair := range t.Certificates {
		p := "tls.certificates[" + strconv.Itoa(i) + "]"
		if kp, ok := v.keyPair(p, pair, &c.Warnings); ok {
			t.Keys = append(t.Keys, kp)
		}
	}
	t.ClientCAs = nil
	if t.ClientCA != "" {
		t.ClientCAs = v.certPool("tls.client_ca", t.ClientCA)
	}
}

// isPortZero reports whether addr asks the system for a port, so that two
// listeners may share it as written.
func isPortZero(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err == nil && (port == "0" || port == "")
}

// keyPair loads the certificate and key files of pair, at path p, and
// reports each problem at its own key. It returns false when they cannot
// be served.
func (v *validator) keyPair(p string, pair Certificate, warnings *[]string) (tls.Certificate, bool) {
	var kp tls.Certificate
	cp, kpath := p+".cert", p+".key"
	if pair.Cert == "" {
		v.add(cp, v.value(cp, ""), reason("required: the certificate's PEM file"))
	}
	if pair.Key == "" {
		v.add(kpath, v.value(kpath, ""), reason("required: the private key's PEM file"))
	}
	if pair.Cert == "" || pair.Key == "" || v.skip(cp) || v.skip(kpath) {
		return kp, false
	}
	certPEM, ok1 := v.readFile(cp, pair.Cert)
	keyPEM, ok2 := v.readFile(kpath, pair.Key)
	if !ok1 || !ok2 {
		return kp, false
	}
	ders := pemBlocks(certPEM, "CERTIFICATE")
	if len(ders) == 0 {
		v.add(cp, v.value(cp, pair.Cert), reason("holds no PEM certificate"))
		return kp, false
	}
	leaf, err := x509.ParseCertificate(ders[0])
	if err != nil {
		v.add(cp, v.value(cp, pair.Cert), reason("the certificate does not parse: %s", err.Error()))
		return kp, false
	}
	key, ok := parseKey(keyPEM)
	if !ok {
		v.add(kpath, v.value(kpath, pair.Key), reason("holds no PEM private key that parses (PKCS #8, PKCS #1 or SEC 1)"))
		return kp, false
	}
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		v.add(kpath, v.value(kpath, pair.Key), reason("does not match the certificate in %s", quote(pair.Cert)))
		return kp, false
	}
	if now := time.Now(); now.After(leaf.NotAfter) {
		w := FieldError{Path: cp, Value: v.value(cp, pair.Cert),
			Problem: reason("the certificate expired on %s; it is served anyway", leaf.NotAfter.UTC().Format(time.DateOnly))}
		*warnings = append(*warnings, w.Error())
	}
	return tls.Certificate{Certificate: ders, PrivateKey: key, Leaf: leaf}, true
}

// certPool loads a PEM bundle of CA certificates, reporting a problem at p
// and returning nil when it cannot.
func (v *validator) certPool(p, file string) *x509.CertPool {
	data, ok := v.readFile(p, file)
	if !ok {
		return nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		v.add(p, v.value(p, file), reason("holds no PEM certificate"))
		return nil
	}
	return pool
}

// maxPEM bounds what is read of a PEM file: a larger file is cut there,
// and what was cut does not parse.
const maxPEM = 4 << 20

// readFile reads a PEM file named in the configuration, at path p, and
// reports why it cannot without repeating its name, which the problem line
// shows. Only a regular file is read (a device such as /dev/zero would
// never end).
func (v *validator) readFile(p, name string) ([]byte, bool) {
	f, err := os.Open(name)
	if err == nil {
		defer f.Close()
		var fi fs.FileInfo
		if fi, err = f.Stat(); err == nil && !fi.Mode().IsRegular() {
			v.add(p, v.value(p, name), reason("not a regular file"))
			return nil, false
		}
	}
	var data []byte
	if err == nil {
		data, err = io.ReadAll(io.LimitReader(f, maxPEM))
	}
	if err != nil {
		why := err.Error()
		if pe, ok := errors.AsType[*fs.PathError](err); ok {
			why = pe.Err.Error()
		}
		v.add(p, v.value(p, name), reason("cannot read the file: %s", why))
		return nil, false
	}
	return data, true
}

// pemBlocks returns the DER bytes of the PEM blocks of type typ in data.
func pemBlocks(data []byte, typ string) [][]byte {
	var ders [][]byte
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return ders
		}
		if b.Type == typ {
			ders = append(ders, b.Bytes)
		}
	}
}

// parseKey returns the first private key of a PEM file: PKCS #8
// ("PRIVATE KEY"), PKCS #1 ("RSA PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY").
func parseKey(data []byte) (crypto.Signer, bool) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, false
		}
		var key any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		default:
			continue
		}
		if s, ok := key.(crypto.Signer); ok && err == nil {
			return s, true
		}
		return nil, false
	}
}
