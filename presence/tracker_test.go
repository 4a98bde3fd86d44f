package presence_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/presence/memstore"
)

// counting wraps a real store and counts the writes that reach it.
type counting struct {
	presence.Store
	applies, syncs atomic.Int64
	deltas         atomic.Int64
}

func (c *counting) Apply(ctx context.Context, b presence.Batch) (int64, error) {
	c.applies.Add(1)
	c.deltas.Add(int64(len(b.Deltas)))
	return c.Store.Apply(ctx, b)
}

func (c *counting) Sync(ctx context.Context, s presence.Share) (int64, error) {
	c.syncs.Add(1)
	return c.Store.Sync(ctx, s)
}

func startTracker(t *testing.T, st presence.Store, window time.Duration) *presence.Tracker {
	t.Helper()
	tr := presence.NewTracker(presence.TrackerOptions{Node: "n1", Store: st, BatchWindow: window, BatchMax: 100, HeartbeatInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return tr
}

func wait(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("connect was never written")
	}
}

func TestTrackerBatchesABurst(t *testing.T) {
	st := &counting{Store: memstore.New(time.Minute, nil)}
	tr := startTracker(t, st, 50*time.Millisecond)
	wait(t, tr.Connect("warmup")) // the first flush registers the node
	before := st.applies.Load()
	var wg sync.WaitGroup
	for i := range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wait(t, tr.Connect(string(rune('a'+i%26))+string(rune('a'+i/26))))
		}()
	}
	wg.Wait()
	c, _ := st.Counts(context.Background())
	if c.Users != 1001 || c.Connections != 1001 {
		t.Fatalf("Counts = %+v, want 1001 users and connections (1000 + warmup)", c)
	}
	// 1000 users with BatchMax 100 is 10 calls per window; a few windows at most.
	if n := st.applies.Load() - before; n > 40 {
		t.Fatalf("a burst of 1000 connects took %d store writes, want a few batches", n)
	}
	if tr.Online() != 1001 {
		t.Fatalf("Online() = %d, want 1001", tr.Online())
	}
}

func TestTrackerConnectDisconnectInOneBatchCostsNothing(t *testing.T) {
	st := &counting{Store: memstore.New(time.Minute, nil)}
	tr := startTracker(t, st, 100*time.Millisecond)
	wait(t, tr.Connect("warmup"))
	before := st.deltas.Load()
	done := tr.Connect("flicker")
	tr.Disconnect("flicker")
	wait(t, done)
	if n := st.deltas.Load() - before; n != 0 {
		t.Fatalf("connect+disconnect in one batch wrote %d deltas, want 0", n)
	}
}

func TestTrackerResyncsAfterLoss(t *testing.T) {
	mem := memstore.New(time.Minute, nil)
	st := &counting{Store: mem}
	tr := startTracker(t, st, 0)
	wait(t, tr.Connect("alice"))
	wait(t, tr.Connect("alice"))
	wait(t, tr.Connect(""))
	// Another writer removes our share (as a reaper would after a pause).
	if err := mem.Leave(context.Background(), "n1"); err != nil {
		t.Fatal(err)
	}
	syncs := st.syncs.Load()
	wait(t, tr.Connect("bob")) // Apply answers ErrResync: the whole share is rewritten
	if st.syncs.Load() == syncs {
		t.Fatal("no resync after the store lost the share")
	}
	c, _ := mem.Counts(context.Background())
	if c.Users != 2 || c.Connections != 4 || c.Guests != 1 {
		t.Fatalf("Counts after resync = %+v, want 2 users, 4 connections, 1 guest", c)
	}
}

func TestTrackerHooksAndLocal(t *testing.T) {
	var online, offline []string
	tr := presence.NewTracker(presence.TrackerOptions{
		Node:      "n1",
		OnOnline:  func(u string) { online = append(online, u) },
		OnOffline: func(u string) { offline = append(offline, u) },
	})
	tr.Connect("a")
	tr.Connect("a")
	tr.Connect("")
	tr.Disconnect("a")
	tr.Disconnect("nobody")
	tr.Disconnect("")
	tr.Disconnect("")
	if u, c, g := tr.Local(); u != 1 || c != 1 || g != 0 {
		t.Fatalf("Local = %d users %d conns %d guests, want 1 1 0", u, c, g)
	}
	tr.Disconnect("a")
	if len(online) != 1 || len(offline) != 1 {
		t.Fatalf("hooks: online %v offline %v, want one each", online, offline)
	}
	if tr.Online() != 0 {
		t.Fatalf("Online() = %d without a store, want local 0", tr.Online())
	}
}

// TestTrackerReadsAnExternalCounter: without a store of its own (external
// mode), Online follows the counter another program keeps.
func TestTrackerReadsAnExternalCounter(t *testing.T) {
	counter := memstore.New(time.Minute, nil)
	if _, err := counter.Sync(context.Background(), presence.Share{Node: "elsewhere", Seq: 1, Users: map[string]int64{"x": 1, "y": 1}}); err != nil {
		t.Fatal(err)
	}
	tr := presence.NewTracker(presence.TrackerOptions{Node: "n1", Counter: counter, HeartbeatInterval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(5 * time.Second)
	for tr.Online() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("Online() = %d, want the counter's 2", tr.Online())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTrackerWritesAtOnceAfterQuiet: the batch window is the shortest time
// between two writes, not a delay: after a quiet window a change is
// written at once (with a window of an hour, waiting for it would hang
// this test), and a change right after that write waits for the window.
func TestTrackerWritesAtOnceAfterQuiet(t *testing.T) {
	st := &counting{Store: memstore.New(time.Minute, nil)}
	tr := presence.NewTracker(presence.TrackerOptions{Node: "n1", Store: st, BatchWindow: time.Hour, HeartbeatInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	wait(t, tr.Connect("first"))
	if c, _ := st.Counts(ctx); c.Users != 1 {
		t.Fatalf("after the first connect was acknowledged: %d users in the store, want 1", c.Users)
	}
	second := tr.Connect("second")
	time.Sleep(100 * time.Millisecond)
	select {
	case <-second:
		t.Fatal("a connect right after a write was written before the window passed")
	default:
	}
	if c, _ := st.Counts(ctx); c.Users != 1 {
		t.Fatalf("store holds %d users within the window, want still 1", c.Users)
	}
}

// TestTrackerWithoutStoreKeepsNothingPending: in external mode there is
// no store to write to, so connects must not pile up as pending deltas.
func TestTrackerWithoutStoreKeepsNothingPending(t *testing.T) {
	counter := memstore.New(time.Minute, nil)
	tr := presence.NewTracker(presence.TrackerOptions{Node: "n1", Counter: counter, HeartbeatInterval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for i := range 1000 {
		<-tr.Connect(fmt.Sprint("user-", i))
	}
	for i := range 500 {
		tr.Disconnect(fmt.Sprint("user-", i))
	}
	time.Sleep(50 * time.Millisecond) // several heartbeats
	if n := tr.PendingLen(); n != 0 {
		t.Fatalf("%d users pending with no store to write them to, want 0", n)
	}
	if u, c, _ := tr.Local(); u != 500 || c != 500 {
		t.Fatalf("Local() = %d users, %d connections; want 500, 500", u, c)
	}
}
