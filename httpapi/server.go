// Package httpapi is presenced's HTTP surface: NewServer builds the one
// handler that serves the admin API, health checks and the client
// endpoints; Listen serves it with net/http and its limits. routes.go
// lists every route.
package httpapi

import (
	"io/fs"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/presenced/presenced/dashboard"
	"github.com/presenced/presenced/internal/clientip"
	"github.com/presenced/presenced/internal/ratelimit"
	"github.com/presenced/presenced/presence"
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
	// SocketIO serves the Socket.IO endpoint at SocketIOPath (every method:
	// Engine.IO answers a wrong one with 400 itself).
	SocketIO     http.Handler
	SocketIOPath string
	// Metrics are the gauges served on /metrics.
	Metrics []Gauge
	// Collectors are served on /metrics beside Metrics: histograms and
	// labelled counters updated by the code that measures.
	Collectors []prometheus.Collector
	// CORSOrigins lists origins allowed to call the admin API from a
	// browser; empty sends no CORS headers, "*" allows any origin without
	// credentials.
	CORSOrigins []string
	// ClientIP finds the client address behind trusted proxies, for the
	// admin authentication throttle and logs.
	ClientIP clientip.Resolver
	// Sessions are the admin panel's login sessions; nil disables
	// /admin/login and /admin/logout.
	Sessions PanelSessions
	// Panel holds the panel's static files (index.html at the root); nil
	// serves no panel.
	Panel fs.FS
	// MaxBodyBytes bounds request bodies (HTTP_MAX_BODY_BYTES): a larger
	// declared body gets 413, and handlers that read one read at most this
	// much. Zero means 1 MiB.
	MaxBodyBytes int64
	// Who answers who is online (admin list and lookup, batch status);
	// nil answers 501 (external mode).
	Who presence.Directory
	// LastSeen gives the user lookup its last-seen time; nil leaves it out.
	LastSeen LastSeenLookup
	// APIKey lets the app's backend call POST /api/presence/status
	// without admin credentials; "" requires admin credentials.
	APIKey string
	// AdminFailures is how many failed admin authentications one address
	// may make per minute before it gets 429; zero means 20.
	AdminFailures int
}

// NewServer returns the handler for every route of presenced.
func NewServer(d Deps) http.Handler {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.MaxBodyBytes <= 0 {
		d.MaxBodyBytes = 1 << 20
	}
	if d.AdminFailures <= 0 {
		d.AdminFailures = 20
	}
	guard := &adminGuard{check: d.Admin, ips: d.ClientIP, failures: ratelimit.NewFailures(d.AdminFailures, nil), log: d.Logger}
	mux := http.NewServeMux()
	addRoutes(mux, d, guard)
	var h http.Handler = muxErrors(mux, guard)
	h = limitBody(d.MaxBodyBytes)(h)
	h = cors(d.CORSOrigins)(h)
	h = securityHeaders(h)
	h = recoverPanics(d.Logger)(h)
	return h
}
