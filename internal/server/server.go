// Package server owns sluice's listeners and process-level lifecycle: the
// proxy listener on the h1 engine with its client-side timeouts and limits,
// the admin listener on net/http, the atomic swap of the runtime on reload,
// and the graceful drain on shutdown. It holds no per-request logic.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sluice-proxy/sluice/internal/accesslog"
	"github.com/sluice-proxy/sluice/internal/admin"
	"github.com/sluice-proxy/sluice/internal/backend"
	"github.com/sluice-proxy/sluice/internal/config"
	"github.com/sluice-proxy/sluice/internal/discovery"
	"github.com/sluice-proxy/sluice/internal/fairpoll"
	"github.com/sluice-proxy/sluice/internal/h1"
	"github.com/sluice-proxy/sluice/internal/health"
	"github.com/sluice-proxy/sluice/internal/metrics"
	"github.com/sluice-proxy/sluice/internal/proxy"
	"github.com/sluice-proxy/sluice/internal/upstream"
)

// Server is a running sluice instance.
type Server struct {
	log       *slog.Logger
	handler   *proxy.Handler
	transport *upstream.Transport
	poller    *fairpoll.Poller // nil when it could not be made
	engine    *h1.Server
	ln        net.Listener // nil when listen is ""
	tlsLn     net.Listener // the HTTPS listener's socket; nil without tls.listen
	edge      *edge        // the HTTPS listener; nil without tls.listen
	conns     *metrics.Conns
	admin     *http.Server
	adminLn   net.Listener
	active    *health.Active
	discovery *discovery.Watcher
	metrics   *metrics.Metrics
	draining  atomic.Bool

	events health.Events
	dash   dashboard

	path  string
	pprof bool

	mu  sync.Mutex // serialises reloads
	cfg *config.Config

	serveErr chan error
}

// New binds the listeners of cfg and builds its runtime. path is the config
// file reloads read ("" when there is none). Nothing is served until Serve.
func New(cfg *config.Config, path string, log *slog.Logger, opts ...Option) (*Server, error) {
	s := &Server{log: log, cfg: cfg, path: path, serveErr: make(chan error, 2)}
	for _, o := range opts {
		o(s)
	}
	var err error
	if cfg.Listen != "" {
		if s.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
	}
	if cfg.TLS.Listen != "" {
		if s.tlsLn, err = net.Listen("tcp", cfg.TLS.Listen); err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("tls.listen: %w", err)
		}
	}
	if cfg.Admin.Listen != "" {
		if s.adminLn, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("admin.listen: %w", err)
		}
	}
	s.transport = upstream.NewTransport(upstream.DefaultIdleTimeout)
	s.metrics = metrics.New(func() float64 { return float64(s.handler.InFlight()) })
	events := &healthEvents{log: log, metrics: s.metrics, note: s.noteTransition}
	s.active = health.NewActive(events)
	s.events = events
	s.discovery = discovery.NewWatcher(discovery.Options{Log: log, Metrics: metrics.NewDiscovery(s.metrics.Registry), Changed: s.rediscover})
	s.handler = proxy.NewHandler(proxy.Build(cfg, s.transport, nil, events, s.metrics), log)
	alog, err := accesslog.Open(cfg.AccessLog, s.metrics.AccessLogError)
	if err != nil {
		s.closeListeners()
		s.transport.Close()
		return nil, fmt.Errorf("access_log: %w", err)
	}
	s.handler.AccessLog.Store(alog)
	// Plain connections, client and backend, wait in the fair poller
	// (served in the order their bytes arrived); without one (it could
	// not be made) they wait in Go's poller.
	if fp, err := fairpoll.New(); err != nil {
		log.Warn("waiting in Go's poller: the fair poller could not start", "error", err)
	} else {
		s.poller = fp
		s.transport.UsePoller(fp)
	}
	s.engine = newEngine(cfg, s.handler)
	s.engine.OnPanic = s.panicked
	s.engine.Poller = s.poller
	s.conns = metrics.NewConns(s.metrics)
	if s.ln != nil {
		s.ln = countingListener{Listener: s.ln, conns: s.conns}
	}
	s.buildEdge(cfg)
	api := admin.New(admin.Options{
		Draining: &s.draining,
		Token:    func() string { return s.Config().Admin.Token },
		Backends: s.backends,
		Config:   func() any { return s.Config().Redacted() },
		Reload:   s.ReloadFile,
		Metrics:  promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{}),
		Stats:    s.stats,
		Pprof:    s.pprof,
	})
	s.admin = &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second}
	return s, nil
}

// Option changes how New builds a server.
type Option func(*Server)

// WithPprof serves the runtime profiles on the admin listener under
// /debug/pprof/.
func WithPprof() Option { return func(s *Server) { s.pprof = true } }

// newEngine configures the engine of the proxy listener.
func newEngine(cfg *config.Config, h *proxy.Handler) *h1.Server {
	l := engineLimits(cfg)
	return &h1.Server{
		Handler:        h,
		MaxHeaderBytes: l.MaxHeaderBytes,
		HeaderTimeout:  l.HeaderTimeout,
		IdleTimeout:    l.IdleTimeout,
	}
}

// engineLimits are cfg's client-side limits, as an engine takes them.
func engineLimits(cfg *config.Config) h1.Limits {
	return h1.Limits{
		MaxHeaderBytes: int(cfg.Limits.MaxHeaderBytes),
		HeaderTimeout:  cfg.Timeouts.ClientHeader.D(),
		IdleTimeout:    cfg.Timeouts.ClientIdle.D(),
	}
}

// Addr returns the proxy listener's address, or nil when listen is "".
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// AdminAddr returns the admin listener's address, or nil when disabled.
func (s *Server) AdminAddr() net.Addr {
	if s.adminLn == nil {
		return nil
	}
	return s.adminLn.Addr()
}

// panicked logs, with its stack, a panic recovered while a connection was
// served, and counts it; the engine has closed that connection only.
func (s *Server) panicked(v any, stack []byte) {
	s.metrics.Panic()
	s.log.Error("panic while serving a connection; that connection was closed",
		"panic", fmt.Sprint(v), "stack", string(stack))
}

// Serve starts serving both listeners, and the health checks, in the
// background.
func (s *Server) Serve() {
	s.active.Sync(s.handler.Runtime().HealthTargets())
	s.startDiscovery()
	s.startDashboard()
	if s.ln != nil {
		go func() { s.serveErr <- s.engine.Serve(s.ln) }()
	}
	s.serveEdge()
	if s.adminLn != nil {
		go func() {
			if err := s.admin.Serve(s.adminLn); !errors.Is(err, http.ErrServerClosed) {
				s.serveErr <- err
			}
		}()
	}
}

// Errors delivers a listener's failure while serving.
func (s *Server) Errors() <-chan error { return s.serveErr }

// Config returns the running configuration.
func (s *Server) Config() *config.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// ReloadFile reads, decodes and validates the config file again and puts
// it in place when it is valid; otherwise the running config stays and the
// problems are logged and returned.
func (s *Server) ReloadFile() []string {
	if s.path == "" {
		problems := []string{"no config file to reload (demo mode)"}
		s.log.Warn("reload failed", "event", "config_reload", "result", "error", "errors", problems)
		s.dash.reloaded(problems)
		return problems
	}
	cfg, err := config.Load(s.path)
	if err != nil {
		s.metrics.Reload(false)
		problems := Problems(err)
		s.log.Error("reload failed; the running configuration stays", "event", "config_reload", "result", "error", "errors", problems)
		s.dash.reloaded(problems)
		return problems
	}
	for _, w := range cfg.Warnings {
		s.log.Warn("configuration warning", "event", "config_reload", "warning", w)
	}
	s.Reload(cfg)
	s.metrics.Reload(true)
	s.dash.reloaded(nil)
	s.log.Info("configuration reloaded", "event", "config_reload", "result", "ok", "routes", len(cfg.Routes))
	return nil
}

// Reload puts cfg in place: new requests use it at once, requests in flight
// finish on the runtime they started with, and backends present before and
// after keep their state. Changes of listen and admin.listen are logged as
// needing a restart.
func (s *Server) Reload(cfg *config.Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cfg.Listen != s.cfg.Listen {
		s.log.Warn("listen changed; it takes effect on restart", "running", s.cfg.Listen, "configured", cfg.Listen)
		cfg.Listen = s.cfg.Listen
	}
	s.reloadEdge(cfg)
	if cfg.Admin.Listen != s.cfg.Admin.Listen {
		s.log.Warn("admin.listen changed; it takes effect on restart", "running", s.cfg.Admin.Listen, "configured", cfg.Admin.Listen)
		cfg.Admin.Listen = s.cfg.Admin.Listen
	}
	// The listener-wide limits apply to the next request of every
	// HTTP/1.1 connection, and of every HTTP/2 stream's rendering; Go's
	// HTTP/2 server keeps its own timeouts until a restart.
	s.engine.SetLimits(engineLimits(cfg))
	if s.edge != nil {
		s.edge.setLimits(cfg)
		for _, c := range []struct {
			field   string
			changed bool
			was, is fmt.Stringer
		}{
			{"timeouts.client_header", s.cfg.Timeouts.ClientHeader != cfg.Timeouts.ClientHeader, s.cfg.Timeouts.ClientHeader, cfg.Timeouts.ClientHeader},
			{"timeouts.client_idle", s.cfg.Timeouts.ClientIdle != cfg.Timeouts.ClientIdle, s.cfg.Timeouts.ClientIdle, cfg.Timeouts.ClientIdle},
		} {
			if c.changed {
				s.log.Info(c.field+" changed; HTTP/2 connections take it on restart, HTTP/1.1 ones at once",
					"running", c.was.String(), "configured", c.is.String())
			}
		}
	}
	s.discovery.Sync(cfg)
	s.install(cfg)
	// A file is opened again on every reload, so that a log rotated by
	// renaming it is followed (logrotate, then SIGHUP).
	if cfg.AccessLog != s.cfg.AccessLog || isFilePath(cfg.AccessLog) {
		if alog, err := accesslog.Open(cfg.AccessLog, s.metrics.AccessLogError); err != nil {
			s.log.Error("access_log cannot be opened; the previous one stays", "error", err.Error())
			cfg.AccessLog = s.cfg.AccessLog
		} else {
			// The old log closes once the requests holding it are done.
			s.handler.AccessLog.Swap(alog)
		}
	}
	s.cfg = cfg
}

// Shutdown drains as docs/configuration.md (Shutdown) says: /readyz turns
// 503; after shutdown_delay the proxy listener stops accepting and idle
// keep-alive connections close; requests in flight, streamed responses
// included, run to completion, or are cut when timeouts.shutdown has
// passed. It returns the number of connections cut.
func (s *Server) Shutdown() int {
	cfg := s.Config()
	s.draining.Store(true)
	s.log.Info("shutting down", "in_flight", s.handler.InFlight(), "shutdown_delay", cfg.Timeouts.ShutdownDelay.D().String())
	if d := cfg.Timeouts.ShutdownDelay.D(); d > 0 {
		time.Sleep(d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeouts.Shutdown.D())
	defer cancel()
	cut := 0
	if err := s.drain(ctx); err != nil {
		inFlight := s.handler.InFlight()
		cut = s.cutAll()
		s.log.Warn("shutdown deadline passed; cutting connections", "connections", cut, "requests", inFlight)
	}
	s.discovery.Stop()
	s.active.Stop()
	s.stopDashboard()
	s.transport.Close()
	if s.poller != nil {
		s.poller.Close()
	}
	s.handler.AccessLog.Load().Close()
	if s.adminLn != nil {
		s.admin.Close()
	}
	s.log.Info("stopped", "cut", cut)
	return cut
}

// forgetRemoved drops the health gauges of backends that old had and rt
// has not.
func (s *Server) forgetRemoved(old, rt *proxy.Runtime) {
	keep := map[[2]string]bool{}
	for _, r := range rt.Routes {
		for _, b := range r.Backends {
			keep[[2]string{r.Name, b.URL}] = true
		}
	}
	for _, r := range old.Routes {
		for _, b := range r.Backends {
			if !keep[[2]string{r.Name, b.URL}] {
				s.metrics.Forget(r.Name, b.URL)
			}
		}
	}
}

func (s *Server) closeListeners() {
	if s.ln != nil {
		s.ln.Close()
	}
	if s.tlsLn != nil {
		s.tlsLn.Close()
	}
	if s.adminLn != nil {
		s.adminLn.Close()
	}
}

// healthEvents logs every health transition once, as a structured event,
// and keeps the health metrics.
type healthEvents struct {
	log     *slog.Logger
	metrics *metrics.Metrics
	note    func(route string, b *backend.Backend, from, to backend.State, reason string) // for the dashboard
}

func (h *healthEvents) Transition(route string, b *backend.Backend, from, to backend.State, reason string) {
	h.metrics.SetHealthy(route, b.URL, to == backend.Healthy)
	if to == backend.Ejected {
		h.metrics.Ejected(route, b.URL)
	}
	h.log.Info("backend state changed", "event", "health_transition", "route", route, "backend", b.URL,
		"from", from.String(), "to", to.String(), "reason", reason)
	if h.note != nil {
		h.note(route, b, from, to, reason)
	}
}

// Problems returns a config error as lines, one a problem.
func Problems(err error) []string {
	var ce *config.Errors
	if errors.As(err, &ce) {
		return ce.Lines()
	}
	return strings.Split(err.Error(), "\n")
}

// isFilePath reports whether an access_log value names a file.
func isFilePath(dest string) bool {
	return dest != "stderr" && dest != "stdout" && dest != "off" && dest != ""
}
