package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// minimal is the smallest valid configuration.
const minimal = `
routes:
  - path_prefix: /
    backends: [http://127.0.0.1:3001]
`

func mustParse(t *testing.T, doc string) *Config {
	t.Helper()
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("Parse: unexpected error:\n%v", err)
	}
	return c
}

// problems parses doc, which must be invalid, and returns its problem lines.
func problems(t *testing.T, doc string) []string {
	t.Helper()
	c, err := Parse([]byte(doc))
	if err == nil {
		t.Fatalf("Parse: no error; config %+v", c)
	}
	if c != nil {
		t.Errorf("Parse returned a config with an error")
	}
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Parse error is %T, want *Errors", err)
	}
	return errs.Lines()
}

func sec(n int) Duration { return Duration(time.Duration(n) * time.Second) }

func TestDefaults(t *testing.T) {
	c := mustParse(t, minimal)
	want := &Config{
		Listen:         "127.0.0.1:8080",
		Admin:          Admin{Listen: "127.0.0.1:9901"},
		TrustedProxies: []string{},
		AccessLog:      "stderr",
		Timeouts: Timeouts{
			ClientHeader: sec(10), ClientBody: sec(15), ClientIdle: sec(60),
			UpstreamConnect: sec(3), UpstreamHeader: sec(15), UpstreamBody: sec(30),
			ShutdownDelay: 0, Shutdown: sec(30),
		},
		Limits: Limits{MaxRequestBody: 16 << 20, MaxResponseBody: 64 << 20, MaxHeaderBytes: 64 << 10},
		Health: Health{
			Active: ActiveHealth{
				Path: "/health", Interval: sec(10), Timeout: sec(2),
				HealthyThreshold: 2, UnhealthyThreshold: 3,
				ExpectStatus: StatusRange{Text: "200-399", Ranges: [][2]int{{200, 399}}},
			},
			Passive: PassiveHealth{
				ConsecutiveFailures: 3,
				FailureStatus:       StatusRange{Text: "500-599", Ranges: [][2]int{{500, 599}}},
				EjectionTime:        sec(30), MaxEjectionTime: sec(300), MaxEjectedPercent: 50,
			},
		},
		Retry: Retry{
			Attempts: 2, TotalTimeout: sec(5), Backoff: Duration(50 * time.Millisecond),
			OnStatus: []int{502, 503, 504}, Methods: []string{"GET", "HEAD", "OPTIONS", "PUT", "DELETE"},
			MaxBody: 1 << 20, BudgetPercent: 20, BudgetMinPerSecond: 3,
		},
		TrustedPrefixes: nil,
	}
	want.Routes = []Route{{
		Name: "/", PathPrefix: "/", Balancer: "round_robin",
		Backends: []Backend{{URL: "http://127.0.0.1:3001", Weight: 1}},
		Timeouts: want.Timeouts, Limits: want.Limits, Health: want.Health, Retry: want.Retry,
	}}
	if len(c.TrustedPrefixes) != 0 {
		t.Errorf("TrustedPrefixes = %v, want none", c.TrustedPrefixes)
	}
	c.TrustedPrefixes = nil
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", c, want)
	}
}

func TestAdminListen(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{"absent", "", "127.0.0.1:9901"},
		{"admin without listen", "admin: {token: x}", "127.0.0.1:9901"},
		{"empty admin mapping", "admin:", "127.0.0.1:9901"},
		{"explicit empty disables", `admin: {listen: ""}`, ""},
		{"set", `admin: {listen: "0.0.0.0:9000"}`, "0.0.0.0:9000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, tt.doc+"\n"+minimal)
			if c.Admin.Listen != tt.want {
				t.Errorf("admin.listen = %q, want %q", c.Admin.Listen, tt.want)
			}
		})
	}
}

func TestProblems(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{
			name: "empty file",
			doc:  "",
			want: []string{"routes: at least one route is required"},
		},
		{
			name: "comments only",
			doc:  "# nothing yet\n",
			want: []string{"routes: at least one route is required"},
		},
		{
			name: "empty routes",
			doc:  "routes: []",
			want: []string{"routes: at least one route is required"},
		},
		{
			name: "SPEC example",
			doc: `routes:
  - path_prefix: /a
    backends: [http://127.0.0.1:3001]
  - path_prefix: /b
    backends: [htp://x]
`,
			want: []string{`routes[1].backends[0]: "htp://x": scheme must be http or https`},
		},
		{
			name: "unknown key, ftp backend and bad duration together",
			doc: `listen: "127.0.0.1:8080"
colour: blue
timeouts:
  upstream_header: 5 parsecs
routes:
  - path_prefix: /
    backends:
      - ftp://files.example.com
`,
			want: []string{
				"colour: unknown key",
				`timeouts.upstream_header: "5 parsecs": not a duration (write a Go duration such as 250ms, 5s or 1m)`,
				`routes[0].backends[0]: "ftp://files.example.com": scheme must be http or https`,
			},
		},
		{
			name: "unknown keys at several depths",
			doc: `foo: 1
admin: {listen: "127.0.0.1:9901", bar: 2}
health:
  active: {baz: 3}
routes:
  - path_prefix: /
    qux: 4
    retry: {attempts: 3, x: 5}
    backends:
      - url: http://127.0.0.1:3001
        port: 3001
`,
			want: []string{
				"foo: unknown key",
				"admin.bar: unknown key",
				"health.active.baz: unknown key",
				"routes[0].qux: unknown key",
				"routes[0].retry.x: unknown key",
				"routes[0].backends[0].port: unknown key",
			},
		},
		{
			name: "unknown key suggests a near one",
			doc:  "routes: [{path_prefx: /, backends: [http://127.0.0.1:3001]}]",
			want: []string{
				`routes[0].path_prefix: required; write "/" to match every path`,
				"routes[0].path_prefx: unknown key (did you mean path_prefix?)",
			},
		},
		{
			name: "missing path_prefix and backends",
			doc:  "routes: [{name: x}]",
			want: []string{
				`routes[0].path_prefix: required; write "/" to match every path`,
				"routes[0].backends: at least one backend is required",
			},
		},
		{
			name: "wrong types",
			doc: `listen: [a]
admin: "x"
trusted_proxies: 10.0.0.0/8
timeouts: {client_idle: true}
limits: {max_request_body: {a: 1}}
retry: {attempts: "3", on_status: [five]}
routes:
  - path_prefix: /
    strip_prefix: "yes"
    backends: [[http://a]]
`,
			want: []string{
				"listen: expected a string, got a list",
				`admin: "x": expected a mapping, got a string`,
				`trusted_proxies: "10.0.0.0/8": expected a list, got a string`,
				`timeouts.client_idle: "true": expected a duration, got a boolean`,
				"limits.max_request_body: expected a size, got a mapping",
				`retry.attempts: "3": expected an integer, got a string`,
				`retry.on_status[0]: "five": expected an integer, got a string`,
				`routes[0].strip_prefix: "yes": expected true or false, got a string`,
				"routes[0].backends[0]: expected a URL or a mapping with url and weight, got a list",
			},
		},
		{
			name: "null single values",
			doc:  "listen:\n" + minimal,
			want: []string{"listen: no value; remove the key to get the default, or give a value"},
		},
		{
			name: "duplicate key",
			doc:  "listen: \"127.0.0.1:1\"\nlisten: \"127.0.0.1:2\"\n" + minimal,
			want: []string{"listen: duplicate key (first at line 1)"},
		},
		{
			name: "more than one document",
			doc:  minimal + "---\n" + minimal,
			want: []string{"the file holds more than one YAML document; write one"},
		},
		{
			name: "not a mapping",
			doc:  "- a\n- b\n",
			want: []string{"expected a mapping, got a list"},
		},
		{
			name: "route not a mapping",
			doc:  "routes: [/api]",
			want: []string{`routes[0]: "/api": expected a route mapping, got a string`},
		},
		{
			name: "empty list item",
			doc:  "routes: [{path_prefix: /, backends: [~]}]",
			want: []string{"routes[0].backends[0]: empty list item"},
		},
		{
			name: "listen values",
			doc: `listen: "localhost"
admin: {listen: "127.0.0.1:99999"}
` + minimal,
			want: []string{
				`listen: "localhost": not host:port (e.g. "127.0.0.1:8080" or ":8080")`,
				`admin.listen: "127.0.0.1:99999": port must be a number 0-65535`,
			},
		},
		{
			name: "admin listen same as listen",
			doc:  "listen: \"127.0.0.1:8080\"\nadmin: {listen: \"127.0.0.1:8080\"}\n" + minimal,
			want: []string{`admin.listen: "127.0.0.1:8080": same address as listen`},
		},
		{
			name: "trusted proxies",
			doc:  "trusted_proxies: [10.0.0.0/8, 10.0.0.0/33, example.com, \"fe80::1%eth0\"]\n" + minimal,
			want: []string{
				`trusted_proxies[1]: "10.0.0.0/33": not a CIDR (e.g. 10.0.0.0/8) or an IP address`,
				`trusted_proxies[2]: "example.com": not a CIDR (e.g. 10.0.0.0/8) or an IP address`,
				`trusted_proxies[3]: "fe80::1%eth0": an IPv6 zone is not allowed`,
			},
		},
		{
			name: "access_log empty",
			doc:  "access_log: \"\"\n" + minimal,
			want: []string{`access_log: "": must not be empty; write "off" to turn the access log off`},
		},
		{
			name: "zero and negative values",
			doc: `timeouts: {client_header: 0s, shutdown: 0s, upstream_body: -5s}
limits: {max_header_bytes: 0, max_response_body: -1}
health:
  active: {interval: 0s, healthy_threshold: 0, unhealthy_threshold: -1}
  passive: {consecutive_failures: 0, max_ejected_percent: 101, ejection_time: 1m, max_ejection_time: 30s}
retry: {attempts: 0, total_timeout: 0s, budget_percent: -1, budget_min_per_second: -1, on_status: [99, 600]}
` + minimal,
			want: []string{
				`timeouts.client_header: "0s": must be greater than 0`,
				`timeouts.shutdown: "0s": must be greater than 0`,
				`timeouts.upstream_body: "-5s": must not be negative`,
				`limits.max_header_bytes: "0B": must be greater than 0`,
				`limits.max_response_body: "-1": must not be negative`,
				`health.active.interval: "0s": must be greater than 0`,
				`health.active.healthy_threshold: "0": must be at least 1`,
				`health.active.unhealthy_threshold: "-1": must be at least 1`,
				`health.passive.consecutive_failures: "0": must be at least 1`,
				`health.passive.max_ejected_percent: "101": must be 0-100`,
				`health.passive.max_ejection_time: "30s": must be at least ejection_time (1m0s)`,
				`retry.attempts: "0": must be at least 1`,
				`retry.total_timeout: "0s": must be greater than 0`,
				`retry.budget_percent: "-1": must be 0-100`,
				`retry.budget_min_per_second: "-1": must be at least 0`,
				`retry.on_status[0]: "99": must be a status from 100 to 599`,
				`retry.on_status[1]: "600": must be a status from 100 to 599`,
			},
		},
		{
			name: "retry methods",
			doc:  "retry: {methods: [GET, get, \"BAD METHOD\", \"\"]}\n" + minimal,
			want: []string{
				`retry.methods[1]: "get": methods are case-sensitive; write "GET"`,
				`retry.methods[2]: "BAD METHOD": not a valid HTTP method`,
				`retry.methods[3]: "": empty method`,
			},
		},
		{
			name: "route fields",
			doc: `routes:
  - path_prefix: api
    backends: [http://127.0.0.1:1]
  - path_prefix: /a?b
    backends: [http://127.0.0.1:1]
  - path_prefix: /a/../b
    backends: [http://127.0.0.1:1]
  - path_prefix: /c
    host: http://example.com
    balancer: random
    backends: [http://127.0.0.1:1]
`,
			want: []string{
				`routes[0].path_prefix: "api": must start with "/"`,
				`routes[1].path_prefix: "/a?b": must not contain "?" or "#"`,
				`routes[2].path_prefix: "/a/../b": must not contain "." or ".." segments (request paths are cleaned before matching)`,
				`routes[3].host: "http://example.com": must be a host name, not a URL`,
				`routes[3].balancer: "random": unknown balancer; only round_robin is supported`,
			},
		},
		{
			name: "backend forms and checks",
			doc: `routes:
  - path_prefix: /
    backends:
      - http://127.0.0.1:1
      - {url: http://127.0.0.1:2, weight: 0}
      - {url: http://127.0.0.1:3, weight: 1001}
      - {weight: 2}
      - http://127.0.0.1:1/
      - http://user:pw@127.0.0.1:4
      - http://127.0.0.1:5/?q=1
      - http://127.0.0.1:6/#frag
      - http:///path
      - 127.0.0.1:7
      - http://127.0.0.1:0
`,
			want: []string{
				`routes[0].backends[1].weight: "0": must be 1-1000`,
				`routes[0].backends[2].weight: "1001": must be 1-1000`,
				`routes[0].backends[3]: url is required`,
				`routes[0].backends[4]: "http://127.0.0.1:1/": same backend as backends[0]`,
				`routes[0].backends[5]: "http://user:pw@127.0.0.1:4": userinfo is not allowed (credentials would show in logs and metrics)`,
				`routes[0].backends[6]: "http://127.0.0.1:5/?q=1": query is not allowed`,
				`routes[0].backends[7]: "http://127.0.0.1:6/#frag": fragment is not allowed`,
				`routes[0].backends[8]: "http:///path": host is required`,
				`routes[0].backends[9]: "127.0.0.1:7": scheme must be http or https (write "http://127.0.0.1:7")`,
				`routes[0].backends[10]: "http://127.0.0.1:0": port must be 1-65535`,
			},
		},
		{
			name: "bad value reported once when a route inherits it",
			doc: `retry: {attempts: 0}
routes:
  - path_prefix: /a
    backends: [http://127.0.0.1:1]
  - path_prefix: /b
    retry: {attempts: -1}
    backends: [http://127.0.0.1:1]
`,
			want: []string{
				`retry.attempts: "0": must be at least 1`,
				`routes[1].retry.attempts: "-1": must be at least 1`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := problems(t, tt.doc)
			if !slices.Equal(got, tt.want) {
				t.Errorf("problems:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestAccessLog(t *testing.T) {
	const offProblem = `YAML reads a bare off as a boolean; write access_log: "off" with the quotes to turn the access log off`
	tests := []struct {
		name    string
		value   string
		want    string // the access log, when valid
		problem string // the problem line, when not
	}{
		{name: "default", value: "", want: "stderr"},
		{name: "quoted off", value: `"off"`, want: "off"},
		{name: "single-quoted off", value: `'off'`, want: "off"},
		{name: "stdout", value: "stdout", want: "stdout"},
		{name: "file", value: "/var/log/sluice.log", want: "/var/log/sluice.log"},
		{name: "bare off", value: "off", problem: `access_log: "off": ` + offProblem},
		{name: "bare false", value: "false", problem: `access_log: "false": YAML reads a bare false as a boolean; write access_log: "off" with the quotes to turn the access log off`},
		{name: "bare no", value: "no", problem: `access_log: "no": YAML reads a bare no as a boolean; write access_log: "off" with the quotes to turn the access log off`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := minimal
			if tt.value != "" {
				doc = "access_log: " + tt.value + "\n" + minimal
			}
			if tt.problem != "" {
				got := problems(t, doc)
				if len(got) != 1 || got[0] != tt.problem {
					t.Errorf("problems = %q, want [%q]", got, tt.problem)
				}
				return
			}
			if c := mustParse(t, doc); c.AccessLog != tt.want {
				t.Errorf("access_log = %q, want %q", c.AccessLog, tt.want)
			}
		})
	}
}

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
	tests := []struct {
		name string
		key  string
		path string
	}{
		{"client_header", "timeouts: {client_header: 1s}", "routes[0].timeouts.client_header"},
		{"client_idle", "timeouts: {client_idle: 1s}", "routes[0].timeouts.client_idle"},
		{"shutdown_delay", "timeouts: {shutdown_delay: 1s}", "routes[0].timeouts.shutdown_delay"},
		{"shutdown", "timeouts: {shutdown: 1s}", "routes[0].timeouts.shutdown"},
		{"max_header_bytes", "limits: {max_header_bytes: 1KiB}", "routes[0].limits.max_header_bytes"},
		{"top-level key in a route", "listen: \":1\"", "routes[0].listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := problems(t, "routes:\n  - path_prefix: /\n    backends: [http://127.0.0.1:1]\n    "+tt.key+"\n")
			want := tt.path + ": listener-wide setting, not allowed in a route"
			if tt.name == "top-level key in a route" {
				want = tt.path + ": unknown key"
			}
			if len(got) != 1 || got[0] != want {
				t.Errorf("problems = %q, want [%q]", got, want)
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

func TestProblemsInDocumentOrder(t *testing.T) {
	got := problems(t, `routes:
  - path_prefix: /
    backends: [htp://x]
retry: {attempts: 0}
zzz: 1
listen: nope
`)
	want := []string{
		`routes[0].backends[0]: "htp://x": scheme must be http or https`,
		`retry.attempts: "0": must be at least 1`,
		"zzz: unknown key",
		`listen: "nope": not host:port (e.g. "127.0.0.1:8080" or ":8080")`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n got %q\nwant %q", got, want)
	}
}

func TestErrorsFormat(t *testing.T) {
	_, err := Parse([]byte("foo: 1\nbar: 2\n" + minimal))
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %T is not *Errors", err)
	}
	if got, want := err.Error(), "foo: unknown key\nbar: unknown key"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got := errs.List[1]; got.Line != 2 || got.Column != 1 || got.Path != "bar" {
		t.Errorf("second problem = %+v, want bar at 2:1", got)
	}
}

func TestYAMLAnchorsAndMerge(t *testing.T) {
	c := mustParse(t, `
routes:
  - &a
    name: a
    path_prefix: /a
    backends: &backends [http://127.0.0.1:1, http://127.0.0.1:2]
    retry: {attempts: 5}
  - <<: *a
    name: b
    path_prefix: /b
  - name: c
    path_prefix: /c
    backends: *backends
`)
	b := c.Routes[1]
	if b.Name != "b" || b.PathPrefix != "/b" || b.Retry.Attempts != 5 || len(b.Backends) != 2 {
		t.Errorf("merged route = %+v", b)
	}
	if got := c.Routes[2].Backends; len(got) != 2 || got[1].URL != "http://127.0.0.1:2" {
		t.Errorf("aliased backends = %+v", got)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(path, []byte(minimal), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err != nil {
		t.Errorf("Load: %v", err)
	}
	_, err := Load(filepath.Join(dir, "missing.yaml"))
	var errs *Errors
	if !errors.As(err, &errs) || len(errs.List) != 1 {
		t.Fatalf("Load of a missing file: %v, want one problem in *Errors", err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file: %v is not fs.ErrNotExist", err)
	}
	if !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("Load error %q does not name the file", err)
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
			want: []string{`routes[0].health.passive.max_ejection_time: "5m0s": must be at least ejection_time (10m0s)`},
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
				`routes[0].limits.max_request_body: "0B": must be greater than 0`,
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

func TestMergeKeyPrecedence(t *testing.T) {
	c := mustParse(t, `
routes:
  - &base
    path_prefix: /a
    strip_prefix: true
    backends: [http://127.0.0.1:1]
  - <<: *base
    strip_prefix: false
    path_prefix: /b
`)
	if r := c.Routes[1]; r.StripPrefix || r.PathPrefix != "/b" {
		t.Errorf("explicit keys must override merged ones: %+v", r)
	}
}

func TestAliasBomb(t *testing.T) {
	// Each route's retry merges the previous one ten times: walking the
	// last one naively would visit 10^8 mappings.
	doc := "routes:\n  - {path_prefix: /0, backends: [http://127.0.0.1:1], retry: &r0 {attempts: 2}}\n"
	for i := 1; i <= 8; i++ {
		prev := "*r" + strconv.Itoa(i-1)
		doc += "  - {path_prefix: /" + strconv.Itoa(i) + ", backends: [http://127.0.0.1:1], retry: &r" + strconv.Itoa(i) +
			" {<<: [" + strings.Repeat(prev+", ", 9) + prev + "]}}\n"
	}
	got := problems(t, doc)
	if !slices.Contains(got, "the document is too large or uses too many aliases") {
		t.Errorf("problems = %q, want the aliasing problem", got[:min(len(got), 5)])
	}
}
