package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Limits bound what one HTTP client can make the server hold. The zero
// value of each field means the documented default.
type Limits struct {
	// ReadHeaderTimeout bounds the time to send a request's headers; zero
	// means 10s (HTTP_READ_HEADER_TIMEOUT).
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection idle that long; zero
	// means 120s (HTTP_IDLE_TIMEOUT).
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request line and headers; zero means 64 KiB
	// (HTTP_MAX_HEADER_BYTES). Larger requests get 431.
	MaxHeaderBytes int
}

func (l Limits) withDefaults() Limits {
	if l.ReadHeaderTimeout <= 0 {
		l.ReadHeaderTimeout = 10 * time.Second
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = 120 * time.Second
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = 64 << 10
	}
	return l
}

// Server serves HTTP with Go's net/http server: its parser, its limits and
// its timeouts. WebSocket connections leave it after the handshake (see
// package gateway), so it only ever holds requests in flight and idle
// keep-alive connections.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
	err  error
}

// Listen starts serving h on ln with limits l. Request contexts derive
// from a base context that Shutdown cancels, so long-lived responses
// (Server-Sent Events) return when the server stops.
func Listen(ln net.Listener, h http.Handler, l Limits, log *slog.Logger) *Server {
	l = l.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base, cancel := context.WithCancel(context.Background())
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return base },
		// Client mistakes (bad requests, resets, TLS probes) are not
		// server errors: keep them at debug level.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	srv.RegisterOnShutdown(cancel)
	s := &Server{ln: ln, srv: srv, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		err := srv.Serve(ln)
		if !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.err = fmt.Errorf("httpapi: serve: %w", err)
			log.Error("http server stopped", "err", err)
		}
	}()
	return s
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// StopAccepting closes the listener; open connections stay.
func (s *Server) StopAccepting() { _ = s.ln.Close() }

// Shutdown stops the server: it cancels every request context (ending
// event streams), closes idle connections and waits for requests in flight
// until ctx is done, then closes the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	<-s.done
	if err != nil {
		return fmt.Errorf("httpapi: shutdown: %w", err)
	}
	return s.err
}
