package httpapi

import "net/http"

// addRoutes registers every route presenced serves: the whole API surface
// on one screen.
func addRoutes(mux *http.ServeMux, d Deps) {
	admin := requireAdmin(d.Admin)

	mux.Handle("GET /healthz", handleHealthz())
	mux.Handle("GET /readyz", handleReadyz(d.Dashboard))
	mux.Handle("GET /metrics", handleMetrics(d.Metrics))

	mux.Handle("GET /api/admin/dashboard/overview", admin(handleOverview(d.Dashboard)))
	mux.Handle("GET /api/admin/dashboard/server-load", admin(handleServerLoad(d.Dashboard)))
	mux.Handle("GET /api/admin/dashboard/history", admin(handleHistory(d.Dashboard, d.Logger)))
	mux.Handle("GET /api/admin/dashboard/stream", admin(handleStream(d.Dashboard)))
	mux.Handle("/api/admin/", admin(handleNotFound()))

	mux.Handle("GET /ws", d.WebSocket)

	mux.Handle("/", handleNotFound())
}
