// Package dnstest is a DNS server for tests: authoritative for whatever
// names a test gives it, on 127.0.0.1 over UDP and TCP (one port), with
// answers a test sets and changes while it runs: records with their TTLs,
// NXDOMAIN, SERVFAIL or any other rcode, truncated UDP answers, and
// silence. It counts the queries it gets.
package dnstest

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Server is a running test DNS server. Names it has no answer for get
// NXDOMAIN.
type Server struct {
	// Addr is the server's address, "127.0.0.1:port", for UDP and TCP.
	Addr string

	udp, tcp *dns.Server

	mu      sync.Mutex
	zone    map[question]answer
	silent  bool
	queries map[string]int // by "udp" or "tcp"
}

type question struct {
	name  string
	qtype uint16
}

type answer struct {
	rcode    int
	rrs      []dns.RR // answer section
	extra    []dns.RR // additional section
	truncate bool     // over UDP: the TC bit set and no records
}

// Start starts a server on 127.0.0.1; it stops at t's cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	// The UDP and TCP ports must be the same; a port free for UDP can be
	// taken for TCP, so try a few.
	for range 20 {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("dnstest: no port free for both UDP and TCP: %v", err)
	}
	s := &Server{Addr: pc.LocalAddr().String(), zone: map[question]answer{}, queries: map[string]int{}}
	h := dns.HandlerFunc(s.serve)
	var started sync.WaitGroup
	started.Add(2)
	s.udp = &dns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: started.Done}
	s.tcp = &dns.Server{Listener: ln, Handler: h, NotifyStartedFunc: started.Done}
	done := make(chan struct{}, 2)
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		go func() {
			srv.ActivateAndServe()
			done <- struct{}{}
		}()
	}
	started.Wait()
	t.Cleanup(func() {
		s.udp.Shutdown()
		s.tcp.Shutdown()
		<-done
		<-done
	})
	return s
}

// Set makes name answer qtype with rrs, each written in zone-file form
// ("api.test. 5 IN A 127.0.0.2"); no rrs is an answer without records
// (NOERROR). It replaces what name answered for qtype before.
func (s *Server) Set(name string, qtype uint16, rrs ...string) {
	s.put(name, qtype, answer{rcode: dns.RcodeSuccess, rrs: parse(rrs)})
}

// SetWithExtra is Set with records for the additional section too (the
// addresses of SRV targets, as Consul sends them).
func (s *Server) SetWithExtra(name string, qtype uint16, rrs, extra []string) {
	s.put(name, qtype, answer{rcode: dns.RcodeSuccess, rrs: parse(rrs), extra: parse(extra)})
}

// SetTruncated is Set, except that over UDP the answer comes with the TC
// bit set and no records, so that only a client that asks again over TCP
// gets them.
func (s *Server) SetTruncated(name string, qtype uint16, rrs ...string) {
	s.put(name, qtype, answer{rcode: dns.RcodeSuccess, rrs: parse(rrs), truncate: true})
}

// Fail makes name answer qtype with rcode (dns.RcodeServerFailure,
// dns.RcodeNameError, dns.RcodeRefused, ...) and no records.
func (s *Server) Fail(name string, qtype uint16, rcode int) {
	s.put(name, qtype, answer{rcode: rcode})
}

// Remove forgets what name answered for every type: it gets NXDOMAIN.
func (s *Server) Remove(name string) {
	name = dns.CanonicalName(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	for q := range s.zone {
		if q.name == name {
			delete(s.zone, q)
		}
	}
}

// Silence makes the server read queries and answer none (silent true), as
// a dead resolver behind a firewall does, or answer again (false).
func (s *Server) Silence(silent bool) {
	s.mu.Lock()
	s.silent = silent
	s.mu.Unlock()
}

// Queries returns how many queries came over network ("udp" or "tcp").
func (s *Server) Queries(network string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[network]
}

func (s *Server) put(name string, qtype uint16, a answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.zone[question{dns.CanonicalName(name), qtype}] = a
}

// parse reads records in zone-file form; a bad one is a bug in the test.
func parse(rrs []string) []dns.RR {
	out := make([]dns.RR, 0, len(rrs))
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil || rr == nil {
			panic("dnstest: bad record " + s + ": " + errString(err))
		}
		out = append(out, rr)
	}
	return out
}

func errString(err error) string {
	if err == nil {
		return "empty"
	}
	return err.Error()
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	network := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	s.mu.Lock()
	s.queries[network]++
	silent := s.silent
	var a answer
	found := false
	if len(req.Question) == 1 {
		q := req.Question[0]
		a, found = s.zone[question{strings.ToLower(q.Name), q.Qtype}]
		if !found && s.hasName(strings.ToLower(q.Name)) {
			a, found = answer{rcode: dns.RcodeSuccess}, true // the name exists: NOERROR, no records
		}
	}
	s.mu.Unlock()
	if silent {
		return
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	switch {
	case !found:
		m.Rcode = dns.RcodeNameError
	case a.truncate && network == "udp":
		m.Truncated = true
	default:
		m.Rcode = a.rcode
		m.Answer = a.rrs
		m.Extra = a.extra
	}
	w.WriteMsg(m)
}

// hasName reports whether the zone has any answer for name; s.mu is held.
func (s *Server) hasName(name string) bool {
	for q := range s.zone {
		if q.name == name {
			return true
		}
	}
	return false
}
