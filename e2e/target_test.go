package e2e

import (
	"fmt"
	"testing"
)

func TestRequestTargets(t *testing.T) {
	t.Parallel()
	api := newBackend(t, "api", nil)
	h := newBackend(t, "host-api", nil)
	p := start(t, fmt.Sprintf(`
routes:
  - path_prefix: /api
    backends: [%s]
  - host: app.example
    path_prefix: /api
    backends: [%s]
`, api.URL, h.URL))

	t.Run("absolute-form routed by path, authority replaces Host", func(t *testing.T) {
		r := rawDo(t, p.Addr, "GET http://example.com/api/x?q=1 HTTP/1.1\r\nHost: ignored.example\r\nConnection: close\r\n\r\n")
		if r.Resp == nil || r.Resp.StatusCode != 200 || string(r.Body) != "api" {
			t.Fatalf("got %v, want 200 from backend api", r)
		}
		got := api.Last(t)
		if got.RequestURI != "/api/x?q=1" {
			t.Errorf("backend saw target %q, want origin-form /api/x?q=1", got.RequestURI)
		}
		if got.Host != "example.com" {
			t.Errorf("backend saw Host %q, want example.com (the absolute-form authority)", got.Host)
		}
	})

	t.Run("absolute-form authority chooses host route", func(t *testing.T) {
		r := rawDo(t, p.Addr, "GET http://app.example/api/y HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n")
		if r.Resp == nil || r.Resp.StatusCode != 200 || string(r.Body) != "host-api" {
			t.Fatalf("got %v, want 200 from backend host-api", r)
		}
		if got := h.Last(t); got.Host != "app.example" || got.RequestURI != "/api/y" {
			t.Errorf("backend saw Host %q target %q, want app.example /api/y", got.Host, got.RequestURI)
		}
	})

	t.Run("OPTIONS asterisk answered by sluice", func(t *testing.T) {
		before := api.Count() + h.Count()
		r := rawDo(t, p.Addr, "OPTIONS * HTTP/1.1\r\nHost: test.example\r\nConnection: close\r\n\r\n")
		if r.Resp == nil {
			t.Fatalf("OPTIONS *: %v", r)
		}
		if r.Resp.StatusCode != 200 {
			t.Errorf("status = %d, want 200", r.Resp.StatusCode)
		}
		if len(r.Body) != 0 {
			t.Errorf("body = %q, want empty", r.Body)
		}
		if id := r.Resp.Header.Get("X-Request-Id"); !validRequestID(id) {
			t.Errorf("X-Request-Id = %q, want a generated id", id)
		}
		if n := api.Count() + h.Count(); n != before {
			t.Errorf("backends received %d requests for OPTIONS *, want none", n-before)
		}
	})

	rejects := []struct {
		name   string
		req    string
		status int
		word   string
	}{
		{"asterisk with GET", "GET * HTTP/1.1\r\nHost: test.example\r\n\r\n", 400, "bad_request"},
		{"asterisk with POST", "POST * HTTP/1.1\r\nHost: test.example\r\nContent-Length: 0\r\n\r\n", 400, "bad_request"},
		{"authority-form with GET", "GET test.example:80 HTTP/1.1\r\nHost: test.example:80\r\n\r\n", 400, "bad_request"},
		{"CONNECT", "CONNECT test.example:443 HTTP/1.1\r\nHost: test.example:443\r\n\r\n", 405, "method_not_allowed"},
		{"fragment", "GET /api/x#frag HTTP/1.1\r\nHost: test.example\r\n\r\n", 400, "bad_request"},
		{"fragment after query", "GET /api/x?a=1#frag HTTP/1.1\r\nHost: test.example\r\n\r\n", 400, "bad_request"},
		{"absolute-form fragment", "GET http://test.example/api/x#frag HTTP/1.1\r\nHost: test.example\r\n\r\n", 400, "bad_request"},
	}
	for _, tc := range rejects {
		t.Run(tc.name, func(t *testing.T) {
			before := api.Count() + h.Count()
			r := rawDo(t, p.Addr, tc.req)
			if r.Resp == nil {
				t.Fatalf("%q: %v, want %d", tc.req, r, tc.status)
			}
			checkProxyError(t, r.Resp, r.Body, tc.status, tc.word)
			if n := api.Count() + h.Count(); n != before {
				t.Errorf("backends received %d requests, want none", n-before)
			}
		})
	}
}
