package config

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSizeInYAML(t *testing.T) {
	tests := []struct {
		name    string
		value   string
		want    Size
		problem string // the problem after `limits.max_request_body: <value>: `
	}{
		{name: "bytes integer", value: "1024", want: 1024},
		{name: "hex integer", value: "0x400", want: 1024},
		{name: "bytes with unit", value: "512B", want: 512},
		{name: "KiB", value: "64KiB", want: 64 << 10},
		{name: "MiB", value: "16MiB", want: 16 << 20},
		{name: "GiB", value: "1GiB", want: 1 << 30},
		{name: "KB", value: "2KB", want: 2000},
		{name: "MB", value: "3MB", want: 3_000_000},
		{name: "GB", value: "1GB", want: 1_000_000_000},
		{name: "quoted", value: `"16MiB"`, want: 16 << 20},
		{name: "space before unit", value: "16 MiB", want: 16 << 20},
		{name: "quoted digits", value: `"2048"`, want: 2048},
		{name: "decimal to whole bytes", value: "1.5MiB", want: 3 << 19},
		{name: "decimal KB", value: "1.5KB", want: 1500},
		{name: "largest", value: "9223372036854775807", want: 1<<63 - 1},
		{name: "fraction of a byte", value: "1.5B", problem: "not a whole number of bytes"},
		{name: "negative integer", value: "-1", problem: "must not be negative"},
		{name: "negative with unit", value: "-1KiB", problem: "must not be negative"},
		{name: "unknown unit", value: "1TiB", problem: "unknown unit (use B, KiB, MiB, GiB, KB, MB or GB)"},
		{name: "lower-case unit", value: "1kib", problem: "not a size (write bytes as an integer, or a number with a unit such as 64KiB or 16MiB)"},
		{name: "unit alone", value: "MiB", problem: "not a size (write bytes as an integer, or a number with a unit such as 64KiB or 16MiB)"},
		{name: "words", value: "5 parsecs", problem: "not a size (write bytes as an integer, or a number with a unit such as 64KiB or 16MiB)"},
		{name: "overflow with unit", value: "9999999999GiB", problem: "too large (at most 9223372036854775807 bytes)"},
		{name: "overflow integer", value: "99999999999999999999", problem: "too large (at most 9223372036854775807 bytes)"},
		{name: "empty string", value: `""`, problem: "not a size (write bytes as an integer, or a number with a unit such as 64KiB or 16MiB)"},
		{name: "boolean", value: "true", problem: "expected a size, got a boolean"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := "limits: {max_request_body: " + tt.value + "}\n" + minimal
			if tt.problem == "" {
				if c := mustParse(t, doc); c.Limits.MaxRequestBody != tt.want {
					t.Errorf("size = %d, want %d", c.Limits.MaxRequestBody, tt.want)
				}
				return
			}
			got := problems(t, doc)
			if len(got) != 1 || !strings.HasPrefix(got[0], "limits.max_request_body: ") || !strings.HasSuffix(got[0], ": "+tt.problem) {
				t.Errorf("problems = %q, want one ending %q", got, tt.problem)
			}
		})
	}
}

func TestSizeString(t *testing.T) {
	tests := []struct {
		name string
		size Size
		want string
	}{
		{"zero", 0, "0B"},
		{"bytes", 1500, "1500B"},
		{"KiB", 64 << 10, "64KiB"},
		{"MiB", 16 << 20, "16MiB"},
		{"GiB", 1 << 30, "1GiB"},
		{"KB", 2000, "2KB"},
		{"MB", 5_000_000, "5MB"},
		{"GB", 3_000_000_000, "3GB"},
		{"not a whole MiB", 3 << 19, "1536KiB"},
		{"odd", 1023, "1023B"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.size.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			back, err := ParseSize(tt.size.String())
			if err != nil || back != tt.size {
				t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.size.String(), back, err, tt.size)
			}
		})
	}
}

func TestDurationInYAML(t *testing.T) {
	tests := []struct {
		name    string
		value   string
		want    time.Duration
		problem string
	}{
		{name: "milliseconds", value: "250ms", want: 250 * time.Millisecond},
		{name: "seconds", value: "5s", want: 5 * time.Second},
		{name: "minutes", value: "1m", want: time.Minute},
		{name: "compound", value: "1h30m", want: 90 * time.Minute},
		{name: "fractional", value: "1.5s", want: 1500 * time.Millisecond},
		{name: "quoted", value: `"2s"`, want: 2 * time.Second},
		{name: "zero integer", value: "0", want: 0},
		{name: "words", value: "5 parsecs", problem: `"5 parsecs": not a duration (write a Go duration such as 250ms, 5s or 1m)`},
		{name: "missing unit", value: "5", problem: `"5": not a duration (write a Go duration such as 250ms, 5s or 1m)`},
		{name: "negative", value: "-1s", problem: `"-1s": must not be negative`},
		{name: "boolean", value: "false", problem: `"false": expected a duration, got a boolean`},
		{name: "list", value: "[1s]", problem: `["1s"]: expected a duration, got a list`},
		{name: "null", value: "~", problem: "null: no value; remove the key to get the default, or give a value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := "timeouts: {shutdown_delay: " + tt.value + "}\n" + minimal
			if tt.problem == "" {
				if c := mustParse(t, doc); c.Timeouts.ShutdownDelay.D() != tt.want {
					t.Errorf("duration = %v, want %v", c.Timeouts.ShutdownDelay, tt.want)
				}
				return
			}
			want := "timeouts.shutdown_delay: " + tt.problem
			if got := problems(t, doc); len(got) != 1 || got[0] != want {
				t.Errorf("problems = %q, want [%q]", got, want)
			}
		})
	}
}

func TestDurationString(t *testing.T) {
	tests := []struct {
		name string
		d    Duration
		want string
	}{
		{"zero", 0, "0s"},
		{"ms", Duration(50 * time.Millisecond), "50ms"},
		{"s", Duration(10 * time.Second), "10s"},
		{"m", Duration(5 * time.Minute), "5m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.d.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestStatusRange(t *testing.T) {
	tests := []struct {
		name    string
		value   string
		want    [][2]int
		problem string
	}{
		{name: "one code", value: `"503"`, want: [][2]int{{503, 503}}},
		{name: "bare integer", value: "503", want: [][2]int{{503, 503}}},
		{name: "range", value: `"200-399"`, want: [][2]int{{200, 399}}},
		{name: "list", value: `"500,502-504"`, want: [][2]int{{500, 500}, {502, 504}}},
		{name: "spaces around commas", value: `"500 , 502-504,  599"`, want: [][2]int{{500, 500}, {502, 504}, {599, 599}}},
		{name: "spaces around dash", value: `"500 - 503"`, want: [][2]int{{500, 503}}},
		{name: "single-code range", value: `"404-404"`, want: [][2]int{{404, 404}}},
		{name: "edges", value: `"100-599"`, want: [][2]int{{100, 599}}},
		{name: "backwards", value: `"399-200"`, problem: `"399-200": range 399-200 runs backwards`},
		{name: "too low", value: `"99"`, problem: `"99": status 99 is outside 100-599`},
		{name: "too high", value: `"200-600"`, problem: `"200-600": status 600 is outside 100-599`},
		{name: "empty", value: `""`, problem: `"": empty; write a code, a range such as 500-599, or a comma-separated list of both`},
		{name: "empty element", value: `"500,,502"`, problem: `"500,,502": empty element in the list`},
		{name: "trailing comma", value: `"500,"`, problem: `"500,": empty element in the list`},
		{name: "word", value: `"5xx"`, problem: `"5xx": "5xx" is not a status code`},
		{name: "open range", value: `"500-"`, problem: `"500-": "" is not a status code`},
		{name: "double range", value: `"500-550-599"`, problem: `"500-550-599": "550-599" is not a status code`},
		{name: "list form", value: "[500]", problem: `["500"]: expected a status, a range or a list of both, got a list`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := "health: {passive: {failure_status: " + tt.value + "}}\n" + minimal
			if tt.problem == "" {
				c := mustParse(t, doc)
				if got := c.Health.Passive.FailureStatus.Ranges; !reflect.DeepEqual(got, tt.want) {
					t.Errorf("ranges = %v, want %v", got, tt.want)
				}
				if got := c.Routes[0].Health.Passive.FailureStatus.Ranges; !reflect.DeepEqual(got, tt.want) {
					t.Errorf("route's ranges = %v, want %v", got, tt.want)
				}
				return
			}
			want := "health.passive.failure_status: " + tt.problem
			if got := problems(t, doc); len(got) != 1 || got[0] != want {
				t.Errorf("problems = %q, want [%q]", got, want)
			}
		})
	}
}

func TestStatusRangeContains(t *testing.T) {
	s, err := ParseStatusRange("500, 502-504")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		code int
		want bool
	}{
		{"single", 500, true},
		{"gap", 501, false},
		{"range low", 502, true},
		{"range high", 504, true},
		{"above", 505, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.Contains(tt.code); got != tt.want {
				t.Errorf("Contains(%d) = %v, want %v", tt.code, got, tt.want)
			}
		})
	}
}

func TestJSON(t *testing.T) {
	c := mustParse(t, `
admin: {token: s3cret}
routes:
  - name: api
    path_prefix: /api
    backends: [http://127.0.0.1:3001/v1/, {url: http://127.0.0.1:3002, weight: 3}]
    retry: {attempts: 3}
`)
	data, err := json.Marshal(c.Redacted())
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	route := got["routes"].([]any)[0].(map[string]any)
	tests := []struct {
		name      string
		got, want any
	}{
		{"token redacted", got["admin"].(map[string]any)["token"], "REDACTED"},
		{"admin listen", got["admin"].(map[string]any)["listen"], "127.0.0.1:9901"},
		{"duration as string", got["timeouts"].(map[string]any)["client_header"], "10s"},
		{"size as string", got["limits"].(map[string]any)["max_request_body"], "16MiB"},
		{"status range as string", got["health"].(map[string]any)["active"].(map[string]any)["expect_status"], "200-399"},
		{"trusted proxies empty list", got["trusted_proxies"], []any{}},
		{"no trusted prefixes key", got["TrustedPrefixes"], nil},
		{"route retry override", route["retry"].(map[string]any)["attempts"], float64(3)},
		{"backend url as configured", route["backends"].([]any)[0].(map[string]any)["url"], "http://127.0.0.1:3001/v1/"},
		{"backend default weight", route["backends"].([]any)[0].(map[string]any)["weight"], float64(1)},
		{"route timeouts only route keys", sortedKeys(route["timeouts"]), []string{"client_body", "upstream_body", "upstream_connect", "upstream_header"}},
		{"route limits only route keys", sortedKeys(route["limits"]), []string{"max_request_body", "max_response_body"}},
		{"top-level keys", sortedKeys(got), []string{"access_log", "admin", "circuit_breaker", "discovery", "health", "limits", "listen", "rate_limit", "retry", "routes", "timeouts", "tls", "trusted_proxies"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("got %#v, want %#v", tt.got, tt.want)
			}
		})
	}
	if c.Admin.Token != "s3cret" {
		t.Errorf("Redacted changed the original token to %q", c.Admin.Token)
	}
}

func sortedKeys(v any) []string {
	var keys []string
	for k := range v.(map[string]any) {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestRedactedWithoutToken(t *testing.T) {
	c := mustParse(t, minimal)
	if got := c.Redacted().Admin.Token; got != "" {
		t.Errorf("token = %q, want empty", got)
	}
}

func TestCloneIsDeep(t *testing.T) {
	c := mustParse(t, "trusted_proxies: [10.0.0.0/8]\n"+minimal)
	n := c.Clone()
	n.TrustedProxies[0] = "x"
	n.TrustedPrefixes[0] = n.TrustedPrefixes[0].Masked()
	n.Routes[0].Backends[0].URL = "x"
	n.Routes[0].Retry.Methods[0] = "x"
	n.Retry.OnStatus[0] = 1
	n.Health.Active.ExpectStatus.Ranges[0][0] = 1
	if c.TrustedProxies[0] != "10.0.0.0/8" || c.Routes[0].Backends[0].URL != "http://127.0.0.1:3001" ||
		c.Routes[0].Retry.Methods[0] != "GET" || c.Retry.OnStatus[0] != 502 || c.Health.Active.ExpectStatus.Ranges[0][0] != 200 {
		t.Errorf("Clone shares memory with the original: %+v", c)
	}
}

// TestJSONIsAConfig checks that the JSON form mirrors the YAML keys closely
// enough to be read back as the same configuration.
func TestJSONIsAConfig(t *testing.T) {
	c := mustParse(t, `
listen: ":8080"
trusted_proxies: [10.0.0.0/8, 10.0.0.1]
access_log: "off"
timeouts: {client_idle: 2m, shutdown_delay: 5s}
limits: {max_request_body: 1500}
health: {passive: {failure_status: "500, 502-504"}}
routes:
  - name: api
    host: API.example.com:443
    path_prefix: /api
    strip_prefix: true
    backends: [http://127.0.0.1:3001/v1/, {url: http://127.0.0.1:3002, weight: 3}]
    timeouts: {upstream_header: 1s}
    retry: {attempts: 3, methods: []}
  - path_prefix: /
    backends: [https://example.com]
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
