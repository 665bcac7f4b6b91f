package server

import (
	"math"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/sluice-proxy/sluice/internal/backend"
	"github.com/sluice-proxy/sluice/internal/metrics"
	"github.com/sluice-proxy/sluice/internal/stats"
)

// WithVersion sets the version /stats reports.
func WithVersion(v string) Option { return func(s *Server) { s.dash.version = v } }

// dashboard is what /stats reports beyond the routes' meters: the
// process's start, version and reloads, and the last health transitions.
// It also owns the sampler, the goroutine that closes each second of the
// meters.
type dashboard struct {
	version     string
	transitions stats.Transitions

	mu         sync.Mutex
	started    time.Time // when Serve began
	loaded     time.Time // when the running configuration was put in place
	lastReload *reloadDoc
	reloadsOK  uint64
	reloadsErr uint64
	stop, done chan struct{}
}

// startDashboard starts the sampler; Serve calls it.
func (s *Server) startDashboard() {
	d := &s.dash
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stop != nil {
		return
	}
	d.started = time.Now()
	d.loaded = d.started
	d.stop, d.done = make(chan struct{}), make(chan struct{})
	go s.sample(d.stop, d.done)
}

// stopDashboard stops the sampler and waits for it; Shutdown calls it.
func (s *Server) stopDashboard() {
	d := &s.dash
	d.mu.Lock()
	stop, done := d.stop, d.done
	if stop != nil {
		// Checked and closed under the lock: two shutdowns at once must
		// not both close it.
		select {
		case <-stop:
		default:
			close(stop)
		}
	}
	d.mu.Unlock()
	if stop == nil {
		return
	}
	<-done
}

// sample closes a second of every route's meters each second, until stop
// is closed.
func (s *Server) sample(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			for _, r := range s.handler.Runtime().Routes {
				r.Stats.Sample(now)
			}
		}
	}
}

// reloaded records the outcome of a reload of the config file.
func (d *dashboard) reloaded(problems []string) {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	doc := &reloadDoc{Time: now.UTC(), Result: "ok", Errors: []string{}}
	if len(problems) > 0 {
		doc.Result, doc.Errors = "error", problems
		d.reloadsErr++
	} else {
		d.loaded = now
		d.reloadsOK++
	}
	d.lastReload = doc
}

// noteTransition records a health transition for /stats, and counts an
// ejection in the meters of its route and backend.
func (s *Server) noteTransition(route string, b *backend.Backend, from, to backend.State, reason string) {
	s.dash.transitions.Add(stats.Transition{Time: time.Now(), Route: route, Backend: b.URL,
		From: from.String(), To: to.String(), Reason: reason})
	if to != backend.Ejected || s.handler == nil {
		return
	}
	for _, r := range s.handler.Runtime().Routes {
		if r.Name == route {
			r.Stats.Ejected(b.URL)
		}
	}
}

// The /stats document; the README's "Dashboard" section describes it.
type (
	statsDoc struct {
		Time          time.Time       `json:"time"`
		WindowSeconds int             `json:"window_seconds"`
		Process       processDoc      `json:"process"`
		Routes        []routeStats    `json:"routes"`
		Transitions   []transitionDoc `json:"transitions"`
	}
	processDoc struct {
		Version          string    `json:"version"`
		Started          time.Time `json:"started"`
		UptimeSeconds    num       `json:"uptime_seconds"`
		ConnectionsOpen  int       `json:"connections_open"`
		RequestsInFlight int64     `json:"requests_in_flight"`
		Goroutines       int       `json:"goroutines"`
		Config           configDoc `json:"config"`
	}
	configDoc struct {
		Loaded        time.Time  `json:"loaded"`
		ReloadsOK     uint64     `json:"reloads_ok"`
		ReloadsFailed uint64     `json:"reloads_failed"`
		LastReload    *reloadDoc `json:"last_reload"`
	}
	reloadDoc struct {
		Time   time.Time `json:"time"`
		Result string    `json:"result"`
		Errors []string  `json:"errors"`
	}
	figuresDoc struct {
		RequestsTotal     uint64    `json:"requests_total"`
		RequestsPerSecond num       `json:"requests_per_second"`
		ErrorRate         num       `json:"error_rate"`
		P50               num       `json:"p50_ms"`
		P99               num       `json:"p99_ms"`
		Requests          uint64    `json:"requests"`
		Errors            uint64    `json:"errors"`
		Retries           uint64    `json:"retries"`
		Ejections         uint64    `json:"ejections"`
		InFlight          int64     `json:"in_flight"`
		Series            seriesDoc `json:"series"`
	}
	seriesDoc struct {
		RequestsPerSecond []num `json:"requests_per_second"`
		P99               []num `json:"p99_ms"`
	}
	routeStats struct {
		Name       string `json:"name"`
		Host       string `json:"host"`
		PathPrefix string `json:"path_prefix"`
		Balancer   string `json:"balancer"`
		figuresDoc
		Codes        codesDoc          `json:"codes"`
		ErrorsByWord map[string]uint64 `json:"errors_by_word"`
		RateLimited  *uint64           `json:"rate_limited,omitempty"`
		Overloaded   *uint64           `json:"overloaded,omitempty"`
		Backends     []backendStats    `json:"backends"`
	}
	codesDoc struct {
		C1xx uint64 `json:"1xx"`
		C2xx uint64 `json:"2xx"`
		C3xx uint64 `json:"3xx"`
		C4xx uint64 `json:"4xx"`
		C5xx uint64 `json:"5xx"`
	}
	backendStats struct {
		URL                 string `json:"url"`
		Weight              int    `json:"weight"`
		State               string `json:"state"`
		Since               string `json:"since"`
		Reason              string `json:"reason"`
		ConsecutiveFailures int64  `json:"consecutive_failures"`
		EjectionTime        string `json:"ejection_time"`
		figuresDoc
		EjectionsTotal uint64 `json:"ejections_total"`
	}
	transitionDoc struct {
		Time    time.Time `json:"time"`
		Route   string    `json:"route"`
		Backend string    `json:"backend"`
		From    string    `json:"from"`
		To      string    `json:"to"`
		Reason  string    `json:"reason"`
	}
)

// num is a figure: null when it has no value (NaN), otherwise a number with
// four significant digits, which is all a dashboard shows.
type num float64

func (n num) MarshalJSON() ([]byte, error) {
	v := float64(n)
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return []byte("null"), nil
	case math.Abs(v) >= 1000:
		return strconv.AppendFloat(nil, math.Round(v), 'f', -1, 64), nil
	}
	return strconv.AppendFloat(nil, v, 'g', 4, 64), nil
}

// The error words counted apart when this build has them.
const (
	wordRateLimited = "rate_limited"
	wordOverloaded  = "backend_overloaded"
)

// stats returns the /stats document.
func (s *Server) stats() any {
	now := time.Now()
	rt := s.handler.Runtime()
	d := &s.dash
	d.mu.Lock()
	started, loaded, last := d.started, d.loaded, d.lastReload
	cfg := configDoc{Loaded: loaded.UTC(), ReloadsOK: d.reloadsOK, ReloadsFailed: d.reloadsErr, LastReload: last}
	d.mu.Unlock()
	if started.IsZero() {
		started, cfg.Loaded = now, now.UTC()
	}
	doc := statsDoc{
		Time: now.UTC(), WindowSeconds: stats.Window,
		Process: processDoc{
			Version: d.version, Started: started.UTC(), UptimeSeconds: num(now.Sub(started).Seconds()),
			ConnectionsOpen: s.openConns(), RequestsInFlight: s.handler.InFlight(),
			Goroutines: runtime.NumGoroutine(), Config: cfg,
		},
		Routes:      []routeStats{},
		Transitions: []transitionDoc{},
	}
	for i, r := range rt.Routes {
		f := r.Stats.Figures(now)
		rs := routeStats{Name: r.Name, Host: r.Host, PathPrefix: r.Prefix, Balancer: rt.Config.Routes[i].Balancer,
			figuresDoc: figures(f.Figures), ErrorsByWord: map[string]uint64{}, Backends: []backendStats{}}
		rs.Codes = codesDoc{f.Codes[1], f.Codes[2], f.Codes[3], f.Codes[4], f.Codes[5]}
		for w := 1; w < stats.MaxWords; w++ {
			name := metrics.ErrorWord(w).String()
			if name == "" {
				continue
			}
			n := f.Words[w]
			switch name {
			case wordRateLimited:
				rs.RateLimited = &n
			case wordOverloaded:
				rs.Overloaded = &n
			}
			if n > 0 {
				rs.ErrorsByWord[name] = n
			}
		}
		for j, b := range r.Backends {
			st := b.Status()
			bs := backendStats{URL: b.URL, Weight: b.Weight, State: st.State.String(),
				Since: st.Since.UTC().Format(time.RFC3339), Reason: st.Reason,
				ConsecutiveFailures: st.ConsecutiveFailures, EjectionTime: st.EjectionTime.String()}
			if j < len(f.Backends) {
				bs.figuresDoc = figures(f.Backends[j])
				bs.EjectionsTotal = f.Backends[j].EjectionsTotal
			}
			bs.InFlight = st.InFlight
			rs.InFlight += st.InFlight
			rs.Backends = append(rs.Backends, bs)
		}
		doc.Routes = append(doc.Routes, rs)
	}
	for _, t := range d.transitions.Recent() {
		doc.Transitions = append(doc.Transitions, transitionDoc{Time: t.Time.UTC(), Route: t.Route,
			Backend: t.Backend, From: t.From, To: t.To, Reason: t.Reason})
	}
	return doc
}

func figures(f stats.Figures) figuresDoc {
	doc := figuresDoc{
		RequestsTotal: f.Total, RequestsPerSecond: num(f.RPS), ErrorRate: num(f.ErrorRate),
		P50: num(f.P50), P99: num(f.P99), Requests: f.Requests, Errors: f.Errors,
		Retries: f.Retries, Ejections: f.Ejections,
		Series: seriesDoc{RequestsPerSecond: make([]num, stats.Window), P99: make([]num, stats.Window)},
	}
	for i := range stats.Window {
		doc.Series.RequestsPerSecond[i] = num(f.SeriesRPS[i])
		doc.Series.P99[i] = num(f.SeriesP99[i])
	}
	return doc
}
