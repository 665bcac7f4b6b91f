// Package route compiles the configured routes into an immutable Table that
// matches a request's host and cleaned path to a route. It does no I/O and
// knows nothing of backends or their health.
package route

import (
	"sort"
	"strings"
)

// Route is the routing part of one configured route.
type Route struct {
	// Name is the route's name.
	Name string
	// Host is the exact host the route serves, lowercase and without a port;
	// "" matches any host.
	Host string
	// Prefix is the path prefix.
	Prefix string
	// StripPrefix removes Prefix from the forwarded path.
	StripPrefix bool
	// Index is the route's position in the config.
	Index int
}

// Table matches requests to routes. It is immutable once built and safe for
// concurrent use.
type Table struct {
	byHost map[string][]*Route // longest prefix first
	any    []*Route            // routes without a host, longest prefix first
}

// NewTable builds a table over routes.
func NewTable(routes []*Route) *Table {
	t := &Table{byHost: map[string][]*Route{}}
	for _, r := range routes {
		if r.Host == "" {
			t.any = append(t.any, r)
		} else {
			h := strings.ToLower(r.Host)
			t.byHost[h] = append(t.byHost[h], r)
		}
	}
	longestFirst := func(rs []*Route) {
		sort.SliceStable(rs, func(i, j int) bool { return len(rs[i].Prefix) > len(rs[j].Prefix) })
	}
	longestFirst(t.any)
	for _, rs := range t.byHost {
		longestFirst(rs)
	}
	return t
}

// Match returns the route for host (as sent: any port is ignored, case is
// ignored) and path (already cleaned with CleanPath), or nil. Routes naming
// the host are tried first; when none of them matches the path, the routes
// without a host are tried. Within each group the longest prefix wins.
func (t *Table) Match(host, path string) *Route {
	if len(t.byHost) > 0 && host != "" {
		if rs, ok := t.byHost[HostKey(host)]; ok {
			if r := matchPrefix(rs, path); r != nil {
				return r
			}
		}
	}
	return matchPrefix(t.any, path)
}

func matchPrefix(rs []*Route, path string) *Route {
	for _, r := range rs {
		if HasPrefix(path, r.Prefix) {
			return r
		}
	}
	return nil
}

// HasPrefix reports whether path is under prefix, segment-aware: "/api"
// covers "/api" and "/api/x" but not "/apiary".
func HasPrefix(path, prefix string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || prefix[len(prefix)-1] == '/' || path[len(prefix)] == '/'
}

// HostKey lowercases host and drops its port. It allocates only when host
// has upper-case letters.
func HostKey(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		host = host[:i]
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(host)
		}
	}
	return host
}

// AppendForwarded appends to dst the path to send to a backend whose URL has
// path prefix backendPrefix (without a trailing slash), for a request whose
// cleaned path matched r: the prefix is stripped when StripPrefix is set
// ("/api/x" becomes "/x", "/api" becomes "/"), then backendPrefix is
// prepended.
func (r *Route) AppendForwarded(dst []byte, path, backendPrefix string) []byte {
	dst = append(dst, backendPrefix...)
	if r.StripPrefix {
		path = path[len(strings.TrimSuffix(r.Prefix, "/")):]
		if path == "" || path[0] != '/' {
			dst = append(dst, '/')
		}
	}
	return append(dst, path...)
}
