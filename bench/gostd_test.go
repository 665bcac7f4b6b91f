package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestGoStdServes starts the go-std reference as the harness does (this
// test binary re-executed, pinned nowhere) and fetches /api/users from it
// over plain HTTP/1.1, HTTPS with HTTP/2, and HTTPS with HTTP/1.1.
func TestGoStdServes(t *testing.T) {
	dir := t.TempDir()
	files, err := makeCertificate(dir)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	tlsPort, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	pp, err := startProxy(context.Background(), tlsProxy{proxy: goStdProxy{bin: exe}, port: tlsPort, files: files},
		proxyConfig{dir: filepath.Join(dir, "run"), logDir: dir, logName: "go-std", port: port}, nil, "/api/users")
	if err != nil {
		t.Fatal(err)
	}
	defer pp.stop()

	pem, err := os.ReadFile(files.cert)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatal("the generated certificate does not parse")
	}
	get := func(t *testing.T, c *http.Client, url, wantProto string) {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Proto != wantProto || !bytes.Equal(body, usersJSON) {
			t.Errorf("GET %s: %s %d, body %q; want %s 200 and the backends' body", url, resp.Proto, resp.StatusCode, body, wantProto)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("GET %s: Content-Type %q", url, ct)
		}
	}
	https := "https://127.0.0.1:" + strconv.Itoa(tlsPort) + "/api/users"
	t.Run("plain", func(t *testing.T) {
		get(t, &http.Client{}, "http://127.0.0.1:"+strconv.Itoa(port)+"/api/users", "HTTP/1.1")
	})
	t.Run("h2", func(t *testing.T) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		get(t, &http.Client{Transport: tr}, https, "HTTP/2.0")
	})
	t.Run("https1", func(t *testing.T) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, NextProtos: []string{"http/1.1"}}}
		defer tr.CloseIdleConnections()
		get(t, &http.Client{Transport: tr}, https, "HTTP/1.1")
	})
	pp.stop()
	if err := pp.waitErr; err != nil {
		t.Errorf("go-std did not exit cleanly on SIGTERM: %v", err)
	}
}

// TestParseGoStd: the settings go-std takes from its environment.
func TestParseGoStd(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		want     goStdSettings
		err      string
	}{
		{"plain only", "18080", goStdSettings{plain: 18080}, ""},
		{"with HTTPS", "18080,18443,/c.pem,/k.pem", goStdSettings{plain: 18080, tls: 18443, cert: "/c.pem", key: "/k.pem"}, ""},
		{"bad port", "x", goStdSettings{}, "plain port"},
		{"bad HTTPS port", "1,y,/c,/k", goStdSettings{}, "HTTPS port"},
		{"missing files", "1,2", goStdSettings{}, "want PORT or PORT,TLSPORT,CERT,KEY"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseGoStd(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parseGoStd(%q) = %+v, %v; want an error saying %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("parseGoStd(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
		})
	}
}

// TestGoStdTLSEnv: the HTTPS listener is added to go-std's own setting and
// leaves the rest of the environment alone.
func TestGoStdTLSEnv(t *testing.T) {
	_, env, err := goStdProxy{bin: "x"}.command(proxyConfig{port: 18080})
	if err != nil {
		t.Fatal(err)
	}
	env = append([]string{"A=1"}, env...)
	got := goStdTLSEnv(env, 18443, tlsFiles{cert: "/c.pem", key: "/k.pem"})
	want := []string{"A=1", goStdEnv + "=18080,18443,/c.pem,/k.pem"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("env = %q, want %q", got, want)
	}
}
