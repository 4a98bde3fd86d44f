package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
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

// openAt returns a store on addr (a redis-server or a faultProxy in front
// of one) with its own key prefix and online key.
func openAt(tb testing.TB, addr string, o redisstore.Options) (*redisstore.Store, string, string) {
	tb.Helper()
	rdb, o := testClient(tb, addr, o)
	if o.NodeTTL == 0 {
		o.NodeTTL = time.Minute
	}
	s, err := redisstore.New(rdb, o)
	if err != nil {
		tb.Fatal(err)
	}
	return s, o.Prefix, o.OnlineKey
}

// testClient returns a client of addr, closed at cleanup, and o with a
// key prefix and online key of the test's own (unless o has a prefix) and
// a recovery window of 1 ms (unless set).
func testClient(tb testing.TB, addr string, o redisstore.Options) (*redis.Client, redisstore.Options) {
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ContextTimeoutEnabled: true})
	tb.Cleanup(func() { rdb.Close() })
	if o.Prefix == "" {
		id := prefixes.Add(1)
		o.Prefix = fmt.Sprintf("{t%d}", id)
		o.OnlineKey = fmt.Sprintf("{t%d}online_users", id)
	}
	if o.RecoveryWindow == 0 {
		o.RecoveryWindow = time.Millisecond
	}
	return rdb, o
}

func usersN(prefix string, n int) map[string]int64 {
	m := make(map[string]int64, n)
	for i := range n {
		m[prefix+strconv.Itoa(i)] = 1
	}
	return m
}

// usersWatch is a go-redis hook that records, after every script call,
// how many users the users hash holds (read on another client), so a test
// can see how much one call changed.
type usersWatch struct {
	other *redis.Client
	key   string

	mu     sync.Mutex
	counts []int64
}

func (w *usersWatch) DialHook(next redis.DialHook) redis.DialHook { return next }
func (w *usersWatch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (w *usersWatch) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if name := cmd.Name(); name == "evalsha" || name == "eval" {
			n := w.other.HLen(context.Background(), w.key).Val()
			w.mu.Lock()
			w.counts = append(w.counts, n)
			w.mu.Unlock()
		}
		return err
	}
}

// largestStep returns the largest change of the users hash between two
// consecutive script calls, and the number of calls.
func (w *usersWatch) largestStep(from int64) (int64, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	step, last := int64(0), from
	for _, n := range w.counts {
		step = max(step, n-last, last-n)
		last = n
	}
	return step, len(w.counts)
}

func (w *usersWatch) reset() {
	w.mu.Lock()
	w.counts = nil
	w.mu.Unlock()
}

// TestRewriteAndReapAreBounded (issue 8, finding 1): a share of 20 000
// users is rewritten, and reaped when its node dies, in calls that each
// change at most Budget users; the count is exact at the end and Partial
// only while the rewrite is under way.
func TestRewriteAndReapAreBounded(t *testing.T) {
	const users, budget = 20_000, 500
	srv := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	other := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { other.Close() })
	w := &usersWatch{other: other, key: "{big}:users"}
	rdb.AddHook(w)
	ttl := 300 * time.Millisecond
	s, err := redisstore.New(rdb, redisstore.Options{Prefix: "{big}", OnlineKey: "{big}online_users", NodeTTL: ttl, RecoveryWindow: time.Millisecond, Budget: budget})
	if err != nil {
		t.Fatal(err)
	}
	// Partial while the rewrite is under way: seen from the hook's client.
	var partialSeen bool
	reader, _ := redisstore.New(other, redisstore.Options{Prefix: "{big}", OnlineKey: "{big}online_users", NodeTTL: ttl, RecoveryWindow: time.Millisecond})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := reader.Counts(context.Background())
			if err == nil && c.Partial && c.Users > 0 && c.Users < users {
				partialSeen = true
			}
			if err == nil && c.Users == users {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	if _, err := s.Sync(ctx(t), presence.Share{Node: "big", Seq: 1, Users: usersN("u", users)}); err != nil {
		t.Fatal(err)
	}
	<-done
	step, calls := w.largestStep(0)
	if step > budget || calls < users/budget {
		t.Fatalf("rewrite of %d users: %d calls, largest change %d users in one call; want calls of at most %d", users, calls, step, budget)
	}
	if !partialSeen {
		t.Errorf("Counts was never Partial during the rewrite of %d users", users)
	}
	if c, err := s.Counts(ctx(t)); err != nil || c.Users != users || c.Connections != users || c.Partial {
		t.Fatalf("Counts after the rewrite = %+v, %v; want %d users, not Partial", c, err, users)
	}

	// A second node outlives "big", whose lease runs out.
	if _, err := s.Sync(ctx(t), presence.Share{Node: "small", Seq: 1, Users: map[string]int64{"u1": 1, "x": 1}}); err != nil {
		t.Fatal(err)
	}
	w.reset()
	// small keeps heartbeating (so this is no outage) until big is reaped.
	var reaped []presence.Reaped
	deadline := time.Now().Add(10 * ttl)
	for rdb.Exists(ctx(t), "{big}:node:big").Val()+rdb.HLen(ctx(t), "{big}:reaping").Val() > 0 || rdb.ZScore(ctx(t), "{big}:nodes", "big").Err() == nil {
		if time.Now().After(deadline) {
			t.Fatal("big was never reaped")
		}
		r, err := s.Heartbeat(ctx(t), 1, presence.NodeInfo{ID: "small"})
		if err != nil {
			t.Fatal(err)
		}
		reaped = append(reaped, r...)
		time.Sleep(ttl / 5)
	}
	// The reap is reported once, by the call that finished it.
	if len(reaped) != 1 || reaped[0] != (presence.Reaped{Node: "big", Users: users, Connections: users}) {
		t.Fatalf("reaped = %+v, want big with %d users once", reaped, users)
	}
	// A reap scans the share with HSCAN, whose COUNT is a hint: a call
	// may take a few more than Budget.
	step, calls = w.largestStep(users + 2)
	if step > budget*11/10 || calls < users/budget {
		t.Fatalf("reap of %d users: %d calls, largest change %d users in one call; want calls of at most about %d", users, calls, step, budget)
	}
	if c, err := s.Counts(ctx(t)); err != nil || c.Users != 2 || c.Connections != 2 {
		t.Fatalf("Counts after the reap = %+v, %v; want small's 2", c, err)
	}
	if n := rdb.Exists(ctx(t), "{big}:node:big", "{big}:old:big").Val(); n != 0 {
		t.Fatalf("the reaped share's keys remain (%d)", n)
	}
	if n := rdb.HLen(ctx(t), "{big}:reaping").Val(); n != 0 {
		t.Fatalf("%d reaps left unfinished", n)
	}
}

// TestRewriteReplacesAPartlyDifferentShare: a rewrite over an old share
// that shares some users with the new one changes each user once, by its
// net difference, across chunks, with another node's users untouched.
func TestRewriteReplacesAPartlyDifferentShare(t *testing.T) {
	srv := testenv.StartRedis(t)
	s, p, online := openAt(t, srv.Addr(), redisstore.Options{Budget: 100})
	old := usersN("u", 1000) // u0..u999
	if _, err := s.Sync(ctx(t), presence.Share{Node: "a", Seq: 1, Users: old}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sync(ctx(t), presence.Share{Node: "b", Seq: 1, Users: map[string]int64{"u1": 2, "u700": 1, "b-only": 1}}); err != nil {
		t.Fatal(err)
	}
	nu := usersN("u", 500) // u0..u499, then 300 new ones
	for i := range 300 {
		nu["v"+strconv.Itoa(i)] = 2
	}
	if _, err := s.Sync(ctx(t), presence.Share{Node: "a", Seq: 2, Users: nu, Guests: 3}); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	users := rdb.HGetAll(ctx(t), p+":users").Val()
	if len(users) != 500+300+2 || users["u1"] != "3" || users["u700"] != "1" || users["v7"] != "2" || users["u999"] != "" {
		t.Fatalf("users hash: %d entries, u1=%q u700=%q v7=%q u999=%q; want 802, 3, 1, 2, none", len(users), users["u1"], users["u700"], users["v7"], users["u999"])
	}
	if got := rdb.Get(ctx(t), online).Val(); got != "802" {
		t.Fatalf("GET %s = %s, want 802", online, got)
	}
	if c, _ := s.Counts(ctx(t)); c.Connections != 500+600+3+4 || c.Guests != 3 {
		t.Fatalf("Counts = %+v, want 1107 connections, 3 guests", c)
	}
	if n := rdb.Exists(ctx(t), p+":old:a").Val(); n != 0 {
		t.Fatal("the old share's remainder is left behind")
	}
}

// TestStaleRewriteRefused (issue 8, finding 2): a rewrite attempt held up
// in the network and abandoned, which lands after a newer attempt, is
// refused and changes nothing.
func TestStaleRewriteRefused(t *testing.T) {
	srv := testenv.StartRedis(t)
	px := testenv.StartFaultProxy(t, srv.Addr())
	s, p, _ := openAt(t, px.Addr(), redisstore.Options{Budget: 100, CallTimeout: 200 * time.Millisecond})
	if _, err := s.Sync(ctx(t), presence.Share{Node: "a", Seq: 1, Users: usersN("first", 10)}); err != nil {
		t.Fatal(err)
	}
	px.Hold(true) // nothing gets through, not even a read-back
	if _, err := s.Sync(ctx(t), presence.Share{Node: "a", Seq: 2, Users: usersN("stale", 50)}); err == nil {
		t.Fatal("Sync through a proxy that holds everything succeeded")
	}
	px.StopHoldingNew()
	if _, err := s.Sync(ctx(t), presence.Share{Node: "a", Seq: 3, Users: usersN("new", 20)}); err != nil {
		t.Fatal(err)
	}
	px.Release() // attempt 2 lands now
	time.Sleep(100 * time.Millisecond)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	share := rdb.HGetAll(ctx(t), p+":node:a").Val()
	users := rdb.HLen(ctx(t), p+":users").Val()
	if len(share) != 20 || share["new0"] != "1" || users != 20 {
		t.Fatalf("after the late attempt landed: share %d users (new0=%q), users hash %d; want the newest attempt's 20", len(share), share["new0"], users)
	}
	// A late rewrite is refused outright too.
	if _, err := s.Sync(ctx(t), presence.Share{Node: "a", Seq: 2, Users: usersN("stale", 5)}); !errors.Is(err, presence.ErrStale) {
		t.Fatalf("Sync seq 2 after 3: err = %v, want ErrStale", err)
	}
}

// TestUnknownOutcomesSettledByReadBack: a call whose reply is lost is
// settled by reading back the stored sequence, not by resending it.
func TestUnknownOutcomesSettledByReadBack(t *testing.T) {
	srv := testenv.StartRedis(t)
	px := testenv.StartFaultProxy(t, srv.Addr())
	s, p, _ := openAt(t, px.Addr(), redisstore.Options{Budget: 100, CallTimeout: 200 * time.Millisecond})
	if _, err := s.Sync(ctx(t), presence.Share{Node: "a", Seq: 1, Users: map[string]int64{"alice": 1}}); err != nil {
		t.Fatal(err)
	}
	short := func() context.Context {
		c, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		t.Cleanup(cancel)
		return c
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()

	// Applied, reply lost: Apply says so. (The first Apply loads the
	// script: a lost NOSCRIPT reply would leave nothing applied.)
	if _, err := s.Apply(ctx(t), presence.Batch{Node: "a", Seq: 2, Deltas: []presence.Delta{{User: "alice", N: 0}}}); err != nil {
		t.Fatal(err)
	}
	px.DropNext()
	online, err := s.Apply(short(), presence.Batch{Node: "a", Seq: 3, Deltas: []presence.Delta{{User: "bob", N: 1}}})
	if err != nil || online != 2 {
		t.Fatalf("Apply whose reply was lost = %d, %v; want 2, nil (read back: applied)", online, err)
	}

	// Not delivered: Apply says nothing changed; sent again it applies
	// once, and the late copy that lands afterwards is refused.
	px.HoldNext()
	b := presence.Batch{Node: "a", Seq: 4, Deltas: []presence.Delta{{User: "carol", N: 1}, {User: "alice", N: 1}}}
	if _, err := s.Apply(short(), b); !errors.Is(err, presence.ErrNotApplied) {
		t.Fatalf("Apply held back: err = %v, want ErrNotApplied", err)
	}
	if online, err := s.Apply(ctx(t), b); err != nil || online != 3 {
		t.Fatalf("Apply sent again = %d, %v; want 3", online, err)
	}
	px.Release()
	time.Sleep(100 * time.Millisecond)
	if got := rdb.HGet(ctx(t), p+":users", "alice").Val(); got != "2" {
		t.Fatalf("alice's connections after the late copy landed = %s, want 2 (applied once)", got)
	}

	// A rewrite whose chunks' replies are lost goes on from what Redis holds.
	px.DropNext()
	if _, err := s.Sync(ctx(t), presence.Share{Node: "a", Seq: 5, Users: usersN("r", 350)}); err != nil {
		t.Fatalf("Sync with a lost reply: %v", err)
	}
	if n := rdb.HLen(ctx(t), p+":users").Val(); n != 350 {
		t.Fatalf("users after the rewrite = %d, want 350", n)
	}
	if c, err := s.Counts(ctx(t)); err != nil || c.Users != 350 || c.Partial {
		t.Fatalf("Counts = %+v, %v; want 350, not Partial", c, err)
	}
}

// TestNewDataSetRecoveringWhoeverWritesFirst (issue 8, finding 3): after
// FLUSHALL, the first writer may be a node that just started or a node
// leaving; the data set is recovering either way while the live nodes
// rewrite their shares, and the day's peak comes back.
func TestNewDataSetRecoveringWhoeverWritesFirst(t *testing.T) {
	for _, first := range []string{"starting node", "leaving node"} {
		t.Run(first, func(t *testing.T) {
			srv := testenv.StartRedis(t)
			window := 400 * time.Millisecond
			a, p, online := openAt(t, srv.Addr(), redisstore.Options{RecoveryWindow: window})
			if _, err := a.Sync(ctx(t), presence.Share{Node: "a", Seq: 1, Users: usersN("u", 5)}); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Heartbeat(ctx(t), 1, presence.NodeInfo{ID: "a"}); err != nil {
				t.Fatal(err)
			}
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
			defer rdb.Close()
			rdb.FlushAll(ctx(t))

			// Another process writes first.
			c, _, _ := openAt(t, srv.Addr(), redisstore.Options{Prefix: p, OnlineKey: online, RecoveryWindow: window})
			if first == "starting node" {
				if _, err := c.Sync(ctx(t), presence.Share{Node: "c", Seq: 1, Users: map[string]int64{"c1": 1}}); err != nil {
					t.Fatal(err)
				}
			} else if err := c.Leave(ctx(t), "c"); err != nil {
				t.Fatal(err)
			}
			got, err := c.Counts(ctx(t))
			if err != nil || !got.Partial {
				t.Fatalf("Counts after FLUSHALL and a write by a %s = %+v, %v; want Partial", first, got, err)
			}
			// a notices at its heartbeat and rewrites its share.
			if _, err := a.Heartbeat(ctx(t), 1, presence.NodeInfo{ID: "a"}); !errors.Is(err, presence.ErrResync) {
				t.Fatalf("Heartbeat after FLUSHALL: %v, want ErrResync", err)
			}
			if _, err := a.Sync(ctx(t), presence.Share{Node: "a", Seq: 2, Users: map[string]int64{"u0": 1}, Rejoin: true}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(window)
			got, err = c.Counts(ctx(t))
			want := int64(1)
			if first == "starting node" {
				want = 2
			}
			if err != nil || got.Partial || got.Users != want || got.PeakToday != 5 {
				t.Fatalf("Counts after the rewrite and the window = %+v, %v; want %d users, not Partial, peak 5 (as before the loss)", got, err, want)
			}
		})
	}
}

// syncCounter is a store that counts the rewrites a tracker asks for.
type syncCounter struct {
	*redisstore.Store
	syncs atomic.Int64
}

func (c *syncCounter) Sync(ctx context.Context, sh presence.Share) (int64, error) {
	c.syncs.Add(1)
	return c.Store.Sync(ctx, sh)
}

func runTracker(t *testing.T, o presence.TrackerOptions) *presence.Tracker {
	t.Helper()
	tr := presence.NewTracker(o)
	c, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.Run(c); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return tr
}

// TestHeartbeatErrorDoesNotForceRewrite (issue 8, finding 1): a heartbeat
// that times out leaves the share alone; the next one goes on.
func TestHeartbeatErrorDoesNotForceRewrite(t *testing.T) {
	srv := testenv.StartRedis(t)
	px := testenv.StartFaultProxy(t, srv.Addr())
	hb := 100 * time.Millisecond
	s, _, _ := openAt(t, px.Addr(), redisstore.Options{NodeTTL: 10 * hb})
	st := &syncCounter{Store: s}
	tr := runTracker(t, presence.TrackerOptions{Node: "n", Store: st, HeartbeatInterval: hb})
	for _, u := range []string{"a", "b", "c"} {
		<-tr.Connect(u)
	}
	time.Sleep(3 * hb) // past a heartbeat or two
	before := st.syncs.Load()
	px.DropNext() // the next request is a heartbeat: it runs, its reply is lost
	time.Sleep(6 * hb)
	if px.Armed() {
		t.Fatal("no request went through the proxy")
	}
	if n := st.syncs.Load() - before; n != 0 {
		t.Fatalf("%d rewrites after a heartbeat timed out, want 0", n)
	}
	if c, err := s.Counts(ctx(t)); err != nil || c.Users != 3 || tr.StoreDown() {
		t.Fatalf("Counts = %+v, %v, store down %v; want 3 users, store up", c, err, tr.StoreDown())
	}
}

// TestChurnWithInjectedTimeouts: three trackers connect and disconnect
// users at random through a proxy that holds back or drops replies of 3%
// of the requests (each such call times out: its outcome is unknown), with
// rewrites in chunks of 50 users. Once the faults stop, and everything
// held back has landed late, the users hash is exactly the truth, user by
// user.
func TestChurnWithInjectedTimeouts(t *testing.T) {
	srv := testenv.StartRedis(t)
	px := testenv.StartFaultProxy(t, srv.Addr())
	hb := 100 * time.Millisecond
	prefix := fmt.Sprintf("{t%d}", prefixes.Add(1))
	var trackers []*presence.Tracker
	for i := range 3 {
		s, _, _ := openAt(t, px.Addr(), redisstore.Options{Prefix: prefix, OnlineKey: prefix + "online_users", NodeTTL: 10 * hb, Budget: 50, CallTimeout: hb})
		trackers = append(trackers, runTracker(t, presence.TrackerOptions{
			Node: "n" + strconv.Itoa(i), Store: s, HeartbeatInterval: hb, BatchWindow: 5 * time.Millisecond, BatchMax: 40,
		}))
	}
	want := truthOf(churnWithFaults(t, trackers, px, 3))
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	var got map[string]string
	for end := time.Now().Add(20 * hb); time.Now().Before(end); time.Sleep(hb / 2) {
		got = rdb.HGetAll(ctx(t), prefix+":users").Val()
		if maps.Equal(got, want) && rdb.Get(ctx(t), prefix+"online_users").Val() == strconv.Itoa(len(want)) && rdb.HLen(ctx(t), prefix+":rewrite").Val() == 0 {
			return
		}
	}
	t.Fatalf("users hash never matched the truth: %d users, want %d (first differences: %v)", len(got), len(want), firstDiff(got, want))
}

// churnWithFaults connects and disconnects users (400 of them) at random
// on trackers for 3 s, 50 changes every 10 ms, while px breaks 3% of the
// requests; then it stops the faults, lets everything held back land, and
// returns each tracker's connections per user. The seed picks the
// sequence.
func churnWithFaults(t *testing.T, trackers []*presence.Tracker, px *testenv.FaultProxy, seed uint64) []map[string]int {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed+1))
	conns := make([]map[string]int, len(trackers))
	for i := range conns {
		conns[i] = map[string]int{}
	}
	px.Random(0.03)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		for range 50 {
			i, u := r.IntN(len(trackers)), "u"+strconv.Itoa(r.IntN(400))
			if conns[i][u] > 0 && r.IntN(2) == 0 {
				trackers[i].Disconnect(u)
				conns[i][u]--
			} else {
				trackers[i].Connect(u)
				conns[i][u]++
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	px.Random(0)
	px.Release()
	t.Logf("%d faults injected", px.Faults())
	if px.Faults() == 0 {
		t.Fatal("no fault was injected")
	}
	return conns
}

// truthOf sums the trackers' connections per user, as the users hash
// holds them.
func truthOf(conns []map[string]int) map[string]string {
	want := map[string]string{}
	for _, m := range conns {
		for u, n := range m {
			if n > 0 {
				c, _ := strconv.Atoi(want[u])
				want[u] = strconv.Itoa(c + n)
			}
		}
	}
	return want
}

func firstDiff(got, want map[string]string) []string {
	var out []string
	for u, n := range want {
		if got[u] != n && len(out) < 5 {
			out = append(out, fmt.Sprintf("%s: %q want %q", u, got[u], n))
		}
	}
	for u, n := range got {
		if _, ok := want[u]; !ok && len(out) < 10 {
			out = append(out, fmt.Sprintf("%s: %q want none", u, n))
		}
	}
	return out
}

// TestChunkedRewriteAndReapEmitEachTransitionOnce: with rewrites and reaps
// spread over many calls, every user whose cluster-wide count crosses 0
// gets exactly one event, and users that stay online get none.
func TestChunkedRewriteAndReapEmitEachTransitionOnce(t *testing.T) {
	srv := testenv.StartRedis(t)
	ttl := 300 * time.Millisecond
	s, _, _ := openAt(t, srv.Addr(), redisstore.Options{Budget: 10, NodeTTL: ttl})
	// a: u0..u59; b: u50..u69 (u50..u59 on both).
	if _, err := s.Sync(ctx(t), presence.Share{Node: "a", Seq: 1, Users: usersN("u", 60)}); err != nil {
		t.Fatal(err)
	}
	b := map[string]int64{}
	for i := 50; i < 70; i++ {
		b["u"+strconv.Itoa(i)] = 1
	}
	if _, err := s.Sync(ctx(t), presence.Share{Node: "b", Seq: 1, Users: b}); err != nil {
		t.Fatal(err)
	}
	last, err := s.LastEventID(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	// a rewrites to u30..u89: u0..u29 go offline (none is on b), u60..u69
	// stay (on b), u70..u89 come online.
	nu := map[string]int64{}
	for i := 30; i < 90; i++ {
		nu["u"+strconv.Itoa(i)] = 2
	}
	if _, err := s.Sync(ctx(t), presence.Share{Node: "a", Seq: 2, Users: nu}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for i := range 30 {
		want["u"+strconv.Itoa(i)] = "offline"
	}
	for i := 70; i < 90; i++ {
		want["u"+strconv.Itoa(i)] = "online"
	}
	last = checkEvents(t, s, last, want)

	// a dies; b heartbeats until it is reaped: u30..u49 and u70..u89 go
	// offline, u50..u69 stay (on b).
	for end := time.Now().Add(10 * ttl); ; time.Sleep(ttl / 5) {
		if time.Now().After(end) {
			t.Fatal("a was never reaped")
		}
		r, err := s.Heartbeat(ctx(t), 1, presence.NodeInfo{ID: "b"})
		if err != nil {
			t.Fatal(err)
		}
		if len(r) > 0 {
			break
		}
	}
	want = map[string]string{}
	for i := 30; i < 50; i++ {
		want["u"+strconv.Itoa(i)] = "offline"
	}
	for i := 70; i < 90; i++ {
		want["u"+strconv.Itoa(i)] = "offline"
	}
	checkEvents(t, s, last, want)
}

// checkEvents reads the events after last and compares them with want
// (user -> the one event type it must have); it returns the last id.
func checkEvents(t *testing.T, s *redisstore.Store, last string, want map[string]string) string {
	t.Helper()
	evs, err := s.ReadEvents(ctx(t), last, 10000, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, e := range evs {
		got[e.User] = append(got[e.User], e.Type)
		last = e.ID
	}
	for u, typ := range want {
		if len(got[u]) != 1 || got[u][0] != typ {
			t.Errorf("events of %s = %v, want one %s", u, got[u], typ)
		}
	}
	for u, types := range got {
		if _, ok := want[u]; !ok {
			t.Errorf("events of %s = %v, want none", u, types)
		}
	}
	return last
}
