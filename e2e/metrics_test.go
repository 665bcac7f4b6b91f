package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseMetrics reads the Prometheus text exposition format.
func parseMetrics(text string) ([]sample, error) {
	var out []sample
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s := sample{labels: map[string]string{}}
		rest := line
		if i := strings.IndexAny(rest, "{ "); i >= 0 && rest[i] == '{' {
			s.name = rest[:i]
			rest = rest[i+1:]
			for {
				rest = strings.TrimLeft(rest, ", ")
				if strings.HasPrefix(rest, "}") {
					rest = rest[1:]
					break
				}
				eq := strings.Index(rest, "=\"")
				if eq < 0 {
					return nil, fmt.Errorf("bad labels in %q", line)
				}
				key := rest[:eq]
				rest = rest[eq+2:]
				var val strings.Builder
				for {
					if rest == "" {
						return nil, fmt.Errorf("unterminated label in %q", line)
					}
					c := rest[0]
					rest = rest[1:]
					if c == '\\' && rest != "" {
						switch rest[0] {
						case 'n':
							val.WriteByte('\n')
						default:
							val.WriteByte(rest[0])
						}
						rest = rest[1:]
						continue
					}
					if c == '"' {
						break
					}
					val.WriteByte(c)
				}
				s.labels[key] = val.String()
			}
		} else {
			s.name, rest, _ = strings.Cut(rest, " ")
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return nil, fmt.Errorf("no value in %q", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("bad value in %q: %v", line, err)
		}
		s.value = v
		out = append(out, s)
	}
	return out, nil
}

// metricValue returns the value of the series name with exactly the given
// labels (pairs), and whether it exists.
func metricValue(ss []sample, name string, labels ...string) (float64, bool) {
	for _, s := range ss {
		if s.name != name || len(s.labels) != len(labels)/2 {
			continue
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			if v, ok := s.labels[labels[i]]; !ok || v != labels[i+1] {
				match = false
			}
		}
		if match {
			return s.value, true
		}
	}
	return 0, false
}

func scrape(t testing.TB, p *proc) ([]sample, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(p.AdminURL("/metrics"))
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics = %d %q", resp.StatusCode, truncate(string(body), 200))
	}
	ss, err := parseMetrics(string(body))
	if err != nil {
		t.Fatalf("/metrics is not the text exposition format: %v", err)
	}
	return ss, string(body)
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	down := refusedURL(t)
	p := start(t, fmt.Sprintf(`
retry:
  attempts: 1
routes:
  - name: api
    path_prefix: /api
    backends: [%s]
  - name: down
    path_prefix: /down
    backends: [%s]
`, b.URL, down))

	get(t, p.URL("/api/a"))
	get(t, p.URL("/api/b"))
	get(t, p.URL("/nowhere"))
	get(t, p.URL("/down/x"))

	type want struct {
		name   string
		labels []string
		value  float64
	}
	wants := []want{
		{"sluice_requests_total", []string{"route", "api", "method", "GET", "code", "200"}, 2},
		{"sluice_requests_total", []string{"route", "", "method", "GET", "code", "404"}, 1},
		{"sluice_requests_total", []string{"route", "down", "method", "GET", "code", "502"}, 1},
		{"sluice_errors_total", []string{"route", "", "error", "no_route"}, 1},
		{"sluice_errors_total", []string{"route", "down", "error", "upstream_error"}, 1},
		{"sluice_upstream_requests_total", []string{"route", "api", "backend", b.URL, "outcome", "ok"}, 2},
		{"sluice_upstream_requests_total", []string{"route", "down", "backend", down, "outcome", "connect_error"}, 1},
		{"sluice_backend_healthy", []string{"route", "api", "backend", b.URL}, 1},
		{"sluice_request_duration_seconds_count", []string{"route", "api"}, 2},
		{"sluice_inflight_requests", nil, 0},
	}
	var last string
	ok := poll(5*time.Second, func() bool {
		ss, text := scrape(t, p)
		last = text
		for _, w := range wants {
			if v, found := metricValue(ss, w.name, w.labels...); !found || v != w.value {
				return false
			}
		}
		return true
	})
	if !ok {
		ss, _ := parseMetrics(last)
		for _, w := range wants {
			v, found := metricValue(ss, w.name, w.labels...)
			if !found || v != w.value {
				t.Errorf("%s%v = %v (present %v), want %v", w.name, w.labels, v, found, w.value)
			}
		}
	}
	for _, prefix := range []string{"go_", "process_"} {
		if !strings.Contains(last, "\n"+prefix) {
			t.Errorf("/metrics has no %s* collector", prefix)
		}
	}
}
