// Package admin owns the admin API served on its own listener, apart from
// the proxy listener so that no route can shadow it and no proxy client can
// reach it. It reads snapshots of the running state; it changes the data
// plane only through the Reload function it is given.
package admin

import (
	"net/http"
	"sync/atomic"
)

// API is the admin HTTP handler.
type API struct {
	mux      *http.ServeMux
	draining *atomic.Bool
}

// New returns the admin API. draining turns /readyz to 503 when set.
func New(draining *atomic.Bool) *API {
	a := &API{mux: http.NewServeMux(), draining: draining}
	a.mux.HandleFunc("GET /healthz", a.healthz)
	a.mux.HandleFunc("GET /readyz", a.readyz)
	return a
}

// Handle adds a handler for pattern, as http.ServeMux.Handle does.
func (a *API) Handle(pattern string, h http.Handler) { a.mux.Handle(pattern, h) }

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

func (a *API) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok"))
}

func (a *API) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if a.draining.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("draining"))
		return
	}
	w.Write([]byte("ready"))
}
