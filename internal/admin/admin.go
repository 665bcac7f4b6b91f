// Package admin owns the admin API served on its own listener, apart from
// the proxy listener so that no route can shadow it and no proxy client can
// reach it. It reads snapshots of the running state; it changes the data
// plane only through the Reload function it is given.
package admin

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync/atomic"
)

// Options are the parts of the running instance the API reads or drives.
type Options struct {
	// Draining turns /readyz to 503 when set.
	Draining *atomic.Bool
	// Token returns the bearer token every path but /healthz and /readyz
	// needs; "" for none. It is a function so that a reload can change it.
	Token func() string
	// Backends returns the /backends document.
	Backends func() any
	// Config returns the running configuration, already redacted.
	Config func() any
	// Reload reloads the config file and returns its problems, if any.
	Reload func() []string
	// Metrics serves /metrics; nil leaves it out.
	Metrics http.Handler
	// Stats returns the /stats document, which the dashboard at / shows;
	// nil leaves both out.
	Stats func() any
	// Pprof mounts the runtime profiles under /debug/pprof/ (behind the
	// token), for profiling the live proxy.
	Pprof bool
}

// API is the admin HTTP handler.
type API struct {
	mux  *http.ServeMux
	opts Options
}

// New returns the admin API.
func New(opts Options) *API {
	a := &API{mux: http.NewServeMux(), opts: opts}
	a.mux.HandleFunc("GET /healthz", a.healthz)
	a.mux.HandleFunc("GET /readyz", a.readyz)
	a.mux.HandleFunc("GET /backends", a.backends)
	a.mux.HandleFunc("GET /config", a.config)
	a.mux.HandleFunc("POST /reload", a.reload)
	if opts.Metrics != nil {
		a.mux.Handle("GET /metrics", opts.Metrics)
	}
	if opts.Stats != nil {
		a.mux.HandleFunc("GET /{$}", a.dashboard) // the page holds no data: no token
		a.mux.HandleFunc("GET /stats", a.stats)
	}
	if opts.Pprof {
		a.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		a.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		a.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		a.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	}
	return a
}

// Handle adds a handler for pattern, behind the token like every path.
func (a *API) Handle(pattern string, h http.Handler) { a.mux.Handle(pattern, h) }

// ServeHTTP serves the admin paths. With a token set, every path but
// /healthz, /readyz and the dashboard's page (which holds no data) needs
// it, one that does not exist too: 401 before anything else is said.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !a.open(r.URL.Path) && !a.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sluice admin"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{
			"error": "unauthorized", "message": "this admin path needs Authorization: Bearer <admin.token>",
		})
		return
	}
	a.mux.ServeHTTP(w, r)
}

// open reports the paths that need no token.
func (a *API) open(path string) bool {
	return path == "/healthz" || path == "/readyz" || path == "/" && a.opts.Stats != nil
}

// authorized reports whether r may use the admin API: no token is set, or
// it carries "Authorization: Bearer <token>" (the scheme in any case, as
// RFC 9110 has it). The comparison takes the same time whatever the guess,
// so the token cannot be learnt byte by byte from response times.
func (a *API) authorized(r *http.Request) bool {
	token := ""
	if a.opts.Token != nil {
		token = a.opts.Token()
	}
	if token == "" {
		return true
	}
	scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	return ok && strings.EqualFold(scheme, "Bearer") && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

func (a *API) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok"))
}

func (a *API) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if a.opts.Draining != nil && a.opts.Draining.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("draining"))
		return
	}
	w.Write([]byte("ready"))
}

func (a *API) backends(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.opts.Backends())
}

func (a *API) config(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.opts.Config())
}

func (a *API) reload(w http.ResponseWriter, _ *http.Request) {
	if problems := a.opts.Reload(); len(problems) > 0 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"result": "error", "errors": problems})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"result": "ok"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
