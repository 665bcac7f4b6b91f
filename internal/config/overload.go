package config

import (
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"

	"github.com/sluice-proxy/sluice/internal/wire"
	"go.yaml.in/yaml/v3"
)

// The kinds of a rate_limit key.
const (
	RateKeyClientIP = "client_ip"
	RateKeyHeader   = "header"
	RateKeyRoute    = "route"
)

// ParseRateKey splits a rate_limit key into its kind and, for header, the
// header's name as written.
func ParseRateKey(s string) (kind, name string, err error) {
	switch {
	case s == RateKeyClientIP:
		return RateKeyClientIP, "", nil
	case s == RateKeyRoute:
		return RateKeyRoute, "", nil
	case strings.HasPrefix(s, "header:"):
		if name = s[len("header:"):]; !wire.IsToken([]byte(name)) {
			return "", "", errors.New("header:<Name> needs a header field name (a token)")
		}
		return RateKeyHeader, name, nil
	}
	return "", "", errors.New("must be client_ip, header:<Name> or route")
}

// On reports whether the rate limit is on (RequestsPerSecond above 0).
func (r RateLimit) On() bool { return r.RequestsPerSecond > 0 }

// Depth returns the bucket depth in effect: Burst, or when it is 0 one
// second's worth of requests (RequestsPerSecond rounded down), at least 1.
func (r RateLimit) Depth() int {
	if r.Burst > 0 {
		return r.Burst
	}
	if r.RequestsPerSecond >= math.MaxInt32 {
		return math.MaxInt32
	}
	return max(1, int(r.RequestsPerSecond))
}

// number decodes a scalar integer or decimal number (1, 0.5, 2e3) into a
// float64 field; YAML's .nan and .inf are refused.
func (d *decoder) number(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" && n.ShortTag() != "!!float" {
		d.failNode(n, path, reason("expected a number, got %s", kindName(n)))
		return
	}
	var f float64
	if err := n.Decode(&f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		d.failNode(n, path, reason("not a finite number"))
		return
	}
	v.SetFloat(f)
}

func (v *validator) rateLimit(p string, r RateLimit) {
	if r.RequestsPerSecond < 0 {
		path := p + ".requests_per_second"
		v.add(path, v.value(path, formatNumber(r.RequestsPerSecond)), reason("must not be negative"))
	}
	v.between(p+".burst", r.Burst, 0, -1)
	if _, _, err := ParseRateKey(r.Key); err != nil {
		v.add(p+".key", v.value(p+".key", r.Key), err.Error())
	}
}

func (v *validator) circuitBreaker(p string, c CircuitBreaker) {
	v.between(p+".max_requests_per_backend", c.MaxRequestsPerBackend, 0, -1)
}

// formatNumber writes f as the shortest decimal that reads back as f.
func formatNumber(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
