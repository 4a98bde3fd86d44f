package e2e_test

import (
	"testing"
	"time"

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
// default key layout: every presence key on the master of online_users.
type clusterRedis struct {
	c      *testenv.RedisCluster
	holder *testenv.Redis
}

func newClusterRedis(t *testing.T) clusterRedis {
	c := testenv.StartRedisCluster(t)
	return clusterRedis{c: c, holder: c.MasterOf(onlineKey)}
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
