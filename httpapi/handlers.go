package httpapi

import (
	"net/http"

	"github.com/presenced/presenced/dashboard"
)

func handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		encode(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// handleReadyz answers 503 when a configured dependency is down.
func handleReadyz(svc *dashboard.Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		deps, ok := svc.Ready(r.Context())
		status, word := http.StatusOK, "ready"
		if !ok {
			status, word = http.StatusServiceUnavailable, "not ready"
		}
		encode(w, status, map[string]any{"status": word, "dependencies": deps})
	})
}

func handleOverview(svc *dashboard.Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		encode(w, http.StatusOK, svc.Overview(r.Context()))
	})
}

func handleServerLoad(svc *dashboard.Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		encode(w, http.StatusOK, svc.ServerLoad(r.Context()))
	})
}

func handleNotFound() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		encodeError(w, http.StatusNotFound, "not found")
	})
}
