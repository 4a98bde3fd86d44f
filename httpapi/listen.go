package httpapi

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/lesismal/nbio/nbhttp"
)

// Server serves a handler on nbio's event loop: connections wait in epoll
// without a goroutine or buffers of their own, which is what keeps an idle
// WebSocket connection at about a kilobyte.
type Server struct {
	ln     net.Listener
	engine *nbhttp.Engine
}

// Listen starts serving h on ln.
func Listen(ln net.Listener, h http.Handler) (*Server, error) {
	engine := nbhttp.NewEngine(nbhttp.Config{
		Network: "tcp", Addrs: []string{ln.Addr().String()},
		Listen:                  func(string, string) (net.Listener, error) { return ln, nil },
		Handler:                 h,
		MaxLoad:                 1 << 20, // the open-files limit is the real cap
		ReleaseWebsocketPayload: true,
		ReadBufferSize:          4096,
		MaxHTTPBodySize:         1 << 20,
		KeepaliveTime:           2 * time.Minute,
	})
	if err := engine.Start(); err != nil {
		return nil, fmt.Errorf("httpapi: start: %w", err)
	}
	return &Server{ln: ln, engine: engine}, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// StopAccepting closes the listener; open connections stay.
func (s *Server) StopAccepting() { _ = s.ln.Close() }

// Shutdown closes every connection, waiting for handlers in flight until
// ctx is done.
func (s *Server) Shutdown(ctx context.Context) error { return s.engine.Shutdown(ctx) }
