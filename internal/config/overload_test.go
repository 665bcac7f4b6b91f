package config

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestRateLimitAndCircuitBreakerOverrides(t *testing.T) {
	c := mustParse(t, `
rate_limit: {requests_per_second: 100, burst: 200, key: "header:X-Api-Key"}
circuit_breaker: {max_requests_per_backend: 50}
routes:
  - name: plain
    path_prefix: /plain
    backends: [http://127.0.0.1:1]
  - name: slow
    path_prefix: /slow
    backends: [http://127.0.0.1:2]
    rate_limit: {requests_per_second: 0.5}
    circuit_breaker: {max_requests_per_backend: 2}
  - name: disabled
    path_prefix: /off
    backends: [http://127.0.0.1:3]
    rate_limit: {requests_per_second: 0, key: route}
    circuit_breaker: {max_requests_per_backend: 0}
`)
	plain, slow, off := c.Routes[0], c.Routes[1], c.Routes[2]
	tests := []struct {
		name      string
		got, want any
	}{
		{"top level", c.RateLimit, RateLimit{RequestsPerSecond: 100, Burst: 200, Key: "header:X-Api-Key"}},
		{"plain inherits the rate limit", plain.RateLimit, c.RateLimit},
		{"plain inherits the circuit breaker", plain.CircuitBreaker, CircuitBreaker{MaxRequestsPerBackend: 50}},
		{"fractional rate override", slow.RateLimit.RequestsPerSecond, 0.5},
		{"burst inherited beside an override", slow.RateLimit.Burst, 200},
		{"key inherited beside an override", slow.RateLimit.Key, "header:X-Api-Key"},
		{"circuit breaker override", slow.CircuitBreaker.MaxRequestsPerBackend, 2},
		{"a route turns the limit off", off.RateLimit.On(), false},
		{"a route turns the breaker off", off.CircuitBreaker.MaxRequestsPerBackend, 0},
		{"top level untouched", c.CircuitBreaker.MaxRequestsPerBackend, 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}

func TestRequestsPerSecondForms(t *testing.T) {
	tests := []struct {
		name, value string
		want        float64
	}{
		{"integer", "10", 10},
		{"fraction", "0.5", 0.5},
		{"exponent", "2e3", 2000},
		{"zero", "0", 0},
		{"leading dot", ".25", 0.25},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, "rate_limit: {requests_per_second: "+tt.value+"}\n"+minimal)
			if got := c.RateLimit.RequestsPerSecond; got != tt.want {
				t.Errorf("requests_per_second %s = %v, want %v", tt.value, got, tt.want)
			}
		})
	}
}

func TestRateLimitDepth(t *testing.T) {
	tests := []struct {
		name string
		r    RateLimit
		want int
	}{
		{"burst given", RateLimit{RequestsPerSecond: 10, Burst: 3}, 3},
		{"one second's worth", RateLimit{RequestsPerSecond: 10}, 10},
		{"rounded down", RateLimit{RequestsPerSecond: 2.7}, 2},
		{"at least one", RateLimit{RequestsPerSecond: 0.5}, 1},
		{"huge rate", RateLimit{RequestsPerSecond: 1e30}, 1<<31 - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.Depth(); got != tt.want {
				t.Errorf("Depth() = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestParseRateKey(t *testing.T) {
	tests := []struct {
		in, kind, name string
		ok             bool
	}{
		{"client_ip", RateKeyClientIP, "", true},
		{"route", RateKeyRoute, "", true},
		{"header:X-Api-Key", RateKeyHeader, "X-Api-Key", true},
		{"header:", "", "", false},
		{"header:a b", "", "", false},
		{"", "", "", false},
		{"path", "", "", false},
		{"cookie:s", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			kind, name, err := ParseRateKey(tt.in)
			if (err == nil) != tt.ok || kind != tt.kind || name != tt.name {
				t.Errorf("ParseRateKey(%q) = %q, %q, %v", tt.in, kind, name, err)
			}
		})
	}
}

// TestOverloadJSONRoundTrip checks that /config's JSON form of the new
// sections reads back as the same configuration.
func TestOverloadJSONRoundTrip(t *testing.T) {
	c := mustParse(t, `
rate_limit: {requests_per_second: 0.25, burst: 3, key: route}
routes:
  - path_prefix: /
    backends: [http://127.0.0.1:1]
    circuit_breaker: {max_requests_per_backend: 7}
`)
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse(JSON form): %v\n%s", err, data)
	}
	if !reflect.DeepEqual(back, c) {
		t.Errorf("JSON round trip differs:\n got %+v\nwant %+v", back, c)
	}
}
