package gateway

// PollingGETHeld reports whether polling session sid has a GET in flight,
// so tests can order a request after a long-poll the server really holds.
func PollingGETHeld(g *Gateway, sid string) bool {
	ss := g.sio.lookup(sid)
	if ss == nil {
		return false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.getActive
}
