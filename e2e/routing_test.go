package e2e

import (
	"fmt"
	"testing"
)

// rawGet sends "GET target HTTP/1.1" with the given Host over a fresh
// connection.
func rawGet(t testing.TB, addr, target, host string) rawResult {
	t.Helper()
	return rawDo(t, addr, fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target, host))
}

type routeCase struct {
	name    string
	target  string
	host    string
	want    *backend // nil: 404 no_route
	wantURI string   // request target the backend must see
}

// runRouteCases runs the cases one after another (each checks the backend's
// last request, so they must not overlap).
func runRouteCases(t *testing.T, p *proc, cases []routeCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			host := tc.host
			if host == "" {
				host = "test.example"
			}
			r := rawGet(t, p.Addr, tc.target, host)
			if r.Resp == nil {
				t.Fatalf("GET %s: %v", tc.target, r)
			}
			if tc.want == nil {
				checkProxyError(t, r.Resp, r.Body, 404, "no_route")
				return
			}
			if r.Resp.StatusCode != 200 || string(r.Body) != tc.want.Name {
				t.Fatalf("GET %s (Host %s): got %v, want 200 from backend %s", tc.target, host, r, tc.want.Name)
			}
			got := tc.want.Last(t)
			if got.RequestURI != tc.wantURI {
				t.Errorf("GET %s: backend %s saw target %q, want %q", tc.target, tc.want.Name, got.RequestURI, tc.wantURI)
			}
			if got.Host != host {
				t.Errorf("GET %s: backend saw Host %q, want %q unchanged", tc.target, got.Host, host)
			}
		})
	}
}

func TestRoutingPrefixAndPathCleaning(t *testing.T) {
	t.Parallel()
	api := newBackend(t, "api", nil)
	v2 := newBackend(t, "v2", nil)
	adm := newBackend(t, "admin", nil)
	p := start(t, fmt.Sprintf(`
routes:
  - name: api
    path_prefix: /api
    backends: [%s]
  - name: api-v2
    path_prefix: /api/v2
    backends: [%s]
  - name: admin
    path_prefix: /admin
    backends: [%s]
`, api.URL, v2.URL, adm.URL))

	runRouteCases(t, p, []routeCase{
		{name: "exact prefix", target: "/api", want: api, wantURI: "/api"},
		{name: "under prefix", target: "/api/x", want: api, wantURI: "/api/x"},
		{name: "longest prefix exact", target: "/api/v2", want: v2, wantURI: "/api/v2"},
		{name: "longest prefix wins", target: "/api/v2/users", want: v2, wantURI: "/api/v2/users"},
		{name: "segment aware v2x", target: "/api/v2x", want: api, wantURI: "/api/v2x"},
		{name: "apiary is not api", target: "/apiary", want: nil},
		{name: "root has no route", target: "/", want: nil},
		{name: "dot dot to admin", target: "/api/../admin", want: adm, wantURI: "/admin"},
		{name: "encoded dot dot lower", target: "/api/%2e%2e/admin", want: adm, wantURI: "/admin"},
		{name: "encoded dot dot upper", target: "/api/%2E%2E/admin", want: adm, wantURI: "/admin"},
		{name: "dot dot above root", target: "/api/../../admin", want: adm, wantURI: "/admin"},
		{name: "dot dot keeps query", target: "/api/../admin?q=1", want: adm, wantURI: "/admin?q=1"},
		{name: "cleaned into v2", target: "/admin/../api/v2/y", want: v2, wantURI: "/api/v2/y"},
		{name: "cleaned out of v2", target: "/api/v2/../x", want: api, wantURI: "/api/x"},
		{name: "single dot", target: "/api/./x", want: api, wantURI: "/api/x"},
		{name: "trailing dot dot", target: "/api/x/..", want: api, wantURI: "/api/"},
		{name: "encoded slash not decoded", target: "/api/..%2fadmin", want: api, wantURI: "/api/..%2fadmin"},
		{name: "encoded slash upper not decoded", target: "/api/..%2Fadmin", want: api, wantURI: "/api/..%2Fadmin"},
		{name: "repeated slashes kept", target: "/api//x//y", want: api, wantURI: "/api//x//y"},
		{name: "trailing slash kept", target: "/api/x/", want: api, wantURI: "/api/x/"},
		{name: "percent escape kept", target: "/api/a%20b", want: api, wantURI: "/api/a%20b"},
		{name: "query unchanged", target: "/api/x?b=2&a=1&a=%20&c&d=%2F", want: api, wantURI: "/api/x?b=2&a=1&a=%20&c&d=%2F"},
	})
}

func TestRoutingNoRouteJSON(t *testing.T) {
	t.Parallel()
	api := newBackend(t, "api", nil)
	p := start(t, fmt.Sprintf(`
routes:
  - path_prefix: /api
    backends: [%s]
`, api.URL))

	t.Run("generated id", func(t *testing.T) {
		resp, body := get(t, p.URL("/apiary"))
		checkProxyError(t, resp, body, 404, "no_route")
		if id := resp.Header.Get("X-Request-Id"); !validRequestID(id) {
			t.Errorf("X-Request-Id %q is not 1-128 visible ASCII characters", id)
		}
	})
	t.Run("client id kept", func(t *testing.T) {
		resp, body := get(t, p.URL("/nowhere"), "X-Request-Id", "client-chosen-42")
		checkProxyError(t, resp, body, 404, "no_route")
		if id := resp.Header.Get("X-Request-Id"); id != "client-chosen-42" {
			t.Errorf("X-Request-Id = %q, want the client's valid id client-chosen-42", id)
		}
	})
	if n := api.Count(); n != 0 {
		t.Errorf("backend received %d requests for unrouted paths, want 0", n)
	}
}

func TestRoutingStripPrefix(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	p := start(t, fmt.Sprintf(`
routes:
  - path_prefix: /api
    strip_prefix: true
    backends: [%s]
`, b.URL))

	runRouteCases(t, p, []routeCase{
		{name: "sub path", target: "/api/x", want: b, wantURI: "/x"},
		{name: "deeper", target: "/api/x/y/", want: b, wantURI: "/x/y/"},
		{name: "prefix only", target: "/api", want: b, wantURI: "/"},
		{name: "prefix slash", target: "/api/", want: b, wantURI: "/"},
		{name: "prefix with query", target: "/api?q=1", want: b, wantURI: "/?q=1"},
		{name: "query kept", target: "/api/x?a=1&b=%2F", want: b, wantURI: "/x?a=1&b=%2F"},
		{name: "cleaned first", target: "/other/../api/x", want: b, wantURI: "/x"},
		{name: "apiary", target: "/apiary", want: nil},
	})
}

func TestRoutingBackendPathPrefix(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	p := start(t, fmt.Sprintf(`
routes:
  - name: plain
    path_prefix: /api
    backends: [%[1]s/base/]
  - name: stripped
    path_prefix: /strip
    strip_prefix: true
    backends: [%[1]s/base/]
  - name: no-trailing-slash
    path_prefix: /nts
    backends:
      - url: %[1]s/base
`, b.URL))

	runRouteCases(t, p, []routeCase{
		{name: "prepended", target: "/api/x", want: b, wantURI: "/base/api/x"},
		{name: "prepended prefix only", target: "/api", want: b, wantURI: "/base/api"},
		{name: "prepended with query", target: "/api/x?q=1", want: b, wantURI: "/base/api/x?q=1"},
		{name: "stripped then prepended", target: "/strip/x", want: b, wantURI: "/base/x"},
		{name: "stripped prefix only", target: "/strip", want: b, wantURI: "/base/"},
		{name: "url without trailing slash", target: "/nts/x", want: b, wantURI: "/base/nts/x"},
	})
}

func TestRoutingHost(t *testing.T) {
	t.Parallel()
	h := newBackend(t, "host-api", nil)
	d := newBackend(t, "any-api", nil)
	d2 := newBackend(t, "any-api-v2", nil)
	o := newBackend(t, "any-other", nil)
	p := start(t, fmt.Sprintf(`
routes:
  - name: any-api
    path_prefix: /api
    backends: [%s]
  - name: any-api-v2
    path_prefix: /api/v2
    backends: [%s]
  - name: any-other
    path_prefix: /other
    backends: [%s]
  - name: host-api
    host: app.example
    path_prefix: /api
    backends: [%s]
`, d.URL, d2.URL, o.URL, h.URL))

	runRouteCases(t, p, []routeCase{
		{name: "host route", host: "app.example", target: "/api/x", want: h, wantURI: "/api/x"},
		{name: "host case and port ignored", host: "APP.Example:9999", target: "/api/x", want: h, wantURI: "/api/x"},
		{name: "host group before longer host-less prefix", host: "app.example", target: "/api/v2/x", want: h, wantURI: "/api/v2/x"},
		{name: "other host uses host-less", host: "other.example", target: "/api/x", want: d, wantURI: "/api/x"},
		{name: "other host longest prefix", host: "other.example", target: "/api/v2/x", want: d2, wantURI: "/api/v2/x"},
		{name: "fallback to host-less", host: "app.example", target: "/other/y", want: o, wantURI: "/other/y"},
		{name: "no match at all", host: "app.example", target: "/nothing", want: nil},
		{name: "host route segment aware", host: "app.example", target: "/apiary", want: nil},
	})
}
