package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrapeFamilies GETs /metrics (with the bearer token when token is not
// empty) and parses it with the reference parser of the text exposition
// format, so that TYPE lines are checked as Prometheus reads them.
func scrapeFamilies(t testing.TB, p *proc, token string) (map[string]*dto.MetricFamily, error) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, err := http.NewRequest("GET", p.AdminURL("/metrics"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET /metrics: reading body: %v", err)
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET /metrics = %d %q", resp.StatusCode, truncate(string(body), 200))
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		return nil, fmt.Errorf("/metrics is not the text exposition format: %v", err)
	}
	return fams, nil
}

// flattenFamilies turns parsed families into samples as they appear on the
// wire: a histogram gives name_count and name_sum (buckets are left out).
func flattenFamilies(fams map[string]*dto.MetricFamily) []sample {
	var out []sample
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			add := func(n string, v float64) {
				out = append(out, sample{name: n, labels: labels, value: v})
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				add(name, m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				add(name, m.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				add(name, m.GetUntyped().GetValue())
			case dto.MetricType_HISTOGRAM:
				add(name+"_count", float64(m.GetHistogram().GetSampleCount()))
				add(name+"_sum", m.GetHistogram().GetSampleSum())
			case dto.MetricType_SUMMARY:
				add(name+"_count", float64(m.GetSummary().GetSampleCount()))
				add(name+"_sum", m.GetSummary().GetSampleSum())
			}
		}
	}
	return out
}

// seriesKey renders a sample's labels in a stable order, for comparisons and
// messages.
func seriesKey(labels map[string]string) string {
	var ks []string
	for k := range labels {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range ks {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", k, labels[k])
	}
	b.WriteByte('}')
	return b.String()
}

// labelsOf builds a label map from pairs.
func labelsOf(pairs ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(pairs); i += 2 {
		m[pairs[i]] = pairs[i+1]
	}
	return m
}

// seriesOf returns the series of name keyed by seriesKey; with nonzero only
// the series whose value is not 0 (pre-created label children are fine).
func seriesOf(ss []sample, name string, nonzero bool) map[string]float64 {
	out := map[string]float64{}
	for _, s := range ss {
		if s.name == name && (!nonzero || s.value != 0) {
			out[seriesKey(s.labels)] = s.value
		}
	}
	return out
}

// expectSeries is the exact set of series a metric must have.
type expectSeries struct {
	name    string
	nonzero bool // compare only the series whose value is not 0
	want    map[string]float64
}

// diff returns what differs between the scrape and the expectation.
func (e expectSeries) diff(ss []sample) []string {
	got := seriesOf(ss, e.name, e.nonzero)
	var out []string
	for k, w := range e.want {
		if g, ok := got[k]; !ok {
			out = append(out, fmt.Sprintf("%s%s missing, want %v", e.name, k, w))
		} else if g != w {
			out = append(out, fmt.Sprintf("%s%s = %v, want %v", e.name, k, g, w))
		}
	}
	for k, g := range got {
		if _, ok := e.want[k]; !ok {
			out = append(out, fmt.Sprintf("%s%s = %v, want no such series (or 0)", e.name, k, g))
		}
	}
	sort.Strings(out)
	return out
}

// wantSeries builds an expectation map from (labels, value) pairs.
func wantSeries(kv ...any) map[string]float64 {
	m := map[string]float64{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[seriesKey(kv[i].(map[string]string))] = numberOf(kv[i+1])
	}
	return m
}

// numberOf converts an int or float64 expectation to float64.
func numberOf(v any) float64 {
	switch x := v.(type) {
	case int:
		return float64(x)
	case float64:
		return x
	}
	panic(fmt.Sprintf("numberOf(%T)", v))
}

// backendState is one backend of GET /backends.
type backendState struct {
	URL          string `json:"url"`
	State        string `json:"state"`
	Since        string `json:"since"`
	Reason       string `json:"reason"`
	ConsecFails  int    `json:"consecutive_failures"`
	InFlight     int    `json:"in_flight"`
	EjectionTime string `json:"ejection_time"`
}

// backendStates returns GET /backends as route name -> URL -> state.
func backendStates(t testing.TB, p *proc) map[string]map[string]backendState {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(p.AdminURL("/backends"))
	if err != nil {
		t.Fatalf("GET /backends: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /backends = %d %q", resp.StatusCode, body)
	}
	var doc struct {
		Routes []struct {
			Name     string         `json:"name"`
			Backends []backendState `json:"backends"`
		} `json:"routes"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("/backends: %v\n%s", err, body)
	}
	out := map[string]map[string]backendState{}
	for _, r := range doc.Routes {
		out[r.Name] = map[string]backendState{}
		for _, b := range r.Backends {
			out[r.Name][b.URL] = b
		}
	}
	return out
}

// TestMetricsExactCounters sends a known mix of traffic (successes, a 404, a
// 413, a retried request and an ejected backend) and checks that every
// sluice_ series has exactly the value that traffic implies, and the metric
// types of the documented metrics table.
func TestMetricsExactCounters(t *testing.T) {
	t.Parallel()
	good := newBackend(t, "good", nil)
	smallB := newBackend(t, "small", nil)

	// The flaky route's first request, whichever backend gets it, answers
	// 503; every later one answers 200. So the first request is retried
	// once on the other backend.
	var flakyMu sync.Mutex
	flakyServed := map[string][]int{} // backend name -> statuses it answered
	flakyFirst := true
	flaky := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			flakyMu.Lock()
			status := 200
			if flakyFirst {
				flakyFirst = false
				status = 503
			}
			flakyServed[name] = append(flakyServed[name], status)
			flakyMu.Unlock()
			w.WriteHeader(status)
			io.WriteString(w, name)
		}
	}
	f1, f2 := newBackend(t, "f1", flaky("f1")), newBackend(t, "f2", flaky("f2"))
	bad := newBackend(t, "bad", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		io.WriteString(w, "bad")
	})
	good2 := newBackend(t, "good2", nil)

	p := start(t, fmt.Sprintf(`
retry:
  budget_percent: 100
  backoff: 1ms
routes:
  - name: api
    path_prefix: /api
    backends: [%s]
  - name: small
    path_prefix: /small
    limits:
      max_request_body: 10
    backends: [%s]
  - name: flaky
    path_prefix: /flaky
    health:
      passive:
        consecutive_failures: 1000
    backends: [%s, %s]
  - name: eject
    path_prefix: /eject
    retry:
      attempts: 1
    health:
      passive:
        consecutive_failures: 1
        ejection_time: 1m
    backends: [%s, %s]
`, good.URL, smallB.URL, f1.URL, f2.URL, bad.URL, good2.URL))

	// Before any traffic and any reload: no reload counted.
	fams, err := scrapeFamilies(t, p, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range flattenFamilies(fams) {
		if s.name == "sluice_config_reloads_total" && s.value != 0 {
			t.Errorf("sluice_config_reloads_total%s = %v before any reload, want absent or 0 (the first load does not count)", seriesKey(s.labels), s.value)
		}
	}

	expect := func(method, path, body string, status int, wantBody string) {
		t.Helper()
		resp, got := do(t, method, p.URL(path), body)
		if resp.StatusCode != status || (wantBody != "" && string(got) != wantBody) {
			t.Fatalf("%s %s = %d %q, want %d %q", method, path, resp.StatusCode, got, status, wantBody)
		}
	}
	// Successes: 3 GETs and 2 POSTs.
	for i := 0; i < 3; i++ {
		expect("GET", fmt.Sprintf("/api/get/%d", i), "", 200, "good")
	}
	for i := 0; i < 2; i++ {
		expect("POST", fmt.Sprintf("/api/post/%d", i), "hello", 200, "good")
	}
	// A 404 and a 413.
	expect("GET", "/nowhere", "", 404, "")
	expect("POST", "/small/x", strings.Repeat("z", 100), 413, "")
	// A retried request, then one that is not.
	expect("GET", "/flaky/1", "", 200, "")
	expect("GET", "/flaky/2", "", 200, "")
	// The eject route: bad answers 500 once and is ejected (one failure
	// ejects); the other requests all go to good2.
	codes := map[int]int{}
	for i := 0; i < 4; i++ {
		resp, _ := get(t, p.URL(fmt.Sprintf("/eject/%d", i)))
		codes[resp.StatusCode]++
		if bad.Count() == 1 {
			eventually(t, 5*time.Second, func() bool {
				return backendStates(t, p)["eject"][bad.URL].State == "ejected"
			}, "backend %s to show as ejected after one failure", bad.URL)
		}
	}
	if bad.Count() != 1 || codes[500] != 1 || codes[200] != 3 {
		t.Fatalf("eject route: bad backend got %d requests, clients got %v; want 1 request and one 500, three 200", bad.Count(), codes)
	}
	if smallB.Count() != 0 {
		t.Errorf("the 413 request reached the backend (%d requests)", smallB.Count())
	}

	// What the flaky backends answered decides the per-backend outcomes.
	flakyMu.Lock()
	var failedURL string
	flakyOK := map[string]int{}
	for name, statuses := range flakyServed {
		u := map[string]string{"f1": f1.URL, "f2": f2.URL}[name]
		for _, s := range statuses {
			if s == 503 {
				failedURL = u
			} else {
				flakyOK[u]++
			}
		}
	}
	nFlaky := len(flakyServed["f1"]) + len(flakyServed["f2"])
	flakyMu.Unlock()
	if nFlaky != 3 || failedURL == "" {
		t.Fatalf("flaky backends answered %d requests (%v), want 3: one 503 and its retry, and one more", nFlaky, flakyServed)
	}
	upstreamWant := wantSeries(
		labelsOf("route", "api", "backend", good.URL, "outcome", "ok"), 5,
		labelsOf("route", "flaky", "backend", failedURL, "outcome", "http_error"), 1,
		labelsOf("route", "eject", "backend", bad.URL, "outcome", "http_error"), 1,
		labelsOf("route", "eject", "backend", good2.URL, "outcome", "ok"), 3,
	)
	for u, n := range flakyOK {
		upstreamWant[seriesKey(labelsOf("route", "flaky", "backend", u, "outcome", "ok"))] = float64(n)
	}

	expects := []expectSeries{
		{"sluice_requests_total", true, wantSeries(
			labelsOf("route", "api", "method", "GET", "code", "200"), 3,
			labelsOf("route", "api", "method", "POST", "code", "200"), 2,
			labelsOf("route", "", "method", "GET", "code", "404"), 1,
			labelsOf("route", "small", "method", "POST", "code", "413"), 1,
			labelsOf("route", "flaky", "method", "GET", "code", "200"), 2,
			labelsOf("route", "eject", "method", "GET", "code", "200"), 3,
			labelsOf("route", "eject", "method", "GET", "code", "500"), 1,
		)},
		{"sluice_upstream_requests_total", true, upstreamWant},
		{"sluice_retries_total", true, wantSeries(labelsOf("route", "flaky"), 1)},
		// A backend's own 500 is not a proxy error.
		{"sluice_errors_total", true, wantSeries(
			labelsOf("route", "", "error", "no_route"), 1,
			labelsOf("route", "small", "error", "request_too_large"), 1,
		)},
		{"sluice_backend_ejections_total", true, wantSeries(labelsOf("route", "eject", "backend", bad.URL), 1)},
		{"sluice_backend_healthy", false, wantSeries(
			labelsOf("route", "api", "backend", good.URL), 1,
			labelsOf("route", "small", "backend", smallB.URL), 1,
			labelsOf("route", "flaky", "backend", f1.URL), 1,
			labelsOf("route", "flaky", "backend", f2.URL), 1,
			labelsOf("route", "eject", "backend", bad.URL), 0,
			labelsOf("route", "eject", "backend", good2.URL), 1,
		)},
		// Every request is timed, the unrouted one under route="".
		{"sluice_request_duration_seconds_count", true, wantSeries(
			labelsOf("route", "api"), 5,
			labelsOf("route", ""), 1,
			labelsOf("route", "small"), 1,
			labelsOf("route", "flaky"), 2,
			labelsOf("route", "eject"), 4,
		)},
		{"sluice_inflight_requests", false, wantSeries(labelsOf(), 0)},
		{"sluice_config_reloads_total", true, wantSeries()},
	}

	var problems []string
	ok := poll(5*time.Second, func() bool {
		fams, err = scrapeFamilies(t, p, "")
		if err != nil {
			problems = []string{err.Error()}
			return false
		}
		ss := flattenFamilies(fams)
		problems = nil
		for _, e := range expects {
			problems = append(problems, e.diff(ss)...)
		}
		return len(problems) == 0
	})
	if !ok {
		t.Errorf("metrics differ from the traffic sent:\n  %s", strings.Join(problems, "\n  "))
	}

	types := map[string]dto.MetricType{
		"sluice_requests_total":           dto.MetricType_COUNTER,
		"sluice_request_duration_seconds": dto.MetricType_HISTOGRAM,
		"sluice_upstream_requests_total":  dto.MetricType_COUNTER,
		"sluice_retries_total":            dto.MetricType_COUNTER,
		"sluice_backend_healthy":          dto.MetricType_GAUGE,
		"sluice_backend_ejections_total":  dto.MetricType_COUNTER,
		"sluice_errors_total":             dto.MetricType_COUNTER,
		"sluice_inflight_requests":        dto.MetricType_GAUGE,
	}
	for name, typ := range types {
		f, found := fams[name]
		if !found {
			t.Errorf("/metrics has no family %s", name)
			continue
		}
		if f.GetType() != typ {
			t.Errorf("%s has TYPE %v, want %v", name, f.GetType(), typ)
		}
	}
	if f, found := fams["sluice_config_reloads_total"]; found && f.GetType() != dto.MetricType_COUNTER {
		t.Errorf("sluice_config_reloads_total has TYPE %v, want counter", f.GetType())
	}
	// The histogram's +Inf bucket holds every observation.
	if f := fams["sluice_request_duration_seconds"]; f != nil {
		for _, m := range f.GetMetric() {
			h := m.GetHistogram()
			var inf uint64
			found := false
			for _, b := range h.GetBucket() {
				if math.IsInf(b.GetUpperBound(), 1) {
					inf, found = b.GetCumulativeCount(), true
				}
			}
			if found && inf != h.GetSampleCount() {
				t.Errorf("sluice_request_duration_seconds%v: +Inf bucket %d != count %d", m.GetLabel(), inf, h.GetSampleCount())
			}
		}
	}

	st := backendStates(t, p)["eject"][bad.URL]
	if st.State != "ejected" || st.EjectionTime == "0s" || st.EjectionTime == "" {
		t.Errorf("/backends eject %s = %+v, want state ejected with a non-zero ejection_time", bad.URL, st)
	}
	if d, err := time.ParseDuration(st.EjectionTime); err != nil || d != time.Minute {
		t.Errorf("/backends ejection_time = %q, want 1m (the configured first ejection)", st.EjectionTime)
	}
}
