// Package httpapi is presenced's HTTP surface: NewServer builds the one
// handler that serves the admin API, health checks and the client
// endpoints. routes.go lists every route.
package httpapi

import (
	"log/slog"
	"net/http"

	"github.com/presenced/presenced/dashboard"
)

// AdminChecker decides whether a request carries admin credentials.
type AdminChecker interface {
	Check(r *http.Request) bool
}

// Deps are what the handlers need.
type Deps struct {
	Logger    *slog.Logger
	Dashboard *dashboard.Service
	Admin     AdminChecker
	// WebSocket serves GET /ws.
	WebSocket http.Handler
	// Metrics are the gauges served on /metrics.
	Metrics []Gauge
	// CORSOrigins lists origins allowed to call the admin API from a
	// browser; empty sends no CORS headers.
	CORSOrigins []string
}

// NewServer returns the handler for every route of presenced.
func NewServer(d Deps) http.Handler {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	addRoutes(mux, d)
	var h http.Handler = mux
	h = cors(d.CORSOrigins)(h)
	h = recoverPanics(d.Logger)(h)
	return h
}
