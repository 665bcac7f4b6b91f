package h1

import (
	"net"
	"testing"
	"time"
)

// TestOpenConns counts connections as they open and close.
func TestOpenConns(t *testing.T) {
	s := &Server{Handler: idleHandler{}, HeaderTimeout: time.Second, IdleTimeout: time.Minute}
	if n := s.OpenConns(); n != 0 {
		t.Fatalf("open before Serve = %d", n)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	var conns []net.Conn
	for i := 1; i <= 3; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		waitOpen(t, func() bool { return s.OpenConns() == i }, "%d connections open", i)
	}
	conns[0].Close()
	waitOpen(t, func() bool { return s.OpenConns() == 2 }, "2 connections open after one closed")
	for _, c := range conns[1:] {
		c.Close()
	}
	waitOpen(t, func() bool { return s.OpenConns() == 0 }, "no connection open")
	ln.Close()
	<-done
}

type idleHandler struct{}

func (idleHandler) Serve(*Conn)               {}
func (idleHandler) Refuse(*Conn, int, string) {}

func waitOpen(t *testing.T, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: "+msg, args...)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
