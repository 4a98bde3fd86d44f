package redisstore_test

import (
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/presence/redisstore"
)

// shardOfUser is the shard a user belongs to among n, computed here on its
// own (FNV-1a of the user id, mod n) so that a store that put users
// elsewhere is caught.
func shardOfUser(user string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(user))
	return int(h.Sum32() % uint32(n))
}

// shardedUsers reads every shard's users hash under the home prefix home:
// the union (a user in two shards is reported, and counted once), and the
// users found outside their own shard.
func shardedUsers(t *testing.T, rdb redis.UniversalClient, home string, n int) (union map[string]string, misplaced []string) {
	t.Helper()
	union = map[string]string{}
	for i := range n {
		p := redisstore.ShardPrefix(home, i, n)
		got, err := rdb.HGetAll(ctx(t), p+":users").Result()
		if err != nil {
			t.Fatalf("HGETALL %s:users: %v", p, err)
		}
		for u, c := range got {
			if want := shardOfUser(u, n); want != i {
				misplaced = append(misplaced, fmt.Sprintf("%s in shard %d, belongs to %d", u, i, want))
			}
			if _, dup := union[u]; dup {
				misplaced = append(misplaced, fmt.Sprintf("%s in two shards", u))
			}
			union[u] = c
		}
	}
	return union, misplaced
}

// rewritesUnderWay returns the shards with a rewrite in progress.
func rewritesUnderWay(t *testing.T, rdb redis.UniversalClient, home string, n int) []int {
	t.Helper()
	var out []int
	for i := range n {
		if rdb.HLen(ctx(t), redisstore.ShardPrefix(home, i, n)+":rewrite").Val() > 0 {
			out = append(out, i)
		}
	}
	return out
}

// TestShardedChurnWithInjectedTimeouts is TestChurnWithInjectedTimeouts
// on a store split over 4 shards: three trackers connect and disconnect
// users at random through a proxy that holds back or drops 3% of the
// requests, with rewrites in chunks of 50. A batch then often lands on
// some shards and times out on others. Once the faults stop, every shard
// holds exactly its own users with their exact counts, online_users is
// their number and no shard is left mid-rewrite.
func TestShardedChurnWithInjectedTimeouts(t *testing.T) {
	const shards = 4
	srv := testenv.StartRedis(t)
	px := testenv.StartFaultProxy(t, srv.Addr())
	hb := 100 * time.Millisecond
	id := prefixes.Add(1)
	prefix, online := fmt.Sprintf("{t%d}", id), fmt.Sprintf("{t%d}online_users", id)
	var trackers []*presence.Tracker
	for i := range 3 {
		s, _, _, _ := openSharded(t, px.Addr(), shards, redisstore.Options{Prefix: prefix, OnlineKey: online, NodeTTL: 10 * hb, Budget: 50, CallTimeout: hb})
		trackers = append(trackers, runTracker(t, presence.TrackerOptions{
			Node: "n" + strconv.Itoa(i), Store: s, HeartbeatInterval: hb, BatchWindow: 5 * time.Millisecond, BatchMax: 40,
		}))
	}
	want := truthOf(churnWithFaults(t, trackers, px, 5))
	perShard := make([]int, shards)
	for u := range want {
		perShard[shardOfUser(u, shards)]++
	}
	for i, n := range perShard {
		if n == 0 {
			t.Fatalf("shard %d has no user in the truth (%v): the test would not cover it", i, perShard)
		}
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	var (
		got       map[string]string
		misplaced []string
		rewriting []int
		sum       string
	)
	start := time.Now()
	for end := time.Now().Add(30 * hb); time.Now().Before(end); time.Sleep(hb / 2) {
		got, misplaced = shardedUsers(t, rdb, prefix, shards)
		rewriting = rewritesUnderWay(t, rdb, prefix, shards)
		sum = rdb.Get(ctx(t), online).Val()
		if maps.Equal(got, want) && len(misplaced) == 0 && len(rewriting) == 0 && sum == strconv.Itoa(len(want)) {
			t.Logf("exact %v after the faults stopped: %d users (per shard %v)", time.Since(start).Round(time.Millisecond), len(want), perShard)
			return
		}
	}
	t.Fatalf("shards never matched the truth: %d users, want %d (first differences: %v); misplaced %v; rewriting in shards %v; online_users %q, want %d",
		len(got), len(want), firstDiff(got, want), misplaced, rewriting, sum, len(want))
}

// TestShardedOnlineUsersReconciled: online_users is recomputed from the
// shards at every heartbeat, whichever node beats. The home state is
// corrupted twice (a shard's state deleted, online_users set to a wrong
// number): one Heartbeat of either node makes it exact again.
func TestShardedOnlineUsersReconciled(t *testing.T) {
	const shards = 4
	srv := testenv.StartRedis(t)
	a, rdb, prefix, online := openSharded(t, srv.Addr(), shards, redisstore.Options{NodeTTL: time.Minute})
	b, _, _, _ := openSharded(t, srv.Addr(), shards, redisstore.Options{Prefix: prefix, OnlineKey: online, NodeTTL: time.Minute})
	if _, err := a.Sync(ctx(t), presence.Share{Node: "a", Seq: 1, Users: usersN("x", 30)}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Sync(ctx(t), presence.Share{Node: "b", Seq: 1, Users: usersN("y", 20)}); err != nil {
		t.Fatal(err)
	}
	// b adds users that a also has, and new ones: a's view of the shards
	// is now older than b's.
	if _, err := b.Apply(ctx(t), presence.Batch{Node: "b", Seq: 2, Deltas: []presence.Delta{{User: "x1", N: 1}, {User: "z1", N: 1}, {User: "z2", N: 1}}}); err != nil {
		t.Fatal(err)
	}
	const truth = 52
	if got := rdb.Get(ctx(t), online).Val(); got != strconv.Itoa(truth) {
		t.Fatalf("online_users = %q after the writes, want %d", got, truth)
	}
	seqs := map[*redisstore.Sharded]uint64{a: 1, b: 2}
	for _, tc := range []struct {
		name string
		s    *redisstore.Sharded
		node string
	}{{"heartbeat of a", a, "a"}, {"heartbeat of b", b, "b"}} {
		t.Run(tc.name, func(t *testing.T) {
			victim := strconv.Itoa(shardOfUser("z1", shards)) // a shard with users
			if n := rdb.HDel(ctx(t), prefix+":shards", victim).Val(); n != 1 {
				t.Fatalf("HDEL %s:shards %s removed %d fields, want 1", prefix, victim, n)
			}
			rdb.Set(ctx(t), online, 999, 0)
			if _, err := tc.s.Heartbeat(ctx(t), seqs[tc.s], presence.NodeInfo{ID: tc.node}); err != nil {
				t.Fatal(err)
			}
			if got := rdb.Get(ctx(t), online).Val(); got != strconv.Itoa(truth) {
				t.Fatalf("online_users = %q after one heartbeat, want %d", got, truth)
			}
			if c, err := tc.s.Counts(ctx(t)); err != nil || c.Users != truth {
				t.Fatalf("Counts = %+v, %v; want %d users", c, err, truth)
			}
		})
	}
}

// TestShardedDeadNodesReaped: two nodes die (their stores abandoned, no
// Leave); the survivor's heartbeats reap each on every shard. The counts
// are exact once their leases ran out, and each dead node is reported
// once, with the users and connections of all its shards summed.
func TestShardedDeadNodesReaped(t *testing.T) {
	const shards = 4
	srv := testenv.StartRedis(t)
	const ttl = 300 * time.Millisecond
	live, rdb, prefix, online := openSharded(t, srv.Addr(), shards, redisstore.Options{NodeTTL: 20 * ttl})
	open := func() *redisstore.Sharded {
		s, _, _, _ := openSharded(t, srv.Addr(), shards, redisstore.Options{Prefix: prefix, OnlineKey: online, NodeTTL: ttl})
		return s
	}
	// live: x0..x29; d1: x0..x9 (shared) and y0..y39 with 2 connections
	// each; d2: z0..z24 and a guest.
	if _, err := live.Sync(ctx(t), presence.Share{Node: "live", Seq: 1, Users: usersN("x", 30)}); err != nil {
		t.Fatal(err)
	}
	d1Users := usersN("x", 10)
	for u := range usersN("y", 40) {
		d1Users[u] = 2
	}
	d1, d2 := open(), open()
	if _, err := d1.Sync(ctx(t), presence.Share{Node: "d1", Seq: 1, Users: d1Users}); err != nil {
		t.Fatal(err)
	}
	if _, err := d2.Sync(ctx(t), presence.Share{Node: "d2", Seq: 1, Users: usersN("z", 25), Guests: 1}); err != nil {
		t.Fatal(err)
	}
	if c, err := live.Counts(ctx(t)); err != nil || c.Users != 95 {
		t.Fatalf("Counts before the deaths = %+v, %v; want 95 users", c, err)
	}
	// Each dead node had users on every shard, else the sum proves little.
	for name, users := range map[string]map[string]int64{"d1": d1Users, "d2": usersN("z", 25)} {
		per := make([]int, shards)
		for u := range users {
			per[shardOfUser(u, shards)]++
		}
		for i, n := range per {
			if n == 0 {
				t.Fatalf("%s has no user on shard %d: %v", name, i, per)
			}
		}
	}
	time.Sleep(ttl + 100*time.Millisecond) // d1 and d2 are dead: their leases ran out
	reaped := map[string][]presence.Reaped{}
	var all []presence.Reaped
	for beat := 1; beat <= 3; beat++ {
		got, err := live.Heartbeat(ctx(t), 1, presence.NodeInfo{ID: "live"})
		if err != nil {
			t.Fatalf("heartbeat %d: %v", beat, err)
		}
		for _, r := range got {
			reaped[r.Node] = append(reaped[r.Node], r)
			all = append(all, r)
		}
	}
	want := map[string]presence.Reaped{
		"d1": {Node: "d1", Users: 50, Connections: 90},
		"d2": {Node: "d2", Users: 25, Connections: 26},
	}
	if len(all) != 2 {
		t.Errorf("heartbeats reported reaps %+v; want one per dead node: %+v", all, want)
	}
	for node, w := range want {
		if rs := reaped[node]; len(rs) != 1 || rs[0] != w {
			t.Errorf("reaps of %s = %+v, want [%+v] (summed over the %d shards)", node, rs, w, shards)
		}
	}
	c, err := live.Counts(ctx(t))
	if err != nil || c.Users != 30 || c.Connections != 30 || c.Guests != 0 || c.Partial {
		t.Errorf("Counts after the reaps = %+v, %v; want 30 users, 30 connections, no guest", c, err)
	}
	if got := rdb.Get(ctx(t), online).Val(); got != "30" {
		t.Errorf("online_users = %q after the reaps, want 30", got)
	}
	union, misplaced := shardedUsers(t, rdb, prefix, shards)
	if !maps.Equal(union, func() map[string]string {
		m := map[string]string{}
		for u := range usersN("x", 30) {
			m[u] = "1"
		}
		return m
	}()) || len(misplaced) > 0 {
		t.Errorf("shards hold %v (misplaced %v); want x0..x29 once each", union, misplaced)
	}
	if nodes, err := live.Nodes(ctx(t)); err != nil || len(nodes) != 1 || nodes[0].ID != "live" {
		t.Errorf("Nodes = %+v, %v; want live alone", nodes, err)
	}
}

// TestCheckLayout: nodes with different PRESENCE_SHARDS must not share
// the keys. A node without shards with a live lease under the prefix
// refuses 4 shards; a 4-shard store that wrote refuses 1 and 8; each
// passes for the same number, and once the leases ran out.
func TestCheckLayout(t *testing.T) {
	srv := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	const ttl = 300 * time.Millisecond
	id := prefixes.Add(1)
	prefix, online := fmt.Sprintf("{t%d}", id), fmt.Sprintf("{t%d}online_users", id)
	check := func(t *testing.T, n int, refused bool, when string) {
		t.Helper()
		err := redisstore.CheckLayout(ctx(t), rdb, prefix, n)
		switch {
		case refused && !errors.Is(err, redisstore.ErrLayout):
			t.Errorf("%s: CheckLayout(%d) = %v, want ErrLayout", when, n, err)
		case refused && !strings.Contains(err.Error(), "PRESENCE_SHARDS"):
			t.Errorf("%s: CheckLayout(%d) = %q, does not name PRESENCE_SHARDS", when, n, err)
		case !refused && err != nil:
			t.Errorf("%s: CheckLayout(%d) = %v, want nil", when, n, err)
		}
	}
	check(t, 4, false, "no keys yet")
	check(t, 1, false, "no keys yet")

	plain, err := redisstore.New(rdb, redisstore.Options{Prefix: prefix, OnlineKey: online, NodeTTL: ttl, RecoveryWindow: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Sync(ctx(t), presence.Share{Node: "p", Seq: 1, Users: usersN("u", 5)}); err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Heartbeat(ctx(t), 1, presence.NodeInfo{ID: "p"}); err != nil {
		t.Fatal(err)
	}
	check(t, 4, true, "a node without shards is live")
	check(t, 1, false, "a node without shards is live")
	time.Sleep(ttl + 100*time.Millisecond)
	check(t, 4, false, "the node without shards is dead")

	sh, _, _, _ := openSharded(t, srv.Addr(), 4, redisstore.Options{Prefix: prefix, OnlineKey: online, NodeTTL: ttl})
	if _, err := sh.Sync(ctx(t), presence.Share{Node: "s", Seq: 1, Users: usersN("v", 8)}); err != nil {
		t.Fatal(err)
	}
	if _, err := sh.Heartbeat(ctx(t), 1, presence.NodeInfo{ID: "s"}); err != nil {
		t.Fatal(err)
	}
	check(t, 1, true, "a 4-shard node is live")
	check(t, 8, true, "a 4-shard node is live")
	check(t, 4, false, "a 4-shard node is live")
	// A store of another number of shards is refused by the scripts too
	// (a node that started before the other layout wrote).
	other, _, _, _ := openSharded(t, srv.Addr(), 8, redisstore.Options{Prefix: prefix, OnlineKey: online, NodeTTL: ttl})
	if _, err := other.Sync(ctx(t), presence.Share{Node: "o", Seq: 1, Users: usersN("w", 3)}); err == nil || !strings.Contains(err.Error(), "PRESENCE_SHARDS") {
		t.Errorf("an 8-shard Sync on 4-shard keys: %v; want the layout refused", err)
	}
	// The home hash expires two leases after the last heartbeat.
	time.Sleep(2*ttl + 200*time.Millisecond)
	check(t, 1, false, "the 4-shard node is dead")
	check(t, 8, false, "the 4-shard node is dead")
}
