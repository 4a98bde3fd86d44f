package e2e_test

import (
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/testenv"
)

// TestClusterTLSPassword: presenced on a Redis Cluster whose nodes speak
// TLS only (tls-cluster yes, no plain port) and require a password,
// configured with REDIS_CLUSTER_ADDRS, REDIS_PASSWORD and
// REDIS_TLS_CA_FILE: a WebSocket client is counted in online_users (read
// over TLS on the master of its slot) and in the overview. The same
// cluster with the wrong password or CA is refused with that state.
func TestClusterTLSPassword(t *testing.T) {
	t.Parallel()
	const password = "cluster-pass-4e8"
	c := testenv.StartRedisClusterWith(t, testenv.ClusterOptions{Password: password, TLS: true})
	holder := c.MasterOf(onlineKey)
	env := map[string]string{"REDIS_CLUSTER_ADDRS": c.Seeds(), "REDIS_PASSWORD": password, "REDIS_TLS_CA_FILE": c.TLS.CAFile}

	t.Run("counted", func(t *testing.T) {
		t.Parallel()
		n := StartNode(t, env)
		waitConnectLines(t, n, 0, 5*time.Second)
		waitRedisStatus(t, n, "up", "")
		cl := Dial(t, n, Token(t, "tls-cluster-user"))
		defer cl.Conn.Close()
		waitRedis(t, holder, 5*time.Second, "online_users = 1", func() bool { return holder.Do("GET", onlineKey) == "1" })
		// Right after the first write the counts are partial (the recovery
		// window) and the overview comes from the node itself.
		o := waitOverview(t, n, 10*time.Second, func(o Overview) bool { return o.Source == "redis" && o.OnlineUsers == 1 })
		if o.OnlineConnections != 1 || o.Stale {
			t.Errorf("overview %+v, want 1 connection, not stale", o)
		}
		noSecret(t, n, []string{password})
	})
	for _, tc := range []struct {
		name, key, value, state string
	}{
		{"wrong password", "REDIS_PASSWORD", "wrong-pass-5d2", "auth refused"},
		{"wrong CA", "REDIS_TLS_CA_FILE", c.TLS.WrongCAFile, "tls failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := StartNode(t, envWith(env, map[string]string{tc.key: tc.value}))
			n.WaitLog("Redis connection failed: "+tc.state, 5*time.Second)
			waitRedisStatus(t, n, "down", tc.state)
			noSecret(t, n, []string{password, "wrong-pass-5d2"})
		})
	}
}

// TestSentinelTLSPassword: presenced behind TLS-only Sentinels with their
// own password, in front of TLS-only data nodes with another, all
// requiring a client certificate (REDIS_SENTINEL_ADDRS,
// REDIS_SENTINEL_MASTER, REDIS_SENTINEL_PASSWORD, REDIS_PASSWORD,
// REDIS_TLS_CA_FILE, REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE): a
// WebSocket client is counted on the master and in the overview. Without
// the client certificate the state is "tls failed" (it was "unreachable":
// go-redis's dial retries took the probe past its 2 s budget), with the
// wrong Sentinel password "auth refused".
func TestSentinelTLSPassword(t *testing.T) {
	t.Parallel()
	s := testenv.StartRedisSentinelWith(t, testenv.SentinelOptions{
		Password: "data-pass-61a", SentinelPassword: "sentinel-pass-0b7", TLS: true, TLSClientAuth: true,
	})
	env := map[string]string{
		"REDIS_SENTINEL_ADDRS": s.Addrs(), "REDIS_SENTINEL_MASTER": s.Name, "REDIS_SENTINEL_PASSWORD": s.SentinelPassword,
		"REDIS_PASSWORD": s.Password, "REDIS_TLS_CA_FILE": s.TLS.CAFile,
		"REDIS_TLS_CERT_FILE": s.TLS.ClientCertFile, "REDIS_TLS_KEY_FILE": s.TLS.ClientKeyFile,
	}
	secrets := []string{s.Password, s.SentinelPassword, "wrong-pass-3f9"}
	t.Run("counted", func(t *testing.T) {
		t.Parallel()
		n := StartNode(t, env)
		waitConnectLines(t, n, 0, 5*time.Second)
		waitRedisStatus(t, n, "up", "")
		cl := Dial(t, n, Token(t, "tls-sentinel-user"))
		defer cl.Conn.Close()
		m := s.Master()
		waitRedis(t, m, 5*time.Second, "online_users = 1", func() bool { return m.Do("GET", onlineKey) == "1" })
		o := waitOverview(t, n, 10*time.Second, func(o Overview) bool { return o.Source == "redis" && o.OnlineUsers == 1 })
		if o.OnlineConnections != 1 || o.Stale {
			t.Errorf("overview %+v, want 1 connection, not stale", o)
		}
		noSecret(t, n, secrets)
	})
	for _, tc := range []struct {
		name  string
		set   map[string]string
		state string
	}{
		{"no client certificate", map[string]string{"REDIS_TLS_CERT_FILE": "", "REDIS_TLS_KEY_FILE": ""}, "tls failed"},
		{"wrong sentinel password", map[string]string{"REDIS_SENTINEL_PASSWORD": "wrong-pass-3f9"}, "auth refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := StartNode(t, envWith(env, tc.set))
			n.WaitLog("Redis connection failed: "+tc.state, 5*time.Second)
			waitRedisStatus(t, n, "down", tc.state)
			noSecret(t, n, secrets)
		})
	}
}

// envWith returns env with set applied; an empty value removes the variable.
func envWith(env, set map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		out[k] = v
	}
	for k, v := range set {
		if v == "" {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

// noSecret fails the test if n's log shows one of secrets.
func noSecret(t *testing.T, n *Node, secrets []string) {
	t.Helper()
	for _, secret := range secrets {
		if strings.Contains(n.Log(), secret) {
			t.Errorf("log shows a password (%s):\n%s", secret, n.Log())
		}
	}
}
