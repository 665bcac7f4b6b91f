package e2e

import (
	"fmt"
	"io"
	"strings"
	"testing"
)

// TestEngineErrorsCounted: a request refused before its headers could be
// read whole (here, headers over max_header_bytes) still gets the documented
// JSON body with an X-Request-Id, and is counted like any other failed
// request: route "", error headers_too_large.
func TestEngineErrorsCounted(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	p := start(t, fmt.Sprintf(`
limits:
  max_header_bytes: 4KiB
routes:
  - path_prefix: /
    backends: [%s]
`, b.URL))
	c, br := dialProxy(t, p)
	io.WriteString(c, "GET /x HTTP/1.1\r\nHost: test.example\r\nX-Big: "+strings.Repeat("v", 16<<10)+"\r\n\r\n")
	r := readRaw(br, "GET")
	if r.Resp == nil {
		t.Fatalf("no response: %v", r)
	}
	checkProxyError(t, r.Resp, r.Body, 431, "headers_too_large")
	if b.Count() != 0 {
		t.Errorf("the backend got %d requests", b.Count())
	}
	ss, _ := scrape(t, p)
	if v, _ := metricValue(ss, "sluice_errors_total", "route", "", "error", "headers_too_large"); v != 1 {
		t.Errorf(`sluice_errors_total{route="",error="headers_too_large"} = %v, want 1`, v)
	}
	if v, _ := metricValue(ss, "sluice_requests_total", "route", "", "method", "GET", "code", "431"); v != 1 {
		t.Errorf(`sluice_requests_total{route="",method="GET",code="431"} = %v, want 1`, v)
	}
}
