package dashboard_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/dashboard"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence/redisstore"
	"github.com/presenced/presenced/store"
)

// statsCounter wraps a real data store and records the refresh period of
// every UserStats call that reaches it.
type statsCounter struct {
	store.Store
	every time.Duration

	mu    sync.Mutex
	slots map[int64]int
	calls int
}

func (c *statsCounter) UserStats(ctx context.Context, now time.Time) (store.UserStats, error) {
	c.mu.Lock()
	c.slots[now.UnixNano()/int64(c.every)]++
	c.calls++
	c.mu.Unlock()
	return c.Store.UserStats(ctx, now)
}

// TestUserStatsOncePerCluster: nodes that share a Redis compute the user
// stats once per refresh period between them (the period is claimed in
// Redis, as the history minute is), and every node serves the result.
func TestUserStatsOncePerCluster(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	rs, err := redisstore.New(rdb, redisstore.Options{Prefix: "{share}"})
	if err != nil {
		t.Fatal(err)
	}
	const every = 250 * time.Millisecond
	ds := mustOpenSQLite(t)
	ctx := context.Background()
	if err := ds.InsertUsers(ctx, []store.User{{ID: "a", CreatedAt: time.Now()}, {ID: "b", CreatedAt: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	counter := &statsCounter{Store: ds, every: every, slots: map[int64]int{}}
	var svcs []*dashboard.Service
	for i := range 3 {
		svcs = append(svcs, startService(t, dashboard.Options{Presence: rs, Source: "redis", Store: counter, Shared: rs, StatsRefresh: every}))
		if i == 0 {
			svcs[0].Overview(ctx) // the first node has shared a result before the others start
		}
	}
	time.Sleep(12 * every)
	for i, svc := range svcs {
		if o := svc.Overview(ctx); o.TotalUsers != 2 || o.Stale {
			t.Errorf("node %d: overview = %+v, want totalUsers 2, not stale", i, o)
		}
	}
	counter.mu.Lock()
	defer counter.mu.Unlock()
	for slot, n := range counter.slots {
		if n > 1 {
			t.Errorf("refresh period %d: user stats computed %d times, want once for the cluster", slot, n)
		}
	}
	if counter.calls < 5 {
		t.Errorf("user stats computed %d times in 12 periods: not refreshed", counter.calls)
	}
	t.Logf("user stats computed %d times for 3 nodes over 12 refresh periods", counter.calls)
}
