package e2e_test

import (
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/testenv"
)

// TestShardsLayoutMismatch: nodes with different PRESENCE_SHARDS would
// each count only their own layout's users and overwrite each other's
// online_users, so a node started with another number than the live nodes
// use stops with exit 2 naming the variable, and the live node's count is
// untouched; a bad value or shards without Redis stop it too.
func TestShardsLayoutMismatch(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	base := map[string]string{"REDIS_URL": r.URL(), "HEARTBEAT_INTERVAL": "200ms", "NODE_TTL": "1s"}
	with := func(kv ...string) map[string]string {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			env[kv[i]] = kv[i+1]
		}
		return env
	}
	refused := func(env map[string]string, words ...string) {
		t.Helper()
		p := StartProc(t, t.TempDir(), nil, env)
		if code := p.Wait(10 * time.Second); code != 2 {
			t.Fatalf("exit code %d, want 2:\n%s", code, p.Stderr)
		}
		for _, w := range append([]string{"PRESENCE_SHARDS="}, words...) {
			if !strings.Contains(p.Stderr.String(), w) {
				t.Errorf("stderr does not say %q:\n%s", w, p.Stderr)
			}
		}
	}

	sharded := StartNode(t, with("PRESENCE_SHARDS", "4", "NODE_ID", "sharded-1"))
	c := Dial(t, sharded, Token(t, "alice"))
	defer c.Conn.Close()
	if got := r.Do("GET", "online_users"); got != "1" {
		t.Fatalf("online_users = %q with one client on a 4-shard node, want 1", got)
	}
	refused(with("NODE_ID", "plain-1"), "over 4 shards, not 1")
	refused(with("PRESENCE_SHARDS", "8", "NODE_ID", "eight-1"), "over 4 shards, not 8")
	if got := r.Do("GET", "online_users"); got != "1" {
		t.Fatalf("online_users = %q after the refused starts, want 1", got)
	}
	if code, _ := sharded.Term(); code != 0 {
		t.Fatalf("SIGTERM: exit code %d", code)
	}

	// Once the sharded layout's keys are gone (two leases after its last
	// heartbeat), a node without shards starts; then a sharded one is
	// refused while it lives.
	deadline := time.Now().Add(5 * time.Second)
	for r.Do("EXISTS", "{online_users}:shards") != "0" {
		if time.Now().After(deadline) {
			t.Fatal("{online_users}:shards still there 5s after the last sharded node left")
		}
		time.Sleep(50 * time.Millisecond)
	}
	plain := StartNode(t, with("NODE_ID", "plain-2"))
	refused(with("PRESENCE_SHARDS", "4", "NODE_ID", "sharded-2"), "without shards (PRESENCE_SHARDS=1), not 4")
	plain.Term()

	refused(map[string]string{"PRESENCE_SHARDS": "4"}, "needs managed mode")
	refused(with("PRESENCE_SHARDS", "0"), "1-256")
}
