package e2e_test

import (
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/testenv"
)

// TestDuplicateNodeID: a second process started with a NODE_ID that a
// live process holds is refused: it logs an error naming the id and exits
// 1, and the first process's share is untouched. A process restarted
// under the id of one that was killed waits out the dead lease and takes
// the id over.
func TestDuplicateNodeID(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	env := map[string]string{
		"REDIS_URL": r.URL(), "NODE_ID": "dup-node", "HEARTBEAT_INTERVAL": "200ms", "NODE_TTL": "1s",
	}
	first := startNode(t, env)
	for _, u := range []string{"dup-a", "dup-b", "dup-c"} {
		c := Dial(t, first, Token(t, u))
		defer c.Conn.Close()
	}
	waitRedis(t, r, 5*time.Second, "3 users", func() bool { return r.Do("GET", "online_users") == "3" })

	second := StartProc(t, t.TempDir(), nil, env)
	second.WaitHealthy(10 * time.Second)
	c := Dial(t, second.Node, Token(t, "dup-d"))
	defer c.Conn.Close()
	if code := second.Wait(15 * time.Second); code != 1 {
		t.Fatalf("second process with a live NODE_ID exited %d, want 1:\n%s", code, second.Log())
	}
	stderr := second.Stderr.String()
	if !strings.Contains(stderr, `NODE_ID is held by another live process`) || !strings.Contains(stderr, "dup-node") {
		t.Fatalf("second process's log does not name the taken id:\n%s", stderr)
	}
	if got := r.Do("HKEYS", "{presence}:node:dup-node"); len(strings.Fields(got)) != 3 {
		t.Fatalf("share of dup-node = %s, want the first process's three users", got)
	}
	if strings.Contains(r.Do("HKEYS", "{presence}:node:dup-node"), "dup-d") {
		t.Fatal("the refused process wrote its user into the share")
	}
	if got := r.Do("GET", "online_users"); got != "3" {
		t.Fatalf("online_users = %s after the refused process left, want 3", got)
	}
	if strings.Contains(first.Log(), "NODE_ID is held") {
		t.Fatalf("the first process was disturbed:\n%s", first.Log())
	}

	// The owner crashes; a process restarted at once under its id waits
	// for the dead lease and then counts its own users.
	first.Kill()
	third := startNode(t, env)
	c3 := Dial(t, third, Token(t, "dup-e"))
	defer c3.Conn.Close()
	waitRedis(t, r, 10*time.Second, "the restarted owner's 1 user", func() bool {
		return r.Do("GET", "online_users") == "1" && r.Do("HKEYS", "{presence}:node:dup-node") == "[dup-e]"
	})
	time.Sleep(3 * time.Second) // past its grace: it must not give up
	select {
	case <-third.done:
		t.Fatalf("restarted process exited:\n%s", third.Log())
	default:
	}
}
