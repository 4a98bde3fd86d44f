package e2e_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/keyslot"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence/redisstore"
)

// shardedRedis is a deployment whose nodes run with PRESENCE_SHARDS=n;
// the truth model then reads the n shards (see shardProblems).
type shardedRedis struct {
	presenceRedis
	n int
}

func (r shardedRedis) env() map[string]string {
	env := map[string]string{"PRESENCE_SHARDS": strconv.Itoa(r.n)}
	for k, v := range r.presenceRedis.env() {
		env[k] = v
	}
	return env
}

func (r shardedRedis) doAt(key string, args ...string) (string, error) {
	if d, ok := r.presenceRedis.(interface {
		doAt(key string, args ...string) (string, error)
	}); ok {
		return d.doAt(key, args...)
	}
	return r.DoErr(args...)
}

// TestChurnSharded is TestChurn with PRESENCE_SHARDS=4 on one
// redis-server: the users hash and the node shares are checked summed
// over the 4 shards after every step, online_users (the sum home.lua
// keeps) against the truth, never below it after connects.
func TestChurnSharded(t *testing.T) {
	runChurn(t, 40*time.Second, true, func(r *testenv.Redis) presenceRedis { return shardedRedis{singleRedis{r}, 4} })
}

// TestChurnShardedWithInjectedTimeouts is TestChurnWithInjectedTimeouts
// with PRESENCE_SHARDS=4: the nodes reach Redis through a proxy that holds
// back or drops the replies of 5% of the requests, so the shards' calls
// time out with their outcome unknown, some of a batch's parts applied
// and others not; the count must still settle exactly after every step.
func TestChurnShardedWithInjectedTimeouts(t *testing.T) {
	var px *testenv.FaultProxy
	runChurn(t, 35*time.Second, false, func(r *testenv.Redis) presenceRedis {
		px = testenv.StartFaultProxy(t, r.Addr())
		px.Random(0.05)
		return shardedRedis{proxiedRedis{singleRedis{r}, px}, 4}
	})
	t.Logf("%d faults injected", px.Faults())
	if px.Faults() == 0 {
		t.Fatal("no fault was injected")
	}
}

// TestClusterShardedOnRedisCluster runs the three-node scenarios on a
// 3-master Redis Cluster with PRESENCE_SHARDS=16, so that presence spreads
// over every master. The restart is of the master of online_users: with
// the default layout it also holds shard 0 (the guests and the nodes'
// load figures, which sit in the first 16th of the slots, as online_users'
// slot 4329 is in the first master's third) and shards 1 to 4 or 5, so it
// loses the home keys the test reads (online_users, the shards' states,
// the peak) and the most shards at once.
func TestClusterShardedOnRedisCluster(t *testing.T) {
	const shards = 16
	r := newClusterRedis(t)
	if shard0 := r.owners[keyslot.Of(redisstore.ShardPrefix(presencePrefix, 0, shards))]; shard0 != r.holder {
		t.Fatalf("shard 0 on %s, online_users on %s: want both on one master", shard0.Addr(), r.holder.Addr())
	}
	var lost []int
	for i := range shards {
		if r.owners[keyslot.Of(redisstore.ShardPrefix(presencePrefix, i, shards))] == r.holder {
			lost = append(lost, i)
		}
	}
	t.Logf("the restart is of %s: online_users and shards %v", r.holder.Addr(), lost)
	runThreeNodes(t, shardedRedis{r, shards}, topologyUsers, time.Second, nil)
	// Presence is on every master.
	for _, n := range r.c.Nodes {
		var mine int
		for _, k := range strings.Fields(strings.Trim(n.Do("KEYS", "*"), "[]")) {
			if strings.HasPrefix(k, "{online_users:") {
				mine++
			}
		}
		if mine == 0 {
			t.Errorf("master %s holds no shard's keys", n.Addr())
		}
	}
}
