package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestBackendOriginAndPathPrefix(t *testing.T) {
	tests := []struct {
		name   string
		url    string
		origin string
		prefix string
	}{
		{"default http port", "http://127.0.0.1", "http://127.0.0.1:80", ""},
		{"default https port", "https://example.com", "https://example.com:443", ""},
		{"explicit port", "http://127.0.0.1:3001", "http://127.0.0.1:3001", ""},
		{"trailing slash dropped", "http://127.0.0.1:3001/", "http://127.0.0.1:3001", ""},
		{"path kept", "http://127.0.0.1:3001/v1", "http://127.0.0.1:3001", "/v1"},
		{"path trailing slash dropped", "http://127.0.0.1:3001/v1/", "http://127.0.0.1:3001", "/v1"},
		{"escaped path kept escaped", "http://h:1/a%2Fb/", "http://h:1", "/a%2Fb"},
		{"host lower-cased", "HTTP://Example.COM:8080/X", "http://example.com:8080", "/X"},
		{"ipv6", "http://[::1]:3001", "http://[::1]:3001", ""},
		{"ipv6 default port", "http://[::1]", "http://[::1]:80", ""},
		{"invalid", "htp://x", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := Backend{URL: tt.url, Weight: 1}
			if got := b.Origin(); got != tt.origin {
				t.Errorf("Origin() = %q, want %q", got, tt.origin)
			}
			if got := b.PathPrefix(); got != tt.prefix {
				t.Errorf("PathPrefix() = %q, want %q", got, tt.prefix)
			}
		})
	}
}

func TestBackendURLProblems(t *testing.T) {
	tests := []struct {
		name    string
		url     string
		problem string // "" when valid
	}{
		{"http", "http://127.0.0.1:3001", ""},
		{"https", "https://backend.internal", ""},
		{"upper-case scheme", "HTTP://127.0.0.1:1", ""},
		{"with path", "http://127.0.0.1:1/api/v1", ""},
		{"host name", "http://backend-1.internal:8080", ""},
		{"ipv6", "http://[::1]:8080", ""},
		{"typo scheme", "htp://x", "scheme must be http or https"},
		{"ftp", "ftp://x", "scheme must be http or https"},
		{"no scheme", "localhost:3001", `scheme must be http or https (write "http://localhost:3001")`},
		{"scheme-relative", "//x:1", "scheme must be http or https"},
		{"opaque", "http:x", "host is required"},
		{"empty host", "http://:80", "host is required"},
		{"userinfo", "http://u@x", "userinfo is not allowed (credentials would show in logs and metrics)"},
		{"empty query", "http://x/?", "query is not allowed"},
		{"empty fragment", "http://x/#", "fragment is not allowed"},
		{"port too large", "http://x:65536", "port must be 1-65535"},
		{"bad host", "http://a_b!c", "not a valid host name"},
		{"space in host", "http://a b", "not a valid URL: invalid character \" \" in host name"},
		{"broken ipv6", "http://[::1", "not a valid URL: missing ']' in host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := "routes: [{path_prefix: /, backends: [" + quote(tt.url) + "]}]"
			if tt.problem == "" {
				mustParse(t, doc)
				return
			}
			want := "routes[0].backends[0]: " + quote(tt.url) + ": " + tt.problem
			if got := problems(t, doc); len(got) != 1 || got[0] != want {
				t.Errorf("problems = %q, want [%q]", got, want)
			}
		})
	}
}

func TestRouteHost(t *testing.T) {
	tests := []struct {
		name    string
		host    string
		want    string
		problem string
	}{
		{name: "empty", host: `""`, want: ""},
		{name: "lower-cased", host: "API.Example.com", want: "api.example.com"},
		{name: "port dropped", host: "example.com:8443", want: "example.com"},
		{name: "ipv4 with port", host: `"10.0.0.1:80"`, want: "10.0.0.1"},
		{name: "ipv6 brackets", host: `"[::1]"`, want: "::1"},
		{name: "ipv6 brackets and port", host: `"[2001:DB8::1]:443"`, want: "2001:db8::1"},
		{name: "trailing dot", host: "example.com.", want: "example.com."},
		{name: "url", host: "http://example.com", problem: "must be a host name, not a URL"},
		{name: "path", host: "example.com/api", problem: "must be a host name (with an optional port) and nothing else"},
		{name: "bad port", host: "example.com:http", problem: "port must be a number 1-65535"},
		{name: "port zero", host: "example.com:0", problem: "port must be a number 1-65535"},
		{name: "wildcard", host: `"*.example.com"`, problem: "not a valid host name (letters, digits, '-', '_' and '.')"},
		{name: "space", host: `"exa mple.com"`, problem: "not a valid host name (letters, digits, '-', '_' and '.')"},
		{name: "unbracketed ipv6 with port", host: `"fe80::1:zz"`, problem: "an IPv6 address must be written in brackets"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := "routes: [{path_prefix: /, host: " + tt.host + ", backends: [http://a]}]"
			if tt.problem == "" {
				c := mustParse(t, doc)
				if got := c.Routes[0].Host; got != tt.want {
					t.Errorf("host = %q, want %q", got, tt.want)
				}
				return
			}
			got := problems(t, doc)
			if len(got) != 1 || !strings.HasSuffix(got[0], ": "+tt.problem) {
				t.Errorf("problems = %q, want one ending %q", got, tt.problem)
			}
		})
	}
}

func TestListen(t *testing.T) {
	tests := []struct {
		name   string
		listen string
		ok     bool
	}{
		{"ipv4", "127.0.0.1:8080", true},
		{"all interfaces", ":8080", true},
		{"host name", "localhost:8080", true},
		{"ipv6", "[::1]:8080", true},
		{"port zero", "127.0.0.1:0", true},
		{"no port", "127.0.0.1", false},
		{"port too large", "127.0.0.1:65536", false},
		{"named port", "127.0.0.1:http", false},
		{"empty", "", false},
		{"bad host", "a b:80", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte("listen: " + quote(tt.listen) + "\n" + minimal))
			if (err == nil) != tt.ok {
				t.Errorf("listen %q: error %v, want ok=%v", tt.listen, err, tt.ok)
			}
		})
	}
}

func TestTrustedPrefixes(t *testing.T) {
	c := mustParse(t, `trusted_proxies: [10.0.0.1, 192.168.1.7/24, "::1", "2001:db8::/32"]`+"\n"+minimal)
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.1/32"),
		netip.MustParsePrefix("192.168.1.0/24"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("2001:db8::/32"),
	}
	if !slices.Equal(c.TrustedPrefixes, want) {
		t.Errorf("TrustedPrefixes = %v, want %v", c.TrustedPrefixes, want)
	}
	if got := c.TrustedProxies[1]; got != "192.168.1.7/24" {
		t.Errorf("TrustedProxies[1] = %q, want it as written", got)
	}
}
