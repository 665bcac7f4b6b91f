package proxy

import (
	"context"
	"net"
	"testing"
	"time"
)

func TestPeerOpen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	p := &Pool{addr: ln.Addr().String(), idleTimeout: time.Minute}
	c, err := p.dial(context.Background(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.nc.Close()
	server := <-accepted
	if !c.peerOpen() {
		t.Fatal("an open idle connection was reported closed")
	}
	server.Close()
	deadline := time.Now().Add(2 * time.Second)
	for c.peerOpen() {
		if time.Now().After(deadline) {
			t.Fatal("a connection the peer closed is still reported open")
		}
		time.Sleep(time.Millisecond)
	}
	// A connection idle for longer than checkAfter is checked, and one the
	// peer closed is never handed out again.
	p.put(c, time.Now(), 0)
	c.idleSince = time.Now().Add(-time.Second)
	c2, err := p.get(context.Background(), time.Now(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.nc.Close()
	if c2 == c || c2.reused {
		t.Fatal("the pool reused a connection its peer had closed")
	}
}

// TestPooledConnectionReusedAfterDeadline: a connection whose last read
// deadline has passed while it sat idle is still reused.
func TestPooledConnectionReusedAfterDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	p := &Pool{addr: ln.Addr().String(), idleTimeout: time.Minute}
	c, err := p.dial(context.Background(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.nc.Close()
	c.nc.SetReadDeadline(time.Now().Add(time.Millisecond))
	p.put(c, time.Now(), 0)
	c.idleSince = time.Now().Add(-time.Second)
	time.Sleep(5 * time.Millisecond) // the behaviour under test: the deadline passes
	c2, err := p.get(context.Background(), time.Now(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c2 != c {
		t.Fatal("an open idle connection was not reused because its old deadline had passed")
	}
}
