package proxy

import (
	"net"
	"net/netip"
	"net/url"
	"reflect"
	"strings"
	"time"

	"github.com/sluice-proxy/sluice/internal/backend"
	"github.com/sluice-proxy/sluice/internal/balance"
	"github.com/sluice-proxy/sluice/internal/config"
	"github.com/sluice-proxy/sluice/internal/discovery"
	"github.com/sluice-proxy/sluice/internal/health"
	"github.com/sluice-proxy/sluice/internal/metrics"
	"github.com/sluice-proxy/sluice/internal/retry"
	"github.com/sluice-proxy/sluice/internal/route"
	"github.com/sluice-proxy/sluice/internal/stats"
	"github.com/sluice-proxy/sluice/internal/upstream"
)

// Runtime is one config generation of the data path: the route table and,
// per route, its balancer, backends and policies. It is immutable once
// built; a reload builds a new one beside it and swaps it in one step, and
// in-flight requests finish on the one they started with.
type Runtime struct {
	// Config is the configuration this runtime was built from.
	Config *config.Config
	// Table matches requests to routes.
	Table *route.Table
	// Routes are the routes in config order.
	Routes []*Route
	// Trusted are the trusted_proxies prefixes.
	Trusted []netip.Prefix
	// NoRoute counts the requests that match no route (route="").
	NoRoute *metrics.Route
	// found are the endpoints service discovery had found for it.
	found discovery.Sets
	// atStart are the discovered backends of the first configuration, the
	// one the process started with.
	atStart map[discovery.Key]bool
}

// Route is one route of a Runtime with everything a request needs,
// resolved when the runtime is built.
type Route struct {
	route.Route
	// Backends are the route's backends in config order.
	Backends []*backend.Backend
	// Pools holds the connection pool of each backend, by Backend.Index.
	Pools []*upstream.Pool
	// Balancer picks among Backends.
	Balancer balance.Balancer
	// hashKind and hashName say what the hash balancer hashes (see
	// config.ParseHashKey; a header name lower-cased); hashKind is "" for
	// the other balancers.
	hashKind, hashName string
	// trackLatency says whether the balancer reads backends' latency
	// (ewma), which each try then records.
	trackLatency bool
	// Passive is the route's outlier detector; every try reports to it.
	Passive *health.Passive
	// Metrics are the route's resolved metric children.
	Metrics *metrics.Route
	// Stats are the route's dashboard meters (see internal/stats); they
	// carry over a reload that keeps the route's name.
	Stats *stats.Route

	ClientBody      time.Duration
	UpstreamConnect time.Duration
	UpstreamHeader  time.Duration
	UpstreamBody    time.Duration
	MaxRequestBody  int64
	MaxResponseBody int64
	// Retry is the route's retry policy.
	Retry *retry.Policy
	// Budget is the route's retry budget; it survives reloads that keep the
	// route and its retry settings.
	Budget *retry.Budget
	// overload is the route's rate limit and circuit breaker (overload.go).
	overload overload
}

// BuildWith makes a runtime of cfg, each discovered backend standing for
// the endpoints that found holds for it (see members). Backends of prev with the
// same route name and URL are carried over, with their health state.
// Connections come from t's pools; health transitions go to events; m gets
// the metrics.
func BuildWith(cfg *config.Config, t *upstream.Transport, prev *Runtime, events health.Events, m *metrics.Metrics, found discovery.Sets) *Runtime {
	old := map[string]*backend.Backend{}
	if prev != nil {
		for _, r := range prev.Routes {
			for _, b := range r.Backends {
				old[r.Name+"\x00"+b.URL] = b
			}
		}
	}
	rt := &Runtime{Config: cfg, Trusted: cfg.TrustedPrefixes, NoRoute: m.Route("", nil), found: found}
	var seenBefore discovery.Sets
	if prev != nil {
		seenBefore, rt.atStart = prev.found, prev.atStart
	} else {
		rt.atStart = map[discovery.Key]bool{}
		for _, rc := range cfg.Routes {
			for _, bc := range rc.Backends {
				if bc.Discovery != config.DiscoveryNone {
					rt.atStart[discovery.Key{Route: rc.Name, URL: bc.URL}] = true
				}
			}
		}
	}
	var table []*route.Route
	for i, rc := range cfg.Routes {
		r := &Route{
			Route: route.Route{
				Name: rc.Name, Host: hostOnly(rc.Host), Prefix: rc.PathPrefix,
				StripPrefix: rc.StripPrefix, Index: i,
			},
			ClientBody:      rc.Timeouts.ClientBody.D(),
			UpstreamConnect: rc.Timeouts.UpstreamConnect.D(),
			UpstreamHeader:  rc.Timeouts.UpstreamHeader.D(),
			UpstreamBody:    rc.Timeouts.UpstreamBody.D(),
			MaxRequestBody:  int64(rc.Limits.MaxRequestBody),
			MaxResponseBody: int64(rc.Limits.MaxResponseBody),
			Retry:           retry.NewPolicy(rc.Retry),
		}
		for j, bc := range members(rc, found, seenBefore, rt.atStart) {
			u, _ := url.Parse(bc.URL) // validated by config, or made by members
			addr := hostPort(u)
			b := old[rc.Name+"\x00"+bc.URL]
			if b == nil || b.Weight != bc.Weight || b.Index != j || b.ServerName != bc.ServerName {
				nb := backend.New(bc.URL, addr, u.Scheme+"://"+addr, strings.TrimSuffix(u.EscapedPath(), "/"), bc.Weight, j)
				nb.ServerName = bc.ServerName
				switch {
				case b != nil:
					nb.CopyState(b)
				case prev != nil && !bc.FirstAnswer:
					// Joined the route: slow start. The first answer for a
					// name comes just after the start, and its endpoints
					// count as present from the start: full weight.
					nb.Joined(time.Now())
				}
				b = nb
			}
			r.Backends = append(r.Backends, b)
			r.Pools = append(r.Pools, t.Pool(u.Scheme, addr, bc.ServerName))
		}
		bal, err := balance.New(rc.Balancer, r.Backends, balance.Options{SlowStart: rc.SlowStart.D()})
		if err != nil {
			bal = balance.NewRoundRobin(r.Backends, balance.Options{SlowStart: rc.SlowStart.D()}) // validated by config
		}
		r.Balancer = bal
		r.trackLatency = rc.Balancer == balance.EWMAName
		if rc.Balancer == balance.HashName {
			r.hashKind, r.hashName, _ = config.ParseHashKey(rc.HashKey)
			if r.hashKind == config.HashHeader {
				r.hashName = strings.ToLower(r.hashName) // matched ignoring case
			}
		}
		r.Budget = retry.NewBudget(rc.Retry.BudgetPercent, rc.Retry.BudgetMinPerSecond)
		if prev != nil {
			for j, pr := range prev.Routes {
				if pr.Name == r.Name && reflect.DeepEqual(prev.Config.Routes[j].Retry, rc.Retry) {
					r.Budget = pr.Budget
				}
			}
		}
		r.overload = newOverload(prev, r, &cfg.Routes[i])
		r.Passive = health.NewPassive(r.Name, rc.Health.Passive, r.Backends, events, nil)
		urls := make([]string, len(r.Backends))
		for j, b := range r.Backends {
			urls[j] = b.URL
			m.SetHealthy(r.Name, b.URL, b.State() == backend.Healthy)
		}
		r.Metrics = m.Route(r.Name, urls)
		r.Stats = routeStats(prev, r.Name, urls)
		rt.Routes = append(rt.Routes, r)
		table = append(table, &r.Route)
	}
	rt.Table = route.NewTable(table)
	return rt
}

// HealthTargets returns the active-check targets of rt.
func (rt *Runtime) HealthTargets() []health.Target {
	var ts []health.Target
	for i, r := range rt.Routes {
		for _, b := range r.Backends {
			ts = append(ts, health.Target{Route: r.Name, Backend: b, Config: rt.Config.Routes[i].Health.Active})
		}
	}
	return ts
}

// Addrs returns the pool keys (upstream.PoolKey) of the backends rt dials.
func (rt *Runtime) Addrs() map[string]bool {
	m := map[string]bool{}
	for _, r := range rt.Routes {
		for _, b := range r.Backends {
			m[upstream.PoolKey(b.Origin, b.ServerName)] = true
		}
	}
	return m
}

func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// hostOnly lowercases a route's host and drops any port, in the form
// route.HostKey gives a request's Host (IPv6 literals in brackets).
func hostOnly(h string) string {
	if strings.Contains(h, ":") && !strings.HasPrefix(h, "[") {
		return "[" + strings.ToLower(h) + "]"
	}
	return route.HostKey(h)
}
