package config

import (
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"testing"
)

// FuzzParse checks that Parse never panics and always returns either a
// usable Config or an *Errors with at least one line, each of the shape
// `path: value: why` with a why of one of the reasons in the source.
func FuzzParse(f *testing.F) {
	var patterns []*regexp.Regexp
	for r := range sourceReasons(f) {
		patterns = append(patterns, formatPattern(r))
	}
	for _, seed := range []string{
		"",
		minimal,
		"routes: [{path_prefix: /, backends: [htp://x]}]",
		"access_log: off\n" + minimal,
		"timeouts: {client_idle: 5 parsecs}\nfoo: 1\nroutes: [{path_prefix: /, backends: [ftp://x]}]",
		`listen: ":8080"
admin: {listen: "", token: t}
trusted_proxies: [10.0.0.0/8, "::1"]
limits: {max_request_body: 1.5MiB, max_response_body: 1GB}
health: {active: {expect_status: "200, 204-299"}, passive: {failure_status: 503}}
retry: {methods: [GET], on_status: [503]}
routes:
  - &r
    name: api
    host: "[::1]:8080"
    path_prefix: /api
    strip_prefix: true
    backends: [http://127.0.0.1:3001/v1/, {url: "https://b:443", weight: 5}]
    timeouts: {upstream_header: 1s, client_idle: 1s}
  - <<: *r
    name: web
    path_prefix: /
`,
		"- a\n- b\n",
		"{{{",
		"routes: *x",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if c != nil {
				t.Fatalf("Parse returned both a config and an error")
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T is not *Errors", err)
			}
			if len(errs.List) == 0 {
				t.Fatalf("*Errors without a problem")
			}
			for _, line := range errs.Lines() {
				_, _, why, ok := splitProblem(line)
				if !ok {
					t.Fatalf("problem line %q is not `path: value: why`", line)
				}
				if !slices.ContainsFunc(patterns, func(p *regexp.Regexp) bool { return p.MatchString(why) }) {
					t.Fatalf("problem line %q: %q is of no reason in the source", line, why)
				}
			}
			return
		}
		if c == nil || len(c.Routes) == 0 {
			t.Fatalf("valid config without routes: %+v", c)
		}
		for _, r := range c.Routes {
			if r.Name == "" || len(r.Backends) == 0 {
				t.Fatalf("route without name or backends: %+v", r)
			}
			for _, b := range r.Backends {
				if b.Origin() == "" {
					t.Fatalf("backend %q of a valid config has no origin", b.URL)
				}
			}
		}
		if _, err := json.Marshal(c.Redacted()); err != nil {
			t.Fatalf("marshal: %v", err)
		}
	})
}
