package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
	if _, err := s.Heartbeat(ctx(t), 1, presence.NodeInfo{ID: "n1", Host: "h"}); err != nil {
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
	// Redis cannot tell a cluster's first start from data loss: a new
	// data set is recovering for the window, whoever writes first.
	if c, err := s.Counts(ctx(t)); err != nil || !c.Partial || c.Users != 2 {
		t.Fatalf("Counts right after the first write = %+v, %v; want 2 users, Partial", c, err)
	}
	time.Sleep(350 * time.Millisecond)
	if c, err := s.Counts(ctx(t)); err != nil || c.Partial || c.Users != 2 {
		t.Fatalf("Counts after the recovery window = %+v, %v; want 2 users, not Partial", c, err)
	}
	rdb.FlushAll(ctx(t))
	if _, err := s.Counts(ctx(t)); !errors.Is(err, presence.ErrNoData) {
		t.Fatalf("Counts after FLUSHALL: err = %v, want ErrNoData", err)
	}
	if _, err := s.Heartbeat(ctx(t), 1, presence.NodeInfo{ID: "n1"}); !errors.Is(err, presence.ErrResync) {
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
	_, _ = s.Heartbeat(ctx(t), 2, presence.NodeInfo{ID: "n1"}) // a second node's heartbeat would not extend the window
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
	if _, err := s.Heartbeat(ctx(t), 1, presence.NodeInfo{ID: "a"}); err != nil {
		t.Fatalf("Heartbeat(a) after the outage: %v", err)
	}
	if c, _ := s.Counts(ctx(t)); c.Users != 2 {
		t.Fatalf("users after the outage = %d, want 2: b must get one lease to check in", c.Users)
	}
	if _, err := s.Heartbeat(ctx(t), 1, presence.NodeInfo{ID: "b"}); err != nil {
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
	if _, err := s.Heartbeat(ctx(t), 1, presence.NodeInfo{ID: "n1"}); !errors.Is(err, presence.ErrResync) {
		t.Fatalf("Heartbeat after restart: err = %v, want ErrResync (scripts reload, share is gone)", err)
	}
}

func TestExternal(t *testing.T) {
	srv := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	e := redisstore.NewExternal(rdb, redisstore.ExternalOptions{Key: "ext_online", Prefix: "{ext}", NodeTTL: 300 * time.Millisecond})
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

	// The day's peak is what presenced observed, not the current value.
	rdb.Set(ctx(t), "ext_online", "20", 0)
	if c, err := e.Counts(ctx(t)); err != nil || c.Users != 20 || c.PeakToday != 50 {
		t.Fatalf("Counts after 50 then 20 = %+v, %v; want users 20, peak 50", c, err)
	}
	// ... shared by every node reading the counter.
	other := redisstore.NewExternal(rdb, redisstore.ExternalOptions{Key: "ext_online", Prefix: "{ext}", NodeTTL: 300 * time.Millisecond})
	if c, err := other.Counts(ctx(t)); err != nil || c.PeakToday != 50 {
		t.Fatalf("another node's Counts = %+v, %v; want peak 50", c, err)
	}

	// Connections are the sum of every live node's load figures.
	for _, info := range []presence.NodeInfo{{ID: "a", Connections: 7, Guests: 2, Users: 4}, {ID: "b", Connections: 5, Guests: 1, Users: 5}} {
		if err := e.Publish(ctx(t), info); err != nil {
			t.Fatal(err)
		}
	}
	if c, err := e.Counts(ctx(t)); err != nil || c.Users != 20 || c.Connections != 12 || c.Guests != 3 {
		t.Fatalf("Counts with two nodes = %+v, %v; want users 20 (the counter), connections 12, guests 3", c, err)
	}
	nodes, err := other.Nodes(ctx(t))
	if err != nil || len(nodes) != 2 || !nodes[0].Healthy {
		t.Fatalf("Nodes = %+v, %v; want a and b, healthy", nodes, err)
	}
	time.Sleep(400 * time.Millisecond) // b stops publishing
	if err := e.Publish(ctx(t), presence.NodeInfo{ID: "a", Connections: 7, Guests: 2}); err != nil {
		t.Fatal(err)
	}
	if c, err := e.Counts(ctx(t)); err != nil || c.Connections != 7 {
		t.Fatalf("Counts after b's lease ran out = %+v, %v; want connections 7", c, err)
	}
	if got := rdb.Get(ctx(t), "ext_online").Val(); got != "20" {
		t.Fatalf("ext_online = %s, want 20 untouched", got)
	}
	for _, k := range rdb.Keys(ctx(t), "*").Val() {
		if k != "ext_online" && !strings.HasPrefix(k, "{ext}:") {
			t.Fatalf("external reader wrote key %q outside its prefix", k)
		}
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
	if _, err := s.Heartbeat(ctx(t), 1, presence.NodeInfo{ID: "only"}); err != nil {
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

// openWith returns a second store on the keys of an existing one (same
// prefix and online key), as another process would open them.
func openWith(tb testing.TB, srv *testenv.Redis, prefix, online string, ttl time.Duration) *redisstore.Store {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	tb.Cleanup(func() { rdb.Close() })
	s, err := redisstore.New(rdb, redisstore.Options{Prefix: prefix, OnlineKey: online, NodeTTL: ttl, RecoveryWindow: time.Millisecond})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// TestDuplicateNodeIDRefused: a second process (a second Store, with its
// own lease token) that uses a live node id is refused and changes
// nothing; once the first one's lease has expired the id is free, and
// the first one can no longer write, or remove, the new owner's share.
func TestDuplicateNodeIDRefused(t *testing.T) {
	srv := testenv.StartRedis(t)
	ttl := 300 * time.Millisecond
	a, rdb, p, online := mustOpen(t, srv, ttl, time.Millisecond)
	b := openWith(t, srv, p, online, ttl)
	if _, err := a.Sync(ctx(t), presence.Share{Node: "web-1", Seq: 1, Users: map[string]int64{"alice": 1, "bob": 1}}); err != nil {
		t.Fatal(err)
	}
	_, err := b.Sync(ctx(t), presence.Share{Node: "web-1", Seq: 1, Users: map[string]int64{"carol": 1}})
	if !errors.Is(err, presence.ErrNodeTaken) {
		t.Fatalf("second process's Sync of a live id: err = %v, want ErrNodeTaken", err)
	}
	if err := b.Leave(ctx(t), "web-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Apply(ctx(t), presence.Batch{Node: "web-1", Seq: 2, Deltas: []presence.Delta{{User: "dave", N: 1}}}); !errors.Is(err, presence.ErrResync) {
		t.Fatalf("second process's Apply with the first one's sequence: err = %v, want ErrResync", err)
	}
	if _, err := a.Heartbeat(ctx(t), 1, presence.NodeInfo{ID: "web-1"}); err != nil {
		t.Fatalf("first process's Heartbeat after the refusal: %v", err)
	}
	if got := rdb.HGetAll(ctx(t), p+":node:web-1").Val(); len(got) != 2 || got["alice"] != "1" || got["bob"] != "1" {
		t.Fatalf("share of web-1 = %v, want the first process's alice and bob", got)
	}
	if c, _ := a.Counts(ctx(t)); c.Users != 2 {
		t.Fatalf("users = %d, want 2", c.Users)
	}

	// The first process stops heartbeating (paused, or killed without
	// leaving): after its lease the id is free.
	time.Sleep(ttl + 100*time.Millisecond)
	if _, err := b.Sync(ctx(t), presence.Share{Node: "web-1", Seq: 1, Users: map[string]int64{"carol": 1}}); err != nil {
		t.Fatalf("Sync of an id whose lease expired: %v", err)
	}
	if _, err := a.Heartbeat(ctx(t), 1, presence.NodeInfo{ID: "web-1"}); !errors.Is(err, presence.ErrResync) {
		t.Fatalf("old owner's Heartbeat: err = %v, want ErrResync", err)
	}
	if _, err := a.Sync(ctx(t), presence.Share{Node: "web-1", Seq: 2, Users: map[string]int64{"alice": 1}}); !errors.Is(err, presence.ErrNodeTaken) {
		t.Fatalf("old owner's Sync: err = %v, want ErrNodeTaken", err)
	}
	if err := a.Leave(ctx(t), "web-1"); err != nil {
		t.Fatal(err)
	}
	if c, _ := b.Counts(ctx(t)); c.Users != 1 {
		t.Fatalf("users = %d after the old owner's Leave, want the new owner's 1", c.Users)
	}
	if err := b.Leave(ctx(t), "web-1"); err != nil {
		t.Fatal(err)
	}
	if c, _ := b.Counts(ctx(t)); c.Users != 0 {
		t.Fatalf("users = %d after the owner's Leave, want 0", c.Users)
	}
}

// TestRepairAfterEviction: keys evicted under an allkeys-* policy (here
// deleted by hand) leave phantom users in the users hash. Repair finds a
// node's share that differs from what the node holds (ErrResync) and
// fixes the users hash from the shares, a bounded slice per call.
func TestRepairAfterEviction(t *testing.T) {
	srv := testenv.StartRedis(t)
	s, rdb, p, online := mustOpen(t, srv, time.Minute, time.Millisecond)
	a := map[string]int64{}
	for i := range 40 {
		a[fmt.Sprint("a-", i)] = 1
	}
	a["both"] = 2
	b := map[string]int64{"both": 1, "b-1": 1, "b-2": 3}
	if _, err := s.Sync(ctx(t), presence.Share{Node: "a", Seq: 1, Users: a}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sync(ctx(t), presence.Share{Node: "b", Seq: 1, Users: b, Guests: 1}); err != nil {
		t.Fatal(err)
	}
	// Nothing to fix in a healthy store.
	if fixed, err := s.Repair(ctx(t), "a", 1, int64(len(a)), 42, 0); err != nil || fixed != 0 {
		t.Fatalf("Repair of a healthy store = %d, %v; want 0, nil", fixed, err)
	}

	// Node a's whole share is evicted, and one field of b's.
	rdb.Del(ctx(t), p+":node:a")
	rdb.HDel(ctx(t), p+":node:b", "b-2")
	if got := rdb.HLen(ctx(t), p+":users").Val(); got != 43 {
		t.Fatalf("users hash holds %d users after the eviction, want the 43 phantoms and real ones", got)
	}
	if _, err := s.Repair(ctx(t), "a", 1, int64(len(a)), 42, 0); !errors.Is(err, presence.ErrResync) {
		t.Fatalf("Repair by a node whose share was evicted: err = %v, want ErrResync", err)
	}
	if _, err := s.Repair(ctx(t), "b", 1, int64(len(b)), 6, 1); !errors.Is(err, presence.ErrResync) {
		t.Fatalf("Repair by a node that lost a field: err = %v, want ErrResync", err)
	}
	// The users hash converges on the shares' sum, whoever repairs.
	for i := 0; ; i++ {
		fixed, err := s.Repair(ctx(t), "c", 0, -1, -1, -1)
		if err != nil && !errors.Is(err, presence.ErrResync) {
			t.Fatal(err)
		}
		if got := rdb.HGetAll(ctx(t), p+":users").Val(); len(got) == 2 && got["both"] == "1" && got["b-1"] == "1" {
			break
		}
		if i > 200 {
			t.Fatalf("users hash not repaired after %d calls (last fixed %d): %v", i, fixed, rdb.HGetAll(ctx(t), p+":users").Val())
		}
	}
	if got := rdb.Get(ctx(t), online).Val(); got != "2" {
		t.Fatalf("%s = %s after repair, want 2 (both, b-1)", online, got)
	}
	// Each phantom removed went offline unseen: one offline event each.
	if got := streamKinds(t, rdb, p+":transitions", 43); len(got) != 41 || got["offline:a-0"] != 1 || got["offline:b-2"] != 1 || got["offline:both"] != 0 {
		t.Fatalf("events after the repair: %v, want one offline per phantom (a-0..a-39, b-2)", got)
	}
	// The nodes rewrite their shares, as the trackers do on ErrResync.
	if _, err := s.Sync(ctx(t), presence.Share{Node: "a", Seq: 2, Users: a}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sync(ctx(t), presence.Share{Node: "b", Seq: 2, Users: b, Guests: 1}); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if _, err := s.Repair(ctx(t), "a", 2, int64(len(a)), 42, 0); err != nil {
			t.Fatalf("Repair after the rewrite: %v", err)
		}
	}
	c, err := s.Counts(ctx(t))
	if err != nil || c.Users != 43 || c.Connections != 42+6 {
		t.Fatalf("Counts after repair and rewrite = %+v, %v; want 43 users, 48 connections", c, err)
	}
	if got := rdb.HGet(ctx(t), p+":users", "both").Val(); got != "3" {
		t.Fatalf("users[both] = %s, want 3", got)
	}
}

// TestRepairFindsUsersEvictedFromTheSums: a user missing from the users
// hash while a share holds it is put back by the owning node's repair.
func TestRepairFindsUsersEvictedFromTheSums(t *testing.T) {
	srv := testenv.StartRedis(t)
	s, rdb, p, online := mustOpen(t, srv, time.Minute, time.Millisecond)
	share := map[string]int64{"x": 1, "y": 2}
	if _, err := s.Sync(ctx(t), presence.Share{Node: "a", Seq: 1, Users: share}); err != nil {
		t.Fatal(err)
	}
	rdb.HDel(ctx(t), p+":users", "y")
	for range 5 {
		if _, err := s.Repair(ctx(t), "a", 1, 2, 3, 0); err != nil {
			t.Fatal(err)
		}
	}
	if got := rdb.HGet(ctx(t), p+":users", "y").Val(); got != "2" {
		t.Fatalf("users[y] = %q after repair, want 2", got)
	}
	if got := streamKinds(t, rdb, p+":transitions", 0); len(got) != 2 || got["online:x"] != 1 || got["online:y"] != 1 {
		t.Fatalf("events %v, want only the first online ones: y was online all along", got)
	}
	if got := rdb.Get(ctx(t), online).Val(); got != "2" {
		t.Fatalf("%s = %s, want 2", online, got)
	}
}

// streamKinds counts the events after the first skip of stream by
// "type:user".
func streamKinds(t *testing.T, rdb *redis.Client, stream string, skip int) map[string]int {
	t.Helper()
	evs, _ := readStream(t, rdb, stream)
	out := map[string]int{}
	for _, e := range evs[min(skip, len(evs)):] {
		out[e.typ+":"+e.user]++
	}
	return out
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

// TestRepairLeavesThePeak: repair.lua's own key (its scan cursor) and the
// day's peak are different KEYS; repairing never overwrites the peak.
func TestRepairLeavesThePeak(t *testing.T) {
	srv := testenv.StartRedis(t)
	s, rdb, _, _ := mustOpen(t, srv, time.Minute, time.Millisecond)
	users := map[string]int64{}
	for i := range 300 {
		users[fmt.Sprintf("u%03d", i)] = 1
	}
	if _, err := s.Sync(ctx(t), presence.Share{Node: "n1", Seq: 1, Users: users}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := s.Repair(ctx(t), "n1", 1, int64(len(users)), int64(len(users)), 0); err != nil {
			t.Fatal(err)
		}
	}
	key := s.PeakKey(time.Now())
	if got := rdb.Get(ctx(t), key).Val(); got != "300" {
		t.Fatalf("GET %s = %q after repairs, want 300", key, got)
	}
	if c, err := s.Counts(ctx(t)); err != nil || c.PeakToday != 300 {
		t.Fatalf("Counts = %+v, %v; want PeakToday 300", c, err)
	}
}
