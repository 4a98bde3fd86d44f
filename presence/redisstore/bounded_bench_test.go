package redisstore_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/presence/redisstore"
)

// slowlog makes Redis log every command slower than 100 µs, for
// longestScript. (Redis 7 logs the commands a script runs too, each a
// microsecond or so: a threshold of 0 would fill the log with them.)
func slowlog(b *testing.B, rdb *redis.Client) {
	ctx := context.Background()
	rdb.ConfigSet(ctx, "slowlog-log-slower-than", "100")
	rdb.ConfigSet(ctx, "slowlog-max-len", "100000")
	rdb.SlowLogReset(ctx)
}

// longestScript returns the longest and the 99th-percentile script call in
// the SLOWLOG, and the number of script calls in it (those over 100 µs).
func longestScript(b *testing.B, rdb *redis.Client) (longest, p99 time.Duration, calls int) {
	var ds []time.Duration
	for _, e := range rdb.SlowLogGet(context.Background(), 100000).Val() {
		if len(e.Args) > 0 && strings.HasPrefix(strings.ToLower(e.Args[0]), "eval") {
			ds = append(ds, e.Duration)
		}
	}
	if len(ds) == 0 {
		b.Fatal("no script call in the SLOWLOG")
	}
	slices.Sort(ds)
	return ds[len(ds)-1], ds[len(ds)*99/100], len(ds)
}

// BenchmarkRewriteAfterFlush measures the rewrite of one node's share of
// 100 000 or 300 000 users into a Redis that lost its data (FLUSHALL), in
// chunks of the default Budget (500 users): the time the whole rewrite
// takes and the longest script call Redis's SLOWLOG saw. Goals (issue 8):
// done within one heartbeat (HEARTBEAT_INTERVAL, 2 s by default), no script
// over 10 ms.
//
//	go test -run XXX -bench RewriteAfterFlush -benchtime 3x ./presence/redisstore/
func BenchmarkRewriteAfterFlush(b *testing.B) {
	for _, users := range []int{100_000, 300_000} {
		b.Run(strconv.Itoa(users), func(b *testing.B) {
			srv := testenv.StartRedis(b)
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
			b.Cleanup(func() { rdb.Close() })
			s, err := redisstore.New(rdb, redisstore.Options{Prefix: "{bench}", OnlineKey: "{bench}online_users", NodeTTL: time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			share := presence.Share{Node: "big", Users: usersN("user-", users), Rejoin: true}
			ctx := context.Background()
			var longest, p99 time.Duration
			calls := 0
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				rdb.FlushAll(ctx)
				slowlog(b, rdb)
				share.Seq = uint64(i + 1)
				b.StartTimer()
				if _, err := s.Sync(ctx, share); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				l, m, n := longestScript(b, rdb)
				longest, p99, calls = max(longest, l), max(p99, m), n
				if got := rdb.Get(ctx, "{bench}online_users").Val(); got != strconv.Itoa(users) {
					b.Fatalf("online_users = %s after the rewrite, want %d", got, users)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(longest.Microseconds()), "longest-µs")
			b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
			b.ReportMetric(float64(calls), "calls")
		})
	}
}

// BenchmarkReap measures the reap of a dead node holding 100 000 users,
// by another node's heartbeat (heartbeat.lua, then reap.lua until done):
// the time that heartbeat takes (reap-ms) and the longest script call in
// the SLOWLOG. Goals as for the rewrite.
//
//	go test -run XXX -bench 'Reap$' -benchtime 3x ./presence/redisstore/
func BenchmarkReap(b *testing.B) {
	const users = 100_000
	srv := testenv.StartRedis(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	b.Cleanup(func() { rdb.Close() })
	ttl := 500 * time.Millisecond
	s, err := redisstore.New(rdb, redisstore.Options{Prefix: "{bench}", OnlineKey: "{bench}online_users", NodeTTL: ttl, RecoveryWindow: time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	big := usersN("user-", users)
	var longest, p99, reap time.Duration
	calls := 0
	for i := range b.N {
		rdb.FlushAll(ctx)
		if _, err := s.Sync(ctx, presence.Share{Node: "live", Seq: 1, Users: map[string]int64{"l": 1}}); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Sync(ctx, presence.Share{Node: "big", Seq: uint64(i + 1), Users: big}); err != nil {
			b.Fatal(err)
		}
		slowlog(b, rdb)
		// live heartbeats (so this is no outage) until big's lease runs
		// out and one of its heartbeats reaps it: the longest one.
		var slowest time.Duration
		for rdb.Get(ctx, "{bench}online_users").Val() != "1" {
			start := time.Now()
			if _, err := s.Heartbeat(ctx, 1, presence.NodeInfo{ID: "live"}); err != nil {
				b.Fatal(err)
			}
			slowest = max(slowest, time.Since(start))
			time.Sleep(ttl / 10)
		}
		reap = max(reap, slowest)
		l, m, n := longestScript(b, rdb)
		longest, p99, calls = max(longest, l), max(p99, m), n
	}
	b.ReportMetric(float64(reap.Microseconds())/1000, "reap-ms")
	b.ReportMetric(float64(longest.Microseconds()), "longest-µs")
	b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
	b.ReportMetric(float64(calls), "calls")
}
