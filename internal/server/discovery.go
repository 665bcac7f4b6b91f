package server

import (
	"github.com/sluice-proxy/sluice/internal/config"
	"github.com/sluice-proxy/sluice/internal/proxy"
)

// install builds the runtime of cfg with the endpoints service discovery
// has found, puts it in place, and brings the rest in step: the series of
// backends gone are dropped, the active probes follow the backends, and
// the pools of addresses no backend has any more are closed (requests in
// flight on them finish first). Backends present before and after keep
// their state. s.mu is held.
func (s *Server) install(cfg *config.Config) {
	old := s.handler.Runtime()
	rt := proxy.BuildWith(cfg, s.transport, old, s.events, s.metrics, s.discovery.Sets())
	s.handler.Store(rt)
	s.forgetRemoved(old, rt)
	s.active.Sync(rt.HealthTargets())
	s.transport.Retain(rt.Addrs())
}

// startDiscovery starts resolving the discovered backends of the running
// configuration; Serve calls it. Nothing waits for the answers.
func (s *Server) startDiscovery() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.discovery.Sync(s.cfg)
}

// rediscover puts in place the running configuration with the endpoints
// service discovery has just found, as a reload does, without reading the
// file; the discovery watcher calls it after a set changed.
func (s *Server) rediscover() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.install(s.cfg)
}
