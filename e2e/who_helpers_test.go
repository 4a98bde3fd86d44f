package e2e_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/testenv"
)

const (
	testAPIKey        = "e2e-api-key-0123456789"
	testWebhookSecret = "e2e-webhook-secret-0123456789"
	keyPrefix         = "{online_users}" // the default REDIS_KEY_PREFIX: ONLINE_USERS_KEY as the hash tag
	eventsStream      = keyPrefix + ":transitions"
)

// userCount is one entry of GET /api/admin/presence/users.
type userCount struct {
	UserID      string `json:"userId"`
	Connections int64  `json:"connections"`
}

type usersPage struct {
	Users      []userCount `json:"users"`
	NextCursor string      `json:"nextCursor"`
	Total      int64       `json:"total"`
}

type userState struct {
	UserID      string     `json:"userId"`
	Online      bool       `json:"online"`
	Connections int64      `json:"connections"`
	LastSeenAt  *time.Time `json:"lastSeenAt"`
}

// walkUsers lists every online user through n, limit per page.
func walkUsers(t testing.TB, n *Node, limit int) (seen []userCount, pages int, totals []int64) {
	t.Helper()
	cursor := ""
	for {
		var p usersPage
		path := fmt.Sprintf("/api/admin/presence/users?limit=%d&cursor=%s", limit, cursor)
		if status := n.Get(path, true, &p); status != http.StatusOK {
			t.Fatalf("GET %s: status %d", path, status)
		}
		seen = append(seen, p.Users...)
		totals = append(totals, p.Total)
		pages++
		if p.NextCursor == "" {
			return seen, pages, totals
		}
		if pages > 10000 {
			t.Fatal("the walk does not end")
		}
		cursor = p.NextCursor
	}
}

// post sends body to path with the Authorization header authz (none when
// "") and returns the status and body.
func post(t testing.TB, n *Node, path, authz, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, n.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// streamEvent is one transition of the events stream, read from Redis
// itself, with the id presenced gives it.
type streamEvent struct {
	ID, Type, User string
}

// readStream reads every transition of the events stream. Each entry (one
// per script call) is "at" <ms>, then "+" <user> (online) or "-" <user>
// (offline) per transition, parsed here from the raw reply (go-redis's
// XMessage keeps fields in a map, losing repeated ones); the k-th
// transition of entry <id> is "<id>" for k = 0, "<id>.<k>" after.
func readStream(t testing.TB, rdb *redis.Client) []streamEvent {
	t.Helper()
	raw, err := rdb.Do(context.Background(), "XRANGE", eventsStream, "-", "+").Slice()
	if err != nil {
		t.Fatalf("XRANGE %s: %v", eventsStream, err)
	}
	var out []streamEvent
	for _, r := range raw {
		pair := r.([]any)
		id, kv := pair[0].(string), pair[1].([]any)
		if len(kv) < 4 || len(kv)%2 != 0 || kv[0] != "at" {
			t.Fatalf("entry %s of %s = %v, want at <ms> then +|- <user> pairs", id, eventsStream, kv)
		}
		for i := 2; i < len(kv); i += 2 {
			e := streamEvent{ID: id, Type: map[any]string{"+": "online", "-": "offline"}[kv[i]], User: fmt.Sprint(kv[i+1])}
			if k := i/2 - 1; k > 0 {
				e.ID = fmt.Sprintf("%s.%d", id, k)
			}
			if e.Type == "" {
				t.Fatalf("entry %s of %s: field %v, want + or -", id, eventsStream, kv[i])
			}
			out = append(out, e)
		}
	}
	return out
}

func redisClient(t testing.TB, r *testenv.Redis) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// hookEvent is one event of a webhook batch.
type hookEvent struct {
	ID     string    `json:"id"`
	Type   string    `json:"type"`
	UserID string    `json:"userId"`
	At     time.Time `json:"at"`
}

// hookServer is a real HTTP server receiving webhook batches: it checks
// each signature itself (HMAC-SHA256 of the body) and answers 500 to the
// first failFirst batches.
type hookServer struct {
	srv       *httptest.Server
	mu        sync.Mutex
	failFirst int
	posts     int
	failedIDs []string    // ids of the batches answered 500
	accepted  []hookEvent // events of the batches answered 200, in order
	badSigs   int
	log       []string // node and size of each POST
}

func startHookServer(t testing.TB, failFirst int) *hookServer {
	h := &hookServer{failFirst: failFirst}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		m := hmac.New(sha256.New, []byte(testWebhookSecret))
		m.Write(body)
		want := "sha256=" + hex.EncodeToString(m.Sum(nil))
		var batch struct {
			Node   string      `json:"node"`
			Events []hookEvent `json:"events"`
		}
		err := json.Unmarshal(body, &batch)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.posts++
		h.log = append(h.log, fmt.Sprintf("%s:%d", batch.Node, len(batch.Events)))
		if r.Method != http.MethodPost || !hmac.Equal([]byte(r.Header.Get("X-Presenced-Signature")), []byte(want)) || err != nil {
			h.badSigs++
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if h.failFirst > 0 {
			h.failFirst--
			for _, e := range batch.Events {
				h.failedIDs = append(h.failedIDs, e.ID)
			}
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		h.accepted = append(h.accepted, batch.Events...)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookServer) snapshot() (accepted []hookEvent, failed []string, posts, bad int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookEvent(nil), h.accepted...), append([]string(nil), h.failedIDs...), h.posts, h.badSigs
}

// watchClient is a /ws connection that watches users and records the
// messages it gets.
type watchClient struct {
	conn *websocket.Conn
	mu   sync.Mutex
	msgs []map[string]any
	at   []time.Time
	done chan struct{}
}

func dialWatcher(t testing.TB, n *Node, user string) *watchClient {
	t.Helper()
	c := Dial(t, n, Token(t, user))
	w := &watchClient{conn: c.Conn, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			_, b, err := c.Conn.ReadMessage()
			if err != nil {
				return
			}
			var m map[string]any
			_ = json.Unmarshal(b, &m)
			w.mu.Lock()
			w.msgs = append(w.msgs, m)
			w.at = append(w.at, time.Now())
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() { c.Conn.Close() })
	return w
}

func (w *watchClient) send(t testing.TB, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	if err := w.conn.WriteMessage(websocket.TextMessage, b); err != nil {
		t.Fatalf("send %s: %v", b, err)
	}
}

// waitMsg waits for a message after index from that match accepts and
// returns its index and arrival time.
func (w *watchClient) waitMsg(t testing.TB, from int, what string, timeout time.Duration, match func(map[string]any) bool) (int, time.Time) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		w.mu.Lock()
		for i := from; i < len(w.msgs); i++ {
			if match(w.msgs[i]) {
				at := w.at[i]
				w.mu.Unlock()
				return i, at
			}
		}
		all := fmt.Sprint(w.msgs)
		w.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v; got %s", what, timeout, all)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (w *watchClient) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.msgs)
}

func (w *watchClient) since(i int) []map[string]any {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]map[string]any(nil), w.msgs[i:]...)
}

func isPresence(user string, online bool) func(map[string]any) bool {
	return func(m map[string]any) bool {
		return m["type"] == "presence" && m["userId"] == user && m["online"] == online
	}
}

func isType(typ string) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["type"] == typ }
}

func jsonIDs(ids []string) string {
	b, _ := json.Marshal(map[string]any{"userIds": ids})
	return string(bytes.TrimSpace(b))
}
