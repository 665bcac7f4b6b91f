package config

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/sluice-proxy/sluice/internal/wire"
	"go.yaml.in/yaml/v3"
)

// provision fills in what derives from the decoded values: each route's
// host in normal form, the default route names and hash_key, and
// TrustedPrefixes. A value
// it cannot derive from is left as written, for validate to report.
func provision(c *Config) {
	c.TrustedPrefixes = make([]netip.Prefix, 0, len(c.TrustedProxies))
	for _, s := range c.TrustedProxies {
		if p, err := parsePrefix(s); err == nil {
			c.TrustedPrefixes = append(c.TrustedPrefixes, p)
		}
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		if h, err := normaliseHost(r.Host); err == nil {
			r.Host = h
		}
		if r.Name == "" {
			r.Name = r.Host + r.PathPrefix
		}
		if r.Balancer == "hash" && r.HashKey == "" {
			r.HashKey = HashClientIP // shown in /config with the other defaults
		}
	}
}

// Balancers are the values of a route's balancer key.
var Balancers = []string{"round_robin", "least_request", "ewma", "hash"}

// balancer checks a route's balancer, hash_key and slow_start.
func (v *validator) balancer(r *Route, p string) {
	if !slices.Contains(Balancers, r.Balancer) {
		v.add(p+".balancer", v.value(p+".balancer", r.Balancer),
			reason("unknown balancer; one of round_robin, least_request, ewma or hash"))
	}
	switch {
	case r.HashKey != "" && r.Balancer != "hash":
		v.add(p+".hash_key", v.value(p+".hash_key", r.HashKey), reason("hash_key is only for balancer hash"))
	case r.HashKey != "":
		if _, _, err := ParseHashKey(r.HashKey); err != nil {
			v.add(p+".hash_key", v.value(p+".hash_key", r.HashKey), err.Error())
		}
	}
}

// The kinds of a hash_key.
const (
	HashClientIP = "client_ip"
	HashHeader   = "header"
	HashCookie   = "cookie"
	HashPath     = "path"
)

// ParseHashKey splits a hash_key into its kind and, for header and
// cookie, the name ("" means client_ip).
func ParseHashKey(s string) (kind, name string, err error) {
	switch {
	case s == "" || s == HashClientIP:
		return HashClientIP, "", nil
	case s == HashPath:
		return HashPath, "", nil
	case strings.HasPrefix(s, "header:"):
		if name = s[len("header:"):]; !wire.IsToken([]byte(name)) {
			return "", "", errors.New("header:<Name> needs a header field name (a token)")
		}
		return HashHeader, name, nil
	case strings.HasPrefix(s, "cookie:"):
		if name = s[len("cookie:"):]; !wire.IsToken([]byte(name)) {
			return "", "", errors.New("cookie:<name> needs a cookie name (a token)")
		}
		return HashCookie, name, nil
	}
	return "", "", errors.New("must be client_ip, header:<Name>, cookie:<name> or path")
}

// validator collects the problems of a provisioned Config.
type validator struct {
	errs []FieldError
	// d is the decoder that produced the Config, or nil. It tells which
	// paths had decode problems (not to be reported twice), which paths the
	// document wrote, and what it wrote there.
	d *decoder
	// route is the path of the route being checked plus ".", or "" at the
	// top level. A route inherits what it does not write from the top level.
	route string
}

// validate checks every value of c and returns every problem. d, if not
// nil, is the decoder that produced c.
func validate(c *Config, d *decoder) []FieldError {
	v := &validator{d: d}
	if c.Listen == "" && c.TLS.Listen == "" {
		v.add("listen", v.value("listen", c.Listen), reason(`"" turns the plain listener off, which needs tls.listen`))
	} else if err := checkListen(c.Listen); c.Listen != "" && err != nil {
		v.add("listen", v.value("listen", c.Listen), err.Error())
	}
	v.tlsSection(c)
	if c.Admin.Listen != "" {
		if err := checkListen(c.Admin.Listen); err != nil {
			v.add("admin.listen", v.value("admin.listen", c.Admin.Listen), err.Error())
		} else if c.Admin.Listen == c.Listen && !strings.HasSuffix(c.Listen, ":0") {
			v.add("admin.listen", v.value("admin.listen", c.Admin.Listen), reason("same address as listen"))
		}
	}
	for i, s := range c.TrustedProxies {
		if _, err := parsePrefix(s); err != nil {
			p := "trusted_proxies[" + strconv.Itoa(i) + "]"
			v.add(p, v.value(p, s), err.Error())
		}
	}
	if c.AccessLog == "" {
		v.add("access_log", quote(""), reason(`must not be empty; write "off" to turn the access log off`))
	} else {
		v.accessLog(c.AccessLog)
	}
	v.timeouts("timeouts", c.Timeouts, false)
	v.limits("limits", c.Limits, false)
	v.health("health", c.Health)
	v.retry("retry", c.Retry)
	v.rateLimit("rate_limit", c.RateLimit)
	v.circuitBreaker("circuit_breaker", c.CircuitBreaker)
	v.discovery(c.Discovery)

	// A route inherits the top-level sections; a bad top-level value is
	// reported once, at the top level, not again in each route.
	top := make(map[string]bool, len(v.errs))
	for _, e := range v.errs {
		top[e.Path+": "+e.Problem] = true
	}
	if len(c.Routes) == 0 {
		v.add("routes", v.value("routes", ""), reason("at least one route is required"))
	}
	for i := range c.Routes {
		v.checkRoute(&c.Routes[i], "routes["+strconv.Itoa(i)+"]", top)
	}
	v.unique(c.Routes)
	return v.errs
}

// skip reports whether the decoder reported a problem at path or above.
func (v *validator) skip(path string) bool { return v.d != nil && v.d.isBad(path) }

// written reports whether the document wrote path.
func (v *validator) written(path string) bool {
	if v.d == nil {
		return false
	}
	_, ok := v.d.pos[path]
	return ok
}

// node returns the value the document wrote at path or, in a route that
// does not write path, at the top-level path it inherits; nil if none.
func (v *validator) node(path string) *yaml.Node {
	if v.d == nil {
		return nil
	}
	if n, ok := v.d.nodes[path]; ok {
		return n
	}
	if rest, ok := strings.CutPrefix(path, v.route); ok && v.route != "" {
		return v.d.nodes[rest]
	}
	return nil
}

// value renders the value at path for a problem line: as the document
// wrote it (see FieldError.Value), else def, the value in effect, quoted;
// a def of "" there means the key is left out (missingValue).
func (v *validator) value(path, def string) string {
	if n := v.node(path); n != nil {
		return render(n)
	}
	if def == "" {
		return missingValue
	}
	return quote(def)
}

// text returns the scalar the document wrote at path, unquoted, else def.
func (v *validator) text(path, def string) string {
	if n := v.node(path); n != nil && n.Kind == yaml.ScalarNode {
		return n.Value
	}
	return def
}

func (v *validator) add(path, value, problem string) {
	if v.skip(path) {
		return
	}
	v.errs = append(v.errs, FieldError{Path: path, Value: value, Problem: problem})
}

func (v *validator) checkRoute(r *Route, p string, top map[string]bool) {
	switch err := checkPathPrefix(r.PathPrefix); {
	case r.PathPrefix == "":
		v.add(p+".path_prefix", v.value(p+".path_prefix", ""), reason(`required; write "/" to match every path`))
	case err != nil:
		v.add(p+".path_prefix", v.value(p+".path_prefix", r.PathPrefix), err.Error())
	}
	if _, err := normaliseHost(r.Host); err != nil {
		v.add(p+".host", v.value(p+".host", r.Host), err.Error())
	}
	if strings.ContainsFunc(r.Name, unicode.IsControl) {
		v.add(p+".name", v.value(p+".name", r.Name), reason("must not contain control characters"))
	}
	v.balancer(r, p)
	if len(r.Backends) == 0 {
		v.add(p+".backends", v.value(p+".backends", ""), reason("at least one backend is required"))
	}
	seen := make(map[string]int, len(r.Backends))
	for j, b := range r.Backends {
		bp := p + ".backends[" + strconv.Itoa(j) + "]"
		// A problem with the URL is the backend's, and shows the URL, also
		// when the backend is written as a mapping.
		url := v.value(bp, b.URL)
		if n := v.node(bp); n != nil && n.Kind == yaml.MappingNode {
			url = v.value(bp+".url", b.URL)
		}
		if _, err := parseBackendURL(b.URL); b.URL == "" {
			if !v.skip(bp + ".url") { // url: with no value, reported as such
				v.add(bp, url, reason("url is required"))
			}
		} else if err != nil {
			v.add(bp, url, err.Error())
		} else if k, dup := seen[b.Origin()+b.PathPrefix()]; dup {
			v.add(bp, url, reason("same backend as backends[%d]", k))
		} else {
			seen[b.Origin()+b.PathPrefix()] = j
		}
		if b.Weight < 1 || b.Weight > 1000 {
			v.add(bp+".weight", v.value(bp+".weight", strconv.Itoa(b.Weight)), reason("must be %d-%d", 1, 1000))
		}
		v.backendDiscovery(b, bp)
	}

	// The route's sections are the top-level ones with its overrides
	// applied. A problem with an inherited value is the top level's, and has
	// been reported (or skipped) there already.
	sub := &validator{d: v.d, route: p + "."}
	sub.timeouts(p+".timeouts", r.Timeouts, true)
	sub.limits(p+".limits", r.Limits, true)
	sub.health(p+".health", r.Health)
	sub.retry(p+".retry", r.Retry)
	sub.rateLimit(p+".rate_limit", r.RateLimit)
	sub.circuitBreaker(p+".circuit_breaker", r.CircuitBreaker)
	for _, e := range sub.errs {
		inherited := strings.TrimPrefix(e.Path, p+".")
		if v.written(e.Path) || !top[inherited+": "+e.Problem] && !v.skip(inherited) {
			v.errs = append(v.errs, e)
		}
	}
}

// unique reports routes that share a name, or a host and path_prefix (the
// second could never be chosen).
func (v *validator) unique(routes []Route) {
	names := make(map[string]int, len(routes))
	matches := make(map[string]int, len(routes))
	for i, r := range routes {
		p := "routes[" + strconv.Itoa(i) + "]"
		sameMatch := false
		if r.PathPrefix != "" {
			key := r.Host + " " + r.PathPrefix
			if j, dup := matches[key]; dup {
				v.add(p+".path_prefix", v.value(p+".path_prefix", r.PathPrefix), reason("routes[%d] has the same host and path_prefix", j))
				sameMatch = true
			} else {
				matches[key] = i
			}
		}
		if r.Name == "" {
			continue
		}
		if j, dup := names[r.Name]; !dup {
			names[r.Name] = i
		} else if !sameMatch {
			// The name in effect, which may be the default one.
			v.add(p+".name", quote(r.Name), reason("name already used by routes[%d]; names must be unique (the default is host + path_prefix)", j))
		}
	}
}

func (v *validator) timeouts(p string, t Timeouts, route bool) {
	if !route {
		v.positive(p+".client_header", t.ClientHeader)
		v.positive(p+".client_idle", t.ClientIdle)
		v.positive(p+".shutdown", t.Shutdown)
	}
	v.positive(p+".client_body", t.ClientBody)
	v.positive(p+".upstream_connect", t.UpstreamConnect)
	v.positive(p+".upstream_header", t.UpstreamHeader)
	v.positive(p+".upstream_body", t.UpstreamBody)
}

func (v *validator) limits(p string, l Limits, route bool) {
	if !route {
		v.positiveSize(p+".max_header_bytes", l.MaxHeaderBytes)
	}
	v.positiveSize(p+".max_request_body", l.MaxRequestBody)
	v.positiveSize(p+".max_response_body", l.MaxResponseBody)
}

func (v *validator) health(p string, h Health) {
	a, ap := h.Active, p+".active"
	if a.Path != "" {
		if err := checkProbePath(a.Path); err != nil {
			v.add(ap+".path", v.value(ap+".path", a.Path), err.Error())
		}
	}
	v.positive(ap+".interval", a.Interval)
	v.positive(ap+".timeout", a.Timeout)
	v.between(ap+".healthy_threshold", a.HealthyThreshold, 1, -1)
	v.between(ap+".unhealthy_threshold", a.UnhealthyThreshold, 1, -1)

	s, sp := h.Passive, p+".passive"
	v.between(sp+".consecutive_failures", s.ConsecutiveFailures, 1, -1)
	v.positive(sp+".ejection_time", s.EjectionTime)
	v.positive(sp+".max_ejection_time", s.MaxEjectionTime)
	if s.EjectionTime > 0 && s.MaxEjectionTime > 0 && s.MaxEjectionTime < s.EjectionTime &&
		!v.skip(sp+".ejection_time") {
		v.add(sp+".max_ejection_time", v.value(sp+".max_ejection_time", shortDuration(s.MaxEjectionTime)),
			reason("must be at least ejection_time (%s)", v.text(sp+".ejection_time", shortDuration(s.EjectionTime))))
	}
	v.between(sp+".max_ejected_percent", s.MaxEjectedPercent, 0, 100)
}

func (v *validator) retry(p string, r Retry) {
	v.between(p+".attempts", r.Attempts, 1, -1)
	v.positive(p+".total_timeout", r.TotalTimeout)
	for i, code := range r.OnStatus {
		if code < 100 || code > 599 {
			ip := p + ".on_status[" + strconv.Itoa(i) + "]"
			v.add(ip, v.value(ip, strconv.Itoa(code)), reason("must be a status from 100 to 599"))
		}
	}
	for i, m := range r.Methods {
		if err := checkMethod(m); err != nil {
			ip := p + ".methods[" + strconv.Itoa(i) + "]"
			v.add(ip, v.value(ip, m), err.Error())
		}
	}
	v.between(p+".budget_percent", r.BudgetPercent, 0, 100)
	v.between(p+".budget_min_per_second", r.BudgetMinPerSecond, 0, -1)
}

// positive reports a duration that is not greater than zero.
func (v *validator) positive(path string, d Duration) {
	if d <= 0 {
		v.add(path, v.value(path, shortDuration(d)), reason("must be greater than 0"))
	}
}

// positiveSize reports a size that is not greater than zero.
func (v *validator) positiveSize(path string, s Size) {
	if s <= 0 {
		v.add(path, v.value(path, s.String()), reason("must be greater than 0"))
	}
}

// between reports n outside [lo, hi]; hi < 0 means no upper bound.
func (v *validator) between(path string, n, lo, hi int) {
	switch {
	case hi < 0 && n < lo:
		v.add(path, v.value(path, strconv.Itoa(n)), reason("must be at least %d", lo))
	case hi >= 0 && (n < lo || n > hi):
		v.add(path, v.value(path, strconv.Itoa(n)), reason("must be %d-%d", lo, hi))
	}
}

// shortDuration writes d as Go does without the zero units at its end:
// "5m" for 5m0s, "1h" for 1h0m0s; for a value the document did not write.
func shortDuration(d Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// checkPathPrefix checks a non-empty route path_prefix.
func checkPathPrefix(s string) error {
	if !strings.HasPrefix(s, "/") {
		return errors.New(`must start with "/"`)
	}
	if strings.ContainsAny(s, "?#") {
		return errors.New(`must not contain "?" or "#"`)
	}
	if strings.ContainsFunc(s, isSpaceOrControl) {
		return errors.New("must not contain spaces or control characters")
	}
	for seg := range strings.SplitSeq(s, "/") {
		if seg == "." || seg == ".." {
			return errors.New(`must not contain "." or ".." segments (request paths are cleaned before matching)`)
		}
	}
	return nil
}

// checkProbePath checks a non-empty active health-check path.
func checkProbePath(s string) error {
	if !strings.HasPrefix(s, "/") {
		return errors.New(`must start with "/" ("" disables active checks)`)
	}
	if strings.Contains(s, "#") {
		return errors.New(`must not contain "#"`)
	}
	if strings.ContainsFunc(s, isSpaceOrControl) {
		return errors.New("must not contain spaces or control characters")
	}
	return nil
}

func isSpaceOrControl(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }

// checkMethod checks a retry method: an HTTP token (RFC 9110) in upper
// case, since methods are case-sensitive and "get" would never match.
func checkMethod(m string) error {
	if m == "" {
		return errors.New("empty method")
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return errors.New("not a valid HTTP method")
		}
	}
	if up := strings.ToUpper(m); up != m {
		return fmt.Errorf("methods are case-sensitive; write %s", quote(up))
	}
	return nil
}
