package main

// The backends and the load: two HTTP backends in this process, one of
// which slows down on command, and clients that each hold one keep-alive
// connection to the proxy and send at a steady pace while it is free.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// upstream is one backend: it answers every request after its delay, with
// X-Backend naming it.
type upstream struct {
	name  string
	addr  string
	delay atomic.Int64 // ns
	srv   *http.Server
}

var respBody = []byte(`{"users":[{"id":1,"name":"ada"},{"id":2,"name":"grace"},{"id":3,"name":"barbara"}],"page":1}` + "\n")

func startUpstream(name string, delay time.Duration) (*upstream, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &upstream{name: name, addr: ln.Addr().String()}
	u.delay.Store(int64(delay))
	u.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := time.Duration(u.delay.Load()); d > 0 && r.URL.Path != "/health" {
			time.Sleep(d)
		}
		h := w.Header()
		h["X-Backend"] = []string{name}
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{strconv.Itoa(len(respBody))}
		w.Write(respBody)
	})}
	go u.srv.Serve(ln)
	return u, nil
}

func (u *upstream) close() { u.srv.Close() }

// result is one request's answer as a client saw it.
type result struct {
	at      time.Duration // when it was sent, since the run began
	latency time.Duration
	status  int    // 0: the exchange failed (connection error)
	backend string // X-Backend of the answer; "" for the proxy's own
}

// load is the clients of one run.
type load struct {
	addr   string
	conns  int
	rate   float64 // requests a second, all clients together, while free
	start  time.Time
	mu     sync.Mutex
	res    []result
	missed atomic.Int64 // sends skipped because the client still waited
}

// run drives the clients until ctx ends.
func (l *load) run(ctx context.Context) {
	var wg sync.WaitGroup
	period := time.Duration(float64(l.conns) / l.rate * float64(time.Second))
	for i := range l.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the clients' first sends over one period.
			offset := period * time.Duration(i) / time.Duration(l.conns)
			l.client(ctx, offset, period)
		}()
	}
	wg.Wait()
}

// client sends one request every period on its connection, skipping (and
// counting) the sends that come while it still waits for an answer.
func (l *load) client(ctx context.Context, offset, period time.Duration) {
	var c net.Conn
	var br *bufio.Reader
	req := []byte("GET /api/users HTTP/1.1\r\nHost: bench\r\nUser-Agent: sluice-overload\r\n\r\n")
	var local []result
	defer func() {
		if c != nil {
			c.Close()
		}
		l.mu.Lock()
		l.res = append(l.res, local...)
		l.mu.Unlock()
	}()
	next := l.start.Add(offset)
	for {
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		} else if ctx.Err() != nil {
			return
		}
		if c == nil {
			var err error
			if c, err = net.DialTimeout("tcp", l.addr, 3*time.Second); err != nil {
				local = append(local, result{at: time.Since(l.start)})
				next = next.Add(period)
				continue
			}
			br = bufio.NewReaderSize(c, 16<<10)
		}
		sent := time.Now()
		c.SetDeadline(sent.Add(10 * time.Second))
		status, backend, err := exchange(c, br, req)
		r := result{at: sent.Sub(l.start), latency: time.Since(sent), status: status, backend: backend}
		if err != nil {
			if err != errClosing {
				r.status = 0
			}
			c.Close()
			c = nil
		}
		local = append(local, r)
		// The next send is due a period after the last one due; those whose
		// time passed while this client waited are missed.
		next = next.Add(period)
		for now := time.Now(); next.Before(now); next = next.Add(period) {
			l.missed.Add(1)
		}
	}
}

// exchange writes req and reads one response, returning its status and
// X-Backend.
func exchange(c net.Conn, br *bufio.Reader, req []byte) (int, string, error) {
	if _, err := c.Write(req); err != nil {
		return 0, "", err
	}
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, "", err
	}
	if len(line) < 12 {
		return 0, "", fmt.Errorf("status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, "", err
	}
	length, chunked, closing, backend := -1, false, false, ""
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, "", err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("content-length")):
			length, _ = strconv.Atoi(string(value))
		case bytes.EqualFold(name, []byte("transfer-encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("connection")):
			closing = bytes.EqualFold(value, []byte("close"))
		case bytes.EqualFold(name, []byte("x-backend")):
			backend = string(value)
		}
	}
	switch {
	case chunked:
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return 0, "", err
			}
			size, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.SplitN(line, []byte(";"), 2)[0])), 16, 64)
			if err != nil {
				return 0, "", err
			}
			if _, err := br.Discard(int(size) + 2); err != nil {
				return 0, "", err
			}
			if size == 0 {
				break
			}
		}
	case length >= 0:
		if _, err := br.Discard(length); err != nil {
			return 0, "", err
		}
	default:
		io.Copy(io.Discard, br)
		closing = true
	}
	if closing {
		return status, backend, errClosing
	}
	return status, backend, nil
}

// errClosing is a complete answer after which the proxy closes the
// connection: the answer counts, and the client dials again.
var errClosing = fmt.Errorf("connection closed after the answer")
