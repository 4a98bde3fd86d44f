package redisstore_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/presence/redisstore"
)

// commandCounter is a go-redis hook that counts the commands sent and the
// round trips they took: one per Process call, one per pipeline.
type commandCounter struct {
	commands   atomic.Int64
	roundTrips atomic.Int64
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.commands.Add(1)
		c.roundTrips.Add(1)
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.commands.Add(int64(len(cmds)))
		c.roundTrips.Add(1)
		return next(ctx, cmds)
	}
}

// BenchmarkBurstConnects measures the Redis round trips a burst of 10 000
// connects of distinct users costs a Tracker batching them (10 ms window,
// at most 1000 users per call) into a redisstore.Store on a real
// redis-server. The goal is 0.05 round trips per connection or fewer.
// Only the connect burst is counted: the initial share write and the
// heartbeats (made rare with a 1 h interval) are not, nor the
// disconnects that reset each iteration.
//
//	go test -run XXX -bench BurstConnects -benchtime 3x ./presence/redisstore/
func BenchmarkBurstConnects(b *testing.B) {
	const (
		users   = 10_000
		callers = 100 // goroutines calling Connect at once, like the gateway's handlers
	)
	srv := testenv.StartRedis(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	b.Cleanup(func() { rdb.Close() })
	var count commandCounter
	rdb.AddHook(&count)

	const online = "{bench}online_users"
	store, err := redisstore.New(rdb, redisstore.Options{Prefix: "{bench}", OnlineKey: online, NodeTTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	tracker := presence.NewTracker(presence.TrackerOptions{
		Node: "bench-node", Store: store,
		BatchWindow: 10 * time.Millisecond, BatchMax: 1000, HeartbeatInterval: time.Hour,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); tracker.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })

	// Warm up: the first write is the share (Sync), followed by the first
	// heartbeat; the second goes through Apply and loads its script. Guests
	// are not users, so they leave online_users alone, and a guest that
	// leaves while another arrives is a barrier that writes nothing of its
	// own: once its channel closes, every earlier delta is in Redis.
	<-tracker.Connect("")
	<-tracker.Connect("")
	barrier := func() {
		tracker.Disconnect("")
		<-tracker.Connect("")
	}
	barrier()

	ids := make([]string, users)
	for i := range ids {
		ids[i] = "user-" + strconv.Itoa(i)
	}
	var trips, commands int64
	b.ResetTimer()
	for range b.N {
		trips0, cmds0 := count.roundTrips.Load(), count.commands.Load()
		var wg sync.WaitGroup
		for g := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				chs := make([]<-chan struct{}, 0, users/callers)
				for i := g; i < users; i += callers {
					chs = append(chs, tracker.Connect(ids[i]))
				}
				for _, ch := range chs {
					<-ch
				}
			}()
		}
		wg.Wait()
		trips += count.roundTrips.Load() - trips0
		commands += count.commands.Load() - cmds0

		b.StopTimer()
		if got := srv.Do("GET", online); got != strconv.Itoa(users) {
			b.Fatalf("GET %s after a burst of %d connects = %s, want %d", online, users, got, users)
		}
		for _, id := range ids {
			tracker.Disconnect(id)
		}
		barrier()
		if got := srv.Do("GET", online); got != "0" {
			b.Fatalf("GET %s after every user left = %s, want 0", online, got)
		}
		b.StartTimer()
	}
	n := float64(b.N) * users
	b.ReportMetric(float64(trips)/n, "roundtrips/conn")
	b.ReportMetric(float64(commands)/n, "commands/conn")
}

// BenchmarkRepair measures one bounded repair call (repair.lua) on a
// cluster of 100 000 online users over 10 nodes, and reports the longest
// one Redis's SLOWLOG saw (the goal is well under the 10 ms any script may
// hold Redis).
//
//	go test -run XXX -bench Repair -benchtime 200x ./presence/redisstore/
func BenchmarkRepair(b *testing.B) {
	const nodes, perNode = 10, 10_000
	srv := testenv.StartRedis(b)
	s, rdb, _, _ := mustOpen(b, srv, time.Hour, time.Millisecond)
	ctx := context.Background()
	for n := range nodes {
		users := make(map[string]int64, perNode)
		for u := range perNode {
			users["u"+strconv.Itoa(n*perNode+u)] = 1
		}
		if _, err := s.Sync(ctx, presence.Share{Node: "n" + strconv.Itoa(n), Seq: 1, Users: users}); err != nil {
			b.Fatal(err)
		}
	}
	rdb.ConfigSet(ctx, "slowlog-log-slower-than", "0")
	rdb.SlowLogReset(ctx)
	b.ResetTimer()
	for i := range b.N {
		node := "n" + strconv.Itoa(i%nodes)
		if _, err := s.Repair(ctx, node, 1, perNode, perNode, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	var longest time.Duration
	for _, e := range rdb.SlowLogGet(ctx, 128).Val() {
		if len(e.Args) > 0 && (e.Args[0] == "evalsha" || e.Args[0] == "EVALSHA" || e.Args[0] == "eval" || e.Args[0] == "EVAL") {
			longest = max(longest, e.Duration)
		}
	}
	b.ReportMetric(float64(longest.Microseconds()), "longest-µs")
}
