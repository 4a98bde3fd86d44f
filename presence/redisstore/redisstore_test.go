package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/presence/redisstore"
	"github.com/presenced/presenced/presence/storetest"
)

var prefixes atomic.Int64

// mustOpen returns a store on srv with its own key prefix and online key,
// so tests share one redis-server without seeing each other.
func mustOpen(tb testing.TB, srv *testenv.Redis, ttl, window time.Duration) (*redisstore.Store, *redis.Client, string, string) {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	tb.Cleanup(func() { rdb.Close() })
	id := prefixes.Add(1)
	prefix := fmt.Sprintf("{t%d}", id)
	online := fmt.Sprintf("{t%d}online_users", id)
	s, err := redisstore.New(rdb, redisstore.Options{Prefix: prefix, OnlineKey: online, NodeTTL: ttl, RecoveryWindow: window})
	if err != nil {
		tb.Fatal(err)
	}
	return s, rdb, prefix, online
}

func TestContract(t *testing.T) {
	srv := testenv.StartRedis(t)
	storetest.Run(t, func(t *testing.T) presence.Store {
		s, _, _, _ := mustOpen(t, srv, storetest.TTL, time.Millisecond)
		return s
	})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// TestKeysFollowTheDesign checks the key model of DESIGN.md directly in Redis.
func TestKeysFollowTheDesign(t *testing.T) {
	srv := testenv.StartRedis(t)
	s, rdb, p, online := mustOpen(t, srv, time.Minute, time.Millisecond)
	if _, err := s.Sync(ctx(t), presence.Share{Node: "n1", Seq: 1, Users: map[string]int64{"alice": 2, "bob": 1}, Guests: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sync(ctx(t), presence.Share{Node: "n2", Seq: 1, Users: map[string]int64{"alice": 1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Heartbeat(ctx(t), 1, presence.NodeInfo{ID: "n1", Host: "h"}); err != nil {
		t.Fatal(err)
	}
	if got := rdb.Get(ctx(t), online).Val(); got != "2" {
		t.Errorf("GET %s = %q, want 2", online, got)
	}
	if got := rdb.HGetAll(ctx(t), p+":node:n1").Val(); got["alice"] != "2" || got["bob"] != "1" || len(got) != 2 {
		t.Errorf("HGETALL %s:node:n1 = %v", p, got)
	}
	if got := rdb.HGetAll(ctx(t), p+":users").Val(); got["alice"] != "3" || got["bob"] != "1" || len(got) != 2 {
		t.Errorf("HGETALL %s:users = %v", p, got)
	}
	if got := rdb.ZRange(ctx(t), p+":nodes", 0, -1).Val(); len(got) != 2 {
		t.Errorf("ZRANGE %s:nodes = %v, want n1 and n2", p, got)
	}
	if ttl := rdb.PTTL(ctx(t), p+":nodeinfo:n1").Val(); ttl <= 0 {
		t.Errorf("PTTL %s:nodeinfo:n1 = %v, want a lease", p, ttl)
	}
}

// TestDataLoss shows that a FLUSHALL is noticed by the next heartbeat, that
// Counts says so meanwhile, and that resyncing makes the count exact.
func TestDataLoss(t *testing.T) {
	srv := testenv.StartRedis(t)
	s, rdb, _, online := mustOpen(t, srv, time.Minute, 300*time.Millisecond)
	share := presence.Share{Node: "n1", Seq: 1, Users: map[string]int64{"alice": 1, "bob": 1}}
	if _, err := s.Sync(ctx(t), share); err != nil {
		t.Fatal(err)
	}
	if c, err := s.Counts(ctx(t)); err != nil || c.Partial || c.Users != 2 {
		t.Fatalf("Counts on a fresh cluster = %+v, %v; want 2 users, not Partial", c, err)
	}
	rdb.FlushAll(ctx(t))
	if _, err := s.Counts(ctx(t)); !errors.Is(err, presence.ErrNoData) {
		t.Fatalf("Counts after FLUSHALL: err = %v, want ErrNoData", err)
	}
	if err := s.Heartbeat(ctx(t), 1, presence.NodeInfo{ID: "n1"}); !errors.Is(err, presence.ErrResync) {
		t.Fatalf("Heartbeat after FLUSHALL: err = %v, want ErrResync", err)
	}
	share.Seq, share.Rejoin = 2, true
	if _, err := s.Sync(ctx(t), share); err != nil {
		t.Fatal(err)
	}
	c, err := s.Counts(ctx(t))
	if err != nil || c.Users != 2 || !c.Partial {
		t.Fatalf("Counts right after resync = %+v, %v; want 2 users, Partial", c, err)
	}
	s.Heartbeat(ctx(t), 2, presence.NodeInfo{ID: "n1"}) // a second node's heartbeat would not extend the window
	time.Sleep(350 * time.Millisecond)
	c, err = s.Counts(ctx(t))
	if err != nil || c.Users != 2 || c.Partial {
		t.Fatalf("Counts after the recovery window = %+v, %v; want 2 users, not Partial", c, err)
	}
	if got := rdb.Get(ctx(t), online).Val(); got != "2" {
		t.Fatalf("GET %s = %q, want 2", online, got)
	}
}

// TestOutageGrace shows that nodes are not reaped for leases that ran out
// while nobody could reach Redis.
func TestOutageGrace(t *testing.T) {
	srv := testenv.StartRedis(t)
	ttl := 200 * time.Millisecond
	s, _, _, _ := mustOpen(t, srv, ttl, time.Millisecond)
	for _, n := range []string{"a", "b"} {
		if _, err := s.Sync(ctx(t), presence.Share{Node: n, Seq: 1, Users: map[string]int64{"u-" + n: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * ttl) // nobody writes: as if Redis were unreachable
	if err := s.Heartbeat(ctx(t), 1, presence.NodeInfo{ID: "a"}); err != nil {
		t.Fatalf("Heartbeat(a) after the outage: %v", err)
	}
	if c, _ := s.Counts(ctx(t)); c.Users != 2 {
		t.Fatalf("users after the outage = %d, want 2: b must get one lease to check in", c.Users)
	}
	if err := s.Heartbeat(ctx(t), 1, presence.NodeInfo{ID: "b"}); err != nil {
		t.Fatalf("Heartbeat(b) within its grace lease: %v", err)
	}
}

// TestRedisRestart kills the real server and starts it again empty.
func TestRedisRestart(t *testing.T) {
	srv := testenv.StartRedis(t)
	s, _, _, _ := mustOpen(t, srv, time.Minute, time.Millisecond)
	if _, err := s.Sync(ctx(t), presence.Share{Node: "n1", Seq: 1, Users: map[string]int64{"alice": 1}}); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	if _, err := s.Counts(ctx(t)); err == nil || errors.Is(err, presence.ErrNoData) {
		t.Fatalf("Counts with Redis down: err = %v, want a connection error", err)
	}
	srv.Start()
	if err := s.Heartbeat(ctx(t), 1, presence.NodeInfo{ID: "n1"}); !errors.Is(err, presence.ErrResync) {
		t.Fatalf("Heartbeat after restart: err = %v, want ErrResync (scripts reload, share is gone)", err)
	}
}

func TestExternal(t *testing.T) {
	srv := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	e := redisstore.NewExternal(rdb, "ext_online")
	if _, err := e.Counts(ctx(t)); !errors.Is(err, presence.ErrNoData) {
		t.Fatalf("Counts of a missing key: %v, want ErrNoData", err)
	}
	for in, want := range map[string]int64{"50": 50, "-3": 0} {
		rdb.Set(ctx(t), "ext_online", in, 0)
		c, err := e.Counts(ctx(t))
		if err != nil || c.Users != want {
			t.Fatalf("SET %s: Counts = %+v, %v; want %d", in, c, err, want)
		}
	}
	if keys := rdb.Keys(ctx(t), "*").Val(); len(keys) != 1 {
		t.Fatalf("external reader wrote keys: %v", keys)
	}
}

func TestClaimMinuteElectsOneNode(t *testing.T) {
	srv := testenv.StartRedis(t)
	a, _, _, _ := mustOpen(t, srv, time.Minute, time.Millisecond)
	m := time.Now().Truncate(time.Minute)
	won, err := a.ClaimMinute(ctx(t), m)
	if err != nil || !won {
		t.Fatalf("first claim = %v, %v; want won", won, err)
	}
	if won, _ := a.ClaimMinute(ctx(t), m); won {
		t.Fatal("second claim of the same minute won")
	}
	if won, _ := a.ClaimMinute(ctx(t), m.Add(time.Minute)); !won {
		t.Fatal("claim of the next minute lost")
	}
}

// TestCountExpiresWhenEveryNodeIsGone: with no node left to reap the
// dead, online_users expires rather than claiming their users forever.
func TestCountExpiresWhenEveryNodeIsGone(t *testing.T) {
	srv := testenv.StartRedis(t)
	ttl := 100 * time.Millisecond
	s, rdb, _, online := mustOpen(t, srv, ttl, time.Millisecond)
	if _, err := s.Sync(ctx(t), presence.Share{Node: "only", Seq: 1, Users: map[string]int64{"a": 1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Heartbeat(ctx(t), 1, presence.NodeInfo{ID: "only"}); err != nil {
		t.Fatal(err)
	}
	if pttl := rdb.PTTL(ctx(t), online).Val(); pttl <= 0 || pttl > 2*ttl {
		t.Fatalf("PTTL %s = %v, want within two leases", online, pttl)
	}
	time.Sleep(3 * ttl)
	if n, err := rdb.Exists(ctx(t), online).Result(); err != nil || n != 0 {
		t.Fatalf("%s still exists after every node stopped: %d, %v", online, n, err)
	}
	if _, err := s.Counts(ctx(t)); !errors.Is(err, presence.ErrNoData) {
		t.Fatalf("Counts = %v, want ErrNoData", err)
	}
}

// TestPeakKeyFollowsTimezone: the day's peak is kept under the day number
// of STATS_TIMEZONE. Zones 26 hours apart never share a calendar day, so
// two stores with them write two different peak keys, each the one its
// PeakKey names.
func TestPeakKeyFollowsTimezone(t *testing.T) {
	srv := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	var keys []string
	for i, zone := range []string{"Etc/GMT-14", "Etc/GMT+12"} {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		prefix := "{tz}"
		s, err := redisstore.New(rdb, redisstore.Options{Prefix: prefix, OnlineKey: "{tz}online", NodeTTL: time.Minute, Location: loc})
		if err != nil {
			t.Fatal(err)
		}
		node := fmt.Sprintf("n%d", i)
		users := map[string]int64{}
		for u := range 3 + i {
			users[fmt.Sprint(node, u)] = 1
		}
		if _, err := s.Sync(ctx(t), presence.Share{Node: node, Seq: 1, Users: users}); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		key := s.PeakKey(now)
		want := fmt.Sprintf("%s:peak:%d", prefix, presence.DayNumber(now.In(loc)))
		if key != want {
			t.Fatalf("PeakKey in %s = %q, want %q", zone, key, want)
		}
		c, err := s.Counts(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		peak, err := rdb.Get(ctx(t), key).Int64()
		if err != nil || peak != c.PeakToday || peak < int64(len(users)) {
			t.Fatalf("GET %s = %d, %v; Counts.PeakToday %d; want at least %d", key, peak, err, c.PeakToday, len(users))
		}
		keys = append(keys, key)
	}
	if keys[0] == keys[1] {
		t.Fatalf("both zones wrote %s", keys[0])
	}
}
