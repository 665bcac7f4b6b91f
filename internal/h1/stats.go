package h1

// OpenConns returns the number of client connections open now: serving a
// request or waiting for the next one.
func (s *Server) OpenConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
