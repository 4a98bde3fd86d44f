// Package storetest is the contract every presence.Store must pass. The
// Redis store and the memory store both run it, so the embedded default
// gives the same answers as production for one node.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/presenced/presenced/presence"
)

// TTL is the lease the stores under test must grant: New is called with it.
const TTL = 300 * time.Millisecond

// Run runs the contract against stores made by newStore. Each call of
// newStore returns a fresh, empty store whose leases last TTL.
func Run(t *testing.T, newStore func(t *testing.T) presence.Store) {
	RunWith(t, Options{}, newStore)
}

// Options tell the contract what a store does not promise.
type Options struct {
	// PerShardBatches: a batch is atomic per shard only (a store split
	// over shards), so a batch refused with ErrResync may have changed
	// the shards that accepted their part; the node's rewrite, which
	// ErrResync asks for, must then make the counts exact.
	PerShardBatches bool
}

// RunWith is Run for a store that promises less, as o says.
func RunWith(t *testing.T, o Options, newStore func(t *testing.T) presence.Store) {
	belowZero := func(t *testing.T, s presence.Store) { testBelowZero(t, s, o.PerShardBatches) }
	tests := []struct {
		name string
		fn   func(t *testing.T, s presence.Store)
	}{
		{"ApplyBeforeSyncAsksForResync", testApplyUnregistered},
		{"SyncThenApply", testSyncThenApply},
		{"UserOnTwoNodesCountsOnce", testTwoNodes},
		{"SequenceGapAsksForResyncAndChangesNothing", testSequenceGap},
		{"BelowZeroAsksForResyncAndChangesNothing", belowZero},
		{"SyncReplacesShare", testSyncReplaces},
		{"StaleSyncRefused", testStaleSyncRefused},
		{"LeaveRemovesOnlyThatNode", testLeave},
		{"HeartbeatReapsExpiredNodes", testReap},
		{"HeartbeatOfUnknownNodeAsksForResync", testHeartbeatUnknown},
		{"NodesListLoadFigures", testNodes},
		{"PeakToday", testPeak},
		{"RandomOpsMatchModel", testRandom},
		{"TransitionsOncePerUserAcrossNodes", testTransitions},
		{"SyncRewriteEmitsOnlyRealTransitions", testSyncTransitions},
		{"LeaveAndReapEmitOffline", testLeaveReapTransitions},
		{"ReadEventsWaitsForTheNext", testReadEventsBlock},
		{"ListUsersWalksEveryUserOnce", testListUsers},
		{"ConnectionsPerUser", testConnections},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustSync(t *testing.T, s presence.Store, sh presence.Share) int64 {
	t.Helper()
	n, err := s.Sync(ctx(t), sh)
	if err != nil {
		t.Fatalf("Sync(%s): %v", sh.Node, err)
	}
	return n
}

func mustApply(t *testing.T, s presence.Store, b presence.Batch) int64 {
	t.Helper()
	n, err := s.Apply(ctx(t), b)
	if err != nil {
		t.Fatalf("Apply(%s seq %d): %v", b.Node, b.Seq, err)
	}
	return n
}

func counts(t *testing.T, s presence.Store) presence.Counts {
	t.Helper()
	c, err := s.Counts(ctx(t))
	if err != nil {
		t.Fatalf("Counts: %v", err)
	}
	return c
}

func wantCounts(t *testing.T, s presence.Store, users, conns, guests int64) {
	t.Helper()
	c := counts(t, s)
	if c.Users != users || c.Connections != conns || c.Guests != guests {
		t.Fatalf("Counts = users %d, connections %d, guests %d; want %d, %d, %d",
			c.Users, c.Connections, c.Guests, users, conns, guests)
	}
}

func testApplyUnregistered(t *testing.T, s presence.Store) {
	_, err := s.Apply(ctx(t), presence.Batch{Node: "a", Seq: 1, Deltas: []presence.Delta{{User: "u1", N: 1}}})
	if !errors.Is(err, presence.ErrResync) {
		t.Fatalf("Apply on unregistered node: err = %v, want ErrResync", err)
	}
	mustSync(t, s, presence.Share{Node: "b", Seq: 1})
	wantCounts(t, s, 0, 0, 0)
}

func testSyncThenApply(t *testing.T, s presence.Store) {
	if n := mustSync(t, s, presence.Share{Node: "a", Seq: 1, Users: map[string]int64{"u1": 2, "u2": 1}, Guests: 1}); n != 2 {
		t.Fatalf("Sync returned online %d, want 2", n)
	}
	wantCounts(t, s, 2, 4, 1)
	n := mustApply(t, s, presence.Batch{Node: "a", Seq: 2, Guests: 2, Deltas: []presence.Delta{
		{User: "u1", N: -2}, {User: "u3", N: 3},
	}})
	if n != 2 {
		t.Fatalf("Apply returned online %d, want 2 (u2, u3)", n)
	}
	wantCounts(t, s, 2, 7, 3)
	mustApply(t, s, presence.Batch{Node: "a", Seq: 3, Guests: -3, Deltas: []presence.Delta{
		{User: "u2", N: -1}, {User: "u3", N: -3},
	}})
	wantCounts(t, s, 0, 0, 0)
}

func testTwoNodes(t *testing.T, s presence.Store) {
	mustSync(t, s, presence.Share{Node: "a", Seq: 1, Users: map[string]int64{"u1": 1}})
	mustSync(t, s, presence.Share{Node: "b", Seq: 1, Users: map[string]int64{"u1": 2, "u2": 1}})
	wantCounts(t, s, 2, 4, 0)
	mustApply(t, s, presence.Batch{Node: "b", Seq: 2, Deltas: []presence.Delta{{User: "u1", N: -2}}})
	wantCounts(t, s, 2, 2, 0) // u1 still on a
	mustApply(t, s, presence.Batch{Node: "a", Seq: 2, Deltas: []presence.Delta{{User: "u1", N: -1}}})
	wantCounts(t, s, 1, 1, 0)
}

func testSequenceGap(t *testing.T, s presence.Store) {
	mustSync(t, s, presence.Share{Node: "a", Seq: 5, Users: map[string]int64{"u1": 1}})
	for _, seq := range []uint64{5, 7, 1} {
		_, err := s.Apply(ctx(t), presence.Batch{Node: "a", Seq: seq, Deltas: []presence.Delta{{User: "u2", N: 1}}})
		if !errors.Is(err, presence.ErrResync) {
			t.Fatalf("Apply seq %d after 5: err = %v, want ErrResync", seq, err)
		}
	}
	wantCounts(t, s, 1, 1, 0)
	mustApply(t, s, presence.Batch{Node: "a", Seq: 6, Deltas: []presence.Delta{{User: "u2", N: 1}}})
	wantCounts(t, s, 2, 2, 0)
}

// testBelowZero: a batch that would take a count below zero is refused
// with ErrResync and changes nothing; with perShard, it may change the
// shards that accepted their part, and the rewrite ErrResync asks for
// makes the counts exact.
func testBelowZero(t *testing.T, s presence.Store, perShard bool) {
	share := presence.Share{Node: "a", Seq: 1, Users: map[string]int64{"u1": 1}, Guests: 1}
	mustSync(t, s, share)
	for _, b := range []presence.Batch{
		{Node: "a", Seq: 2, Deltas: []presence.Delta{{User: "u2", N: 1}, {User: "u1", N: -2}}},
		{Node: "a", Seq: 2, Deltas: []presence.Delta{{User: "nobody", N: -1}}},
		{Node: "a", Seq: 2, Guests: -2},
	} {
		if _, err := s.Apply(ctx(t), b); !errors.Is(err, presence.ErrResync) {
			t.Fatalf("Apply %+v: err = %v, want ErrResync", b, err)
		}
		if perShard {
			share.Seq = max(share.Seq, b.Seq) + 1 // fresh, as a tracker's rewrites are
			mustSync(t, s, share)
		}
		wantCounts(t, s, 1, 2, 1)
	}
}

func testSyncReplaces(t *testing.T, s presence.Store) {
	mustSync(t, s, presence.Share{Node: "a", Seq: 1, Users: map[string]int64{"u1": 1, "u2": 1}, Guests: 2})
	mustSync(t, s, presence.Share{Node: "b", Seq: 1, Users: map[string]int64{"u2": 1}})
	mustSync(t, s, presence.Share{Node: "a", Seq: 9, Users: map[string]int64{"u3": 4}})
	wantCounts(t, s, 2, 5, 0)
	mustApply(t, s, presence.Batch{Node: "a", Seq: 10, Deltas: []presence.Delta{{User: "u3", N: -4}}})
	wantCounts(t, s, 1, 1, 0)
}

// testStaleSyncRefused: a rewrite older than the stored one (a late call
// of an abandoned attempt) changes nothing.
func testStaleSyncRefused(t *testing.T, s presence.Store) {
	mustSync(t, s, presence.Share{Node: "a", Seq: 7, Users: map[string]int64{"new": 1}})
	if _, err := s.Sync(ctx(t), presence.Share{Node: "a", Seq: 6, Users: map[string]int64{"old1": 1, "old2": 1}}); !errors.Is(err, presence.ErrStale) {
		t.Fatalf("Sync seq 6 after 7: err = %v, want ErrStale", err)
	}
	wantCounts(t, s, 1, 1, 0)
	mustApply(t, s, presence.Batch{Node: "a", Seq: 8, Deltas: []presence.Delta{{User: "new", N: 1}}})
	wantCounts(t, s, 1, 2, 0)
}

func testLeave(t *testing.T, s presence.Store) {
	mustSync(t, s, presence.Share{Node: "a", Seq: 1, Users: map[string]int64{"u1": 1, "u2": 1}, Guests: 1})
	mustSync(t, s, presence.Share{Node: "b", Seq: 1, Users: map[string]int64{"u2": 1}})
	if err := s.Leave(ctx(t), "a"); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, s, 1, 1, 0)
	if err := s.Leave(ctx(t), "a"); err != nil {
		t.Fatalf("second Leave: %v", err)
	}
	if _, err := s.Apply(ctx(t), presence.Batch{Node: "a", Seq: 2, Deltas: []presence.Delta{{User: "u1", N: 1}}}); !errors.Is(err, presence.ErrResync) {
		t.Fatalf("Apply after Leave: err = %v, want ErrResync", err)
	}
}

func testReap(t *testing.T, s presence.Store) {
	mustSync(t, s, presence.Share{Node: "dead", Seq: 1, Users: map[string]int64{"u1": 1, "u2": 3}, Guests: 2})
	mustSync(t, s, presence.Share{Node: "live", Seq: 1, Users: map[string]int64{"u2": 1}})
	// Keep "live" heartbeating past the dead node's lease.
	deadline := time.Now().Add(2 * TTL)
	for time.Now().Before(deadline) {
		if _, err := s.Heartbeat(ctx(t), 1, presence.NodeInfo{ID: "live"}); err != nil {
			t.Fatalf("Heartbeat(live): %v", err)
		}
		time.Sleep(TTL / 5)
	}
	wantCounts(t, s, 1, 1, 0)
	_, err := s.Heartbeat(ctx(t), 1, presence.NodeInfo{ID: "dead"})
	if !errors.Is(err, presence.ErrResync) {
		t.Fatalf("Heartbeat of a reaped node: err = %v, want ErrResync", err)
	}
	mustSync(t, s, presence.Share{Node: "dead", Seq: 2, Users: map[string]int64{"u1": 1}})
	wantCounts(t, s, 2, 2, 0)
}

func testHeartbeatUnknown(t *testing.T, s presence.Store) {
	if _, err := s.Heartbeat(ctx(t), 0, presence.NodeInfo{ID: "x"}); !errors.Is(err, presence.ErrResync) {
		t.Fatalf("Heartbeat of an unknown node: err = %v, want ErrResync", err)
	}
	mustSync(t, s, presence.Share{Node: "x", Seq: 3})
	if _, err := s.Heartbeat(ctx(t), 2, presence.NodeInfo{ID: "x"}); !errors.Is(err, presence.ErrResync) {
		t.Fatalf("Heartbeat with a stale sequence: err = %v, want ErrResync", err)
	}
}

func testNodes(t *testing.T, s presence.Store) {
	mustSync(t, s, presence.Share{Node: "a", Seq: 1, Users: map[string]int64{"u1": 1}})
	info := presence.NodeInfo{ID: "a", Host: "h", PID: 42, Version: "v", Connections: 1, Users: 1, Goroutines: 7, MemoryBytes: 1 << 20}
	if _, err := s.Heartbeat(ctx(t), 1, info); err != nil {
		t.Fatal(err)
	}
	nodes, err := s.Nodes(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 1 {
		t.Fatalf("Nodes = %+v, want one", nodes)
	}
	got := nodes[0]
	if got.ID != "a" || got.Host != "h" || got.PID != 42 || got.Goroutines != 7 || got.MemoryBytes != 1<<20 || !got.Healthy {
		t.Fatalf("Nodes()[0] = %+v, want the heartbeat's figures and healthy", got)
	}
}

func testPeak(t *testing.T, s presence.Store) {
	mustSync(t, s, presence.Share{Node: "a", Seq: 1, Users: map[string]int64{"u1": 1, "u2": 1, "u3": 1}})
	mustApply(t, s, presence.Batch{Node: "a", Seq: 2, Deltas: []presence.Delta{{User: "u1", N: -1}, {User: "u2", N: -1}}})
	if c := counts(t, s); c.PeakToday < 3 || c.Users != 1 {
		t.Fatalf("Counts = %+v, want users 1 and peak at least 3", c)
	}
}

// testRandom applies random batches from several nodes, with leaves and
// resyncs, and compares every step with a model.
func testRandom(t *testing.T, s presence.Store) {
	r := rand.New(rand.NewPCG(1, 2))
	const nodes, users = 3, 12
	type nodeState struct {
		seq    uint64
		users  map[string]int64
		guests int64
	}
	model := make([]*nodeState, nodes)
	for i := range model {
		model[i] = &nodeState{seq: 1, users: map[string]int64{}}
		mustSync(t, s, presence.Share{Node: fmt.Sprint("n", i), Seq: 1})
	}
	check := func(step int) {
		t.Helper()
		online := map[string]bool{}
		var conns, guests int64
		for _, n := range model {
			for u, c := range n.users {
				online[u] = true
				conns += c
			}
			conns += n.guests
			guests += n.guests
		}
		c := counts(t, s)
		if c.Users != int64(len(online)) || c.Connections != conns || c.Guests != guests {
			t.Fatalf("step %d: Counts = %+v, want users %d, connections %d, guests %d", step, c, len(online), conns, guests)
		}
	}
	for step := range 300 {
		i := r.IntN(nodes)
		n, id := model[i], fmt.Sprint("n", i)
		switch op := r.IntN(20); {
		case op == 0: // the node leaves and comes back empty
			if err := s.Leave(ctx(t), id); err != nil {
				t.Fatal(err)
			}
			n.users, n.guests, n.seq = map[string]int64{}, 0, n.seq+1
			mustSync(t, s, presence.Share{Node: id, Seq: n.seq})
		case op == 1: // resync with the current state
			n.seq++
			mustSync(t, s, presence.Share{Node: id, Seq: n.seq, Users: n.users, Guests: n.guests})
		default:
			b := presence.Batch{Node: id, Seq: n.seq + 1}
			seen := map[string]bool{}
			for range r.IntN(5) + 1 {
				u := fmt.Sprint("u", r.IntN(users))
				if seen[u] {
					continue
				}
				seen[u] = true
				d := int64(r.IntN(3) + 1)
				if r.IntN(2) == 0 {
					d = -min(d, n.users[u])
				}
				if d == 0 {
					continue
				}
				b.Deltas = append(b.Deltas, presence.Delta{User: u, N: d})
				if n.users[u] += d; n.users[u] == 0 {
					delete(n.users, u)
				}
			}
			if g := int64(r.IntN(3) - 1); n.guests+g >= 0 {
				b.Guests = g
				n.guests += g
			}
			mustApply(t, s, b)
			n.seq++
		}
		check(step)
	}
	// Replaying the events must give, for each user, alternating online
	// and offline starting with online, ending in the model's state.
	final := map[string]bool{}
	for _, n := range model {
		for u := range n.users {
			final[u] = true
		}
	}
	state := map[string]bool{}
	for _, e := range allEvents(t, s, "") {
		want := presence.EventOnline
		if state[e.User] {
			want = presence.EventOffline
		}
		if e.Type != want {
			t.Fatalf("event %+v: user was online=%v, want a %s event", e, state[e.User], want)
		}
		state[e.User] = e.Type == presence.EventOnline
	}
	for u := range users {
		id := fmt.Sprint("u", u)
		if state[id] != final[id] {
			t.Errorf("events say %s online=%v, model says %v", id, state[id], final[id])
		}
	}
}
