package dashboard_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/dashboard"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/presence/memstore"
	"github.com/presenced/presenced/presence/redisstore"
	"github.com/presenced/presenced/store"
	"github.com/presenced/presenced/store/sqlitestore"
)

func mustOpenSQLite(tb testing.TB) store.Store {
	tb.Helper()
	s, err := sqlitestore.Open(context.Background(), tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func startService(t *testing.T, o dashboard.Options) *dashboard.Service {
	t.Helper()
	svc := dashboard.New(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return svc
}

func TestOverviewFromMemory(t *testing.T) {
	t.Parallel()
	ds := mustOpenSQLite(t)
	ctx := context.Background()
	now := time.Now().UTC()
	if err := ds.InsertUsers(ctx, []store.User{{ID: "a", CreatedAt: now}, {ID: "b", CreatedAt: now.Add(-72 * time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	mem := memstore.New(time.Minute, nil)
	if _, err := mem.Sync(ctx, presence.Share{Node: "n", Seq: 1, Users: map[string]int64{"a": 2}, Guests: 1}); err != nil {
		t.Fatal(err)
	}
	svc := startService(t, dashboard.Options{Presence: mem, Source: "memory", Store: ds})
	o := svc.Overview(ctx)
	want := dashboard.Overview{OnlineUsers: 1, OnlineConnections: 3, OnlineGuests: 1, PeakOnlineToday: 1, TotalUsers: 2, NewUsersToday: 1, ActiveUsers24h: 1, Source: "memory"}
	o.GeneratedAt = time.Time{}
	if o != want {
		t.Fatalf("Overview = %+v\nwant       %+v", o, want)
	}
}

// TestFallbackWhenRedisIsDown uses a real redis-server that is killed: the
// overview then counts users seen recently in the data store.
func TestFallbackWhenRedisIsDown(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	// A new data set is recovering (Partial) for the recovery window: a
	// short one, so the first overview is Redis's.
	rs, err := redisstore.New(rdb, redisstore.Options{Prefix: "{fb}", RecoveryWindow: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := rs.Sync(ctx, presence.Share{Node: "n", Seq: 1, Users: map[string]int64{"a": 1, "b": 1, "c": 1}}); err != nil {
		t.Fatal(err)
	}
	ds := mustOpenSQLite(t)
	now := time.Now()
	if err := ds.TouchLastSeen(ctx, []store.LastSeen{{UserID: "a", At: now}, {UserID: "b", At: now}, {UserID: "old", At: now.Add(-time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	svc := startService(t, dashboard.Options{Presence: rs, Source: "redis", Store: ds, Redis: redisstore.NewProbe(rdb), StatsRefresh: 50 * time.Millisecond})
	if o := svc.Overview(ctx); o.Source != "redis" || o.OnlineUsers != 3 {
		t.Fatalf("with Redis up: %+v", o)
	}
	srv.Kill()
	o := svc.Overview(ctx)
	if o.Source != "sqlite" || o.OnlineUsers != 2 || o.FallbackScope != "node" {
		t.Fatalf("with Redis down: source %q fallbackScope %q onlineUsers %d, want sqlite, node and 2 (a, b seen recently)", o.Source, o.FallbackScope, o.OnlineUsers)
	}
	if o.OnlineConnections != 3 {
		t.Fatalf("with Redis down: connections %d, want the last good value 3", o.OnlineConnections)
	}
	sl := svc.ServerLoad(ctx)
	if sl.Redis.Status != "down" || sl.DataStore.Status != "up" || sl.DataStore.Kind != "sqlite" || sl.MongoDB.Status != "not_configured" {
		t.Fatalf("server-load dependencies = redis %+v, dataStore %+v, mongodb %+v", sl.Redis, sl.DataStore, sl.MongoDB)
	}
	if deps, ok := svc.Ready(ctx); ok || deps["redis"] != "down" {
		t.Fatalf("Ready = %v, %v; want redis down, not ready", deps, ok)
	}
}

func TestHistory(t *testing.T) {
	t.Parallel()
	ds := mustOpenSQLite(t)
	ctx := context.Background()
	base := time.Now().UTC().Truncate(5 * time.Minute).Add(-10 * time.Minute)
	for i, n := range []int64{3, 9, 4, 2, 1, 7} {
		if err := ds.AddHistory(ctx, store.HistoryPoint{T: base.Add(time.Duration(i) * time.Minute), OnlineUsers: n, OnlineConnections: 2 * n}); err != nil {
			t.Fatal(err)
		}
	}
	svc := dashboard.New(dashboard.Options{Presence: memstore.New(0, nil), Store: ds})
	h, err := svc.History(ctx, "1h")
	if err != nil || len(h.Points) != 6 || h.Points[1].OnlineUsers != 9 || h.StepSeconds != 60 {
		t.Fatalf("History(1h) = %+v, %v", h, err)
	}
	h, err = svc.History(ctx, "24h") // 5-minute buckets keep their peak
	if err != nil || len(h.Points) != 2 || h.Points[0].OnlineUsers != 9 || h.Points[1].OnlineUsers != 7 || h.Points[0].OnlineConnections != 18 {
		t.Fatalf("History(24h) = %+v, %v", h, err)
	}
	if _, err := svc.History(ctx, "2h"); !errors.Is(err, dashboard.ErrBadRange) {
		t.Fatalf("History(2h) err = %v, want ErrBadRange", err)
	}
}

// TestOverviewTotalsDoNotDropBetweenRefreshes: a user who connects is a
// user (totalUsers, activeUsers24h) from then on, also after leaving and
// before the next recount of the data store — the figures never go down
// between two refreshes (they did: 1 while online, 0 once gone).
func TestOverviewTotalsDoNotDropBetweenRefreshes(t *testing.T) {
	t.Parallel()
	ds := mustOpenSQLite(t)
	ctx := context.Background()
	mem := memstore.New(time.Minute, nil)
	svc := startService(t, dashboard.Options{Presence: mem, Source: "memory", Store: ds, StatsRefresh: time.Hour})
	if o := svc.Overview(ctx); o.TotalUsers != 0 {
		t.Fatalf("empty: %+v", o)
	}
	if _, err := mem.Sync(ctx, presence.Share{Node: "n", Seq: 1, Users: map[string]int64{"alice": 1, "bob": 1}}); err != nil {
		t.Fatal(err)
	}
	if o := svc.Overview(ctx); o.OnlineUsers != 2 || o.TotalUsers != 2 || o.ActiveUsers24h != 2 {
		t.Fatalf("two online: %+v", o)
	}
	if _, err := mem.Sync(ctx, presence.Share{Node: "n", Seq: 2, Users: map[string]int64{}}); err != nil {
		t.Fatal(err)
	}
	if o := svc.Overview(ctx); o.OnlineUsers != 0 || o.TotalUsers != 2 || o.ActiveUsers24h != 2 {
		t.Fatalf("after both left, before a recount: %+v; want totalUsers and activeUsers24h still 2", o)
	}
}
