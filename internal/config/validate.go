package config

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
)

// provision fills in what derives from the decoded values: each route's
// host in normal form, the default route names, and TrustedPrefixes. A value
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
	}
}

// validator collects the problems of a provisioned Config.
type validator struct {
	errs []FieldError
	// d is the decoder that produced the Config, or nil. It tells which
	// paths had decode problems (not to be reported twice) and which paths
	// the document wrote.
	d *decoder
}

// validate checks every value of c and returns every problem. d, if not
// nil, is the decoder that produced c.
func validate(c *Config, d *decoder) []FieldError {
	v := &validator{d: d}
	if err := checkListen(c.Listen); err != nil {
		v.add("listen", quote(c.Listen), err.Error())
	}
	if c.Admin.Listen != "" {
		if err := checkListen(c.Admin.Listen); err != nil {
			v.add("admin.listen", quote(c.Admin.Listen), err.Error())
		} else if c.Admin.Listen == c.Listen && !strings.HasSuffix(c.Listen, ":0") {
			v.add("admin.listen", quote(c.Admin.Listen), "same address as listen")
		}
	}
	for i, s := range c.TrustedProxies {
		if _, err := parsePrefix(s); err != nil {
			v.add("trusted_proxies["+strconv.Itoa(i)+"]", quote(s), err.Error())
		}
	}
	if c.AccessLog == "" {
		v.add("access_log", quote(""), `must not be empty; write "off" to turn the access log off`)
	}
	v.timeouts("timeouts", c.Timeouts, false)
	v.limits("limits", c.Limits, false)
	v.health("health", c.Health)
	v.retry("retry", c.Retry)

	// A route inherits the top-level sections; a bad top-level value is
	// reported once, at the top level, not again in each route.
	top := make(map[string]bool, len(v.errs))
	for _, e := range v.errs {
		top[e.Error()] = true
	}
	if len(c.Routes) == 0 {
		v.add("routes", "", "at least one route is required")
	}
	for i := range c.Routes {
		v.route(&c.Routes[i], "routes["+strconv.Itoa(i)+"]", top)
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

func (v *validator) add(path, value, problem string) {
	if v.skip(path) {
		return
	}
	v.errs = append(v.errs, FieldError{Path: path, Value: value, Problem: problem})
}

func (v *validator) route(r *Route, p string, top map[string]bool) {
	switch err := checkPathPrefix(r.PathPrefix); {
	case r.PathPrefix == "":
		v.add(p+".path_prefix", "", `required; write "/" to match every path`)
	case err != nil:
		v.add(p+".path_prefix", quote(r.PathPrefix), err.Error())
	}
	if _, err := normaliseHost(r.Host); err != nil {
		v.add(p+".host", quote(r.Host), err.Error())
	}
	if strings.ContainsFunc(r.Name, unicode.IsControl) {
		v.add(p+".name", quote(r.Name), "must not contain control characters")
	}
	if r.Balancer != defaultBalancer {
		v.add(p+".balancer", quote(r.Balancer), "unknown balancer; only round_robin is supported")
	}
	if len(r.Backends) == 0 {
		v.add(p+".backends", "", "at least one backend is required")
	}
	seen := make(map[string]int, len(r.Backends))
	for j, b := range r.Backends {
		bp := p + ".backends[" + strconv.Itoa(j) + "]"
		if _, err := parseBackendURL(b.URL); b.URL == "" {
			v.add(bp, "", "url is required")
		} else if err != nil {
			v.add(bp, quote(b.URL), err.Error())
		} else if k, dup := seen[b.Origin()+b.PathPrefix()]; dup {
			v.add(bp, quote(b.URL), "same backend as backends["+strconv.Itoa(k)+"]")
		} else {
			seen[b.Origin()+b.PathPrefix()] = j
		}
		if b.Weight < 1 || b.Weight > 1000 {
			v.add(bp+".weight", quote(strconv.Itoa(b.Weight)), "must be 1-1000")
		}
	}

	// The route's sections are the top-level ones with its overrides
	// applied. A problem with an inherited value is the top level's, and has
	// been reported (or skipped) there already.
	sub := &validator{d: v.d}
	sub.timeouts(p+".timeouts", r.Timeouts, true)
	sub.limits(p+".limits", r.Limits, true)
	sub.health(p+".health", r.Health)
	sub.retry(p+".retry", r.Retry)
	for _, e := range sub.errs {
		inherited := e
		inherited.Path = strings.TrimPrefix(e.Path, p+".")
		if v.written(e.Path) || !top[inherited.Error()] && !v.skip(inherited.Path) {
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
				v.add(p+".path_prefix", quote(r.PathPrefix), "routes["+strconv.Itoa(j)+"] has the same host and path_prefix")
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
			v.add(p+".name", quote(r.Name), "name already used by routes["+strconv.Itoa(j)+"]; names must be unique (the default is host + path_prefix)")
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
	if !route && l.MaxHeaderBytes <= 0 {
		v.add(p+".max_header_bytes", quote(l.MaxHeaderBytes.String()), "must be greater than 0")
	}
	if l.MaxRequestBody <= 0 {
		v.add(p+".max_request_body", quote(l.MaxRequestBody.String()), "must be greater than 0")
	}
	if l.MaxResponseBody <= 0 {
		v.add(p+".max_response_body", quote(l.MaxResponseBody.String()), "must be greater than 0")
	}
}

func (v *validator) health(p string, h Health) {
	a, ap := h.Active, p+".active"
	if a.Path != "" {
		if err := checkProbePath(a.Path); err != nil {
			v.add(ap+".path", quote(a.Path), err.Error())
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
		v.add(sp+".max_ejection_time", quote(s.MaxEjectionTime.String()),
			"must be at least ejection_time ("+s.EjectionTime.String()+")")
	}
	v.between(sp+".max_ejected_percent", s.MaxEjectedPercent, 0, 100)
}

func (v *validator) retry(p string, r Retry) {
	v.between(p+".attempts", r.Attempts, 1, -1)
	v.positive(p+".total_timeout", r.TotalTimeout)
	for i, code := range r.OnStatus {
		if code < 100 || code > 599 {
			v.add(p+".on_status["+strconv.Itoa(i)+"]", quote(strconv.Itoa(code)), "must be a status from 100 to 599")
		}
	}
	for i, m := range r.Methods {
		if err := checkMethod(m); err != nil {
			v.add(p+".methods["+strconv.Itoa(i)+"]", quote(m), err.Error())
		}
	}
	v.between(p+".budget_percent", r.BudgetPercent, 0, 100)
	v.between(p+".budget_min_per_second", r.BudgetMinPerSecond, 0, -1)
}

// positive reports a duration that is not greater than zero.
func (v *validator) positive(path string, d Duration) {
	if d <= 0 {
		v.add(path, quote(d.String()), "must be greater than 0")
	}
}

// between reports n outside [lo, hi]; hi < 0 means no upper bound.
func (v *validator) between(path string, n, lo, hi int) {
	switch {
	case hi < 0 && n < lo:
		v.add(path, quote(strconv.Itoa(n)), "must be at least "+strconv.Itoa(lo))
	case hi >= 0 && (n < lo || n > hi):
		v.add(path, quote(strconv.Itoa(n)), "must be "+strconv.Itoa(lo)+"-"+strconv.Itoa(hi))
	}
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
		return errors.New("methods are case-sensitive; write " + quote(up))
	}
	return nil
}
