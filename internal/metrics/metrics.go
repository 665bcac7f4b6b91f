// Package metrics owns the Prometheus registry of one sluice instance and
// typed recorders whose label children are resolved when the routes are
// built, so the request path does no label lookups. balance and route never
// import it.
package metrics

import (
	"regexp"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Buckets are the request duration buckets, from 0.5 ms to 30 s.
var Buckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Outcomes are the values of the outcome label, in the order Route.Upstream
// takes them.
var Outcomes = []string{"ok", "http_error", "connect_error", "timeout", "reset"}

// ErrorWord is an error word: sent in the proxy's error bodies, written to
// the access log and counted in sluice_errors_total. The set is closed, so
// a word without a metric series cannot exist.
type ErrorWord uint8

// The error words. NoError is the zero value: no error.
const (
	NoError ErrorWord = iota
	ErrBadRequest
	ErrNoRoute
	ErrMethodNotAllowed
	ErrClientTimeout
	ErrRequestTooLarge
	ErrHeadersTooLarge
	ErrUpstream
	ErrResponseTooLarge
	ErrNoHealthyBackend
	ErrRetryBudget
	ErrUpstreamTimeout
	ErrClientDisconnect
	ErrRateLimited
	ErrBackendOverloaded
	numErrorWords
)

var errorWords = [numErrorWords]string{
	"", "bad_request", "no_route", "method_not_allowed", "client_timeout", "request_too_large",
	"headers_too_large", "upstream_error", "response_too_large", "no_healthy_backend",
	"retry_budget_exhausted", "upstream_timeout", "client_disconnect", "rate_limited",
	"backend_overloaded",
}

// String returns the word as it is written ("" for NoError).
func (w ErrorWord) String() string {
	if w >= numErrorWords {
		return ""
	}
	return errorWords[w]
}

// ErrorWords are the values of the error label, in ErrorWord order from
// ErrBadRequest.
var ErrorWords = errorWords[1:]

// Metrics is the registry and the metric families of one instance.
type Metrics struct {
	Registry *prometheus.Registry

	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	upstream  *prometheus.CounterVec
	retries   *prometheus.CounterVec
	healthy   *prometheus.GaugeVec
	ejections *prometheus.CounterVec
	errors    *prometheus.CounterVec
	limited   *prometheus.CounterVec
	reloads   *prometheus.CounterVec
	panics    prometheus.Counter
	logErrors *prometheus.CounterVec
}

// New returns the metrics of an instance, with the Go and process
// collectors; inFlight is read for sluice_inflight_requests.
func New(inFlight func() float64) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_requests_total", Help: "Client requests, by route, method and the status sent to the client.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_request_duration_seconds", Help: "Time from a request's arrival to the last byte of its response.",
			Buckets: Buckets,
		}, []string{"route"}),
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_upstream_requests_total", Help: "Tries sent to backends, by outcome.",
		}, []string{"route", "backend", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_retries_total", Help: "Retries: tries after the first.",
		}, []string{"route"}),
		healthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_backend_healthy", Help: "1 when the backend takes traffic, 0 when unhealthy or ejected.",
		}, []string{"route", "backend"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_backend_ejections_total", Help: "Passive ejections of a backend.",
		}, []string{"route", "backend"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_errors_total", Help: "Failed requests, by error word.",
		}, []string{"route", "error"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_rate_limited_total", Help: "Requests refused by the route's rate limit (429).",
		}, []string{"route"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_config_reloads_total", Help: "Configuration reloads, by result.",
		}, []string{"result"}),
	}
	m.panics = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_panics_total", Help: "Panics recovered while serving a connection; each closed that connection only.",
	})
	m.logErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_access_log_errors_total", Help: "Access log lines not written whole, by cause (write_error, dropped).",
	}, []string{"cause"})
	m.logErrors.WithLabelValues("write_error")
	m.logErrors.WithLabelValues("dropped")
	m.Registry.MustRegister(m.panics, m.logErrors)
	m.Registry.MustRegister(m.requests, m.duration, m.upstream, m.retries, m.healthy, m.ejections, m.errors, m.limited, m.reloads,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_inflight_requests", Help: "Requests being served, streamed responses included.",
		}, inFlight),
		// The default Go series, plus the scheduler's latency histogram
		// (go_sched_latencies_seconds: how long runnable goroutines
		// waited for a thread), which is where a saturated proxy's tail
		// shows first.
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
			collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/sched/latencies:seconds$`)})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("error")
	return m
}

// Reload counts a configuration reload with result "ok" or "error".
func (m *Metrics) Reload(ok bool) {
	if ok {
		m.reloads.WithLabelValues("ok").Inc()
	} else {
		m.reloads.WithLabelValues("error").Inc()
	}
}

// Panic counts a panic recovered while a connection was served.
func (m *Metrics) Panic() { m.panics.Inc() }

// AccessLogError counts access log lines that failed to be written (cause
// "write_error") or were dropped (cause "dropped").
func (m *Metrics) AccessLogError(cause string, lines int) {
	m.logErrors.WithLabelValues(cause).Add(float64(lines))
}

// SetHealthy sets a backend's sluice_backend_healthy.
func (m *Metrics) SetHealthy(route, backend string, healthy bool) {
	if m == nil {
		return
	}
	v := 0.0
	if healthy {
		v = 1
	}
	m.healthy.WithLabelValues(route, backend).Set(v)
}

// Ejected counts an ejection.
func (m *Metrics) Ejected(route, backend string) {
	m.ejections.WithLabelValues(route, backend).Inc()
}

// Forget drops the series of a backend no longer in its route (a reload
// removed it, or service discovery no longer finds it): its health gauge,
// ejections and upstream outcomes, so that backends that come and go do
// not grow the series without bound.
func (m *Metrics) Forget(route, backend string) {
	m.healthy.DeleteLabelValues(route, backend)
	m.ejections.DeleteLabelValues(route, backend)
	m.upstream.DeletePartialMatch(prometheus.Labels{"route": route, "backend": backend})
}

// methods are the methods that get their own label value; others are
// counted as "OTHER", so that a client cannot grow the series without bound.
var methods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "OTHER"}

func methodIndex(m []byte) int {
	for i, s := range methods[:len(methods)-1] {
		if string(m) == s {
			return i
		}
	}
	return len(methods) - 1
}

// Route holds the resolved children of one route (or of unmatched requests,
// route ""). Its recorders do no map lookups and no allocation once a
// (method, code) pair has been seen.
type Route struct {
	m        *Metrics
	name     string
	duration prometheus.Observer
	retries  prometheus.Counter
	limited  prometheus.Counter // nil for route ""
	errors   [numErrorWords]prometheus.Counter
	upstream [][5]prometheus.Counter // by backend index, then outcome
	requests [8][600]atomic.Pointer[prometheus.Counter]
}

// Route resolves the children of route, with its backends' URLs in config
// order. On a nil Metrics it returns nil, whose recorders do nothing.
func (m *Metrics) Route(route string, backends []string) *Route {
	if m == nil {
		return nil
	}
	r := &Route{m: m, name: route, duration: m.duration.WithLabelValues(route), retries: m.retries.WithLabelValues(route)}
	for w := ErrBadRequest; w < numErrorWords; w++ {
		r.errors[w] = m.errors.WithLabelValues(route, w.String())
	}
	if route != "" {
		r.limited = m.limited.WithLabelValues(route)
	}
	r.upstream = make([][5]prometheus.Counter, len(backends))
	for i, b := range backends {
		for j, o := range Outcomes {
			r.upstream[i][j] = m.upstream.WithLabelValues(route, b, o)
		}
	}
	return r
}

// Request counts a finished request and its duration in seconds.
func (r *Route) Request(method []byte, code int, seconds float64) {
	if r == nil {
		return
	}
	r.duration.Observe(seconds)
	if code < 0 || code >= 600 {
		code = 0
	}
	mi := methodIndex(method)
	p := r.requests[mi][code].Load()
	if p == nil {
		c := r.m.requests.WithLabelValues(r.name, methods[mi], strconv.Itoa(code))
		p = &c
		r.requests[mi][code].Store(p)
	}
	(*p).Inc()
}

// Upstream counts a try against the backend at index with its outcome.
func (r *Route) Upstream(index int, outcome string) {
	if r == nil {
		return
	}
	for j, o := range Outcomes {
		if o == outcome {
			r.upstream[index][j].Inc()
			return
		}
	}
}

// Retry counts a retry.
func (r *Route) Retry() {
	if r != nil {
		r.retries.Inc()
	}
}

// RateLimited counts a request refused by the route's rate limit; its
// error word is counted by Error as for any other.
func (r *Route) RateLimited() {
	if r != nil && r.limited != nil {
		r.limited.Inc()
	}
}

// Error counts a failed request under its error word.
func (r *Route) Error(w ErrorWord) {
	if r == nil || w == NoError || w >= numErrorWords {
		return
	}
	r.errors[w].Inc()
}
