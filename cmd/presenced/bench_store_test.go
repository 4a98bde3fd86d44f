package main

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/presenced/presenced/internal/testenv"
)

// TestBenchStoreSmoke runs `presenced bench store` with small numbers on a
// real redis-server and checks that its table and summary parse, that the
// count it read back is exact and that it leaves the Redis empty. It
// measures nothing.
func TestBenchStoreSmoke(t *testing.T) {
	t.Parallel()
	for _, shards := range []string{"1", "4"} {
		t.Run("shards="+shards, func(t *testing.T) {
			t.Parallel()
			benchStoreSmoke(t, shards)
		})
	}
}

func benchStoreSmoke(t *testing.T, shards string) {
	rs := testenv.StartRedis(t)
	out := benchRun(t, "store", "--redis-url", rs.URL(), "--users", "5000", "--nodes", "5", "--reap-users", "2000",
		"--node-ttl", "1500ms", "--heartbeat-interval", "500ms", "--timeout", "50s", "--shards", shards)
	s := numbers(t, out, "summary", "users", "nodes", "shards", "bytes/user", "seq-conns/s", "conc-conns/s", "capacity-conns/s", "longest-script-ms",
		"hb-avg-ms", "hb-p99-ms", "reap-ms", "rewrite-ms", "rewrite-all-ms", "online", "hlen", "expected", "errors")
	if s["users"] != 5000 || s["nodes"] != 5 || s["shards"] != numberOf(t, shards) || s["expected"] != 7000 || s["online"] != 7000 || s["hlen"] != 7000 || s["errors"] != 0 {
		t.Fatalf("summary %v: want 5000 users on 5 nodes, then 7000 with the extra node, counted exactly, no errors:\n%s", s, out)
	}
	for _, k := range []string{"bytes/user", "seq-conns/s", "conc-conns/s", "capacity-conns/s", "longest-script-ms", "hb-avg-ms", "reap-ms", "rewrite-all-ms"} {
		if s[k] <= 0 {
			t.Errorf("%s = %v, want a positive figure:\n%s", k, s[k], out)
		}
	}
	if s["hb-avg-ms"] > s["hb-p99-ms"] {
		t.Errorf("heartbeat avg %v above its p99 %v", s["hb-avg-ms"], s["hb-p99-ms"])
	}
	for _, row := range []string{"Redis memory per online user", "connects/s, 5 nodes at once", "longest script", "reap of the 2000-user node", "rewrite after FLUSHALL"} {
		if !strings.Contains(out, row) {
			t.Errorf("no %q row in:\n%s", row, out)
		}
	}
	if got := rs.Do("DBSIZE"); got != "0" {
		t.Errorf("DBSIZE after bench store = %s, want 0 (it leaves the Redis empty)", got)
	}
	if got := rs.Do("CONFIG", "GET", "slowlog-log-slower-than"); !strings.Contains(got, "10000") {
		t.Errorf("slowlog-log-slower-than after bench store = %q, want the default 10000 put back", got)
	}

	// A Redis holding keys is refused: the run ends with FLUSHALL.
	rs.Do("SET", "precious", "1")
	var stdout, stderr syncBuffer
	err := run(context.Background(), []string{"presenced", "bench", "store", "--redis-url", rs.URL(), "--users", "10", "--nodes", "1"}, env(nil), &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("bench store on a Redis with a key: %v, want a refusal naming an empty Redis", err)
	}
	if got := rs.Do("GET", "precious"); got != "1" {
		t.Fatalf("GET precious after the refusal = %q, want 1", got)
	}
}

// TestBenchStoreCommandLine: bad flags and Redis servers that are not on
// this machine are exit code 2.
func TestBenchStoreCommandLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--redis-url", "redis://192.0.2.1:6379"}, "loopback"},
		{[]string{"--cluster", "127.0.0.1:7000,192.0.2.1:7001"}, "loopback"},
		{[]string{"--redis-url", "redis://127.0.0.1:6379", "--nodes", "0"}, "nodes"},
		{[]string{"--redis-url", "redis://127.0.0.1:6379", "--shards", "0"}, "shards"},
		{[]string{"--redis-url", "redis://127.0.0.1:6379", "--shards", "257"}, "shards"},
		{[]string{"--redis-url", "redis://127.0.0.1:6379", "--users", "5", "--nodes", "10"}, "users"},
		{[]string{"--redis-url", "redis://127.0.0.1:6379", "--node-ttl", "1s", "--heartbeat-interval", "2s"}, "heartbeat-interval"},
		{[]string{}, "no Redis"},
	} {
		var stdout, stderr syncBuffer
		err := run(context.Background(), append([]string{"presenced", "bench", "store"}, tc.args...), env(nil), &stdout, &stderr)
		var ue usageError
		if !errors.As(err, &ue) || exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bench store %v: %v (exit code %d), want exit code 2 mentioning %q", tc.args, err, exitCode(err), tc.want)
		}
	}
	var stdout, stderr syncBuffer
	if err := run(context.Background(), []string{"presenced", "bench", "store", "--help"}, env(nil), &stdout, &stderr); err != nil || !strings.Contains(stdout.String(), "reap-users") {
		t.Errorf("bench store --help: %v\n%s", err, stdout.String())
	}
}

func numberOf(t *testing.T, s string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
