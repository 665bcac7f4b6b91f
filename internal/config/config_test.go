package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
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
		TLS:            TLS{Certificates: []Certificate{}, MinVersion: "1.2", HTTP2: true, MaxConcurrentStreams: 100},
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
		RateLimit:       RateLimit{Key: "client_ip"},
		Discovery:       Discovery{Resolvers: []string{}, Refresh: sec(30)},
		TrustedPrefixes: nil,
	}
	want.Routes = []Route{{
		Name: "/", PathPrefix: "/", Balancer: "round_robin",
		Backends: []Backend{{URL: "http://127.0.0.1:3001", Weight: 1}},
		Timeouts: want.Timeouts, Limits: want.Limits, Health: want.Health, Retry: want.Retry,
		RateLimit: want.RateLimit, CircuitBreaker: want.CircuitBreaker,
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
			want: []string{"routes: (missing): at least one route is required"},
		},
		{
			name: "comments only",
			doc:  "# nothing yet\n",
			want: []string{"routes: (missing): at least one route is required"},
		},
		{
			name: "empty routes",
			doc:  "routes: []",
			want: []string{"routes: []: at least one route is required"},
		},
		{
			name: "documented example",
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
				`colour: "blue": unknown key`,
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
				`foo: "1": unknown key`,
				`admin.bar: "2": unknown key`,
				`health.active.baz: "3": unknown key`,
				`routes[0].qux: "4": unknown key`,
				`routes[0].retry.x: "5": unknown key`,
				`routes[0].backends[0].port: "3001": unknown key`,
			},
		},
		{
			name: "unknown key suggests a near one",
			doc:  "routes: [{path_prefx: /, backends: [http://127.0.0.1:3001]}]",
			want: []string{
				`routes[0].path_prefix: (missing): required; write "/" to match every path`,
				`routes[0].path_prefx: "/": unknown key (did you mean path_prefix?)`,
			},
		},
		{
			name: "missing path_prefix and backends",
			doc:  "routes: [{name: x}]",
			want: []string{
				`routes[0].path_prefix: (missing): required; write "/" to match every path`,
				"routes[0].backends: (missing): at least one backend is required",
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
				`listen: ["a"]: expected a string, got a list`,
				`admin: "x": expected a mapping, got a string`,
				`trusted_proxies: "10.0.0.0/8": expected a list, got a string`,
				`timeouts.client_idle: "true": expected a duration, got a boolean`,
				`limits.max_request_body: {"a": "1"}: expected a size, got a mapping`,
				`retry.attempts: "3": expected an integer, got a string`,
				`retry.on_status[0]: "five": expected an integer, got a string`,
				`routes[0].strip_prefix: "yes": expected true or false, got a string`,
				`routes[0].backends[0]: ["http://a"]: expected a URL or a mapping with url and weight, got a list`,
			},
		},
		{
			name: "null single values",
			doc:  "listen:\n" + minimal,
			want: []string{"listen: null: no value; remove the key to get the default, or give a value"},
		},
		{
			name: "duplicate key",
			doc:  "listen: \"127.0.0.1:1\"\nlisten: \"127.0.0.1:2\"\n" + minimal,
			want: []string{`listen: "127.0.0.1:2": duplicate key (first at line 1)`},
		},
		{
			name: "more than one document",
			doc:  minimal + "---\n" + minimal,
			want: []string{`(root): "---": the file holds more than one YAML document; write one`},
		},
		{
			name: "not a mapping",
			doc:  "- a\n- b\n",
			want: []string{`(root): ["a", "b"]: expected a mapping, got a list`},
		},
		{
			name: "route not a mapping",
			doc:  "routes: [/api]",
			want: []string{`routes[0]: "/api": expected a route mapping, got a string`},
		},
		{
			name: "empty list item",
			doc:  "routes: [{path_prefix: /, backends: [~]}]",
			want: []string{"routes[0].backends[0]: null: empty list item"},
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
				`limits.max_header_bytes: "0": must be greater than 0`,
				`limits.max_response_body: "-1": must not be negative`,
				`health.active.interval: "0s": must be greater than 0`,
				`health.active.healthy_threshold: "0": must be at least 1`,
				`health.active.unhealthy_threshold: "-1": must be at least 1`,
				`health.passive.consecutive_failures: "0": must be at least 1`,
				`health.passive.max_ejected_percent: "101": must be 0-100`,
				`health.passive.max_ejection_time: "30s": must be at least ejection_time (1m)`,
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
				`routes[3].balancer: "random": unknown balancer; one of round_robin, least_request, ewma or hash`,
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
				`routes[0].backends[3]: (missing): url is required`,
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
		`zzz: "1": unknown key`,
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
	if got, want := err.Error(), "foo: \"1\": unknown key\nbar: \"2\": unknown key"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got := errs.List[1]; got.Line != 2 || got.Column != 1 || got.Path != "bar" {
		t.Errorf("second problem = %+v, want bar at 2:1", got)
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
