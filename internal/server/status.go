package server

import (
	"time"
)

// backendsDoc is the /backends document.
type backendsDoc struct {
	Routes []routeStatus `json:"routes"`
}

type routeStatus struct {
	Name     string          `json:"name"`
	Backends []backendStatus `json:"backends"`
}

type backendStatus struct {
	URL                 string `json:"url"`
	State               string `json:"state"`
	Since               string `json:"since"`
	Reason              string `json:"reason"`
	ConsecutiveFailures int64  `json:"consecutive_failures"`
	InFlight            int64  `json:"in_flight"`
	EjectionTime        string `json:"ejection_time"`
}

// backends returns the state of every backend of the running config, routes
// and backends in config order.
func (s *Server) backends() any {
	rt := s.handler.Runtime()
	doc := backendsDoc{Routes: []routeStatus{}}
	for _, r := range rt.Routes {
		rs := routeStatus{Name: r.Name, Backends: []backendStatus{}}
		for _, b := range r.Backends {
			st := b.Status()
			rs.Backends = append(rs.Backends, backendStatus{
				URL: b.URL, State: st.State.String(), Since: st.Since.UTC().Format(time.RFC3339),
				Reason: st.Reason, ConsecutiveFailures: st.ConsecutiveFailures,
				InFlight: st.InFlight, EjectionTime: st.EjectionTime.String(),
			})
		}
		doc.Routes = append(doc.Routes, rs)
	}
	return doc
}
