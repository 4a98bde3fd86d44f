package e2e_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/testenv"
)

// TestProductionWithMongoDB runs a node the production way, Redis plus a
// MongoDB-wire server (FerretDB), and shows that the user totals come from
// the app's users collection and the fallback count from MongoDB.
func TestProductionWithMongoDB(t *testing.T) {
	t.Parallel()
	redis := testenv.StartRedis(t)
	mongoURI := testenv.StartFerretDB(t) + "app"
	env := map[string]string{
		"REDIS_URL":              redis.URL(),
		"MONGODB_URI":            mongoURI,
		"MONGODB_BATCH_SIZE":     "40",
		"LAST_SEEN_INTERVAL":     "2s",
		"STATS_REFRESH_INTERVAL": "200ms",
	}

	// presenced seed writes demo users into the app's users collection.
	seed := exec.Command(binPath, "seed", "--users", "50")
	seed.Dir = t.TempDir()
	seed.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "MONGODB_URI=" + mongoURI, "MONGODB_BATCH_SIZE=40"}
	if out, err := seed.CombinedOutput(); err != nil || !strings.Contains(string(out), "seed: 50 users (demo-0001..demo-0050): added 50 new, 0 already present") {
		t.Fatalf("presenced seed: %v\n%s", err, out)
	}

	n := StartNode(t, env)
	for _, u := range []string{"demo-1", "demo-2", "demo-3"} {
		c := Dial(t, n, Token(t, u))
		t.Cleanup(func() { c.Conn.Close() })
	}
	var o Overview
	pollUntil(t, 10*time.Second, "overview with user totals from MongoDB", func() bool {
		o = n.Overview()
		return o.Source == "redis" && o.OnlineUsers == 3 && o.TotalUsers == 50 && o.ActiveUsers24h >= 3
	}, func() any { return o })
	// Users 0, 10, 20, 30, 40 were created today (seed puts every tenth today).
	if o.NewUsersToday < 5 {
		t.Fatalf("newUsersToday = %d, want at least 5", o.NewUsersToday)
	}

	redis.Kill()
	pollUntil(t, 10*time.Second, "fallback to MongoDB", func() bool {
		o = n.Overview()
		if o.OnlineUsers <= 0 {
			t.Fatalf("overview showed %d online users during the Redis outage", o.OnlineUsers)
		}
		return o.Source == "mongodb" && o.OnlineUsers >= 3
	}, func() any { return o })
	if o.FallbackScope != "cluster" {
		t.Fatalf("fallback from MongoDB: fallbackScope %q, want cluster", o.FallbackScope)
	}
	if strings.Contains(n.Log(), "cluster-wide fallback needs") {
		t.Errorf("a node with MongoDB warns about the fallback's scope:\n%s", n.Log())
	}

	redis.Start()
	pollUntil(t, 10*time.Second, "back to Redis", func() bool {
		o = n.Overview()
		return o.Source == "redis" && o.OnlineUsers == 3
	}, func() any { return o })
	if code, _ := n.Term(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	if !strings.Contains(n.Log(), "data store closed") || !strings.Contains(n.Log(), "kind=mongodb") {
		t.Fatalf("log does not say the MongoDB store was closed:\n%s", tail(n.Log(), 20))
	}
}

// pollUntil polls cond every 50ms until it holds or timeout passes; last
// describes the last observed value for the failure message.
func pollUntil(t *testing.T, timeout time.Duration, what string, cond func() bool, last func() any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %v; last seen %+v", what, timeout, last())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMongoDBDownAtStart: a MongoDB that cannot be reached does not stop
// presenced; the dashboard answers from Redis with user stats marked stale
// and /readyz says the data store is down.
func TestMongoDBDownAtStart(t *testing.T) {
	t.Parallel()
	redis := testenv.StartRedis(t)
	n := StartNode(t, map[string]string{
		"REDIS_URL":   redis.URL(),
		"MONGODB_URI": fmt.Sprintf("mongodb://127.0.0.1:%d/app", testenv.FreePort(t)),
	})
	c := Dial(t, n, Token(t, "dora"))
	defer c.Conn.Close()
	var o Overview
	pollUntil(t, 10*time.Second, "overview from Redis, stats stale", func() bool {
		o = n.Overview()
		return o.Source == "redis" && o.OnlineUsers == 1 && o.Stale
	}, func() any { return o })
	var ready struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	if status := n.Get("/readyz", false, &ready); status != 503 || ready.Dependencies["mongodb"] != "down" {
		t.Fatalf("/readyz = %d %v, want 503 with mongodb down", status, ready.Dependencies)
	}
	if code, _ := n.Term(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
}
