package discovery

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// QueryTimeout bounds one query to one server, over UDP and again over TCP
// when the UDP answer was truncated.
const QueryTimeout = 2 * time.Second

// ResolvConf is where the system's resolvers are read from.
const ResolvConf = "/etc/resolv.conf"

// udpSize is the EDNS0 buffer size offered: the size that avoids IP
// fragmentation on every common path (DNS flag day 2020).
const udpSize = 1232

// maxCNAME bounds the CNAME chain followed for one name.
const maxCNAME = 8

// Resolver asks DNS servers for the records of names, with their TTLs.
// Its servers are tried in order for each query: the next one is asked
// when one does not answer in QueryTimeout, cannot be reached, or answers
// with anything but NOERROR or NXDOMAIN.
type Resolver struct {
	servers []string // ip:port
	search  []string // suffixes for relative names (the system's only)
	ndots   int
	timeout time.Duration
	udp     *dns.Client
	tcp     *dns.Client
}

// NewResolver returns a resolver that asks servers (each "ip:port") in
// order; names are taken as absolute.
func NewResolver(servers []string) *Resolver {
	return &Resolver{
		servers: slices.Clone(servers),
		ndots:   1,
		timeout: QueryTimeout,
		udp:     &dns.Client{Net: "udp", UDPSize: udpSize},
		tcp:     &dns.Client{Net: "tcp"},
	}
}

// SystemResolver returns a resolver with the servers, search domains and
// ndots of the resolv.conf file at path; when it cannot be read or names
// no server, it asks 127.0.0.1:53 and [::1]:53, as the C library does.
func SystemResolver(path string) *Resolver {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil || len(cc.Servers) == 0 {
		return NewResolver([]string{"127.0.0.1:53", "[::1]:53"})
	}
	servers := make([]string, len(cc.Servers))
	for i, s := range cc.Servers {
		servers[i] = net.JoinHostPort(s, cc.Port)
	}
	r := NewResolver(servers)
	r.search, r.ndots = cc.Search, cc.Ndots
	return r
}

// same reports whether r and o ask the same servers the same way.
func (r *Resolver) same(o *Resolver) bool {
	return slices.Equal(r.servers, o.servers) && slices.Equal(r.search, o.search) && r.ndots == o.ndots
}

// Servers returns the servers r asks, in order.
func (r *Resolver) Servers() []string { return slices.Clone(r.servers) }

// Answer is the outcome of a successful resolution.
type Answer struct {
	// Endpoints are the addresses found, unsorted; none when the name has
	// no records (NOERROR without records, or NXDOMAIN).
	Endpoints []Endpoint
	// TTL is the smallest TTL of the records the answer was made of; for
	// an answer without records, the negative-caching time the server
	// gave (RFC 2308), 0 when it gave none.
	TTL time.Duration
}

// ttl folds a record's TTL into the smallest one so far (-1 for none).
func ttl(acc time.Duration, seconds uint32) time.Duration {
	d := time.Duration(seconds) * time.Second
	if acc < 0 || d < acc {
		return d
	}
	return acc
}

// add appends the address of an A or AAAA record to a's endpoints and folds
// in its TTL; other records change nothing.
func (a *Answer) add(rr dns.RR) {
	var ip netip.Addr
	switch rr := rr.(type) {
	case *dns.A:
		ip, _ = netip.AddrFromSlice(rr.A.To4())
	case *dns.AAAA:
		ip, _ = netip.AddrFromSlice(rr.AAAA.To16())
	}
	if !ip.IsValid() {
		return
	}
	a.Endpoints = append(a.Endpoints, Endpoint{Addr: ip.Unmap()})
	a.TTL = ttl(a.TTL, rr.Header().Ttl)
}

// LookupHost resolves name's A and AAAA records.
func (r *Resolver) LookupHost(ctx context.Context, name string) (Answer, error) {
	return r.lookup(ctx, name, r.hostIn)
}

// LookupSRV resolves name's SRV records and, for those of the lowest
// priority, their targets' addresses: from the answer's additional
// section when it has them (as Consul sends them), else by asking. Each
// address of each target is an endpoint with the record's port and
// weight.
func (r *Resolver) LookupSRV(ctx context.Context, name string) (Answer, error) {
	return r.lookup(ctx, name, r.srvIn)
}

// lookup tries the names that name stands for (see names) in turn with
// one, and returns the first answer that has records; when none has, an
// empty answer with the smallest negative TTL.
func (r *Resolver) lookup(ctx context.Context, name string, one func(context.Context, string) (Answer, error)) (Answer, error) {
	empty := Answer{TTL: -1}
	for _, n := range r.names(name) {
		a, err := one(ctx, n)
		if err != nil {
			return Answer{}, err
		}
		if len(a.Endpoints) > 0 {
			return a, nil
		}
		if a.TTL > 0 && (empty.TTL < 0 || a.TTL < empty.TTL) {
			empty.TTL = a.TTL
		}
	}
	empty.TTL = max(empty.TTL, 0)
	return empty, nil
}

// names returns the absolute names to try for name, in order: name
// itself when it ends in a dot or has at least ndots dots, and name with
// each search suffix (the system's resolver only), as resolv.conf(5) says.
func (r *Resolver) names(name string) []string {
	if dns.IsFqdn(name) || len(r.search) == 0 {
		return []string{dns.Fqdn(name)}
	}
	var out []string
	abs := strings.Count(name, ".") >= r.ndots
	if abs {
		out = append(out, dns.Fqdn(name))
	}
	for _, s := range r.search {
		out = append(out, dns.Fqdn(name+"."+strings.TrimSuffix(s, ".")))
	}
	if !abs {
		out = append(out, dns.Fqdn(name))
	}
	return out
}

// hostIn resolves the absolute name's A and AAAA records.
func (r *Resolver) hostIn(ctx context.Context, name string) (Answer, error) {
	a, err := r.addrs(ctx, name, dns.TypeA)
	if err != nil {
		return Answer{}, err
	}
	aaaa, err := r.addrs(ctx, name, dns.TypeAAAA)
	if err != nil {
		return Answer{}, err
	}
	return merge(a, aaaa), nil
}

// merge joins two answers for one name.
func merge(a, b Answer) Answer {
	out := Answer{Endpoints: append(a.Endpoints, b.Endpoints...)}
	switch {
	case len(a.Endpoints) > 0 && len(b.Endpoints) > 0:
		out.TTL = min(a.TTL, b.TTL)
	case len(a.Endpoints) > 0:
		out.TTL = a.TTL
	case len(b.Endpoints) > 0:
		out.TTL = b.TTL
	case a.TTL > 0 && b.TTL > 0:
		out.TTL = min(a.TTL, b.TTL)
	default:
		out.TTL = max(a.TTL, b.TTL)
	}
	return out
}

// addrs resolves the absolute name's records of qtype (A or AAAA),
// following CNAMEs.
func (r *Resolver) addrs(ctx context.Context, name string, qtype uint16) (Answer, error) {
	out := Answer{TTL: -1}
	for range maxCNAME {
		m, err := r.exchange(ctx, name, qtype)
		if err != nil {
			return Answer{}, err
		}
		if m.Rcode == dns.RcodeNameError || !hasRecords(m, qtype) && cname(m, name) == "" {
			return Answer{TTL: negativeTTL(m)}, nil
		}
		for _, rr := range m.Answer {
			if _, ok := rr.(*dns.CNAME); ok {
				out.TTL = ttl(out.TTL, rr.Header().Ttl)
				continue
			}
			out.add(rr)
		}
		if len(out.Endpoints) > 0 {
			return out, nil
		}
		// Only a CNAME came back (a server that does not recurse): ask for
		// its target.
		name = cname(m, name)
	}
	return Answer{}, fmt.Errorf("%s: more than %d CNAMEs in a row", name, maxCNAME)
}

// hasRecords reports whether m's answer section holds a record of qtype.
func hasRecords(m *dns.Msg, qtype uint16) bool {
	for _, rr := range m.Answer {
		if rr.Header().Rrtype == qtype {
			return true
		}
	}
	return false
}

// cname returns the end of the CNAME chain from name in m's answer
// section, "" when name has no CNAME there.
func cname(m *dns.Msg, name string) string {
	target := ""
	for range maxCNAME {
		next := ""
		for _, rr := range m.Answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, name) {
				next = c.Target
			}
		}
		if next == "" {
			break
		}
		target, name = next, next
	}
	return target
}

// negativeTTL returns how long an answer without records may be cached:
// the smaller of the SOA record's TTL and its minimum field, from the
// authority section (RFC 2308); 0 when there is no SOA.
func negativeTTL(m *dns.Msg) time.Duration {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
		}
	}
	return 0
}

// srvIn resolves the absolute name's SRV records and their targets.
func (r *Resolver) srvIn(ctx context.Context, name string) (Answer, error) {
	m, err := r.exchange(ctx, name, dns.TypeSRV)
	if err != nil {
		return Answer{}, err
	}
	var recs []*dns.SRV
	out := Answer{TTL: -1}
	for _, rr := range m.Answer {
		if s, ok := rr.(*dns.SRV); ok {
			out.TTL = ttl(out.TTL, s.Hdr.Ttl)
			if s.Target != "." { // "." says the service is not offered there
				recs = append(recs, s)
			}
		}
	}
	if len(recs) == 0 {
		return Answer{TTL: negativeTTL(m)}, nil
	}
	lowest := uint16(math.MaxUint16)
	for _, s := range recs {
		lowest = min(lowest, s.Priority)
	}
	recs = slices.DeleteFunc(recs, func(s *dns.SRV) bool { return s.Priority != lowest })
	weights := srvWeights(recs)
	for i, s := range recs {
		addrs, err := r.target(ctx, m, s.Target)
		if err != nil {
			return Answer{}, err
		}
		if len(addrs.Endpoints) > 0 {
			out.TTL = min(out.TTL, addrs.TTL)
		}
		for _, e := range addrs.Endpoints {
			out.Endpoints = append(out.Endpoints, Endpoint{Addr: e.Addr, Port: s.Port, Weight: weights[i]})
		}
	}
	if len(out.Endpoints) == 0 {
		return Answer{TTL: out.TTL}, nil
	}
	return out, nil
}

// target returns the addresses of an SRV target: those of m's additional
// section when it has any for it, else those a query finds.
func (r *Resolver) target(ctx context.Context, m *dns.Msg, name string) (Answer, error) {
	out := Answer{TTL: -1}
	for _, rr := range m.Extra {
		if strings.EqualFold(rr.Header().Name, name) {
			out.add(rr)
		}
	}
	if len(out.Endpoints) > 0 {
		return out, nil
	}
	return r.hostIn(ctx, dns.Fqdn(name))
}

// srvWeights returns the backend weight of each record: its weight, 0
// counting as 1, scaled down in proportion when the largest is above
// 1000 (a backend's weight is at most 1000), each at least 1.
func srvWeights(recs []*dns.SRV) []int {
	top := 0
	for _, s := range recs {
		top = max(top, int(s.Weight))
	}
	out := make([]int, len(recs))
	for i, s := range recs {
		w := max(int(s.Weight), 1)
		if top > maxWeight {
			w = max(int(math.Round(float64(w)*maxWeight/float64(top))), 1)
		}
		out[i] = w
	}
	return out
}

// ErrNoServers is the failure of a resolver that has no server to ask.
var ErrNoServers = errors.New("no DNS server to ask")

// exchange asks the servers in turn for the absolute name's records of
// qtype, over UDP and, when the answer is truncated, again over TCP; it
// returns the first answer that is NOERROR or NXDOMAIN. Each server gets
// QueryTimeout for each of the two.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.SetEdns0(udpSize, false)
	var errs []error
	for _, server := range r.servers {
		m, err := r.ask(ctx, r.udp, q, server)
		if err == nil && m.Truncated {
			m, err = r.ask(ctx, r.tcp, q, server)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", server, err))
		case m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError:
			errs = append(errs, &RcodeError{Server: server, Rcode: m.Rcode})
		default:
			return m, nil
		}
	}
	if len(errs) == 0 {
		return nil, ErrNoServers
	}
	return nil, fmt.Errorf("%s %s: %w", strings.TrimSuffix(name, "."), dns.TypeToString[qtype], errors.Join(errs...))
}

// ask sends q to server with c, within the query timeout. The connection
// is closed as soon as ctx is done, so that a query waiting on a silent
// server does not hold up a shutdown or a reload.
func (r *Resolver) ask(ctx context.Context, c *dns.Client, q *dns.Msg, server string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	conn, err := c.DialContext(ctx, server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	m, _, err := c.ExchangeWithConnContext(ctx, q, conn)
	return m, err
}

// RcodeError is a server's answer that is neither NOERROR nor NXDOMAIN
// (SERVFAIL, REFUSED, ...): a failure, not an answer.
type RcodeError struct {
	Server string
	Rcode  int
}

func (e *RcodeError) Error() string {
	return e.Server + ": " + dns.RcodeToString[e.Rcode]
}
