package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestProxyErrors(t *testing.T) {
	t.Parallel()
	garbage := newRawBackend(t, "NOT HTTP AT ALL\r\n\r\n")
	hang := newGate(t)
	slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) { hang.wait(r) })
	ok := newBackend(t, "ok", nil)
	p := start(t, fmt.Sprintf(`
routes:
  - name: down
    path_prefix: /down
    backends: [%s]
  - name: garbage
    path_prefix: /garbage
    backends: [%s]
  - name: slow
    path_prefix: /slow
    timeouts:
      upstream_header: 200ms
    retry:
      attempts: 1
    backends: [%s]
  - name: small
    path_prefix: /small
    limits:
      max_request_body: 10
    backends: [%s]
`, refusedURL(t), garbage.URL, slow.URL, ok.URL))

	cases := []struct {
		name, method, path, body string
		status                   int
		word                     string
	}{
		{"backend down", "GET", "/down/x", "", 502, "upstream_error"},
		{"backend down POST", "POST", "/down/x", "data", 502, "upstream_error"},
		{"invalid response", "GET", "/garbage/x", "", 502, "upstream_error"},
		{"no response headers in time", "GET", "/slow/x", "", 504, "upstream_timeout"},
		{"declared body over limit", "POST", "/small/x", strings.Repeat("z", 20), 413, "request_too_large"},
		{"no route", "GET", "/elsewhere", "", 404, "no_route"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, body := do(t, tc.method, p.URL(tc.path), tc.body)
			checkProxyError(t, resp, body, tc.status, tc.word)
		})
	}
	t.Run("oversize body never reaches backend", func(t *testing.T) {
		t.Parallel()
		resp, body := do(t, "POST", p.URL("/small/y"), strings.Repeat("z", 20))
		checkProxyError(t, resp, body, 413, "request_too_large")
		for _, r := range ok.Requests() {
			if len(r.Body) > 10 {
				t.Errorf("backend received a %d-byte body over the 10-byte limit", len(r.Body))
			}
		}
	})
}
