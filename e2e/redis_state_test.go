package e2e_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/testenv"
)

// redisStatus is server-load's redis block.
type redisStatus struct {
	Redis struct {
		Status string `json:"status"`
		Error  string `json:"error"`
	} `json:"redis"`
}

// waitRedisStatus polls server-load until its redis block has status and
// error.
func waitRedisStatus(t *testing.T, n *Node, status, errText string) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("server-load redis {status %s, error %q}", status, errText), func() (bool, string) {
		var sl redisStatus
		if err := fetchJSON(n, "/api/admin/dashboard/server-load", &sl); err != nil {
			return false, err.Error()
		}
		return sl.Redis.Status == status && sl.Redis.Error == errText, fmt.Sprintf("%+v", sl.Redis)
	})
}

// TestRedisStates: a refused password, a database the server lacks and a
// TLS server signed by another CA are told apart, in the log once per
// change of state (not once per retry) and in server-load; the node keeps
// serving meanwhile (a state, not an exit: the operator may fix Redis
// without restarting presenced).
func TestRedisStates(t *testing.T) {
	t.Parallel()
	locked := testenv.StartRedisWith(t, "--requirepass", "right-pass-9f3")
	plain := testenv.StartRedis(t)
	tlsSrv := testenv.StartRedisTLS(t)
	for _, tc := range []struct {
		name  string
		env   map[string]string
		state string
		words string // in the log line's advice
	}{
		{"wrong password", map[string]string{"REDIS_URL": "redis://:wrong-pass-7c1@" + locked.Addr()}, "auth refused", "check the user and password"},
		{"wrong password apart", map[string]string{"REDIS_URL": locked.URL(), "REDIS_PASSWORD": "wrong-pass-7c1"}, "auth refused", "check the user and password"},
		{"database 99", map[string]string{"REDIS_URL": plain.URL() + "/99"}, "wrong database", "databases"},
		{"wrong CA", map[string]string{"REDIS_URL": tlsSrv.TLSURL(), "REDIS_TLS_CA_FILE": tlsSrv.WrongCAFile}, "tls failed", "REDIS_TLS_CA_FILE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := StartNode(t, tc.env)
			line := "Redis connection failed: " + tc.state
			n.WaitLog(line, 5*time.Second)
			waitRedisStatus(t, n, "down", tc.state)
			// Several retries later (backoff 100ms, doubling), still one line.
			time.Sleep(3 * time.Second)
			log := n.Log()
			if c := strings.Count(log, line); c != 1 {
				t.Errorf("%q logged %d times in 3s, want once:\n%s", line, c, log)
			}
			if c := strings.Count(log, "Redis connection failed"); c != 1 {
				t.Errorf("%d Redis failure lines, want 1:\n%s", c, log)
			}
			if !strings.Contains(log, tc.words) {
				t.Errorf("log does not say %q:\n%s", tc.words, log)
			}
			for _, secret := range []string{"wrong-pass-7c1", "right-pass-9f3"} {
				if strings.Contains(log, secret) {
					t.Errorf("log shows a password:\n%s", log)
				}
			}
			if o := n.Overview(); o.Source == "redis" {
				t.Errorf("overview from redis while Redis refuses: %+v", o)
			}
		})
	}
}

// TestRedisTLS: a TLS redis-server with a self-signed CA is used through
// rediss:// and REDIS_TLS_CA_FILE.
func TestRedisTLS(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedisTLS(t)
	n := StartNode(t, map[string]string{"REDIS_URL": r.TLSURL(), "REDIS_TLS_CA_FILE": r.CAFile})
	waitConnectLines(t, n, 0, 5*time.Second)
	waitRedisStatus(t, n, "up", "")
	c := Dial(t, n, Token(t, "tls-user"))
	defer c.Conn.Close()
	// The count written over TLS, read on the plain port of the same server.
	waitRedis(t, r.Redis, 5*time.Second, "online_users = 1", func() bool { return r.Do("GET", onlineKey) == "1" })
}

// TestRedisEvictionPolicy: under an allkeys-* maxmemory-policy presenced
// refuses to run (exit 1, naming the policy and REDIS_ALLOW_EVICTION),
// unless REDIS_ALLOW_EVICTION=true; the same check runs at every
// reconnect. A Redis without CONFIG is warned about and used.
func TestRedisEvictionPolicy(t *testing.T) {
	t.Parallel()
	t.Run("allkeys refused at start", func(t *testing.T) {
		t.Parallel()
		r := testenv.StartRedisWith(t, "--maxmemory-policy", "allkeys-lru")
		p := StartProc(t, t.TempDir(), nil, map[string]string{"REDIS_URL": r.URL()})
		if code := p.Wait(15 * time.Second); code != 1 {
			t.Fatalf("exit code %d, want 1:\n%s", code, p.Log())
		}
		for _, w := range []string{"maxmemory-policy is allkeys-lru", "REDIS_ALLOW_EVICTION=true", "shutdown complete"} {
			if !strings.Contains(p.Stderr.String(), w) {
				t.Errorf("stderr does not say %q:\n%s", w, p.Stderr)
			}
		}
	})
	t.Run("allkeys allowed", func(t *testing.T) {
		t.Parallel()
		r := testenv.StartRedisWith(t, "--maxmemory-policy", "allkeys-lfu")
		n := StartNode(t, map[string]string{"REDIS_URL": r.URL(), "REDIS_ALLOW_EVICTION": "true"})
		n.WaitLog("running anyway because REDIS_ALLOW_EVICTION=true", 5*time.Second)
		c := Dial(t, n, Token(t, "u1"))
		defer c.Conn.Close()
		waitRedis(t, r, 5*time.Second, "online_users = 1", func() bool { return r.Do("GET", onlineKey) == "1" })
	})
	t.Run("refused at reconnect", func(t *testing.T) {
		t.Parallel()
		r := testenv.StartRedis(t)
		p := StartServing(t, t.TempDir(), map[string]string{"REDIS_URL": r.URL()})
		p.WaitLog("Redis connected successfully", 5*time.Second)
		r.Kill()
		p.WaitLog("Redis connection lost", 5*time.Second)
		// Redis comes back with an evicting policy.
		r.StartWith("--maxmemory-policy", "allkeys-random")
		if code := p.Wait(15 * time.Second); code != 1 {
			t.Fatalf("exit code %d, want 1:\n%s", code, p.Log())
		}
		if !strings.Contains(p.Stderr.String(), "maxmemory-policy is allkeys-random") {
			t.Errorf("stderr does not name the policy:\n%s", p.Stderr)
		}
	})
	t.Run("no CONFIG", func(t *testing.T) {
		t.Parallel()
		r := testenv.StartRedisWith(t, "--rename-command", "CONFIG", "")
		n := StartNode(t, map[string]string{"REDIS_URL": r.URL()})
		n.WaitLog("cannot check Redis maxmemory-policy: CONFIG GET is refused", 5*time.Second)
		waitRedisStatus(t, n, "up", "")
	})
}

// TestRedisTopologyConfigErrors: topology settings that cannot work stop
// presenced with exit 2 naming the variables.
func TestRedisTopologyConfigErrors(t *testing.T) {
	t.Parallel()
	missingCA := filepath.Join(t.TempDir(), "no-such-ca.pem")
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		env   map[string]string
		words []string
	}{
		{"cluster and sentinel", map[string]string{"REDIS_CLUSTER_ADDRS": "127.0.0.1:7000", "REDIS_SENTINEL_ADDRS": "127.0.0.1:26379", "REDIS_SENTINEL_MASTER": "m"},
			[]string{"REDIS_SENTINEL_ADDRS=", "REDIS_CLUSTER_ADDRS", "two Redis topologies"}},
		{"cluster with a database", map[string]string{"REDIS_CLUSTER_ADDRS": "127.0.0.1:7000", "REDIS_URL": "redis://:pw-x@127.0.0.1:7000/3"},
			[]string{"REDIS_CLUSTER_ADDRS=", "REDIS_URL selects database 3"}},
		{"sentinel without master", map[string]string{"REDIS_SENTINEL_ADDRS": "127.0.0.1:26379"}, []string{"REDIS_SENTINEL_MASTER=", "required"}},
		{"missing CA file", map[string]string{"REDIS_URL": "rediss://127.0.0.1:6380", "REDIS_TLS_CA_FILE": missingCA}, []string{"REDIS_TLS_CA_FILE=", "no such file"}},
		{"CA file not PEM", map[string]string{"REDIS_URL": "rediss://127.0.0.1:6380", "REDIS_TLS_CA_FILE": garbage}, []string{"REDIS_TLS_CA_FILE=", "no PEM certificate"}},
		{"cluster prefix in another slot", map[string]string{"REDIS_CLUSTER_ADDRS": "127.0.0.1:7000", "REDIS_KEY_PREFIX": "{presence}"}, []string{"REDIS_KEY_PREFIX=", "CROSSSLOT"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := StartProc(t, t.TempDir(), nil, tc.env)
			if code := p.Wait(10 * time.Second); code != 2 {
				t.Fatalf("exit code %d, want 2:\n%s", code, p.Stderr)
			}
			for _, w := range tc.words {
				if !strings.Contains(p.Stderr.String(), w) {
					t.Errorf("stderr does not say %q:\n%s", w, p.Stderr)
				}
			}
			if strings.Contains(p.Stderr.String(), "pw-x") {
				t.Errorf("stderr shows the password:\n%s", p.Stderr)
			}
		})
	}
}
