package h1

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/fairpoll"
)

// testCert returns a self-signed certificate for 127.0.0.1.
func testCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// startTLS starts a server (as start does) whose connections come over TLS:
// each accepted socket goes through Socket, then a TLS handshake, then
// ServeConn, as the HTTPS listener does. It returns the server, its
// address, and the sockets Socket returned.
func startTLS(t *testing.T, h Handler, tune func(*Server)) (*Server, string, chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := start(t, h, func(s *Server) {
		s.TLS = true
		if tune != nil {
			tune(s)
		}
	})
	conf := &tls.Config{Certificates: []tls.Certificate{testCert(t)}}
	socks := make(chan net.Conn, 16)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			sock := s.Socket(nc)
			select {
			case socks <- sock:
			default:
			}
			go func() {
				tc := tls.Server(sock, conf)
				sock.SetDeadline(time.Now().Add(5 * time.Second))
				if err := tc.Handshake(); err != nil {
					sock.Close()
					return
				}
				sock.SetDeadline(time.Time{})
				s.ServeConn(tc)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s, ln.Addr().String(), socks
}

func dialTLS(t *testing.T, addr string) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// TestTLSSocketJoinsThePoller: with a poller, the socket under a TLS
// connection waits there; without one, or for a connection that is not a
// TCP socket, Socket changes nothing. Requests on a keep-alive TLS
// connection are served either way.
func TestTLSSocketJoinsThePoller(t *testing.T) {
	_, addr, socks := startTLS(t, &echo{}, nil)
	c, br := dialTLS(t, addr)
	for i := range 50 {
		fmt.Fprintf(c, "GET /k%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		if status, body := read(t, br); status != 200 || body != fmt.Sprintf("GET /k%d HTTP/1.1 ", i) {
			t.Fatalf("request %d: %d %q", i, status, body)
		}
	}
	sock := <-socks
	if _, fair := sock.(*fairSocket); fair == inGoPoller {
		t.Errorf("Socket returned a %T with inGoPoller %v", sock, inGoPoller)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := (&Server{}).Socket(a); got != a {
		t.Errorf("Socket of a pipe returned %T, want the pipe", got)
	}
}

// TestTLSPipelinedBatch: a batch of pipelined requests longer than the TLS
// library's read buffer, in one write, is answered whole: a read that
// filled the buffer is followed by another, not by a wait for bytes that
// are already there.
func TestTLSPipelinedBatch(t *testing.T) {
	_, addr, _ := startTLS(t, &echo{}, nil)
	c, br := dialTLS(t, addr)
	fmt.Fprintf(c, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n") // the batch is then waited for
	if status, _ := read(t, br); status != 200 {
		t.Fatalf("first request: %d", status)
	}
	var batch strings.Builder
	const n = 600 // about 40 KiB: several TLS records, more than a read buffer
	for i := range n {
		fmt.Fprintf(&batch, "GET /b%d HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n", i, strings.Repeat("p", i%50))
	}
	go io.WriteString(c, batch.String())
	c.SetReadDeadline(time.Now().Add(3 * time.Second)) // well under the idle timeout
	for i := range n {
		if status, body := read(t, br); status != 200 || body != fmt.Sprintf("GET /b%d HTTP/1.1 ", i) {
			t.Fatalf("response %d of %d: %d %q", i+1, n, status, body)
		}
	}
}

// TestTLSIdleTimeout: a TLS connection waiting for its next request is
// closed after the idle timeout (the wait in the poller keeps the socket's
// deadline), not before the part of it that may be cut early (armWait).
func TestTLSIdleTimeout(t *testing.T) {
	const idle = 400 * time.Millisecond
	_, addr, _ := startTLS(t, &echo{}, func(s *Server) { s.IdleTimeout = idle })
	c, br := dialTLS(t, addr)
	fmt.Fprintf(c, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
	read(t, br)
	start := time.Now()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: %v, want EOF", err)
	}
	if d := time.Since(start); d < idle-idle/8 {
		t.Errorf("closed after %v, before the idle timeout %v", d, idle)
	}
}

// TestTLSShutdownEndsIdleWait: a shutdown closes a TLS connection that
// waits for its next request at once, waking its wait.
func TestTLSShutdownEndsIdleWait(t *testing.T) {
	s, addr, _ := startTLS(t, &echo{}, func(s *Server) { s.IdleTimeout = time.Minute })
	c, br := dialTLS(t, addr)
	fmt.Fprintf(c, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
	read(t, br)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with an idle TLS connection: %v", err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the shutdown: %v, want EOF", err)
	}
}

// TestTLSCloseAllEndsWait: CloseAll, which closes a connection from outside
// its goroutine, ends a TLS connection's wait for its next request: its
// goroutine finishes and the connection is no longer counted open.
func TestTLSCloseAllEndsWait(t *testing.T) {
	s, addr, _ := startTLS(t, &echo{}, func(s *Server) { s.IdleTimeout = time.Minute })
	c, br := dialTLS(t, addr)
	fmt.Fprintf(c, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
	read(t, br)
	if n := s.CloseAll(); n != 1 {
		t.Fatalf("CloseAll closed %d connections, want 1", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.OpenConns() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the connection's goroutine still runs 5 s after CloseAll")
		}
		time.Sleep(time.Millisecond)
	}
}

// socketPair returns a socket made by Server.Socket with a poller, and the
// other end of its TCP connection.
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p, err := fairpoll.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	sock := (&Server{Poller: p}).Socket(nc)
	if _, ok := sock.(*fairSocket); !ok {
		t.Fatalf("Socket returned %T, want a *fairSocket", sock)
	}
	t.Cleanup(func() { sock.Close() })
	return sock, peer
}

// TestSocketWrite: writes through the socket arrive whole and in order,
// also when they are larger than the socket's buffer (the rest waits in
// Go's poller); concurrent writes do not interleave; a write deadline
// that has passed fails a write with a timeout; and a write to a peer
// that has gone fails rather than hangs.
func TestSocketWrite(t *testing.T) {
	sock, peer := socketPair(t)
	peer.SetDeadline(time.Now().Add(20 * time.Second))

	const big = 8 << 20 // far over a loopback socket's buffer
	payload := func(b byte) []byte { return []byte(strings.Repeat(string(b), big)) }
	errs := make(chan error, 2)
	for _, b := range []byte{'a', 'b'} {
		go func() {
			n, err := sock.Write(payload(b))
			if err == nil && n != big {
				err = fmt.Errorf("Write of %c = %d bytes, want %d", b, n, big)
			}
			errs <- err
		}()
	}
	got, err := io.ReadAll(io.LimitReader(peer, 2*big))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 2*big {
		t.Fatalf("read %d bytes, want %d", len(got), 2*big)
	}
	// Each write's bytes are contiguous: one run of one letter, then one of the other.
	first, second := got[0], got[big]
	if first == second || strings.Trim(string(got[:big]), string(first)) != "" || strings.Trim(string(got[big:]), string(second)) != "" {
		t.Fatal("two concurrent writes interleaved")
	}

	if n, err := sock.Write([]byte("small")); err != nil || n != 5 {
		t.Fatalf("small Write = %d, %v", n, err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "small" {
		t.Fatalf("read %q, %v; want \"small\"", buf, err)
	}

	sock.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := sock.Write([]byte("late")); err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write past the write deadline = %v, want a timeout", err)
	}
	sock.SetWriteDeadline(time.Time{})

	peer.(*net.TCPConn).SetLinger(0)
	peer.Close() // a reset
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := sock.Write([]byte("to nobody")); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("writes to a reset connection still succeed after 10s")
		}
	}
}
