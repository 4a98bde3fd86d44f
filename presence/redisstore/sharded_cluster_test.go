package redisstore_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/presence/redisstore"
)

// shardedSyncs is a Sharded store that counts the rewrites a tracker asks
// for.
type shardedSyncs struct {
	*redisstore.Sharded
	syncs atomic.Int64
}

func (c *shardedSyncs) Sync(ctx context.Context, sh presence.Share) (int64, error) {
	c.syncs.Add(1)
	return c.Sharded.Sync(ctx, sh)
}

// shardMasters returns, for each of the n shards under home, the master
// serving its keys, and fails the test unless they are all 3 masters.
func shardMasters(t *testing.T, c *testenv.RedisCluster, home string, n int) []*testenv.Redis {
	t.Helper()
	out := make([]*testenv.Redis, n)
	per := map[string][]int{}
	for i := range n {
		p := redisstore.ShardPrefix(home, i, n)
		out[i] = c.MasterOf(p + ":users")
		per[out[i].Addr()] = append(per[out[i].Addr()], i)
	}
	if len(per) != 3 {
		t.Fatalf("the %d shards under %s are on %d masters (%v), want all 3", n, home, len(per), per)
	}
	t.Logf("shards under %s per master: %v", home, per)
	return out
}

// TestShardedOnCluster runs a store of 16 shards on a 3-master Redis
// Cluster through the client presenced builds: every operation works
// across masters (a shard's keys are on the master of its hash tag), the
// home key reads the sum, and a dead node is reaped on every master.
func TestShardedOnCluster(t *testing.T) {
	const shards = 16
	c := testenv.StartRedisCluster(t)
	rdb := universal(t, redisstore.ClientOptions{ClusterAddrs: c.Addrs()})
	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open := func(ttl time.Duration) *redisstore.Sharded {
		s, err := redisstore.NewSharded(rdb, redisstore.Options{NodeTTL: ttl, RecoveryWindow: time.Millisecond}, shards)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	const home = "{online_users}" // the default home prefix
	masters := shardMasters(t, c, home, shards)
	n1, dead := open(10*time.Second), open(300*time.Millisecond)

	// n1: a0..a199, 2 guests; dead: a0..a19 (shared) and d0..d39 with 2
	// connections each.
	truth := map[string]int64{}
	share1 := usersN("a", 200)
	if _, err := n1.Sync(cctx, presence.Share{Node: "n1", Seq: 1, Users: share1, Guests: 2}); err != nil {
		t.Fatalf("sync: %v", err)
	}
	shareDead := usersN("a", 20)
	for u := range usersN("d", 40) {
		shareDead[u] = 2
	}
	if _, err := dead.Sync(cctx, presence.Share{Node: "dead", Seq: 1, Users: shareDead}); err != nil {
		t.Fatalf("sync: %v", err)
	}
	// A batch over many shards: b0..b9 arrive, a199 leaves, a0 opens a
	// second tab.
	deltas := []presence.Delta{{User: "a199", N: -1}, {User: "a0", N: 1}}
	for i := range 10 {
		deltas = append(deltas, presence.Delta{User: "b" + strconv.Itoa(i), N: 1})
	}
	if _, err := n1.Apply(cctx, presence.Batch{Node: "n1", Seq: 2, Deltas: deltas}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	for _, sh := range []map[string]int64{share1, shareDead} {
		for u, n := range sh {
			truth[u] += n
		}
	}
	for _, d := range deltas {
		truth[d.User] += d.N
		if truth[d.User] == 0 {
			delete(truth, d.User)
		}
	}
	if _, err := n1.Heartbeat(cctx, 2, presence.NodeInfo{ID: "n1", Host: "h1"}); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	if _, err := dead.Heartbeat(cctx, 1, presence.NodeInfo{ID: "dead", Host: "h2"}); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}

	check := func(when string, truth map[string]int64, guests int64) {
		t.Helper()
		var conns int64
		for _, n := range truth {
			conns += n
		}
		// Each shard's users are on its own master.
		got := map[string]int64{}
		for i := range shards {
			key := redisstore.ShardPrefix(home, i, shards) + ":users"
			reply := respList(masters[i].Do("HGETALL", key))
			for k := 0; k+1 < len(reply); k += 2 {
				n, _ := strconv.ParseInt(reply[k+1], 10, 64)
				got[reply[k]] = n
				if s := shardOfUser(reply[k], shards); s != i {
					t.Errorf("%s: %s in shard %d, belongs to %d", when, reply[k], i, s)
				}
			}
		}
		if !maps.Equal(got, truth) {
			t.Errorf("%s: the shards' users hashes on their masters hold %d users, want %d", when, len(got), len(truth))
		}
		if v := rdb.Get(cctx, "online_users").Val(); v != strconv.Itoa(len(truth)) {
			t.Errorf("%s: GET online_users = %q, want %d", when, v, len(truth))
		}
		cnt, err := n1.Counts(cctx)
		if err != nil || cnt.Users != int64(len(truth)) || cnt.Guests != guests || cnt.Connections != conns+guests || cnt.Partial || cnt.PeakToday < cnt.Users {
			t.Errorf("%s: Counts = %+v, %v; want %d users, %d guests, %d connections, not partial", when, cnt, err, len(truth), guests, conns+guests)
		}
		// ListUsers walks every shard, page by page.
		listed := map[string]int64{}
		cursor, pages := "", 0
		for {
			page, err := n1.ListUsers(cctx, cursor, 10)
			if err != nil {
				t.Fatalf("%s: ListUsers page %d: %v", when, pages, err)
			}
			pages++
			if page.Total != int64(len(truth)) {
				t.Errorf("%s: ListUsers page %d Total %d, want %d", when, pages, page.Total, len(truth))
			}
			for _, uc := range page.Users {
				if _, dup := listed[uc.User]; dup {
					t.Errorf("%s: ListUsers lists %s twice", when, uc.User)
				}
				listed[uc.User] = uc.Connections
			}
			if cursor = page.Cursor; cursor == "" {
				break
			}
			if pages > 10*len(truth) {
				t.Fatalf("%s: ListUsers does not end", when)
			}
		}
		if !maps.Equal(listed, truth) {
			t.Errorf("%s: ListUsers over %d pages gave %d users, want %d", when, pages, len(listed), len(truth))
		}
		ask := []string{"a0", "a5", "b3", "nobody", "d7", "a199", "a19"}
		want := make([]int64, len(ask))
		for i, u := range ask {
			want[i] = truth[u]
		}
		if got, err := n1.Connections(cctx, ask); err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: Connections(%v) = %v, %v; want %v", when, ask, got, err, want)
		}
	}
	check("after the writes", truth, 2)

	// The shards' keys sit on every master.
	for _, m := range c.Nodes {
		keys := respList(m.Do("KEYS", "*"))
		var mine int
		for _, k := range keys {
			if strings.HasPrefix(k, "{online_users:") {
				mine++
			}
		}
		if mine == 0 {
			t.Errorf("master %s holds no shard key: %v", m.Addr(), keys)
		}
	}

	// The events of all shards, read a few at a time: each transition
	// once, positions resume.
	type ev struct{ typ, user string }
	readAll := func(after string) ([]ev, string) {
		t.Helper()
		var out []ev
		seen := map[string]bool{}
		for range 1000 {
			evs, err := n1.ReadEvents(cctx, after, 7, 0)
			if err != nil {
				t.Fatalf("ReadEvents after %q: %v", after, err)
			}
			if len(evs) == 0 {
				return out, after
			}
			if len(evs) > 7 {
				t.Errorf("ReadEvents(count 7) returned %d events", len(evs))
			}
			for _, e := range evs {
				if seen[e.ID] {
					t.Errorf("event id %s twice", e.ID)
				}
				seen[e.ID] = true
				out = append(out, ev{e.Type, e.User})
			}
			after = evs[len(evs)-1].ID
		}
		t.Fatal("ReadEvents does not end")
		return nil, ""
	}
	evs, pos := readAll("")
	wantEvs := map[ev]int{{presence.EventOffline, "a199"}: 1}
	for u := range share1 {
		wantEvs[ev{presence.EventOnline, u}] = 1
	}
	for u := range shareDead {
		wantEvs[ev{presence.EventOnline, u}] = 1
	}
	for i := range 10 {
		wantEvs[ev{presence.EventOnline, "b" + strconv.Itoa(i)}] = 1
	}
	gotEvs := map[ev]int{}
	fromShards := map[int]bool{}
	for _, e := range evs {
		gotEvs[e]++
		fromShards[shardOfUser(e.user, shards)] = true
	}
	if !maps.Equal(gotEvs, wantEvs) {
		t.Errorf("events: %d read, want %d (each transition once)", len(evs), len(wantEvs))
	}
	if len(fromShards) != shards {
		t.Errorf("events from %d shards, want %d", len(fromShards), shards)
	}

	// dead's leases run out on every shard; n1's heartbeat reaps it on
	// every master at once.
	time.Sleep(400 * time.Millisecond)
	reaped, err := n1.Heartbeat(cctx, 2, presence.NodeInfo{ID: "n1", Host: "h1"})
	if err != nil {
		t.Fatalf("heartbeat reaping: %v", err)
	}
	if want := []presence.Reaped{{Node: "dead", Users: 60, Connections: 100}}; !slices.Equal(reaped, want) {
		t.Errorf("reaped %+v, want %+v", reaped, want)
	}
	for u, n := range shareDead {
		truth[u] -= n
		if truth[u] == 0 {
			delete(truth, u)
		}
	}
	check("after the reap", truth, 2)
	if nodes, err := n1.Nodes(cctx); err != nil || len(nodes) != 1 || nodes[0].ID != "n1" {
		t.Errorf("Nodes = %+v, %v; want n1 alone", nodes, err)
	}
	// The reap's events: d0..d39 go offline, a0..a19 stay online.
	evs, _ = readAll(pos)
	gotEvs = map[ev]int{}
	for _, e := range evs {
		gotEvs[e]++
	}
	wantEvs = map[ev]int{}
	for u := range usersN("d", 40) {
		wantEvs[ev{presence.EventOffline, u}] = 1
	}
	if !maps.Equal(gotEvs, wantEvs) {
		t.Errorf("events after the reap (resumed): %v, want d0..d39 offline once each", gotEvs)
	}
	if err := n1.Leave(cctx, "n1"); err != nil {
		t.Fatalf("leave: %v", err)
	}
	if v := rdb.Get(cctx, "online_users").Val(); v != "0" {
		t.Errorf("GET online_users after leave = %q, want 0", v)
	}
}

// TestShardedClusterMasterRestart: two trackers on 16 shards over a
// 3-master Cluster with the default layout. First the master holding the
// home key online_users and shard 0 (the guests and load figures) is
// killed and started empty, then another one: each time the nodes rewrite
// their shares and the count is exact again within a few heartbeats.
func TestShardedClusterMasterRestart(t *testing.T) {
	const shards, users = 16, 300
	c := testenv.StartRedisCluster(t)
	rdb := universal(t, redisstore.ClientOptions{ClusterAddrs: c.Addrs()})
	hb := 200 * time.Millisecond
	const home, online = "{online_users}", "online_users"
	masters := shardMasters(t, c, home, shards)
	first := c.MasterOf(online)
	if masters[0] != first || c.MasterOf(home+":shards") != first {
		t.Fatalf("shard 0 is on %s, online_users on %s: the default layout should put both on one master", masters[0].Addr(), first.Addr())
	}
	var second *testenv.Redis
	for _, m := range masters {
		if m != first {
			second = m
			break
		}
	}
	var stores []*shardedSyncs
	var trackers []*presence.Tracker
	for i := range 2 {
		s, err := redisstore.NewSharded(rdb, redisstore.Options{NodeTTL: 5 * hb, RecoveryWindow: hb * 3 / 2}, shards)
		if err != nil {
			t.Fatal(err)
		}
		st := &shardedSyncs{Sharded: s}
		stores = append(stores, st)
		trackers = append(trackers, runTracker(t, presence.TrackerOptions{
			Node: "n" + strconv.Itoa(i), Store: st, HeartbeatInterval: hb, BatchWindow: 5 * time.Millisecond,
		}))
	}
	want := map[string]string{}
	var acks []<-chan struct{}
	for i := range users {
		u := "u" + strconv.Itoa(i)
		acks = append(acks, trackers[i%2].Connect(u))
		want[u] = "1"
		if i%3 == 0 { // a second tab on the other node
			acks = append(acks, trackers[(i+1)%2].Connect(u))
			want[u] = "2"
		}
	}
	acks = append(acks, trackers[1].Connect("")) // a guest, kept in shard 0
	for _, a := range acks {
		<-a
	}
	exact := func() (bool, string) {
		got := map[string]string{}
		for i := range shards {
			m, err := rdb.HGetAll(context.Background(), redisstore.ShardPrefix(home, i, shards)+":users").Result()
			if err != nil {
				return false, err.Error()
			}
			maps.Copy(got, m)
		}
		v := rdb.Get(context.Background(), online).Val()
		cnt, err := stores[0].Counts(context.Background())
		ok := maps.Equal(got, want) && v == strconv.Itoa(users) && err == nil && cnt.Users == users && cnt.Guests == 1 && !cnt.Partial
		return ok, fmt.Sprintf("%d users in the shards (want %d: %v), online_users %q, Counts %+v %v", len(got), len(want), firstDiff(got, want), v, cnt, err)
	}
	wait := func(what string, bound time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		var last string
		for time.Since(start) < bound {
			ok, desc := exact()
			if ok {
				return time.Since(start)
			}
			last = desc
			time.Sleep(hb / 4)
		}
		t.Fatalf("%s: not exact within %v: %s", what, bound, last)
		return 0
	}
	wait("after the connects", 10*hb)
	for _, victim := range []*testenv.Redis{first, second} {
		var lost []int
		for i, m := range masters {
			if m == victim {
				lost = append(lost, i)
			}
		}
		before := stores[0].syncs.Load() + stores[1].syncs.Load()
		// online_users as read meanwhile: what a reader sees while the
		// master is down and the lost shards are rebuilt. While the home
		// key's master is up, it must stay readable (it used to expire
		// two leases into the outage: a heartbeat failing on some shard
		// did not hand the states home, nor renew the key).
		stop, sampled := make(chan struct{}), make(chan map[string]int, 1)
		go func() {
			seen := map[string]int{}
			for {
				select {
				case <-stop:
					sampled <- seen
					return
				case <-time.After(10 * time.Millisecond):
				}
				v, err := rdb.Get(context.Background(), online).Result()
				switch n, _ := strconv.Atoi(v); {
				case err != nil:
					seen["unread: "+firstWords(err.Error(), 2)]++
				case n < users:
					seen["below"]++
				case n > users:
					seen["above"]++
				default:
					seen["exact"]++
				}
			}
		}()
		c.Restart(victim, 500*time.Millisecond)
		took := wait(fmt.Sprintf("after the restart of %s (shards %v)", victim.Addr(), lost), 25*hb)
		close(stop)
		seenLog := <-sampled
		sampled <- seenLog
		rewrites := stores[0].syncs.Load() + stores[1].syncs.Load() - before
		t.Logf("restart of %s (shards %v, home key %v): exact %v after it served again (%.1f heartbeats), %d rewrites; online_users samples from the kill: %v",
			victim.Addr(), lost, victim == first, took.Round(time.Millisecond), float64(took)/float64(hb), rewrites, seenLog)
		if seen := <-sampled; victim != first && seen["exact"]+seen["below"] != total(seen) {
			t.Errorf("online_users while %s (not its master) was down and rebuilt: %v; want it readable throughout (below the truth only while lost shards are rewritten)", victim.Addr(), seen)
		}
		if rewrites == 0 {
			t.Errorf("the count came back without a rewrite: the restart of %s lost nothing?", victim.Addr())
		}
		if n := victim.Do("EXISTS", redisstore.ShardPrefix(home, lost[0], shards)+":users"); n != "1" {
			t.Errorf("shard %d's users hash on the restarted master: EXISTS = %s, want 1 (rebuilt)", lost[0], n)
		}
	}
	if n := first.Do("EXISTS", home+":shards"); n != "1" {
		t.Errorf("EXISTS %s:shards on the restarted master = %s, want 1 (rebuilt)", home, n)
	}
}

// firstWords returns the first n words of s.
func firstWords(s string, n int) string {
	f := strings.Fields(s)
	return strings.Join(f[:min(n, len(f))], " ")
}

// total is the sum of m's values.
func total(m map[string]int) (n int) {
	for _, v := range m {
		n += v
	}
	return n
}
