package config

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestRouteOverrides(t *testing.T) {
	c := mustParse(t, `
timeouts: {upstream_header: 20s, client_idle: 90s}
limits: {max_request_body: 1MiB}
health:
  active: {interval: 5s}
retry: {attempts: 4, methods: [GET]}
routes:
  - name: plain
    path_prefix: /plain
    backends: [http://127.0.0.1:1]
  - name: custom
    path_prefix: /custom
    timeouts: {upstream_header: 1s, client_body: 2s}
    limits: {max_response_body: 1KiB}
    health: {active: {path: /ready}, passive: {consecutive_failures: 7}}
    retry: {attempts: 3, on_status: [503]}
    backends: [http://127.0.0.1:2]
`)
	top := c.Timeouts
	plain, custom := c.Routes[0], c.Routes[1]
	tests := []struct {
		name      string
		got, want any
	}{
		{"plain inherits timeouts", plain.Timeouts, top},
		{"plain inherits limits", plain.Limits, c.Limits},
		{"plain inherits health", plain.Health, c.Health},
		{"plain inherits retry", plain.Retry, c.Retry},
		{"top-level override reaches routes", plain.Timeouts.UpstreamHeader, sec(20)},
		{"route timeout override", custom.Timeouts.UpstreamHeader, sec(1)},
		{"route client_body override", custom.Timeouts.ClientBody, sec(2)},
		{"route keeps other timeouts", custom.Timeouts.UpstreamConnect, top.UpstreamConnect},
		{"route mirrors listener-wide timeouts", custom.Timeouts.ClientIdle, sec(90)},
		{"route limit override", custom.Limits.MaxResponseBody, Size(1024)},
		{"route inherits top-level limit", custom.Limits.MaxRequestBody, Size(1 << 20)},
		{"nested health override", custom.Health.Active.Path, "/ready"},
		{"health sibling inherited from top level", custom.Health.Active.Interval, sec(5)},
		{"health default kept", custom.Health.Active.Timeout, sec(2)},
		{"passive override", custom.Health.Passive.ConsecutiveFailures, 7},
		{"retry override", custom.Retry.Attempts, 3},
		{"retry list replaced", custom.Retry.OnStatus, []int{503}},
		{"retry list inherited", custom.Retry.Methods, []string{"GET"}},
		{"top level untouched", c.Retry.OnStatus, []int{502, 503, 504}},
		{"top-level health path untouched", c.Health.Active.Path, "/health"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}

func TestRouteOverridesDoNotShareSlices(t *testing.T) {
	c := mustParse(t, `
routes:
  - {path_prefix: /a, backends: [http://127.0.0.1:1]}
  - {path_prefix: /b, backends: [http://127.0.0.1:1]}
`)
	c.Routes[0].Retry.OnStatus[0] = 418
	c.Routes[0].Health.Active.ExpectStatus.Ranges[0][0] = 100
	if c.Retry.OnStatus[0] != 502 || c.Routes[1].Retry.OnStatus[0] != 502 {
		t.Errorf("routes share the on_status slice")
	}
	if c.Health.Active.ExpectStatus.Ranges[0][0] != 200 || c.Routes[1].Health.Active.ExpectStatus.Ranges[0][0] != 200 {
		t.Errorf("routes share the expect_status ranges")
	}
}

func TestListenerWideInRoute(t *testing.T) {
	const listenerWide = ": \"1s\": listener-wide setting, not allowed in a route"
	tests := []struct {
		name string
		key  string
		want string
	}{
		{"client_header", "timeouts: {client_header: 1s}", "routes[0].timeouts.client_header" + listenerWide},
		{"client_idle", "timeouts: {client_idle: 1s}", "routes[0].timeouts.client_idle" + listenerWide},
		{"shutdown_delay", "timeouts: {shutdown_delay: 1s}", "routes[0].timeouts.shutdown_delay" + listenerWide},
		{"shutdown", "timeouts: {shutdown: 1s}", "routes[0].timeouts.shutdown" + listenerWide},
		{"max_header_bytes", "limits: {max_header_bytes: 1KiB}", `routes[0].limits.max_header_bytes: "1KiB": listener-wide setting, not allowed in a route`},
		{"top-level key in a route", `listen: ":1"`, `routes[0].listen: ":1": unknown key`},
		{"admin in a route", "admin: {token: x}", `routes[0].admin: {"token": "x"}: unknown key`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := problems(t, "routes:\n  - path_prefix: /\n    backends: [http://127.0.0.1:1]\n    "+tt.key+"\n")
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("problems = %q, want [%q]", got, tt.want)
			}
		})
	}
}

func TestRouteNames(t *testing.T) {
	tests := []struct {
		name    string
		routes  string
		want    []string // names, when valid
		problem []string
	}{
		{
			name:   "defaults to host and path_prefix",
			routes: "[{path_prefix: /api, backends: [http://a]}, {path_prefix: /api, host: Example.COM:8080, backends: [http://a]}]",
			want:   []string{"/api", "example.com/api"},
		},
		{
			name:   "explicit names kept",
			routes: "[{name: api, path_prefix: /api, backends: [http://a]}, {name: web, path_prefix: /, backends: [http://a]}]",
			want:   []string{"api", "web"},
		},
		{
			name:   "empty name defaults",
			routes: `[{name: "", path_prefix: /x, backends: [http://a]}]`,
			want:   []string{"/x"},
		},
		{
			name:    "duplicate explicit name",
			routes:  "[{name: api, path_prefix: /a, backends: [http://a]}, {name: api, path_prefix: /b, backends: [http://a]}]",
			problem: []string{`routes[1].name: "api": name already used by routes[0]; names must be unique (the default is host + path_prefix)`},
		},
		{
			name:    "explicit name equal to a default one",
			routes:  "[{path_prefix: /a, backends: [http://a]}, {name: /a, path_prefix: /b, backends: [http://a]}]",
			problem: []string{`routes[1].name: "/a": name already used by routes[0]; names must be unique (the default is host + path_prefix)`},
		},
		{
			name:    "same host and path_prefix",
			routes:  "[{path_prefix: /a, host: a.example, backends: [http://a]}, {path_prefix: /a, host: A.example:80, backends: [http://a]}]",
			problem: []string{`routes[1].path_prefix: "/a": routes[0] has the same host and path_prefix`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := "routes: " + tt.routes + "\n"
			if tt.problem != nil {
				if got := problems(t, doc); !slices.Equal(got, tt.problem) {
					t.Errorf("problems = %q, want %q", got, tt.problem)
				}
				return
			}
			c := mustParse(t, doc)
			var got []string
			for _, r := range c.Routes {
				got = append(got, r.Name)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("names = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRouteSectionProblems(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{
			name: "override clashes with an inherited value",
			doc: `routes:
  - path_prefix: /
    health: {passive: {ejection_time: 10m}}
    backends: [http://127.0.0.1:1]
`,
			want: []string{`routes[0].health.passive.max_ejection_time: "5m": must be at least ejection_time (10m)`},
		},
		{
			name: "same bad value written at both levels is reported at both",
			doc: `retry: {attempts: 0}
routes:
  - path_prefix: /
    retry: {attempts: 0}
    backends: [http://127.0.0.1:1]
`,
			want: []string{
				`retry.attempts: "0": must be at least 1`,
				`routes[0].retry.attempts: "0": must be at least 1`,
			},
		},
		{
			name: "top-level decode problem not repeated in routes",
			doc: `retry: {on_status: [502, x]}
health: {active: {expect_status: "9"}}
routes:
  - path_prefix: /
    backends: [http://127.0.0.1:1]
`,
			want: []string{
				`retry.on_status[1]: "x": expected an integer, got a string`,
				`health.active.expect_status: "9": status 9 is outside 100-599`,
			},
		},
		{
			name: "route zero values",
			doc: `routes:
  - path_prefix: /
    timeouts: {upstream_connect: 0s}
    limits: {max_request_body: 0}
    health: {active: {path: health}}
    backends: [http://127.0.0.1:1]
`,
			want: []string{
				`routes[0].timeouts.upstream_connect: "0s": must be greater than 0`,
				`routes[0].limits.max_request_body: "0": must be greater than 0`,
				`routes[0].health.active.path: "health": must start with "/" ("" disables active checks)`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := problems(t, tt.doc); !slices.Equal(got, tt.want) {
				t.Errorf("problems:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestHashKeyDefault: a hash route without hash_key hashes client_ip, and
// says so where the running configuration is shown; other balancers have
// none.
func TestHashKeyDefault(t *testing.T) {
	c, err := Parse([]byte("routes:\n  - path_prefix: /a\n    balancer: hash\n    backends: [http://127.0.0.1:1]\n  - path_prefix: /b\n    backends: [http://127.0.0.1:1]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Routes[0].HashKey; got != "client_ip" {
		t.Errorf("hash route's hash_key = %q, want client_ip", got)
	}
	js, err := json.Marshal(c.Routes)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(js), `"hash_key":"client_ip"`); n != 1 {
		t.Errorf("/config's routes show hash_key %d times, want once (the hash route): %s", n, js)
	}
}
