package httpapi

import (
	"errors"
	"log/slog"
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

// handleHistory serves ?range=1h|24h|7d (1h when absent).
func handleHistory(svc *dashboard.Service, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rng := r.URL.Query().Get("range")
		if rng == "" {
			rng = "1h"
		}
		h, err := svc.History(r.Context(), rng)
		switch {
		case errors.Is(err, dashboard.ErrBadRange):
			encodeError(w, http.StatusBadRequest, err.Error())
		case err != nil:
			log.Error("history", "err", err)
			encodeError(w, http.StatusServiceUnavailable, "history unavailable")
		default:
			encode(w, http.StatusOK, h)
		}
	})
}
