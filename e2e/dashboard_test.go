package e2e_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/presenced/presenced/auth"
	"github.com/presenced/presenced/internal/testenv"
)

const overviewPath = "/api/admin/dashboard/overview"

// The three lines of the design note, in the order they must appear.
var redisConnectLines = []string{"Redis client connecting...", "Redis client ready", "Redis connected successfully"}

// TestEmbeddedDefault: with nothing configured presenced serves on its
// own, prints a generated admin token once, and `presenced token` mints
// user tokens with the secret it keeps under DATA_DIR.
func TestEmbeddedDefault(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	p := StartServing(t, t.TempDir(), map[string]string{"DATA_DIR": dataDir, "ADMIN_TOKEN": "", "JWT_SECRET": ""})

	m := regexp.MustCompile(`(?m)^Admin token \(generated[^)]*\): (\S+)$`).FindAllStringSubmatch(p.Stdout.String(), -1)
	if len(m) != 1 {
		t.Fatalf("stdout should print the generated admin token once, got %d lines:\n%s", len(m), p.Stdout)
	}
	token := m[0][1]
	if strings.Contains(p.Stderr.String(), token) {
		t.Errorf("the admin token also went to the log (stderr)")
	}

	var o Overview
	status, body := p.GetToken(overviewPath, token, 5*time.Second)
	if status != http.StatusOK {
		t.Fatalf("overview with the printed token: %d %s", status, body)
	}
	if err := json.Unmarshal(body, &o); err != nil {
		t.Fatalf("overview %s: %v", body, err)
	}
	if o.Source != "memory" || o.OnlineUsers != 0 {
		t.Fatalf("overview = %+v, want source memory and nobody online", o)
	}

	fi, err := os.Stat(filepath.Join(dataDir, "jwt_secret"))
	if err != nil {
		t.Fatalf("generated JWT secret under DATA_DIR: %v", err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Fatalf("jwt_secret mode %o, want 600", mode)
	}

	// `presenced token` is another process that shares only DATA_DIR.
	cmd := exec.Command(binPath, "token", "--user", "u1")
	cmd.Dir = t.TempDir()
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "DATA_DIR=" + dataDir}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("presenced token --user u1: %v", err)
	}
	userToken := strings.TrimSpace(string(out))
	if strings.Count(userToken, ".") != 2 {
		t.Fatalf("presenced token printed %q, not a JWT", out)
	}
	c := Dial(t, p.Node, userToken)
	defer c.Conn.Close()
	if c.Hello.UserID == nil || *c.Hello.UserID != "u1" {
		t.Fatalf("hello = %+v, want user u1", c.Hello)
	}
	// A user token is not an admin credential.
	if status, _ := p.GetToken(overviewPath, userToken, 5*time.Second); status != http.StatusUnauthorized {
		t.Fatalf("overview with a user token: %d, want 401", status)
	}
	if code, _ := p.Term(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
}

// TestRedisOnlineUsersKey: the connect lines in order, and the dashboard
// reads online_users from Redis in managed and in external mode; in
// external mode presenced writes nothing to Redis.
func TestRedisOnlineUsersKey(t *testing.T) {
	t.Parallel()

	t.Run("managed", func(t *testing.T) {
		t.Parallel()
		r := testenv.StartRedis(t)
		n := startNode(t, map[string]string{"REDIS_URL": r.URL()})
		waitConnectLines(t, n, 0, 10*time.Second)
		// Presenced rewrites online_users whenever presence changes, so
		// write it only once the node has registered (its first write).
		waitRedis(t, r, 10*time.Second, "node registered", func() bool { return r.Do("ZCARD", "{online_users}:nodes") == "1" })
		if got := r.Do("SET", "online_users", "50"); got != "OK" {
			t.Fatalf("SET online_users: %s", got)
		}
		// A new data set is recovering (fallback served) for the recovery
		// window, 1.5 heartbeats: Redis cannot tell a first start from data loss.
		waitOverview(t, n, 6*time.Second, func(o Overview) bool { return o.OnlineUsers == 50 && o.Source == "redis" })
	})

	t.Run("external", func(t *testing.T) {
		t.Parallel()
		r := testenv.StartRedis(t)
		n := startNode(t, map[string]string{"REDIS_URL": r.URL(), "PRESENCE_MODE": "external", "HEARTBEAT_INTERVAL": "100ms"})
		waitConnectLines(t, n, 0, 10*time.Second)
		if got := r.Do("SET", "online_users", "50"); got != "OK" {
			t.Fatalf("SET online_users: %s", got)
		}
		if o := n.Overview(); o.OnlineUsers != 50 || o.Source != "redis" {
			t.Fatalf("overview = %+v, want onlineUsers 50 from redis", o)
		}
		// Give presenced every reason to write: a user comes and goes,
		// then many heartbeats and a last-seen flush pass.
		c := Dial(t, n, Token(t, "ext-user"))
		c.Conn.Close()
		time.Sleep(1500 * time.Millisecond)
		if status := n.Get("/api/admin/dashboard/server-load", true, nil); status != http.StatusOK {
			t.Fatalf("server-load: %d", status)
		}
		// presenced writes only its own keys (load figures, the peak).
		for _, k := range strings.Fields(strings.Trim(r.Do("KEYS", "*"), "[]")) {
			if k != "online_users" && !strings.HasPrefix(k, "{online_users}:") {
				t.Fatalf("KEYS * holds %s, want online_users and presenced's own {online_users}: keys", k)
			}
		}
		if got := r.Do("GET", "online_users"); got != "50" {
			t.Fatalf("online_users = %s, want 50 untouched", got)
		}
	})
}

// TestRedisFallback: while Redis is down or hangs the overview still
// answers, from the data store, never with 0; when Redis is back the
// overview reads Redis again and the log shows the reconnect.
func TestRedisFallback(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	n := startNode(t, map[string]string{"REDIS_URL": r.URL()})
	mark := waitConnectLines(t, n, 0, 10*time.Second)
	if !strings.Contains(n.Log(), "a cluster-wide fallback needs MONGODB_URI") {
		t.Errorf("start-up does not warn that the SQLite fallback only knows this node:\n%s", n.Log())
	}
	for _, u := range []string{"fb-1", "fb-2"} {
		c := Dial(t, n, Token(t, u))
		defer c.Conn.Close()
	}
	waitOverview(t, n, 5*time.Second, func(o Overview) bool { return o.Source == "redis" && o.OnlineUsers == 2 })
	time.Sleep(1500 * time.Millisecond) // the last-seen flush (every 1s) reaches SQLite

	// Redis crashes: the overview answers from SQLite.
	r.Kill()
	wantFallback(t, n, "killed")
	mark = waitLogAny(t, n, mark, []string{"Redis connection lost", "Redis connection failed"}, 5*time.Second)

	// Redis comes back, empty: within 5 s the overview reads it again,
	// and it is never 0 meanwhile.
	r.Start()
	start := time.Now()
	waitOverview(t, n, 5*time.Second, func(o Overview) bool {
		if o.OnlineUsers < 2 || (o.Source == "redis" && o.OnlineUsers != 2) {
			t.Fatalf("overview while Redis recovers = %+v: want >= 2, and exactly 2 from redis", o)
		}
		return o.Source == "redis"
	})
	t.Logf("after restart: overview back on redis %v after Redis answered PING", time.Since(start))
	mark = waitConnectLines(t, n, mark, 5*time.Second)

	// Redis hangs: requests to it time out, the overview does not.
	r.Pause()
	wantFallback(t, n, "paused")
	mark = waitLogAny(t, n, mark, []string{"Redis connection lost"}, 5*time.Second)
	r.Resume()
	start = time.Now()
	waitOverview(t, n, 5*time.Second, func(o Overview) bool {
		if o.OnlineUsers < 2 || (o.Source == "redis" && o.OnlineUsers != 2) {
			t.Fatalf("overview after Redis resumed = %+v: want >= 2, and exactly 2 from redis", o)
		}
		return o.Source == "redis"
	})
	t.Logf("after resume: overview back on redis %v after SIGCONT", time.Since(start))
	waitConnectLines(t, n, mark, 5*time.Second)
}

// TestAdminAuth: every /api/admin/ route answers 401 with a JSON error
// unless the request carries the admin token or an admin JWT; a known
// route with the wrong method answers 405 whoever asks. (The failure
// throttle is raised out of the way here; TestAdminThrottle covers it.)
func TestAdminAuth(t *testing.T) {
	t.Parallel()
	n := startNode(t, map[string]string{"ADMIN_AUTH_FAILURES": "100000"})
	now := time.Now()
	mint := func(secret, user string, admin bool, ttl time.Duration, at time.Time) string {
		tok, err := auth.Mint([]byte(secret), user, admin, ttl, at)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	routes := []struct{ method, path string }{
		{http.MethodGet, overviewPath},
		{http.MethodGet, "/api/admin/dashboard/server-load"},
		{http.MethodGet, "/api/admin/dashboard/history?range=1h"},
		{http.MethodGet, "/api/admin/dashboard/stream"},
		{http.MethodGet, "/api/admin/whatever"},
		{http.MethodPost, overviewPath},
		{http.MethodDelete, "/api/admin/"},
	}
	denied := []struct{ name, authz string }{
		{"no token", ""},
		{"wrong token", "Bearer wrong-token"},
		{"admin token with another scheme", "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+adminToken))},
		{"user JWT", "Bearer " + Token(t, "plain-user")},
		{"admin JWT, other secret", "Bearer " + mint("another-secret-0123456789abcdef", "boss", true, time.Hour, now)},
		{"expired admin JWT", "Bearer " + mint(testSecret, "boss", true, time.Minute, now.Add(-time.Hour))},
	}
	for _, d := range denied {
		for _, rt := range routes {
			status, body := n.Request(rt.method, rt.path, d.authz, 5*time.Second)
			var e struct {
				Error string `json:"error"`
			}
			want := http.StatusUnauthorized
			if rt.method == http.MethodPost {
				want = http.StatusMethodNotAllowed
			}
			if status != want || json.Unmarshal(body, &e) != nil || e.Error == "" {
				t.Errorf("%s: %s %s = %d %s, want %d {\"error\": ...}", d.name, rt.method, rt.path, status, body, want)
			}
		}
	}

	for _, authz := range []string{"Bearer " + mint(testSecret, "boss", true, time.Hour, now), "Bearer " + adminToken} {
		for _, path := range []string{overviewPath, "/api/admin/dashboard/server-load"} {
			if status, body := n.Request(http.MethodGet, path, authz, 5*time.Second); status != http.StatusOK {
				t.Errorf("admin GET %s = %d %s, want 200", path, status, body)
			}
		}
		// An admin sees that an unknown route does not exist.
		if status, _ := n.Request(http.MethodGet, "/api/admin/whatever", authz, 5*time.Second); status != http.StatusNotFound {
			t.Errorf("admin GET /api/admin/whatever = %d, want 404", status)
		}
	}
}

// TestAdminThrottle: past ADMIN_AUTH_FAILURES failures a minute, an
// address gets 429 with Retry-After, even with the right token, and the
// log says so once, without the token.
func TestAdminThrottle(t *testing.T) {
	t.Parallel()
	n := startNode(t, map[string]string{"ADMIN_AUTH_FAILURES": "5"})
	for i := range 5 {
		if status, _ := n.Request(http.MethodGet, overviewPath, "Bearer wrong-token-xyz", 5*time.Second); status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d, want 401", i+1, status)
		}
	}
	status, body := n.Request(http.MethodGet, overviewPath, "Bearer "+adminToken, 5*time.Second)
	if status != http.StatusTooManyRequests {
		t.Fatalf("after 5 failures: %d %s, want 429", status, body)
	}
	n.WaitLog("admin authentication throttled", 5*time.Second)
	if strings.Count(n.Log(), "admin authentication failed") != 1 {
		t.Errorf("log has %d failure lines, want 1:\n%s", strings.Count(n.Log(), "admin authentication failed"), n.Log())
	}
	if strings.Contains(n.Log(), "wrong-token-xyz") || strings.Contains(n.Log(), adminToken) {
		t.Errorf("log holds a token:\n%s", n.Log())
	}
}

// TestReadyz: /readyz is open, 200 while the dependencies are up and 503
// naming Redis when Redis is down.
func TestReadyz(t *testing.T) {
	t.Parallel()
	type ready struct {
		Status       string            `json:"status"`
		Dependencies map[string]string `json:"dependencies"`
	}
	get := func(n *Node) (int, ready) {
		t.Helper()
		var rd ready
		status, body := n.GetToken("/readyz", "", 5*time.Second)
		if err := json.Unmarshal(body, &rd); err != nil {
			t.Fatalf("/readyz %d %s: %v", status, body, err)
		}
		return status, rd
	}

	embedded := startNode(t, nil)
	if status, rd := get(embedded); status != http.StatusOK || rd.Dependencies["sqlite"] != "up" || rd.Dependencies["redis"] == "down" {
		t.Fatalf("embedded /readyz = %d %+v, want 200 with sqlite up", status, rd)
	}

	r := testenv.StartRedis(t)
	n := startNode(t, map[string]string{"REDIS_URL": r.URL()})
	waitConnectLines(t, n, 0, 10*time.Second)
	if status, rd := get(n); status != http.StatusOK || rd.Dependencies["redis"] != "up" || rd.Dependencies["sqlite"] != "up" {
		t.Fatalf("/readyz = %d %+v, want 200 with redis and sqlite up", status, rd)
	}
	r.Kill()
	if status, rd := get(n); status != http.StatusServiceUnavailable || rd.Dependencies["redis"] != "down" || rd.Dependencies["sqlite"] != "up" {
		t.Fatalf("/readyz with Redis killed = %d %+v, want 503 with redis down", status, rd)
	}
}

// TestSIGTERM: a clean stop closes the clients with 1001, removes the
// node's share from Redis, closes Redis and the data store, and exits 0.
func TestSIGTERM(t *testing.T) {
	t.Parallel()
	const node = "e2e-term-node"
	r := testenv.StartRedis(t)
	n := startNode(t, map[string]string{"REDIS_URL": r.URL(), "NODE_ID": node})
	waitConnectLines(t, n, 0, 10*time.Second)

	codes := make(chan int, 3)
	var wg sync.WaitGroup
	for _, u := range []string{"term-1", "term-2", "term-3"} {
		c := Dial(t, n, Token(t, u))
		defer c.Conn.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.Conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			for {
				if _, _, err := c.Conn.ReadMessage(); err != nil {
					var ce *websocket.CloseError
					if errors.As(err, &ce) {
						codes <- ce.Code
					} else {
						codes <- -1
					}
					return
				}
			}
		}()
	}
	waitRedis(t, r, 5*time.Second, "online_users = 3", func() bool { return r.Do("GET", "online_users") == "3" })
	if got := r.Do("EXISTS", "{online_users}:node:"+node); got != "1" {
		t.Fatalf("EXISTS {online_users}:node:%s = %s before SIGTERM", node, got)
	}

	code, took := n.Term()
	t.Logf("exit after SIGTERM took %v", took)
	if code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != websocket.CloseGoingAway {
			t.Errorf("client close code %d, want 1001", c)
		}
	}
	log := n.Log()
	for _, line := range []string{"Redis connection closed", "data store closed"} {
		if !strings.Contains(log, line) {
			t.Errorf("log lacks %q", line)
		}
	}
	for _, key := range []string{"{online_users}:node:" + node, "{online_users}:nodeinfo:" + node} {
		if got := r.Do("EXISTS", key); got != "0" {
			t.Errorf("EXISTS %s = %s after SIGTERM, want 0", key, got)
		}
	}
	if got := r.Do("ZSCORE", "{online_users}:nodes", node); got != "(nil)" {
		t.Errorf("node still holds a lease: ZSCORE = %s", got)
	}
	if got := r.Do("GET", "online_users"); got != "0" {
		t.Errorf("online_users = %s after SIGTERM, want 0", got)
	}
}

// startNode is StartNode that retries when its port was taken meanwhile.
func startNode(t *testing.T, env map[string]string) *Node {
	t.Helper()
	return StartServing(t, t.TempDir(), env).Node
}

// waitConnectLines waits until the log after byte offset from shows the
// three connect lines in order, and returns the offset just past them.
func waitConnectLines(t *testing.T, n *Node, from int, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if end, ok := linesInOrder(n.Log()[from:], redisConnectLines); ok {
			return from + end
		}
		if time.Now().After(deadline) {
			t.Fatalf("log never showed %q in order within %v:\n%s", redisConnectLines, timeout, tail(n.Log()[from:], 40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// linesInOrder reports whether log holds each of lines after the previous
// one, and where the last one ends.
func linesInOrder(log string, lines []string) (int, bool) {
	at := 0
	for _, l := range lines {
		i := strings.Index(log[at:], l)
		if i < 0 {
			return 0, false
		}
		at += i + len(l)
	}
	return at, true
}

// waitLogAny waits until the log after byte offset from shows one of subs,
// and returns the offset just past it.
func waitLogAny(t *testing.T, n *Node, from int, subs []string, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		log := n.Log()[from:]
		for _, s := range subs {
			if i := strings.Index(log, s); i >= 0 {
				return from + i + len(s)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("log never showed any of %q within %v:\n%s", subs, timeout, tail(log, 40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitRedis polls cond until it holds.
func waitRedis(t *testing.T, r *testenv.Redis, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("redis never showed %s within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitOverview polls the overview until done returns true.
func waitOverview(t *testing.T, n *Node, timeout time.Duration, done func(Overview) bool) Overview {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		o, _ := timedOverview(t, n)
		if done(o) {
			return o
		}
		if time.Now().After(deadline) {
			t.Fatalf("overview still %+v after %v", o, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// timedOverview fetches the overview as admin with a one-second client
// timeout and returns it with the time it took.
// wantFallback reads the overview five times while Redis is unavailable
// (state says how) and wants each from SQLite with both users counted.
func wantFallback(t *testing.T, n *Node, state string) {
	t.Helper()
	for i := range 5 {
		o, took := timedOverview(t, n)
		t.Logf("overview %d with Redis %s: %v (source %s, onlineUsers %d)", i, state, took, o.Source, o.OnlineUsers)
		if o.Source != "sqlite" || o.OnlineUsers < 2 || o.FallbackScope != "node" {
			t.Fatalf("overview with Redis %s = %+v, want source sqlite, fallbackScope node and onlineUsers >= 2", state, o)
		}
	}
}

func timedOverview(t *testing.T, n *Node) (Overview, time.Duration) {
	t.Helper()
	start := time.Now()
	status, body := n.GetToken(overviewPath, adminToken, time.Second)
	took := time.Since(start)
	var o Overview
	if status != http.StatusOK {
		t.Fatalf("overview: %d %s", status, body)
	}
	if err := json.Unmarshal(body, &o); err != nil {
		t.Fatalf("overview %s: %v", body, err)
	}
	return o, took
}
