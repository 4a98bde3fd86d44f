package gateway

import "sync/atomic"

// ByTransport is one counter per transport (TransportWebSocket,
// TransportSocketIOWebSocket, TransportSocketIOPolling), for /metrics.
type ByTransport struct {
	ws, sioWS, sioPolling atomic.Int64
}

// Transports lists the transports in the order /metrics shows them.
var Transports = []string{TransportWebSocket, TransportSocketIOWebSocket, TransportSocketIOPolling}

func (b *ByTransport) counter(transport string) *atomic.Int64 {
	switch transport {
	case TransportSocketIOWebSocket:
		return &b.sioWS
	case TransportSocketIOPolling:
		return &b.sioPolling
	}
	return &b.ws
}

func (b *ByTransport) add(transport string) { b.counter(transport).Add(1) }

// Load returns the count of transport.
func (b *ByTransport) Load(transport string) int64 { return b.counter(transport).Load() }

// refusedAuth counts a handshake or Socket.IO CONNECT refused for its
// token: missing or invalid.
func (s *Stats) refusedAuth(transport, token string) {
	s.RefusedAuth.Add(1)
	s.Unauthorized.add(transport)
	if token == "" {
		s.AuthMissing.Add(1)
	} else {
		s.AuthInvalid.Add(1)
	}
}

// refusedLimit counts a connection refused by a per-address rate or cap.
func (s *Stats) refusedLimit(transport string) {
	s.RefusedLimit.Add(1)
	s.RateLimited.add(transport)
}

// sioTransport names a Socket.IO session's transport in a session state.
func sioTransport(websocket bool) string {
	if websocket {
		return TransportSocketIOWebSocket
	}
	return TransportSocketIOPolling
}
