package dashboard_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presenced/presenced/dashboard"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/presence/memstore"
)

// countingReader counts the reads that reach the presence store; each
// takes delay.
type countingReader struct {
	*memstore.Store
	reads atomic.Int64
	delay time.Duration
}

func (c *countingReader) Counts(ctx context.Context) (presence.Counts, error) {
	c.reads.Add(1)
	time.Sleep(c.delay)
	return c.Store.Counts(ctx)
}

// TestCountsReadShared: without CountsMaxAge (the default) requests that
// arrive while a read of the presence store is in flight share it, and a
// request that comes after it sees any change made since: the answer is
// never older than one read.
func TestCountsReadShared(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem := memstore.New(time.Hour, nil)
	reader := &countingReader{Store: mem, delay: 50 * time.Millisecond}
	svc := startService(t, dashboard.Options{Presence: reader, Source: "memory", Store: mustOpenSQLite(t)})
	svc.Overview(ctx)

	before := reader.reads.Load()
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { svc.Overview(ctx) })
	}
	wg.Wait()
	if n := reader.reads.Load() - before; n > 5 {
		t.Fatalf("50 concurrent overviews read the store %d times, want them to share a few reads", n)
	}
	for i := range 3 {
		users := map[string]int64{}
		for u := range i + 1 {
			users[string(rune('a'+u))] = 1
		}
		if _, err := mem.Sync(ctx, presence.Share{Node: "other", Seq: uint64(i + 1), Users: users}); err != nil {
			t.Fatal(err)
		}
		if o := svc.Overview(ctx); o.OnlineUsers != int64(i+1) {
			t.Fatalf("overview right after another node's change = %d users, want %d", o.OnlineUsers, i+1)
		}
	}
}

// TestCountsCacheShared: with CountsMaxAge the node's requests share one
// read of the presence store, a change made elsewhere shows once the
// counts are older than CountsMaxAge, and this node's own writes (through
// its Tracker) drop them at once.
func TestCountsCacheShared(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem := memstore.New(time.Hour, nil)
	reader := &countingReader{Store: mem}
	tracker := presence.NewTracker(presence.TrackerOptions{Node: "n", Store: mem, HeartbeatInterval: time.Hour})
	tctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { tracker.Run(tctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	<-tracker.Connect("a")

	const maxAge = 300 * time.Millisecond
	svc := startService(t, dashboard.Options{
		Presence: reader, Source: "memory", Store: mustOpenSQLite(t), Tracker: tracker, CountsMaxAge: maxAge,
	})
	if o := svc.Overview(ctx); o.OnlineUsers != 1 {
		t.Fatalf("onlineUsers = %d, want 1", o.OnlineUsers)
	}
	before := reader.reads.Load()

	// Another node's user, written straight into the store: not this
	// node's write, so the cached count stands until it is maxAge old.
	if _, err := mem.Sync(ctx, presence.Share{Node: "other", Seq: 1, Users: map[string]int64{"b": 1}}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stale := time.Now()
	for range 50 {
		wg.Go(func() {
			if o := svc.Overview(ctx); o.OnlineUsers != 1 && time.Since(stale) < maxAge/2 {
				t.Errorf("onlineUsers = %d within the cache age, want the cached 1", o.OnlineUsers)
			}
		})
	}
	wg.Wait()
	if n := reader.reads.Load() - before; n > 1 {
		t.Fatalf("50 overviews within the cache age read the store %d times, want at most 1", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for svc.Overview(ctx).OnlineUsers != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the other node's user never showed")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// This node's own connect shows at once: its write drops the cache.
	<-tracker.Connect("c")
	if o := svc.Overview(ctx); o.OnlineUsers != 3 {
		t.Fatalf("onlineUsers right after this node's connect = %d, want 3", o.OnlineUsers)
	}
	tracker.Disconnect("c")
	deadline = time.Now().Add(5 * time.Second)
	for svc.Overview(ctx).OnlineUsers != 2 {
		if time.Now().After(deadline) {
			t.Fatal("this node's disconnect never showed")
		}
		time.Sleep(time.Millisecond)
	}

	// Concurrent requests after a write share one read.
	<-tracker.Connect("d")
	before = reader.reads.Load()
	for range 50 {
		wg.Go(func() { svc.Overview(ctx) })
	}
	wg.Wait()
	if n := reader.reads.Load() - before; n != 1 {
		t.Fatalf("50 concurrent overviews after a write read the store %d times, want 1", n)
	}
}
