package config

import (
	"slices"
	"time"
)

// Default values (docs/configuration.md), for the keys whose default is not the zero
// value.
const (
	defaultListen      = "127.0.0.1:8080"
	defaultAdminListen = "127.0.0.1:9901"
	defaultAccessLog   = "stderr"
	defaultBalancer    = "round_robin"
	defaultWeight      = 1
	defaultRateKey     = RateKeyClientIP
)

// defaults returns a Config holding every default and no routes.
func defaults() *Config {
	return &Config{
		Listen:         defaultListen,
		TLS:            TLS{Certificates: []Certificate{}, MinVersion: TLS12, HTTP2: true, MaxConcurrentStreams: defaultMaxStreams},
		Admin:          Admin{Listen: defaultAdminListen},
		TrustedProxies: []string{},
		AccessLog:      defaultAccessLog,
		Timeouts: Timeouts{
			ClientHeader:    Duration(10 * time.Second),
			ClientBody:      Duration(15 * time.Second),
			ClientIdle:      Duration(60 * time.Second),
			UpstreamConnect: Duration(3 * time.Second),
			UpstreamHeader:  Duration(15 * time.Second),
			UpstreamBody:    Duration(30 * time.Second),
			ShutdownDelay:   0,
			Shutdown:        Duration(30 * time.Second),
		},
		Limits: Limits{
			MaxRequestBody:  16 << 20,
			MaxResponseBody: 64 << 20,
			MaxHeaderBytes:  64 << 10,
		},
		Health: Health{
			Active: ActiveHealth{
				Path:               "/health",
				Interval:           Duration(10 * time.Second),
				Timeout:            Duration(2 * time.Second),
				HealthyThreshold:   2,
				UnhealthyThreshold: 3,
				ExpectStatus:       mustStatusRange("200-399"),
			},
			Passive: PassiveHealth{
				ConsecutiveFailures: 3,
				FailureStatus:       mustStatusRange("500-599"),
				EjectionTime:        Duration(30 * time.Second),
				MaxEjectionTime:     Duration(5 * time.Minute),
				MaxEjectedPercent:   50,
			},
		},
		Retry: Retry{
			Attempts:           2,
			TotalTimeout:       Duration(5 * time.Second),
			Backoff:            Duration(50 * time.Millisecond),
			OnStatus:           []int{502, 503, 504},
			Methods:            []string{"GET", "HEAD", "OPTIONS", "PUT", "DELETE"},
			MaxBody:            1 << 20,
			BudgetPercent:      20,
			BudgetMinPerSecond: 3,
		},
		RateLimit: RateLimit{Key: defaultRateKey},
		Discovery: Discovery{Resolvers: []string{}, Refresh: Duration(30 * time.Second)},
		Routes:    []Route{},
	}
}

// routeDefaults returns the starting point of a route of c: the top-level
// Timeouts, Limits, Health, Retry, RateLimit and CircuitBreaker (deep
// copies, so that decoding the route's overrides changes only the route)
// and the default balancer.
func (c *Config) routeDefaults() Route {
	return Route{
		Balancer:       defaultBalancer,
		Timeouts:       c.Timeouts,
		Limits:         c.Limits,
		Health:         c.Health.clone(),
		Retry:          c.Retry.clone(),
		RateLimit:      c.RateLimit,
		CircuitBreaker: c.CircuitBreaker,
	}
}

// Clone returns a deep copy of c: no slice is shared with c.
func (c *Config) Clone() *Config {
	n := *c
	n.TrustedProxies = slices.Clone(c.TrustedProxies)
	n.TrustedPrefixes = slices.Clone(c.TrustedPrefixes)
	n.TLS.Certificates = slices.Clone(c.TLS.Certificates)
	n.Discovery.Resolvers = slices.Clone(c.Discovery.Resolvers)
	n.Health = c.Health.clone()
	n.Retry = c.Retry.clone()
	if c.Routes != nil {
		n.Routes = make([]Route, len(c.Routes))
		for i, r := range c.Routes {
			r.Backends = slices.Clone(r.Backends)
			r.Health = r.Health.clone()
			r.Retry = r.Retry.clone()
			n.Routes[i] = r
		}
	}
	return &n
}

// Redacted returns a deep copy of c with Admin.Token replaced by "REDACTED"
// when it is set, for showing the configuration (GET /config) without
// handing out the credential that guards the admin API.
func (c *Config) Redacted() *Config {
	n := c.Clone()
	if n.Admin.Token != "" {
		n.Admin.Token = "REDACTED"
	}
	return n
}

func (h Health) clone() Health {
	h.Active.ExpectStatus = h.Active.ExpectStatus.clone()
	h.Passive.FailureStatus = h.Passive.FailureStatus.clone()
	return h
}

func (r Retry) clone() Retry {
	r.OnStatus = slices.Clone(r.OnStatus)
	r.Methods = slices.Clone(r.Methods)
	return r
}

func (s StatusRange) clone() StatusRange {
	s.Ranges = slices.Clone(s.Ranges)
	return s
}
