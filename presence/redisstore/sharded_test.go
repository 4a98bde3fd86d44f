package redisstore_test

import (
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/keyslot"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/presence/redisstore"
	"github.com/presenced/presenced/presence/storetest"
)

// openSharded returns a store of n shards on addr with its own home prefix
// and online key.
func openSharded(tb testing.TB, addr string, n int, o redisstore.Options) (*redisstore.Sharded, *redis.Client, string, string) {
	tb.Helper()
	rdb, o := testClient(tb, addr, o)
	s, err := redisstore.NewSharded(rdb, o, n)
	if err != nil {
		tb.Fatal(err)
	}
	return s, rdb, o.Prefix, o.OnlineKey
}

// TestShardedContract: a store split over shards passes the contract every
// store passes.
func TestShardedContract(t *testing.T) {
	srv := testenv.StartRedis(t)
	for _, n := range []int{2, 5} {
		t.Run(fmt.Sprintf("%dShards", n), func(t *testing.T) {
			storetest.RunWith(t, storetest.Options{PerShardBatches: true}, func(t *testing.T) presence.Store {
				s, _, _, _ := openSharded(t, srv.Addr(), n, redisstore.Options{NodeTTL: storetest.TTL})
				return s
			})
		})
	}
}

// TestShardPrefixesSpreadOverSlots: shard i's hash tag is in the i-th n-th
// of the slots, so shards spread evenly over masters owning equal ranges.
func TestShardPrefixesSpreadOverSlots(t *testing.T) {
	for _, n := range []int{2, 3, 16, 256} {
		seen := map[string]bool{}
		for i := range n {
			p := redisstore.ShardPrefix("app:{online_users}:", i, n)
			slot := keyslot.Of(p)
			if slot < i*keyslot.Slots/n || slot >= (i+1)*keyslot.Slots/n {
				t.Errorf("n=%d: shard %d prefix %q in slot %d, outside its range", n, i, p, slot)
			}
			if seen[p] {
				t.Errorf("n=%d: prefix %q twice", n, p)
			}
			seen[p] = true
		}
	}
	for _, c := range []struct {
		i, n int
		want string
	}{{0, 2, "{online_users:0of2}"}, {1, 2, "{online_users:1of2}"}, {0, 16, "{online_users:0of16}"}, {1, 16, "{online_users:1of16:40}"}} {
		if got := redisstore.ShardPrefix("{online_users}", c.i, c.n); got != c.want {
			t.Errorf("shard %d of %d = %q, want %q", c.i, c.n, got, c.want)
		}
	}
}

// TestShardedWritesHandTheirStateOver: every write hands its shard's
// state to home.lua before it returns, even when the count is the one
// the writing node saw last, since another node may have handed over a
// newer state with another count meanwhile. (Found by TestChurnSharded:
// online_users stayed below the truth until the next heartbeat.)
func TestShardedWritesHandTheirStateOver(t *testing.T) {
	srv := testenv.StartRedis(t)
	x, rdb, p, online := openSharded(t, srv.Addr(), 2, redisstore.Options{NodeTTL: time.Minute})
	y, _, _, _ := openSharded(t, srv.Addr(), 2, redisstore.Options{Prefix: p, OnlineKey: online, NodeTTL: time.Minute})
	var same []string // users of shard 0
	for i := 0; len(same) < 3; i++ {
		if u := "u" + strconv.Itoa(i); shardOfUser(u, 2) == 0 {
			same = append(same, u)
		}
	}
	a, e, b := same[0], same[1], same[2]
	want := func(n int64, when string) {
		t.Helper()
		if got, err := rdb.Get(ctx(t), online).Int64(); err != nil || got != n {
			t.Fatalf("%s: online_users = %d (%v), want %d", when, got, err, n)
		}
	}
	if _, err := x.Sync(ctx(t), presence.Share{Node: "x", Seq: 1, Users: map[string]int64{a: 1, e: 1}}); err != nil {
		t.Fatal(err)
	}
	want(2, "x wrote a and e")
	if _, err := y.Sync(ctx(t), presence.Share{Node: "y", Seq: 1, Users: map[string]int64{b: 1}}); err != nil {
		t.Fatal(err)
	}
	want(3, "y wrote b")
	// x's shard 0 goes from 3 (y's state) to 2, the count x saw last.
	if _, err := x.Apply(ctx(t), presence.Batch{Node: "x", Seq: 2, Deltas: []presence.Delta{{User: e, N: -1}}}); err != nil {
		t.Fatal(err)
	}
	want(2, "x took e away")
}

// TestShardedLayoutRefusedByHome: a store with another number of shards
// than the one the home keys were made for writes only into its own
// shards, and its write fails with ErrLayout (home.lua refuses it).
func TestShardedLayoutRefusedByHome(t *testing.T) {
	srv := testenv.StartRedis(t)
	two, rdb, p, online := openSharded(t, srv.Addr(), 2, redisstore.Options{NodeTTL: time.Minute})
	three, _, _, _ := openSharded(t, srv.Addr(), 3, redisstore.Options{Prefix: p, OnlineKey: online, NodeTTL: time.Minute})
	if _, err := two.Sync(ctx(t), presence.Share{Node: "a", Seq: 1, Users: map[string]int64{"u1": 1}}); err != nil {
		t.Fatal(err)
	}
	_, err := three.Sync(ctx(t), presence.Share{Node: "b", Seq: 1, Users: map[string]int64{"u2": 1, "u3": 1}})
	if !errors.Is(err, redisstore.ErrLayout) {
		t.Fatalf("Sync with 3 shards on keys of 2: err = %v, want ErrLayout", err)
	}
	if got := rdb.Get(ctx(t), online).Val(); got != "1" {
		t.Fatalf("online_users = %q after the refused write, want 1", got)
	}
}
