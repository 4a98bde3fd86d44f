package e2e_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/testenv"
)

// topologyUsers is the user count of the three-node scenarios on Cluster
// and Sentinel: smaller than TestCluster's 1000, since what these add is
// the topology, not the load.
const topologyUsers = 300

// TestClusterOnRedisCluster runs the three-node scenarios on a 3-master
// Redis Cluster with the default key layout (issue 8: every script used
// to fail there with CROSSSLOT); the restart is of the master holding the
// presence keys.
func TestClusterOnRedisCluster(t *testing.T) {
	r := newClusterRedis(t)
	runThreeNodes(t, r, topologyUsers, time.Second, nil)
	// The other masters hold no presence key.
	for _, n := range r.c.Nodes {
		if n != r.holder {
			if keys := n.Do("KEYS", "*"); keys != "[]" {
				t.Errorf("master %s holds keys %s; want all presence keys in the slot of %s", n.Addr(), keys, onlineKey)
			}
		}
	}
}

// TestClusterOnSentinel runs the three-node scenarios on a master and a
// replica behind three Sentinels; after the master's restart, a SENTINEL
// FAILOVER mid-run must leave the count exact within one heartbeat of the
// failover completing.
func TestClusterOnSentinel(t *testing.T) {
	s := testenv.StartRedisSentinel(t)
	runThreeNodes(t, sentinelRedis{s}, topologyUsers, time.Second, func(m *truthModel, live []*liveNode) {
		m.failover(t, s, live)
	})
}

// failover runs SENTINEL FAILOVER while the nodes' clients stay connected
// and new ones connect, then waits until the new master's online_users,
// the shares and every overview match the truth.
func (m *truthModel) failover(t *testing.T, s *testenv.RedisSentinel, live []*liveNode) {
	t.Helper()
	old := s.Master()
	start := time.Now()
	next := s.Failover()
	done := time.Now()
	if next == old {
		t.Fatalf("failover left %s master", old.Addr())
	}
	t.Logf("SENTINEL FAILOVER: %s master %v after the command", next.Addr(), done.Sub(start).Round(time.Millisecond))
	// Users connecting right after the failover are counted on the new
	// master.
	var specs []dialSpec
	for i := range 20 {
		specs = append(specs, dialSpec{user: fmt.Sprintf("f%03d", i), node: live[i%len(live)]})
	}
	m.dial(t, specs)
	bound := clusterHeartbeat + sampleSlack
	var took time.Duration
	waitFor(t, bound+10*time.Second, "presence exact on the new master after the failover", func() (bool, string) {
		p := m.presenceProblems(t)
		took = time.Since(done)
		return len(p) == 0, strings.Join(p, "; ")
	})
	t.Logf("SENTINEL FAILOVER: exact (%d users) %v after the failover completed (bound %v)", m.truthUsers(), took.Round(time.Millisecond), bound)
	if took > bound {
		t.Errorf("presence exact only %v after the failover completed; want within one heartbeat + slack = %v", took, bound)
	}
	// Close the late users again so the scenario's later counts hold.
	m.mu.Lock()
	var late []*trackedClient
	for _, c := range m.clients {
		if strings.HasPrefix(c.user, "f") && c.open() {
			late = append(late, c)
		}
	}
	m.mu.Unlock()
	for _, c := range late {
		c.close()
	}
	m.settle(t, "after the late users left", false)
}
