package e2e_test

import (
	"testing"
	"time"

	"github.com/presenced/presenced/internal/testenv"
)

// TestSIGTERMWithRedisHanging: a Redis that stops answering (SIGSTOP) must
// not keep presenced from exiting 0 within the 10 s the issue allows.
func TestSIGTERMWithRedisHanging(t *testing.T) {
	t.Parallel()
	redis := testenv.StartRedis(t)
	n := StartNode(t, map[string]string{"REDIS_URL": redis.URL()})
	c := Dial(t, n, Token(t, "erin"))
	defer c.Conn.Close()
	redis.Pause()
	defer redis.Resume()
	code, took := n.Term()
	if code != 0 || took > 10*time.Second {
		t.Fatalf("SIGTERM with Redis hanging: exit %d after %v, want 0 within 10s\n%s", code, took, tail(n.Log(), 20))
	}
	t.Logf("exit 0 after %v", took)
}
