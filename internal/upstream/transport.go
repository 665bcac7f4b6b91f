// Package upstream is sluice's HTTP/1.1 client towards backends: the
// connections and their pools, dialing, the write of a request that shares
// its poller call with the wait for the answer, response heads, bodies
// (fixed, chunked or to the close, moved by splice when large) and the
// keep-alive rules. The proxy drives it through a small concrete API
// (Pool.Get, Conn.Queue and Write, Conn.AwaitHead, Conn.Body, Conn.Release
// and Close, and the facts Reused, Written and ResponseStarted that the
// retry policy decides on); it never reads a connection's fields. The
// package decides no policy: whether a failed request is sent again is
// the caller's to decide, from the facts a connection reports.
package upstream

import (
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-proxy/sluice/internal/fairpoll"
)

// DefaultIdleTimeout is how long an idle upstream connection is kept. It is
// below the keep-alive timeouts backends commonly use (Node.js and Apache
// close after 5 s), so the proxy, not the backend, retires idle connections.
const DefaultIdleTimeout = 4 * time.Second

// Transport owns the connection pools of every backend address and the
// pipes that splice bodies.
type Transport struct {
	mu          sync.Mutex
	pools       map[string]*Pool
	idleTimeout time.Duration
	pipes       pipeCache
	stop        chan struct{}
	done        chan struct{}
	poller      atomic.Pointer[fairpoll.Poller] // where plain connections wait for answers; nil: Go's poller
}

// UsePoller makes the connections dialed from now on wait for their
// answers in fp (see package fairpoll).
func (t *Transport) UsePoller(fp *fairpoll.Poller) {
	t.poller.Store(fp)
}

// NewTransport returns a transport and starts its reaper, which closes idle
// connections as their time passes. Close stops it.
func NewTransport(idleTimeout time.Duration) *Transport {
	if idleTimeout <= 0 {
		idleTimeout = DefaultIdleTimeout
	}
	t := &Transport{pools: map[string]*Pool{}, idleTimeout: idleTimeout,
		pipes: newPipeCache(), stop: make(chan struct{}), done: make(chan struct{})}
	go t.reapLoop()
	return t
}

// Pool returns the pool of scheme://addr, creating it on first use; its key
// is PoolKey(scheme://addr, serverName). An https pool speaks TLS: it sends
// serverName as SNI and verifies the backend's certificate for it with the
// system's roots; "" means the host of addr (a discovered backend's addr
// is an IP address, and its server name the configured name). An http
// pool ignores serverName.
func (t *Transport) Pool(scheme, addr, serverName string) *Pool {
	key := PoolKey(scheme+"://"+addr, serverName)
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.pools[key]
	if p == nil {
		p = newPool(t, addr)
		if scheme == "https" {
			if serverName == "" {
				serverName, _, _ = net.SplitHostPort(addr)
			}
			p.tls = &tls.Config{ServerName: serverName, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}
		}
		t.pools[key] = p
	}
	return p
}

// PoolKey returns the key of the pool of origin (scheme://host:port) with
// the TLS server name serverName: the origin itself when serverName is ""
// or the scheme is http, so that two names served at one address keep
// their connections apart.
func PoolKey(origin, serverName string) string {
	if serverName == "" || !strings.HasPrefix(origin, "https://") {
		return origin
	}
	return origin + " " + serverName
}

// Retain closes and forgets the pools whose key (see PoolKey) is not in
// keep; a reload calls it with the keys of the new runtime's backends.
func (t *Transport) Retain(keep map[string]bool) {
	t.mu.Lock()
	var drop []*Pool
	for addr, p := range t.pools {
		if !keep[addr] {
			drop = append(drop, p)
			delete(t.pools, addr)
		}
	}
	t.mu.Unlock()
	for _, p := range drop {
		p.close()
	}
}

func (t *Transport) reapLoop() {
	defer close(t.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case now := <-tick.C:
			t.mu.Lock()
			pools := make([]*Pool, 0, len(t.pools))
			for _, p := range t.pools {
				pools = append(pools, p)
			}
			t.mu.Unlock()
			for _, p := range pools {
				p.reap(now)
			}
		}
	}
}

// Close stops the reaper, closes every idle connection and releases the
// cached pipes.
func (t *Transport) Close() {
	close(t.stop)
	<-t.done
	t.Retain(nil)
	t.pipes.close()
}
