// Package config owns sluice's configuration: the YAML schema, strict decoding
// (unknown keys are errors), the documented defaults (docs/configuration.md), and validation that
// reports every problem at once with its field path. It opens no sockets and
// starts no goroutines.
//
// Parse and Load work in three steps. First the defaults are laid down. Then
// the YAML node tree is walked and every key that is present is decoded over
// them, so an absent key keeps its default and an explicit empty value (such
// as admin.listen: "") is kept. Last, the result is normalised (route names,
// hosts, trusted prefixes) and validated. Every problem from the decode and
// validate steps is returned in one *Errors, in document order.
//
// A null value (a key with nothing after the colon, or ~) for a mapping or a
// list means the key is absent. A null for a single value is an error, because
// it is unclear whether the default or an empty value was meant.
package config

import (
	"net/netip"
	"time"
)

// Config is a whole sluice configuration, with every default applied.
type Config struct {
	// Listen is the proxy listener's address as host:port. The host may be
	// empty (every interface), an IP address or a host name; the port is a
	// number from 0 to 65535, 0 letting the system pick one. A change takes
	// effect only on restart. Default "127.0.0.1:8080"; "" turns the plain
	// listener off, which is allowed only when TLS.Listen is set.
	Listen string `yaml:"listen" json:"listen"`
	// TLS configures the HTTPS listener.
	TLS TLS `yaml:"tls" json:"tls"`
	// Admin configures the admin listener.
	Admin Admin `yaml:"admin" json:"admin"`
	// TrustedProxies lists the CIDRs ("10.0.0.0/8") or bare addresses
	// ("10.0.0.1", taken as a /32 or /128) of the peers whose
	// X-Forwarded-* and Forwarded headers are believed. Anyone who can reach
	// the listener can send those headers, so only list the proxies in front
	// of sluice. Default empty: believe nobody.
	TrustedProxies []string `yaml:"trusted_proxies" json:"trusted_proxies"`
	// AccessLog is where the access log goes: "stderr" (the default),
	// "stdout", "off", or a file path. It must not be empty. A bare off in
	// YAML is rejected: other YAML readers take it as false, so write "off"
	// quoted.
	AccessLog string `yaml:"access_log" json:"access_log"`
	// Timeouts are the listener-wide timeouts and the defaults of the
	// upstream-facing ones that routes may override.
	Timeouts Timeouts `yaml:"timeouts" json:"timeouts"`
	// Limits are the size limits; routes may override the body limits.
	Limits Limits `yaml:"limits" json:"limits"`
	// Health is the default health-check policy of every route.
	Health Health `yaml:"health" json:"health"`
	// Retry is the default retry policy of every route.
	Retry Retry `yaml:"retry" json:"retry"`
	// RateLimit is the default rate limit of every route; off by default.
	RateLimit RateLimit `yaml:"rate_limit" json:"rate_limit"`
	// CircuitBreaker is the default circuit breaker of every route; off by
	// default.
	CircuitBreaker CircuitBreaker `yaml:"circuit_breaker" json:"circuit_breaker"`
	// Discovery configures how backends with a discovery key are resolved.
	Discovery Discovery `yaml:"discovery" json:"discovery"`
	// Routes are the routes, at least one, in config order.
	Routes []Route `yaml:"routes" json:"routes"`

	// TrustedPrefixes is TrustedProxies parsed, each prefix masked to its
	// network address; filled by Parse and Load.
	TrustedPrefixes []netip.Prefix `yaml:"-" json:"-"`
	// Warnings are the problems that do not stop the configuration from
	// being used (an expired certificate), one a line in the shape of
	// Errors' lines; filled by Parse and Load.
	Warnings []string `yaml:"-" json:"-"`
}

// Admin configures the admin listener.
type Admin struct {
	// Listen is the admin listener's host:port, with the same rules as
	// Config.Listen; an explicit "" disables the admin listener. It must
	// differ from Config.Listen. Default "127.0.0.1:9901".
	Listen string `yaml:"listen" json:"listen"`
	// Token, when set, is required as "Authorization: Bearer <token>" on every
	// admin path but /healthz and /readyz; the admin API can reload the config
	// and shows the backends, so set it whenever the admin listener is
	// reachable by anyone but the operator. Default "" (no token).
	// Config.Redacted hides it.
	Token string `yaml:"token" json:"token"`
}

// Timeouts holds every timeout. ClientHeader, ClientIdle, ShutdownDelay and
// Shutdown are listener-wide and are an error inside a route; the others may
// be overridden per route. Every timeout must be greater than zero, except
// ShutdownDelay, which may be zero.
type Timeouts struct {
	// ClientHeader is how long a client may take to send a request's line
	// and headers, against slowloris attacks. Listener-wide. Default 10s.
	ClientHeader Duration `yaml:"client_header" json:"client_header"`
	// ClientBody is the longest pause allowed between two reads of a request
	// body (a slow upload); exceeding it answers 408. Default 15s.
	ClientBody Duration `yaml:"client_body" json:"client_body"`
	// ClientIdle is how long an idle keep-alive client connection is kept.
	// Listener-wide. Default 60s.
	ClientIdle Duration `yaml:"client_idle" json:"client_idle"`
	// UpstreamConnect bounds the TCP connect to a backend; exceeding it
	// answers 502. Default 3s.
	UpstreamConnect Duration `yaml:"upstream_connect" json:"upstream_connect"`
	// UpstreamHeader bounds the time from the request being sent to the
	// response headers being received; exceeding it answers 504. Default 15s.
	UpstreamHeader Duration `yaml:"upstream_header" json:"upstream_header"`
	// UpstreamBody is the longest pause allowed between two reads of a
	// response body. Default 30s.
	UpstreamBody Duration `yaml:"upstream_body" json:"upstream_body"`
	// ShutdownDelay is how long /readyz answers 503 after SIGTERM before the
	// proxy listener closes, so that load balancers notice. Listener-wide.
	// Zero closes at once. Default 0s.
	ShutdownDelay Duration `yaml:"shutdown_delay" json:"shutdown_delay"`
	// Shutdown is the drain deadline after the listener closed; requests
	// still running then are cut. Listener-wide. Default 30s.
	Shutdown Duration `yaml:"shutdown" json:"shutdown"`
}

// Limits holds the size limits, each greater than zero. MaxHeaderBytes is
// listener-wide and an error inside a route.
type Limits struct {
	// MaxRequestBody is the largest request body accepted; a larger one
	// answers 413. Default 16MiB.
	MaxRequestBody Size `yaml:"max_request_body" json:"max_request_body"`
	// MaxResponseBody is the largest response body passed on: a larger
	// declared length answers 502, a larger streamed body cuts the client
	// connection. Default 64MiB.
	MaxResponseBody Size `yaml:"max_response_body" json:"max_response_body"`
	// MaxHeaderBytes bounds the request line and headers, approximately; a
	// larger request answers 431. Listener-wide. Default 64KiB.
	MaxHeaderBytes Size `yaml:"max_header_bytes" json:"max_header_bytes"`
}

// Health is a health-check policy. A route may override any field of it.
type Health struct {
	// Active configures the active probes.
	Active ActiveHealth `yaml:"active" json:"active"`
	// Passive configures outlier ejection from live traffic.
	Passive PassiveHealth `yaml:"passive" json:"passive"`
}

// ActiveHealth configures active probes, sent to each backend's origin
// (scheme://host:port, without the backend URL's own path) plus Path.
type ActiveHealth struct {
	// Path is the probed path; it starts with "/" and may carry a query.
	// "" disables active checks. Default "/health".
	Path string `yaml:"path" json:"path"`
	// Interval is the time between two probes of a backend; > 0.
	// Default 10s.
	Interval Duration `yaml:"interval" json:"interval"`
	// Timeout bounds one probe; > 0. Default 2s.
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// HealthyThreshold is the number of consecutive passing probes that mark
	// an unhealthy backend healthy again; >= 1. Default 2.
	HealthyThreshold int `yaml:"healthy_threshold" json:"healthy_threshold"`
	// UnhealthyThreshold is the number of consecutive failing probes that
	// mark a backend unhealthy; >= 1. Default 3.
	UnhealthyThreshold int `yaml:"unhealthy_threshold" json:"unhealthy_threshold"`
	// ExpectStatus is the set of statuses that make a probe pass.
	// Default "200-399".
	ExpectStatus StatusRange `yaml:"expect_status" json:"expect_status"`
}

// PassiveHealth configures outlier ejection from live traffic.
type PassiveHealth struct {
	// ConsecutiveFailures is the number of live-traffic failures in a row
	// that eject a backend; >= 1. Default 3.
	ConsecutiveFailures int `yaml:"consecutive_failures" json:"consecutive_failures"`
	// FailureStatus is the set of statuses that count as failures; connect
	// errors, resets and timeouts always count. Default "500-599".
	FailureStatus StatusRange `yaml:"failure_status" json:"failure_status"`
	// EjectionTime is the length of a first ejection; it doubles on each
	// repeat ejection; > 0. Default 30s.
	EjectionTime Duration `yaml:"ejection_time" json:"ejection_time"`
	// MaxEjectionTime caps the ejection length, and is how long a backend
	// must stay healthy after an ejection for the next one to start again
	// at EjectionTime; >= EjectionTime. Default 5m.
	MaxEjectionTime Duration `yaml:"max_ejection_time" json:"max_ejection_time"`
	// MaxEjectedPercent is the largest share of a route's backends, 0 to
	// 100, that may be ejected at once (one backend of two or more can
	// always be ejected; actively unhealthy backends don't count).
	// Default 50.
	MaxEjectedPercent int `yaml:"max_ejected_percent" json:"max_ejected_percent"`
}

// Retry is a retry policy. A route may override any field of it; a list
// given in a route replaces the inherited list.
type Retry struct {
	// Attempts is the total number of tries including the first; >= 1, and
	// 1 disables retries. Default 2.
	Attempts int `yaml:"attempts" json:"attempts"`
	// TotalTimeout bounds all tries together, from the first try until
	// response headers; it cuts a try short too; > 0. Default 5s.
	TotalTimeout Duration `yaml:"total_timeout" json:"total_timeout"`
	// Backoff is the base of an exponential backoff with full jitter; 0
	// retries at once. Default 50ms.
	Backoff Duration `yaml:"backoff" json:"backoff"`
	// OnStatus lists the backend statuses (100-599) that are retried.
	// Default [502, 503, 504]; [] retries on no status.
	OnStatus []int `yaml:"on_status" json:"on_status"`
	// Methods lists the methods that may be retried after the request was
	// sent. They are HTTP tokens and must be written in upper case, since
	// methods are case-sensitive. A connect failure is retried for any
	// method, and so is a request with an Idempotency-Key header.
	// Default [GET, HEAD, OPTIONS, PUT, DELETE].
	Methods []string `yaml:"methods" json:"methods"`
	// MaxBody is the largest request body buffered for replay; larger
	// bodies are streamed and not retried. 0 means only requests without a
	// body are retried after being sent. Default 1MiB.
	MaxBody Size `yaml:"max_body" json:"max_body"`
	// BudgetPercent, 0 to 100, allows a retry while the route's retries in
	// the last 10s are fewer than this share of its client requests in the
	// last 10s. Default 20.
	BudgetPercent int `yaml:"budget_percent" json:"budget_percent"`
	// BudgetMinPerSecond also allows a retry while the route's retries in
	// the last second are fewer than this; >= 0, 0 meaning no floor.
	// Default 3.
	BudgetMinPerSecond int `yaml:"budget_min_per_second" json:"budget_min_per_second"`
}

// Route is one route. Its Timeouts, Limits, Health and Retry are the
// effective values: the top-level ones with the route's overrides applied
// (the listener-wide fields simply mirror the top level).
type Route struct {
	// Name identifies the route in metrics, logs and the admin API; unique
	// across routes. Default (when absent or "") Host + PathPrefix, e.g.
	// "/api" or "example.com/api".
	Name string `yaml:"name" json:"name"`
	// PathPrefix is required; it starts with "/" and has no "?", "#",
	// whitespace, control characters or dot segments. Matching is
	// segment-aware: /api matches /api and /api/x, not /apiary.
	PathPrefix string `yaml:"path_prefix" json:"path_prefix"`
	// Host is the exact Host the route is for; "" (the default) matches any.
	// It is stored lower-cased, without a port and without IPv6 brackets
	// (the form url.URL.Hostname gives), since matching ignores case and
	// port. No two routes may have the same Host and PathPrefix.
	Host string `yaml:"host" json:"host"`
	// StripPrefix forwards /api/x as /x and /api as /. Default false.
	StripPrefix bool `yaml:"strip_prefix" json:"strip_prefix"`
	// Balancer picks the backend: "round_robin" (the default, smooth
	// weighted round robin), "least_request" (power of two choices on
	// requests in flight), "ewma" (power of two choices on peak-EWMA
	// latency times requests in flight) or "hash" (consistent hashing of
	// HashKey with bounded load).
	Balancer string `yaml:"balancer" json:"balancer"`
	// HashKey is what the hash balancer hashes, and is an error with any
	// other balancer: "client_ip" (the default), "header:<Name>",
	// "cookie:<name>" or "path". Stored as written; "" means client_ip.
	HashKey string `yaml:"hash_key" json:"hash_key"`
	// SlowStart ramps a backend's weight up linearly, from a tenth, over
	// this time after it joins the route or comes back; 0s (the default)
	// gives it its full weight at once.
	SlowStart Duration `yaml:"slow_start" json:"slow_start"`
	// Backends are the route's backends, at least one, no two alike.
	Backends []Backend `yaml:"backends" json:"backends"`

	// Timeouts are the effective timeouts; a route may set client_body and
	// the upstream_* keys.
	Timeouts Timeouts `yaml:"timeouts" json:"timeouts"`
	// Limits are the effective limits; a route may set max_request_body and
	// max_response_body.
	Limits Limits `yaml:"limits" json:"limits"`
	// Health is the effective health policy; a route may set any field.
	Health Health `yaml:"health" json:"health"`
	// Retry is the effective retry policy; a route may set any field.
	Retry Retry `yaml:"retry" json:"retry"`
	// RateLimit is the effective rate limit; a route may set any field.
	RateLimit RateLimit `yaml:"rate_limit" json:"rate_limit"`
	// CircuitBreaker is the effective circuit breaker; a route may set any
	// field.
	CircuitBreaker CircuitBreaker `yaml:"circuit_breaker" json:"circuit_breaker"`
}

// RateLimit is a route's rate limit: a token bucket per key, refilled at
// RequestsPerSecond and Burst deep. A request that finds its bucket empty
// is answered 429 rate_limited with Retry-After, reaches no backend and
// takes no token. A new bucket starts full. Limits are per sluice
// instance: N instances behind a load balancer let N times the rate
// through. A route may override any field.
type RateLimit struct {
	// RequestsPerSecond is the refill rate, a number that may be
	// fractional (0.5 is one request every 2 s); 0 (the default) turns the
	// limit off. It must not be negative.
	RequestsPerSecond float64 `yaml:"requests_per_second" json:"requests_per_second"`
	// Burst is the bucket's depth: how many requests a key may send at once
	// after a pause. 0 (the default) means one second's worth,
	// RequestsPerSecond rounded down, and at least 1. It must not be
	// negative.
	Burst int `yaml:"burst" json:"burst"`
	// Key says what a bucket is per: "client_ip" (the default; the
	// client's address as the access log's client has it, which believes
	// X-Forwarded-For only from trusted_proxies), "header:<Name>" (the
	// first value of that request header; requests without it or with it
	// empty share one bucket) or "route" (one bucket for the whole route).
	Key string `yaml:"key" json:"key"`
}

// CircuitBreaker bounds the load a route puts on each of its backends, so
// that a slow backend fails requests fast instead of piling them up. A
// route may override it.
type CircuitBreaker struct {
	// MaxRequestsPerBackend is how many requests one backend may have in
	// flight; a backend at the limit is passed over by every balancer, for
	// first tries and retries alike, and when every healthy backend is at
	// it the request is answered 503 backend_overloaded at once, without
	// counting against any backend's health. 0 (the default) sets no
	// limit; it must not be negative. A request is in flight from the
	// moment its try starts until its response has been relayed, streamed
	// bodies and upgraded connections included.
	MaxRequestsPerBackend int `yaml:"max_requests_per_backend" json:"max_requests_per_backend"`
}

// Backend is one backend of a route. In YAML it is either a URL string or a
// mapping with url, weight and discovery.
type Backend struct {
	// URL is the backend URL as configured, used as its identity in metrics,
	// logs and the admin API. Its scheme is http or https, it has a host and
	// an optional port, and no userinfo (credentials would leak into metric
	// labels), query or fragment. A path is a prefix prepended to the
	// forwarded path, without its trailing "/"; see Origin and PathPrefix.
	URL string `yaml:"url" json:"url"`
	// Weight is the backend's share for the balancer, 1 to 1000.
	// Default 1. With Discovery "dns" every address found gets it; with
	// "srv" the records give the weights, and setting it is an error.
	Weight int `yaml:"weight" json:"weight"`
	// Discovery says how the URL's host is turned into backends: ""
	// (the default) dials the host as it is; "dns" resolves its A and AAAA
	// records and makes each address a backend of its own, with the URL's
	// port (the scheme's default when it has none); "srv" takes the host
	// as an SRV name and makes each address of each target of the lowest
	// priority a backend, with the record's port and weight (the URL must
	// then have no port). The host must be a name, not an IP address. See
	// Discovery (the top-level section) for when names are resolved.
	Discovery string `yaml:"discovery" json:"discovery"`
}

// Discovery configures service discovery: how backends with a discovery
// key are resolved. A name is resolved when sluice starts (start does not
// wait for it) and again after the smallest TTL of its records (at least
// 1s) or Refresh, whichever is shorter; an answer replaces the name's
// backends, even an empty one, and a failure keeps the last ones.
type Discovery struct {
	// Resolvers are the DNS servers asked, as "ip:port" (a bare IP address
	// means port 53), tried in order, each query bounded by 2s; UDP, and
	// TCP when an answer is truncated. Default [] (empty): the servers,
	// search domains and ndots of /etc/resolv.conf, or 127.0.0.1:53 and
	// [::1]:53 when it names none.
	Resolvers []string `yaml:"resolvers" json:"resolvers"`
	// Refresh is the longest time between two resolutions of a name: the
	// next one comes after the records' smallest TTL (at least 1s) when
	// that is shorter; after an answer without records, after its
	// negative-caching time when shorter; after a failure, after 1s,
	// doubling with each failure in a row. At least 1s. Default 30s.
	Refresh Duration `yaml:"refresh" json:"refresh"`
}

// The values of a backend's discovery key.
const (
	DiscoveryNone = ""
	DiscoveryDNS  = "dns"
	DiscoverySRV  = "srv"
)

// Duration is a time.Duration written as a Go duration string ("250ms",
// "5s", "1m"); the number 0 is accepted too. Negative durations are errors.
// It marshals to JSON and text as its String form.
type Duration time.Duration

// Size is a byte count, written as a non-negative integer or as a string
// with one of the units B, KiB, MiB, GiB (powers of 1024) or KB, MB, GB
// (powers of 1000): "64KiB", "16MiB", "1GB". A decimal number is accepted
// when it comes to a whole number of bytes ("1.5MiB", not "1.5B"). It
// marshals to JSON and text as its String form.
type Size int64

// StatusRange is a set of HTTP status codes written as a code, a range, or a
// comma-separated list of both ("200-399", "500, 502-504"). Codes are 100 to
// 599, a range's low end is at most its high end, and the set is not empty.
// A bare YAML integer (503) is a single code. It marshals to JSON and text
// as Text.
type StatusRange struct {
	// Text is the value as written.
	Text string
	// Ranges are the inclusive [lo, hi] ranges parsed from Text.
	Ranges [][2]int
}

// Contains reports whether code is in the set.
func (s StatusRange) Contains(code int) bool {
	for _, r := range s.Ranges {
		if code >= r[0] && code <= r[1] {
			return true
		}
	}
	return false
}
