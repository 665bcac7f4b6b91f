package route

import "testing"

func TestCleanPath(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "/api/users", "/api/users"},
		{"root", "/", "/"},
		{"dotdot", "/api/../admin", "/admin"},
		{"encoded dotdot lower", "/api/%2e%2e/admin", "/admin"},
		{"encoded dotdot upper", "/api/%2E%2E/admin", "/admin"},
		{"mixed encoded", "/api/.%2e/admin", "/admin"},
		{"encoded slash kept", "/api/..%2fadmin", "/api/..%2fadmin"},
		{"dot", "/api/./x", "/api/x"},
		{"above root", "/../../x", "/x"},
		{"trailing dotdot", "/api/x/..", "/api/"},
		{"trailing dot", "/api/.", "/api/"},
		{"repeated slashes kept", "/api//x//", "/api//x//"},
		{"dots in names", "/api/v1.2/a..b/.x", "/api/v1.2/a..b/.x"},
		{"dotdot only", "/..", "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CleanPath(tt.in); got != tt.want {
				t.Errorf("CleanPath(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	routes := []*Route{
		{Name: "api", Prefix: "/api", Index: 0},
		{Name: "v2", Prefix: "/api/v2", Index: 1},
		{Name: "root", Prefix: "/", Index: 2},
		{Name: "host-api", Host: "example.com", Prefix: "/api", Index: 3},
		{Name: "slash", Prefix: "/static/", Index: 4},
	}
	tbl := NewTable(routes)
	tests := []struct{ name, host, path, want string }{
		{"longest prefix", "", "/api/v2/x", "v2"},
		{"exact prefix", "", "/api", "api"},
		{"segment boundary", "", "/apiary", "root"},
		{"under prefix", "", "/api/x", "api"},
		{"v2 boundary", "", "/api/v20", "api"},
		{"host route first", "example.com", "/api/x", "host-api"},
		{"host case and port ignored", "EXAMPLE.com:8080", "/api", "host-api"},
		{"host route falls back to any", "example.com", "/other", "root"},
		{"unknown host", "other.com", "/api/v2", "v2"},
		{"prefix with slash", "", "/static/a", "slash"},
		{"prefix with slash needs slash", "", "/static", "root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tbl.Match(tt.host, tt.path)
			if r == nil || r.Name != tt.want {
				t.Fatalf("Match(%q, %q) = %v, want %s", tt.host, tt.path, r, tt.want)
			}
		})
	}
	if r := NewTable(routes[:2]).Match("", "/apiary"); r != nil {
		t.Fatalf("/apiary matched %s", r.Name)
	}
}

func TestAppendForwarded(t *testing.T) {
	tests := []struct {
		name, prefix string
		strip        bool
		path, bp     string
		want         string
	}{
		{"no strip", "/api", false, "/api/x", "", "/api/x"},
		{"strip", "/api", true, "/api/x", "", "/x"},
		{"strip exact", "/api", true, "/api", "", "/"},
		{"strip slash prefix", "/api/", true, "/api/x", "", "/x"},
		{"backend prefix", "/api", false, "/api/x", "/base", "/base/api/x"},
		{"strip and backend prefix", "/api", true, "/api/x", "/base", "/base/x"},
		{"root strip", "/", true, "/x", "", "/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Route{Prefix: tt.prefix, StripPrefix: tt.strip}
			if got := string(r.AppendForwarded(nil, tt.path, tt.bp)); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func BenchmarkMatch(b *testing.B) {
	var routes []*Route
	for i, p := range []string{"/api", "/api/v2", "/static", "/admin", "/a/b/c", "/"} {
		routes = append(routes, &Route{Name: p, Prefix: p, Index: i})
	}
	routes = append(routes, &Route{Name: "h", Host: "example.com", Prefix: "/api", Index: len(routes)})
	tbl := NewTable(routes)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p := CleanPath("/api/v2/users/123")
			if tbl.Match("example.com:8080", p) == nil {
				b.Fatal("no match")
			}
		}
	})
}
