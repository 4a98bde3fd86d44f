package e2e_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/testenv"
)

// TestDuplicateNodeID: a second process started with a NODE_ID that a
// live process holds is refused: it logs an error naming the id and exits
// 1 as soon as it has seen the holder renew its lease (well before its
// grace of two leases), and the first process's share is untouched. A
// process restarted under the id of one that was killed waits out the
// dead lease and takes the id over.
func TestDuplicateNodeID(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	env := map[string]string{
		"REDIS_URL": r.URL(), "NODE_ID": "dup-node", "HEARTBEAT_INTERVAL": "200ms", "NODE_TTL": "4s",
	}
	first := startNode(t, env)
	for _, u := range []string{"dup-a", "dup-b", "dup-c"} {
		c := Dial(t, first, Token(t, u))
		defer c.Conn.Close()
	}
	waitRedis(t, r, 5*time.Second, "3 users", func() bool { return r.Do("GET", "online_users") == "3" })

	second := StartProc(t, t.TempDir(), nil, env)
	second.WaitHealthy(10 * time.Second)
	c := Dial(t, second.Node, Token(t, "dup-d"))
	defer c.Conn.Close()
	if code := second.Wait(4 * time.Second); code != 1 {
		t.Fatalf("second process with a live NODE_ID exited %d, want 1:\n%s", code, second.Log())
	}
	stderr := second.Stderr.String()
	if !strings.Contains(stderr, `NODE_ID is held by another live process`) || !strings.Contains(stderr, "dup-node") {
		t.Fatalf("second process's log does not name the taken id:\n%s", stderr)
	}
	if got := r.Do("HKEYS", "{online_users}:node:dup-node"); len(strings.Fields(got)) != 3 {
		t.Fatalf("share of dup-node = %s, want the first process's three users", got)
	}
	if strings.Contains(r.Do("HKEYS", "{online_users}:node:dup-node"), "dup-d") {
		t.Fatal("the refused process wrote its user into the share")
	}
	if got := r.Do("GET", "online_users"); got != "3" {
		t.Fatalf("online_users = %s after the refused process left, want 3", got)
	}
	if strings.Contains(first.Log(), "NODE_ID is held") {
		t.Fatalf("the first process was disturbed:\n%s", first.Log())
	}

	// The owner crashes; a process restarted at once under its id waits
	// for the dead lease and then counts its own users.
	first.Kill()
	third := startNode(t, env)
	c3 := Dial(t, third, Token(t, "dup-e"))
	defer c3.Conn.Close()
	waitRedis(t, r, 10*time.Second, "the restarted owner's 1 user", func() bool {
		return r.Do("GET", "online_users") == "1" && r.Do("HKEYS", "{online_users}:node:dup-node") == "[dup-e]"
	})
	time.Sleep(time.Second) // a few more heartbeats: it must not give up
	select {
	case <-third.done:
		t.Fatalf("restarted process exited:\n%s", third.Log())
	default:
	}
}

// readyz fetches /readyz.
func readyz(t *testing.T, n *Node) (int, readyReply) {
	t.Helper()
	var rd readyReply
	status, body := n.GetToken("/readyz", "", 5*time.Second)
	if err := json.Unmarshal(body, &rd); err != nil {
		t.Fatalf("/readyz %d %s: %v", status, body, err)
	}
	return status, rd
}

type readyReply struct {
	Status       string            `json:"status"`
	Dependencies map[string]string `json:"dependencies"`
	Reasons      map[string]string `json:"reasons"`
}

// TestRedisRefusingWrites: when Redis refuses writes (maxmemory reached
// under noeviction) the overview serves the counts marked stale, never a
// frozen value as fresh; /readyz says Redis is degraded and why; the log
// says so once, and once again when writes succeed again.
func TestRedisRefusingWrites(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	n := startNode(t, map[string]string{"REDIS_URL": r.URL(), "HEARTBEAT_INTERVAL": "200ms", "NODE_TTL": "1s"})
	waitConnectLines(t, n, 0, 10*time.Second)
	for _, u := range []string{"oom-1", "oom-2", "oom-3"} {
		c := Dial(t, n, Token(t, u))
		defer c.Conn.Close()
	}
	waitOverview(t, n, 5*time.Second, func(o Overview) bool { return o.Source == "redis" && o.OnlineUsers == 3 && !o.Stale })

	if got := r.Do("CONFIG", "SET", "maxmemory-policy", "noeviction"); got != "OK" {
		t.Fatal(got)
	}
	if got := r.Do("CONFIG", "SET", "maxmemory", "1"); got != "OK" {
		t.Fatal(got)
	}
	for _, u := range []string{"oom-4", "oom-5"} {
		c := Dial(t, n, Token(t, u))
		defer c.Conn.Close()
	}
	if got := r.Do("GET", "online_users"); got != "3" {
		t.Fatalf("online_users = %s under OOM, want the frozen 3 (did the write go through?)", got)
	}
	// Never a frozen Redis value served as fresh: either marked stale,
	// or the data store's fallback once online_users has expired.
	fresh := func(o Overview) bool { return o.Source == "redis" && !o.Stale }
	if o := n.Overview(); fresh(o) || o.OnlineUsers < 5 {
		t.Fatalf("overview right after writes were refused = %+v, want 5 users, stale or from the fallback", o)
	}
	status, rd := readyz(t, n)
	if status == http.StatusOK || rd.Dependencies["redis"] != "degraded" || !strings.Contains(rd.Reasons["redis"], "refus") {
		t.Fatalf("/readyz while Redis refuses writes = %d %+v, want non-200, redis degraded with a reason", status, rd)
	}
	var sl struct {
		Redis struct {
			Status string `json:"status"`
			Error  string `json:"error"`
		} `json:"redis"`
	}
	if status := n.Get("/api/admin/dashboard/server-load", true, &sl); status != http.StatusOK || sl.Redis.Status != "degraded" || sl.Redis.Error == "" {
		t.Fatalf("server-load while Redis refuses writes = %d %+v, want redis degraded with a reason", status, sl)
	}
	sawStale := false
	for range 20 { // many heartbeats fail meanwhile
		o := n.Overview()
		if fresh(o) || o.OnlineUsers < 5 {
			t.Fatalf("overview while Redis refuses writes = %+v, want 5 users, stale or from the fallback", o)
		}
		sawStale = sawStale || (o.Source == "redis" && o.Stale)
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("served the Redis counts marked stale: %v", sawStale)
	const refused, accepted = "presence store refusing writes", "presence store accepting writes again"
	if c := strings.Count(n.Log(), refused); c != 1 {
		t.Fatalf("log has %d %q lines, want 1:\n%s", c, refused, n.Log())
	}

	if got := r.Do("CONFIG", "SET", "maxmemory", "0"); got != "OK" {
		t.Fatal(got)
	}
	waitOverview(t, n, 5*time.Second, func(o Overview) bool { return !o.Stale && o.Source == "redis" && o.OnlineUsers == 5 })
	if got := r.Do("GET", "online_users"); got != "5" {
		t.Fatalf("online_users = %s after recovery, want 5", got)
	}
	if status, rd := readyz(t, n); status != http.StatusOK || rd.Dependencies["redis"] != "up" {
		t.Fatalf("/readyz after recovery = %d %+v, want 200 with redis up", status, rd)
	}
	n.WaitLog(accepted, 5*time.Second)
	if c := strings.Count(n.Log(), refused); c != 1 {
		t.Fatalf("log has %d %q lines after recovery, want 1", c, refused)
	}
}

// TestExternalMode: with PRESENCE_MODE=external the overview's
// connections are summed over every node, the day's peak is the highest
// count presenced observed, and with Redis down the overview serves the
// last good count marked stale, not the data store's knowledge (which
// holds nothing of the external counter).
func TestExternalMode(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	env := map[string]string{"REDIS_URL": r.URL(), "PRESENCE_MODE": "external", "HEARTBEAT_INTERVAL": "100ms", "NODE_TTL": "1s"}
	a, b := startNode(t, env), startNode(t, env)
	r.Do("SET", "online_users", "50")
	for _, d := range []struct {
		n    *Node
		user string
	}{{a, "ext-1"}, {a, "ext-2"}, {b, "ext-3"}} {
		c := Dial(t, d.n, Token(t, d.user))
		defer c.Conn.Close()
	}
	for _, n := range []*Node{a, b} {
		waitOverview(t, n, 5*time.Second, func(o Overview) bool {
			return o.Source == "redis" && o.OnlineUsers == 50 && o.OnlineConnections == 3 && !o.Stale
		})
	}
	var sl struct {
		Nodes []struct {
			Connections int64 `json:"connections"`
		} `json:"nodes"`
	}
	if status := a.Get("/api/admin/dashboard/server-load", true, &sl); status != http.StatusOK || len(sl.Nodes) != 2 {
		t.Fatalf("server-load = %d %+v, want both nodes", status, sl)
	}

	r.Do("SET", "online_users", "20")
	for _, n := range []*Node{a, b} {
		o := waitOverview(t, n, 5*time.Second, func(o Overview) bool { return o.OnlineUsers == 20 })
		if o.PeakOnlineToday != 50 {
			t.Fatalf("overview after the counter fell from 50 to 20 = %+v, want peakOnlineToday 50", o)
		}
	}
	if got := r.Do("GET", "online_users"); got != "20" {
		t.Fatalf("online_users = %s, want 20 untouched", got)
	}

	r.Kill()
	for range 5 {
		o := a.Overview()
		if o.Source != "redis" || !o.Stale || o.OnlineUsers != 20 || o.PeakOnlineToday != 50 {
			t.Fatalf("overview with Redis down = %+v, want the last good 20 (peak 50) from redis, stale", o)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestEvictedKeysRepaired: keys evicted from Redis (here deleted, as an
// allkeys-* policy would) leave phantom users, or lose real ones; the
// nodes' heartbeats find it and make the count exact again.
func TestEvictedKeysRepaired(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	env := map[string]string{"REDIS_URL": r.URL(), "HEARTBEAT_INTERVAL": "200ms", "NODE_TTL": "1s"}
	a := startNode(t, map[string]string{"REDIS_URL": r.URL(), "HEARTBEAT_INTERVAL": "200ms", "NODE_TTL": "1s", "NODE_ID": "evict-a"})
	b := startNode(t, env)
	for _, d := range []struct {
		n    *Node
		user string
	}{{a, "ev-1"}, {a, "ev-2"}, {a, "ev-3"}, {b, "ev-3"}, {b, "ev-4"}} {
		c := Dial(t, d.n, Token(t, d.user))
		defer c.Conn.Close()
	}
	waitRedis(t, r, 5*time.Second, "4 users", func() bool { return r.Do("GET", "online_users") == "4" })

	// Node a's share is evicted, and a phantom left in the sums.
	r.Do("DEL", "{online_users}:node:evict-a")
	r.Do("HSET", "{online_users}:users", "ghost", "1")
	r.Do("SET", "online_users", "5")
	exact := func() bool {
		return r.Do("GET", "online_users") == "4" && r.Do("HLEN", "{online_users}:users") == "4" &&
			r.Do("HGET", "{online_users}:users", "ev-3") == "2" && r.Do("HLEN", "{online_users}:node:evict-a") == "3"
	}
	waitRedis(t, r, 5*time.Second, "the count exact again after the eviction", exact)

	// One user field lost from the sums.
	r.Do("HDEL", "{online_users}:users", "ev-4")
	waitRedis(t, r, 5*time.Second, "ev-4 back in the sums", exact)
	if !strings.Contains(a.Log()+b.Log(), "presence share differs") {
		t.Errorf("no node logged the repair")
	}
}
