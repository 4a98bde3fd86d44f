package httpapi

import "net/http"

// addRoutes registers every route presenced serves: the whole API surface
// on one screen. Requests that match no route (404) or only with another
// method (405 with Allow) are answered by muxErrors.
func addRoutes(mux *http.ServeMux, d Deps, guard *adminGuard) {
	admin := guard.wrap
	mux.Handle("GET /healthz", handleHealthz())
	mux.Handle("GET /readyz", handleReadyz(d.Dashboard))
	mux.Handle("GET /metrics", handleMetrics(d.Metrics, d.Collectors))

	mux.Handle("GET /api/admin/dashboard/overview", admin(handleOverview(d.Dashboard)))
	mux.Handle("GET /api/admin/dashboard/server-load", admin(handleServerLoad(d.Dashboard)))
	mux.Handle("GET /api/admin/dashboard/history", admin(handleHistory(d.Dashboard, d.Logger)))
	mux.Handle("GET /api/admin/dashboard/stream", admin(handleStream(d.Dashboard.Stream())))

	mux.Handle("GET /api/admin/presence/users", admin(handleListUsers(d.Who, d.Logger)))
	mux.Handle("GET /api/admin/presence/users/{id}", admin(handleUser(d.Who, d.LastSeen, d.Logger)))
	mux.Handle("POST /api/presence/status", apiKeyOrAdmin(d.APIKey, guard)(handleStatus(d.Who, d.MaxBodyBytes, d.Logger)))

	if d.Panel != nil {
		mux.Handle("GET /admin/", handlePanel(d.Panel))
		mux.Handle("GET /admin", http.RedirectHandler("/admin/", http.StatusMovedPermanently))
	}
	if d.Sessions != nil {
		mux.Handle("POST /admin/login", handleLogin(d.Sessions, guard))
		mux.Handle("POST /admin/logout", handleLogout(d.Sessions, guard))
	}

	if d.WebSocket != nil {
		mux.Handle("GET /ws", d.WebSocket)
	}
	if d.SocketIO != nil && d.SocketIOPath != "" {
		mux.Handle(d.SocketIOPath, d.SocketIO)
	}
}
