package metrics

import "github.com/prometheus/client_golang/prometheus"

// Conns counts the proxy listeners' client connections, once their
// protocol is known, and the TLS handshakes that failed. Its counters are
// resolved when it is made; its methods do no lookups.
type Conns struct {
	plain      prometheus.Counter // listener http, HTTP/1.1
	secure     prometheus.Counter // listener https, HTTP/1.1
	secure2    prometheus.Counter // listener https, HTTP/2.0
	handshakes prometheus.Counter
}

// NewConns registers sluice_connections_total and
// sluice_tls_handshake_errors_total on m's registry, every series at 0;
// call it once per Metrics.
func NewConns(m *Metrics) *Conns {
	conns := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_connections_total",
		Help: "Client connections of the proxy listeners, by listener (http, https) and protocol (the ALPN result on https).",
	}, []string{"listener", "proto"})
	failed := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_tls_handshake_errors_total",
		Help: "TLS handshakes on the HTTPS listener that failed or timed out.",
	})
	m.Registry.MustRegister(conns, failed)
	return &Conns{
		plain:      conns.WithLabelValues("http", "HTTP/1.1"),
		secure:     conns.WithLabelValues("https", "HTTP/1.1"),
		secure2:    conns.WithLabelValues("https", "HTTP/2.0"),
		handshakes: failed,
	}
}

// Plain counts a connection of the plain listener.
func (c *Conns) Plain() { c.plain.Inc() }

// Secure counts a connection of the HTTPS listener after its handshake,
// HTTP/2 when h2 was negotiated and HTTP/1.1 otherwise.
func (c *Conns) Secure(h2 bool) {
	if h2 {
		c.secure2.Inc()
	} else {
		c.secure.Inc()
	}
}

// HandshakeFailed counts a TLS handshake that failed or timed out.
func (c *Conns) HandshakeFailed() { c.handshakes.Inc() }
