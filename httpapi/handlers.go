package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

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
		rd := svc.Readiness(r.Context())
		status, word := http.StatusOK, "ready"
		if !rd.Ready {
			status, word = http.StatusServiceUnavailable, "not ready"
		}
		out := map[string]any{"status": word, "dependencies": rd.Dependencies}
		if len(rd.Reasons) > 0 {
			out["reasons"] = rd.Reasons
		}
		encode(w, status, out)
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

// handleStream sends the overview as Server-Sent Events whenever it
// changes (the node's shared poller checks every 50 ms and sends at most
// four changes a second), with a
// comment line every 15 s to keep proxies from closing an idle stream. It
// returns when the client goes (its request context ends), when a write
// fails, or when the server shuts down.
func handleStream(st *dashboard.Stream) http.Handler {
	const keepalive = 15 * time.Second
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		if err := rc.Flush(); err != nil {
			return
		}
		sub := st.Subscribe()
		defer sub.Close()
		ka := time.NewTicker(keepalive)
		defer ka.Stop()
		var sent uint64
		for {
			o, ver, changed := sub.Latest()
			if ver != sent {
				sent = ver
				b, err := json.Marshal(o)
				if err != nil {
					return
				}
				if _, err := fmt.Fprintf(w, "event: overview\ndata: %s\n\n", b); err != nil {
					return
				}
				if rc.Flush() != nil {
					return
				}
				ka.Reset(keepalive)
			}
			select {
			case <-r.Context().Done():
				return
			case <-changed:
			case <-ka.C:
				if _, err := io.WriteString(w, ": keepalive\n\n"); err != nil || rc.Flush() != nil {
					return
				}
			}
		}
	})
}
