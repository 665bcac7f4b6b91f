//go:build ignore

// gen writes the PEM files the TLS rows of messages_test.go read:
//
//	go run gen.go
//
// a.crt and a.key are a matching pair for a.example, valid until 2099;
// b.key is another key; expired.crt and expired.key a pair that expired
// in 2001; ca.crt a CA certificate; garbage.pem no PEM at all.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"time"
)

func main() {
	writeKey := func(name string) *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		check(err)
		der, err := x509.MarshalPKCS8PrivateKey(k)
		check(err)
		write(name, "PRIVATE KEY", der)
		return k
	}
	writeCert := func(name string, k *ecdsa.PrivateKey, dns string, notAfter time.Time, ca bool) {
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(time.Now().UnixNano()),
			Subject:               pkix.Name{CommonName: dns},
			DNSNames:              []string{dns},
			NotBefore:             time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
			NotAfter:              notAfter,
			KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			IsCA:                  ca,
			BasicConstraintsValid: true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		check(err)
		write(name, "CERTIFICATE", der)
	}
	a := writeKey("a.key")
	writeCert("a.crt", a, "a.example", time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC), false)
	writeKey("b.key")
	e := writeKey("expired.key")
	writeCert("expired.crt", e, "old.example", time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC), false)
	ca := writeKey("ca.key")
	writeCert("ca.crt", ca, "Test CA", time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC), true)
	os.Remove("ca.key")
	check(os.WriteFile("garbage.pem", []byte("this is not PEM\n"), 0o644))
}

func write(name, typ string, der []byte) {
	check(os.WriteFile(name, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644))
}

func check(err error) {
	if err != nil {
		panic(err)
	}
}
