package e2e_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/keyslot"
	"github.com/presenced/presenced/internal/testenv"
)

// presenceRedis is the Redis deployment the three-node scenarios run on:
// how nodes are told to reach it, the server that holds the presence keys
// (all in the slot of online_users) for the test's own reads, and how
// that server is restarted.
type presenceRedis interface {
	// env is the nodes' Redis configuration.
	env() map[string]string
	// DoErr sends one command to the server holding the presence keys.
	// It is called on the test's goroutine only.
	DoErr(args ...string) (string, error)
	// restart kills the server holding the presence keys, keeps it down
	// for outage and starts it again empty; it returns once that server
	// answers (serves its slots, on a Cluster).
	restart(t *testing.T, outage time.Duration)
}

// singleRedis is one redis-server (REDIS_URL).
type singleRedis struct{ *testenv.Redis }

func (r singleRedis) env() map[string]string { return map[string]string{"REDIS_URL": r.URL()} }

func (r singleRedis) restart(t *testing.T, outage time.Duration) {
	r.Kill()
	time.Sleep(outage)
	r.Start()
}

// clusterRedis is a 3-master Redis Cluster (REDIS_CLUSTER_ADDRS) with the
// default key layout: every presence key on the master of online_users
// (with PRESENCE_SHARDS above 1, the home keys; see doAt for the shards).
type clusterRedis struct {
	c      *testenv.RedisCluster
	holder *testenv.Redis
	owners []*testenv.Redis // the master of each slot
}

func newClusterRedis(t *testing.T) clusterRedis {
	c := testenv.StartRedisCluster(t)
	// The slots never move (no replicas, no resharding): read them once.
	r := clusterRedis{c: c, holder: c.MasterOf(onlineKey), owners: c.SlotOwners()}
	return r
}

// doAt sends one command to the master of key's slot.
func (r clusterRedis) doAt(key string, args ...string) (string, error) {
	n := r.owners[keyslot.Of(key)]
	if n == nil {
		return "", fmt.Errorf("no master serves the slot of %s", key)
	}
	return n.DoErr(args...)
}

func (r clusterRedis) env() map[string]string {
	return map[string]string{"REDIS_CLUSTER_ADDRS": r.c.Seeds()}
}

func (r clusterRedis) DoErr(args ...string) (string, error) { return r.holder.DoErr(args...) }

func (r clusterRedis) restart(t *testing.T, outage time.Duration) { r.c.Restart(r.holder, outage) }

// sentinelRedis is a master and a replica behind three Sentinels
// (REDIS_SENTINEL_ADDRS, REDIS_SENTINEL_MASTER).
type sentinelRedis struct{ s *testenv.RedisSentinel }

func (r sentinelRedis) env() map[string]string {
	return map[string]string{"REDIS_SENTINEL_ADDRS": r.s.Addrs(), "REDIS_SENTINEL_MASTER": r.s.Name}
}

func (r sentinelRedis) DoErr(args ...string) (string, error) { return r.s.Master().DoErr(args...) }

func (r sentinelRedis) restart(t *testing.T, outage time.Duration) { r.s.Restart(outage) }
