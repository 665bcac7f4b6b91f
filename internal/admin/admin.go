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
	a.mux.Handle("GET /backends", a.auth(http.HandlerFunc(a.backends)))
	a.mux.Handle("GET /config", a.auth(http.HandlerFunc(a.config)))
	a.mux.Handle("POST /reload", a.auth(http.HandlerFunc(a.reload)))
	if opts.Metrics != nil {
		a.mux.Handle("GET /metrics", a.auth(opts.Metrics))
	}
	if opts.Stats != nil {
		a.mux.HandleFunc("GET /{$}", a.dashboard) // the page holds no data: no token
		a.mux.Handle("GET /stats", a.auth(http.HandlerFunc(a.stats)))
	}
	if opts.Pprof {
		a.mux.Handle("GET /debug/pprof/", a.auth(http.HandlerFunc(pprof.Index)))
		a.mux.Handle("GET /debug/pprof/profile", a.auth(http.HandlerFunc(pprof.Profile)))
		a.mux.Handle("GET /debug/pprof/trace", a.auth(http.HandlerFunc(pprof.Trace)))
		a.mux.Handle("GET /debug/pprof/symbol", a.auth(http.HandlerFunc(pprof.Symbol)))
	}
	return a
}

// Handle adds a handler for pattern behind the token check.
func (a *API) Handle(pattern string, h http.Handler) { a.mux.Handle(pattern, a.auth(h)) }

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// auth requires "Authorization: Bearer <token>" when a token is set. The
// comparison takes the same time whatever the guess, so the token cannot be
// learnt byte by byte from response times.
func (a *API) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := ""
		if a.opts.Token != nil {
			token = a.opts.Token()
		}
		if token != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="sluice admin"`)
				writeJSON(w, http.StatusUnauthorized, map[string]string{
					"error": "unauthorized", "message": "this admin path needs Authorization: Bearer <admin.token>",
				})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
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
