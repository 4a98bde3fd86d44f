package httpapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/presenced/presenced/auth"
	"github.com/presenced/presenced/presence"
)

// LastSeenLookup reads one user's last-seen time from the data store.
type LastSeenLookup interface {
	LastSeenOf(ctx context.Context, user string) (time.Time, bool, error)
}

// Limits of the who-is-online API.
const (
	defaultUsersPage = 100
	maxUsersPage     = 1000
	maxStatusIDs     = 1000
)

const noDirectory = "who is online is not available: another program keeps the count (PRESENCE_MODE=external)"

// handleListUsers serves GET /api/admin/presence/users?cursor=&limit=:
// {"users":[{userId, connections}], "nextCursor": "" at the end, "total"}.
func handleListUsers(dir presence.Directory, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if dir == nil {
			encodeError(w, http.StatusNotImplemented, noDirectory)
			return
		}
		q := r.URL.Query()
		limit := defaultUsersPage
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxUsersPage {
				encodeError(w, http.StatusBadRequest, fmt.Sprintf("limit must be an integer 1-%d", maxUsersPage))
				return
			}
			limit = n
		}
		page, err := dir.ListUsers(r.Context(), q.Get("cursor"), limit)
		switch {
		case errors.Is(err, presence.ErrBadCursor):
			encodeError(w, http.StatusBadRequest, "invalid cursor: pass back the nextCursor of the previous page, or none to start")
			return
		case err != nil:
			log.Warn("presence users: list", "err", err)
			encodeError(w, http.StatusServiceUnavailable, "presence store unavailable")
			return
		}
		users := page.Users
		if users == nil {
			users = []presence.UserCount{}
		}
		encode(w, http.StatusOK, map[string]any{"users": users, "nextCursor": page.Cursor, "total": page.Total})
	})
}

// handleUser serves GET /api/admin/presence/users/{id}: {userId, online,
// connections, lastSeenAt (null when unknown)}.
func handleUser(dir presence.Directory, seen LastSeenLookup, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if dir == nil {
			encodeError(w, http.StatusNotImplemented, noDirectory)
			return
		}
		id := r.PathValue("id")
		if err := auth.CheckUserID(id); err != nil {
			encodeError(w, http.StatusBadRequest, "user id "+err.Error()+idRule)
			return
		}
		conns, err := dir.Connections(r.Context(), []string{id})
		if err != nil {
			log.Warn("presence user: lookup", "err", err)
			encodeError(w, http.StatusServiceUnavailable, "presence store unavailable")
			return
		}
		out := struct {
			UserID      string     `json:"userId"`
			Online      bool       `json:"online"`
			Connections int64      `json:"connections"`
			LastSeenAt  *time.Time `json:"lastSeenAt"`
		}{UserID: id, Online: conns[0] > 0, Connections: conns[0]}
		if seen != nil {
			// The data store may be down: the presence answer stands
			// without its last-seen.
			ctx, cancel := context.WithTimeout(r.Context(), time.Second)
			at, ok, err := seen.LastSeenOf(ctx, id)
			cancel()
			switch {
			case err != nil:
				log.Warn("presence user: last seen", "err", err)
			case ok:
				out.LastSeenAt = &at
			}
		}
		encode(w, http.StatusOK, out)
	})
}

// handleStatus serves POST /api/presence/status: {"userIds":[…]} (at most
// 1000) → {"online":{id: bool}}, one round trip to the store.
func handleStatus(dir presence.Directory, maxBody int64, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if dir == nil {
			encodeError(w, http.StatusNotImplemented, noDirectory)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		ids, msg := decodeStatus(r)
		if msg == errTooBig {
			encodeError(w, http.StatusRequestEntityTooLarge, "request body over "+strconv.FormatInt(maxBody, 10)+" bytes")
			return
		}
		if msg != "" {
			encodeError(w, http.StatusBadRequest, msg)
			return
		}
		conns, err := dir.Connections(r.Context(), ids)
		if err != nil {
			log.Warn("presence status", "err", err, "users", len(ids))
			encodeError(w, http.StatusServiceUnavailable, "presence store unavailable")
			return
		}
		online := make(map[string]bool, len(ids))
		for i, id := range ids {
			online[id] = conns[i] > 0
		}
		encode(w, http.StatusOK, map[string]any{"online": online})
	})
}

const errTooBig = "request body too large"

// idRule follows a refused id's reason: ids are user ids as tokens carry them.
const idRule = " (a user id is 1-256 bytes of UTF-8 without control characters)"

// decodeStatus reads {"userIds":[…]}; on a bad body it returns a message
// for the client.
func decodeStatus(r *http.Request) ([]string, string) {
	// A map, not a struct: encoding/json matches struct fields without
	// regard to case, and "UserIds" is not the name.
	var body map[string]json.RawMessage
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(&body); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, errTooBig
		}
		return nil, `body must be a JSON object {"userIds": ["id", ...]}`
	}
	if dec.More() {
		return nil, "body must hold one JSON object"
	}
	userIDs := body["userIds"]
	raw := strings.TrimSpace(string(userIDs))
	if raw == "" || raw == "null" {
		return nil, `userIds is required: {"userIds": ["id", ...]}`
	}
	var items []json.RawMessage
	if err := json.Unmarshal(userIDs, &items); err != nil {
		return nil, "userIds must be an array of strings"
	}
	if len(items) > maxStatusIDs {
		return nil, fmt.Sprintf("at most %d userIds per request, got %d", maxStatusIDs, len(items))
	}
	ids := make([]string, len(items))
	for i, it := range items {
		if err := json.Unmarshal(it, &ids[i]); err != nil || strings.TrimSpace(string(it)) == "null" {
			return nil, fmt.Sprintf("userIds[%d] must be a string", i)
		}
		// encoding/json turns invalid UTF-8 into U+FFFD: look at the bytes.
		err := auth.CheckUserID(ids[i])
		if !utf8.Valid(it) {
			err = errors.New("is not valid UTF-8")
		}
		if err != nil {
			return nil, fmt.Sprintf("userIds[%d] %s%s", i, err, idRule)
		}
	}
	return ids, ""
}

// apiKeyOrAdmin lets through requests carrying the API key
// (Authorization: Bearer <key> or X-API-Key: <key>), and otherwise
// requires admin credentials as the admin API does (failures count
// against the same throttle).
func apiKeyOrAdmin(key string, guard *adminGuard) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if key != "" && hasAPIKey(r, key) {
				next.ServeHTTP(w, r)
				return
			}
			if guard.allowOr(w, r, "API key or admin credentials required") {
				next.ServeHTTP(w, r)
			}
		})
	}
}

func hasAPIKey(r *http.Request, key string) bool {
	got := r.Header.Get("X-API-Key")
	if got == "" {
		if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			got = strings.TrimSpace(v)
		}
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(key)) == 1
}
