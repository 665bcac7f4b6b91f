package proxy

import (
	"context"
	"errors"
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
	p := newPool(ln.Addr().String(), time.Minute)
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
	p := newPool(ln.Addr().String(), time.Minute)
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

// TestDialSlots: a dial waits for one of the pool's dial slots, within its
// connect timeout, and fails as a connect timeout when none frees up.
func TestDialSlots(t *testing.T) {
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
	p := newPool(ln.Addr().String(), time.Minute)
	for range dialSlots {
		p.slots <- struct{}{}
	}
	t0 := time.Now()
	_, err = p.dial(context.Background(), 50*time.Millisecond)
	var de *dialError
	if !errors.As(err, &de) || !isTimeout(err) {
		t.Fatalf("dial with every slot taken = %v, want a connect timeout", err)
	}
	if d := time.Since(t0); d < 50*time.Millisecond {
		t.Errorf("dial gave up after %v, before its 50ms connect timeout", d)
	}

	// A slot freed while the dial waits lets it through.
	go func() {
		time.Sleep(20 * time.Millisecond)
		<-p.slots
	}()
	c, err := p.dial(context.Background(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial after a slot freed: %v", err)
	}
	c.nc.Close()
	if n := len(p.slots); n != dialSlots-1 {
		t.Errorf("%d slots taken after the dial, want %d (the dial gives its slot back)", n, dialSlots-1)
	}
}
