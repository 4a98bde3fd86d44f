package presence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// TrackerOptions configures a Tracker. The zero value of each field means
// the documented default.
type TrackerOptions struct {
	Node string // this node's id; required
	// Store mirrors this node's connections; nil means nothing is mirrored
	// (external mode, where another program keeps the count).
	Store Store
	// Counter is read every heartbeat for Online when Store is nil (the
	// external counter); nil means Online is this node's own users.
	Counter Reader
	// BatchWindow is the shortest time between two batch writes: a change
	// after a quiet window is written at once, and changes that arrive
	// sooner gather until the window since the last write has passed, so
	// a burst costs one write per window. Zero writes whenever a change
	// arrives and no write is running (the changes that arrive during a
	// write go in the next one).
	BatchWindow time.Duration
	// BatchMax caps the users per store call; zero means 1000.
	BatchMax int
	// HeartbeatInterval is how often the lease is renewed; zero means 2s.
	HeartbeatInterval time.Duration
	// Info returns this node's load figures for heartbeats; nil sends the
	// id and local counts only.
	Info func() NodeInfo
	// OnOnline and OnOffline are called (without locks held, from the
	// caller of Connect or Disconnect) when a user's first connection on
	// this node opens and when its last one closes.
	OnOnline, OnOffline func(user string)
	Logger              *slog.Logger
	// OnReaped is called for each node this node's heartbeat reaped
	// (after the line "node X reaped: N users, M connections" is logged).
	OnReaped func(Reaped)

	// TakenGrace is how long the store may refuse this node's id
	// (ErrNodeTaken) before the tracker gives up and reports it on
	// Conflict; zero means three heartbeat intervals. Set it above the
	// lease, so that a process restarted right after a crash waits for its
	// predecessor's lease to run out instead of giving up.
	TakenGrace time.Duration
}

// Tracker holds this node's connections, which are authoritative for the
// node, and mirrors them into a Store as batched per-user deltas. A
// connect and a disconnect of the same user inside one batch cancel out
// and cost nothing. When the store answers ErrResync, or a write fails,
// the tracker rewrites its whole share with Store.Sync.
type Tracker struct {
	o   TrackerOptions
	log *slog.Logger

	mu      sync.Mutex
	users   map[string]int64 // user -> live connections on this node
	guests  int64
	pending map[string]int64 // deltas not yet written
	pGuests int64
	waiters []chan struct{} // closed after the batch holding their delta is written
	resync  bool            // the store may not hold our share: rewrite it
	stopped bool            // Run has returned: nobody will release waiters

	kick   chan struct{}
	seq    uint64 // the sequence the store holds for us; owned by the Run goroutine
	used   uint64 // the highest sequence ever sent, so every rewrite attempt gets a fresh one; Run goroutine only
	online atomic.Int64
	down   atomic.Bool   // the last store call failed
	writes atomic.Uint64 // store writes that succeeded (Writes)

	state      atomic.Int32          // 0, stateUnavailable or stateRefused: what was last logged
	writeErr   atomic.Pointer[error] // the last store call's error, nil after a success
	takenSince time.Time             // first ErrNodeTaken of the current run of them; Run goroutine only
	takenLease int64                 // the holder's latest lease seen; Run goroutine only
	renewals   int                   // times the holder's lease moved forward; Run goroutine only
	conflict   chan error            // receives once when the node id stays taken
	gaveUp     bool                  // conflict was sent; Run goroutine only
}

// States of the store as logged, one line per change.
const (
	stateUnavailable = 1
	stateRefused     = 2
)

// NewTracker returns a Tracker; call Run to start mirroring.
func NewTracker(o TrackerOptions) *Tracker {
	if o.BatchMax <= 0 {
		o.BatchMax = 1000
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.TakenGrace <= 0 {
		o.TakenGrace = 3 * o.HeartbeatInterval
	}
	t := &Tracker{
		o:       o,
		log:     o.Logger,
		users:   make(map[string]int64),
		pending: make(map[string]int64),
		resync:  true,
		kick:    make(chan struct{}, 1),
	}
	t.conflict = make(chan error, 1)
	return t
}

// Connect records a new connection of user ("" for a guest). The returned
// channel is closed once the connection is reflected in the store (or the
// write failed, or there is no store), so a caller that waits on it before
// greeting the client never greets an uncounted connection.
func (t *Tracker) Connect(user string) <-chan struct{} {
	done := make(chan struct{})
	t.mu.Lock()
	first := false
	mirror := t.o.Store != nil // without a store nothing would drain pending
	if user == "" {
		t.guests++
		if mirror {
			t.pGuests++
		}
	} else {
		t.users[user]++
		first = t.users[user] == 1
		if mirror {
			t.pending[user]++
		}
	}
	if t.o.Store == nil || t.stopped {
		close(done)
	} else {
		t.waiters = append(t.waiters, done)
	}
	t.mu.Unlock()
	t.poke()
	if first && t.o.OnOnline != nil {
		t.o.OnOnline(user)
	}
	return done
}

// Disconnect records that a connection of user ("" for a guest) closed.
func (t *Tracker) Disconnect(user string) {
	t.mu.Lock()
	last := false
	mirror := t.o.Store != nil
	if user == "" {
		if t.guests > 0 {
			t.guests--
			if mirror {
				t.pGuests--
			}
		}
	} else if n := t.users[user]; n > 0 {
		if n == 1 {
			delete(t.users, user)
			last = true
		} else {
			t.users[user] = n - 1
		}
		if mirror {
			t.pending[user]--
		}
	}
	t.mu.Unlock()
	t.poke()
	if last && t.o.OnOffline != nil {
		t.o.OnOffline(user)
	}
}

func (t *Tracker) poke() {
	if t.o.Store == nil {
		return
	}
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// Local returns this node's own counts.
func (t *Tracker) Local() (users, connections, guests int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, n := range t.users {
		connections += n
	}
	return int64(len(t.users)), connections + t.guests, t.guests
}

// Users returns the users connected to this node.
func (t *Tracker) Users() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.users))
	for u := range t.users {
		out = append(out, u)
	}
	return out
}

// Online returns the cluster's online users as of the last store write;
// without a store, this node's users.
func (t *Tracker) Online() int64 {
	if t.o.Store == nil && t.o.Counter == nil {
		u, _, _ := t.Local()
		return u
	}
	return t.online.Load()
}

// Writes counts the batches and shares this tracker has written to the
// store. A reader that caches counts read from the store drops them when
// it changes, so that a node's own connects and disconnects show at once.
func (t *Tracker) Writes() uint64 { return t.writes.Load() }

// StoreDown reports whether the last write to the store failed.
func (t *Tracker) StoreDown() bool { return t.down.Load() }

// WriteError returns the error of the last store call, or nil when it
// succeeded: while it is not nil the store may not hold this node's
// connections (Redis unreachable, refusing writes, or the node id held by
// another process), so the counts read from it are not to be trusted.
func (t *Tracker) WriteError() error {
	if p := t.writeErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Conflict receives one error, naming the node id, when the store has
// refused this node's id (another live process holds it) for longer than
// TakenGrace: the process should stop, since its connections cannot be
// counted.
func (t *Tracker) Conflict() <-chan error { return t.conflict }

// Run mirrors connections into the store until ctx is done: it writes
// batches, renews the lease every heartbeat and rewrites the share when
// needed. It does not remove the share; call Leave for that.
func (t *Tracker) Run(ctx context.Context) {
	if t.o.Store == nil {
		t.pollCounter(ctx)
		return
	}
	hb := time.NewTicker(t.o.HeartbeatInterval)
	defer hb.Stop()
	var window *time.Timer
	var windowC <-chan time.Time
	// While the store is down, the heartbeat is retried sooner than the
	// next tick, so that a Redis that comes back gets this node's share
	// within a fraction of a heartbeat, not a whole one: the count is
	// exact again only a recovery window (1.5 heartbeats) after that.
	retryEvery := min(t.o.HeartbeatInterval/4, 250*time.Millisecond)
	var retryC <-chan time.Time
	beat := func() {
		t.heartbeat(ctx)
		retryC = nil
		if t.StoreDown() {
			retryC = time.After(retryEvery)
		}
	}
	t.flush(ctx)
	beat()
	var lastFlush time.Time // start of the last batch write
	for {
		select {
		case <-ctx.Done():
			if window != nil {
				window.Stop()
			}
			t.release()
			return
		case <-t.kick:
			if windowC != nil {
				break // the open window's write will take it
			}
			if wait := t.o.BatchWindow - time.Since(lastFlush); wait > 0 {
				window = time.NewTimer(wait)
				windowC = window.C
				break
			}
			lastFlush = time.Now()
			t.flush(ctx)
		case <-windowC:
			windowC = nil
			lastFlush = time.Now()
			t.flush(ctx)
		case <-hb.C:
			beat()
		case <-retryC:
			beat()
		}
	}
}

// pollCounter keeps Online up to date from the external counter until ctx
// is done.
func (t *Tracker) pollCounter(ctx context.Context) {
	if t.o.Counter == nil {
		<-ctx.Done()
		return
	}
	tick := time.NewTicker(t.o.HeartbeatInterval)
	defer tick.Stop()
	pub, _ := t.o.Counter.(Publisher)
	for {
		if pub != nil {
			_, _ = t.call(ctx, func(ctx context.Context) (int64, error) { return 0, pub.Publish(ctx, t.NodeInfo()) })
		}
		c, err := t.o.Counter.Counts(ctx)
		if err == nil {
			t.online.Store(c.Users)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Leave removes this node's share from the store (clean shutdown).
func (t *Tracker) Leave(ctx context.Context) error {
	if t.o.Store == nil {
		return nil
	}
	return t.o.Store.Leave(ctx, t.o.Node)
}

// flush writes pending deltas, or the whole share when a resync is due,
// then releases the waiters of everything it took.
func (t *Tracker) flush(ctx context.Context) {
	t.mu.Lock()
	waiters := t.waiters
	t.waiters = nil
	if t.resync {
		share := t.shareLocked()
		t.mu.Unlock()
		t.writeShare(ctx, share)
		closeAll(waiters)
		return
	}
	deltas := make([]Delta, 0, len(t.pending))
	for u, n := range t.pending {
		if n != 0 {
			deltas = append(deltas, Delta{User: u, N: n})
		}
	}
	clear(t.pending)
	guests := t.pGuests
	t.pGuests = 0
	t.mu.Unlock()

	for len(deltas) > 0 || guests != 0 {
		chunk := deltas[:min(len(deltas), t.o.BatchMax)]
		deltas = deltas[len(chunk):]
		b := Batch{Node: t.o.Node, Seq: t.seq + 1, Deltas: chunk, Guests: guests}
		guests = 0
		t.used = max(t.used, b.Seq)
		online, err := t.call(ctx, func(ctx context.Context) (int64, error) { return t.o.Store.Apply(ctx, b) })
		if errors.Is(err, ErrNotApplied) {
			// The store, read back after a timeout, says nothing
			// changed, and it answers: send the batch once more at once
			// (a late copy of the first cannot apply after it).
			online, err = t.call(ctx, func(ctx context.Context) (int64, error) { return t.o.Store.Apply(ctx, b) })
		}
		if errors.Is(err, ErrNotApplied) {
			// Still not applied: the deltas wait for the next flush (the
			// heartbeat retries soon while the store is down).
			t.mu.Lock()
			for _, ds := range [][]Delta{chunk, deltas} {
				for _, d := range ds {
					t.pending[d.User] += d.N
				}
			}
			t.pGuests += b.Guests
			t.mu.Unlock()
			break
		}
		if err != nil {
			// The share in the store is unknown now: the local state
			// (which already holds every pending delta) replaces it.
			t.mu.Lock()
			t.resync = true
			share := t.shareLocked()
			t.mu.Unlock()
			t.writeShare(ctx, share)
			break
		}
		t.seq = b.Seq
		t.online.Store(online)
		t.writes.Add(1)
	}
	closeAll(waiters)
}

// shareLocked snapshots the local state as a share and drops pending
// deltas, which the snapshot already holds. t.mu must be held.
func (t *Tracker) shareLocked() Share {
	users := make(map[string]int64, len(t.users))
	for u, n := range t.users {
		users[u] = n
	}
	clear(t.pending)
	t.pGuests = 0
	return Share{Node: t.o.Node, Users: users, Guests: t.guests}
}

func (t *Tracker) writeShare(ctx context.Context, share Share) {
	// A fresh sequence for every attempt: a late call of an abandoned
	// one is then refused by the store (ErrStale).
	t.used = max(t.used, t.seq) + 1
	share.Seq = t.used
	share.Rejoin = t.seq > 0
	// A rewrite takes one store call per chunk of users: it gets one
	// heartbeat interval per 20 000 users.
	within := t.o.HeartbeatInterval * time.Duration(1+len(share.Users)/20000)
	online, err := t.callWithin(ctx, within, func(ctx context.Context) (int64, error) { return t.o.Store.Sync(ctx, share) })
	if err != nil {
		return // t.resync stays set: the next flush or heartbeat tries again
	}
	t.seq = share.Seq
	t.online.Store(online)
	t.writes.Add(1)
	t.mu.Lock()
	t.resync = false
	t.mu.Unlock()
	t.log.Info("presence share written", "users", len(share.Users), "guests", share.Guests)
}

func (t *Tracker) heartbeat(ctx context.Context) {
	// Write what is due first: a share to rewrite, or deltas a failed
	// write left pending.
	t.flush(ctx)
	t.mu.Lock()
	resync := t.resync
	t.mu.Unlock()
	if resync {
		return // still failing; logged by call
	}
	info := t.NodeInfo()
	_, err := t.call(ctx, func(ctx context.Context) (int64, error) {
		reaped, err := t.o.Store.Heartbeat(ctx, t.seq, info)
		t.logReaped(reaped)
		return 0, err
	})
	if errors.Is(err, ErrResync) {
		t.log.Warn("presence share missing or out of date in store, rewriting it", "err", err)
		t.mu.Lock()
		t.resync = true
		t.mu.Unlock()
		t.flush(ctx)
		if !t.StoreDown() {
			info = t.NodeInfo()
			_, _ = t.call(ctx, func(ctx context.Context) (int64, error) {
				reaped, err := t.o.Store.Heartbeat(ctx, t.seq, info)
				t.logReaped(reaped)
				return 0, err
			})
		}
	} else if err == nil {
		t.repair(ctx)
	}
	// Any other error leaves the share as it was: a heartbeat only renews
	// the lease, so there is nothing to rewrite. If the store lost the
	// share meanwhile, the next heartbeat says so (ErrResync).
}

// repair runs the store's bounded consistency check after a heartbeat
// (see Repairer) and rewrites the share when the store's copy differs
// from this node's connections.
func (t *Tracker) repair(ctx context.Context) {
	r, ok := t.o.Store.(Repairer)
	if !ok {
		return
	}
	t.mu.Lock()
	users, conns, guests := int64(-1), int64(-1), int64(-1)
	if len(t.pending) == 0 && t.pGuests == 0 && !t.resync {
		// Everything is written: the store must hold exactly this.
		users, conns = int64(len(t.users)), t.guests
		for _, n := range t.users {
			conns += n
		}
		guests = t.guests
	}
	t.mu.Unlock()
	fixed, err := t.call(ctx, func(ctx context.Context) (int64, error) {
		return r.Repair(ctx, t.o.Node, t.seq, users, conns, guests)
	})
	if fixed > 0 {
		t.log.Warn("presence sums repaired: users hash entries differed from the nodes' shares (evicted keys?)", "users", fixed)
	}
	if errors.Is(err, ErrResync) {
		t.log.Warn("presence share differs from this node's connections in store (evicted keys?); rewriting it", "err", err)
		t.mu.Lock()
		t.resync = true
		t.mu.Unlock()
		t.flush(ctx)
	}
}

// logReaped logs each node this node's heartbeat reaped: the store reaps
// a node in one script, so the line appears once in the whole cluster.
func (t *Tracker) logReaped(reaped []Reaped) {
	for _, r := range reaped {
		t.log.Warn(fmt.Sprintf("node %s reaped: %d users, %d connections", r.Node, r.Users, r.Connections),
			"reaped_node", r.Node, "users", r.Users, "connections", r.Connections)
		if t.o.OnReaped != nil {
			t.o.OnReaped(r)
		}
	}
}

// NodeInfo returns this node's load figures (from TrackerOptions.Info) with
// its own counts, as a heartbeat publishes them.
func (t *Tracker) NodeInfo() NodeInfo {
	var info NodeInfo
	if t.o.Info != nil {
		info = t.o.Info()
	}
	info.ID = t.o.Node
	info.Users, info.Connections, info.Guests = t.Local()
	info.LastHeartbeat = time.Now().UTC()
	return info
}

// call runs one store operation with a deadline of one heartbeat interval
// and logs only changes between up and down, so an outage is one line.
func (t *Tracker) call(ctx context.Context, op func(context.Context) (int64, error)) (int64, error) {
	return t.callWithin(ctx, t.o.HeartbeatInterval, op)
}

// callWithin is call with a deadline of d.
func (t *Tracker) callWithin(ctx context.Context, d time.Duration, op func(context.Context) (int64, error)) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	n, err := op(ctx)
	if err == nil || errors.Is(err, ErrResync) {
		t.writeErr.Store(nil)
	} else if ctx.Err() == nil || !errors.Is(err, context.Canceled) {
		t.writeErr.Store(&err)
	}
	if err == nil && !t.takenSince.IsZero() {
		t.takenSince = time.Time{}
		t.log.Info("node id free again; this node's connections are counted", "node", t.o.Node)
	}
	switch {
	case errors.Is(err, ErrNodeTaken):
		t.nodeTaken(err)
	case err == nil || errors.Is(err, ErrResync):
		t.down.Store(false)
		switch t.state.Swap(0) {
		case stateUnavailable:
			t.log.Info("presence store reachable again")
		case stateRefused:
			t.log.Info("presence store accepting writes again; counts are current")
		}
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		// shutting down
	default:
		t.down.Store(true)
		state := int32(stateUnavailable)
		if errors.Is(err, ErrRefused) {
			state = stateRefused
		}
		if t.state.Swap(state) != state {
			if state == stateRefused {
				t.log.Warn("presence store refusing writes; counts are served stale until it accepts them", "err", err)
			} else {
				t.log.Warn("presence store unavailable; connections are kept locally and rewritten when it returns", "err", err)
			}
		}
	}
	return n, err
}

// nodeTaken handles a refusal of this node's id: logged once, given
// TakenGrace to clear (the holder may be a crashed predecessor whose lease
// has not run out yet), then reported on Conflict.
// A holder whose lease the store has seen move forward twice is alive
// (one move could be the outage grace of heartbeat.lua, which extends
// every lease once), so the tracker gives up at once.
func (t *Tracker) nodeTaken(err error) {
	t.down.Store(false) // the store answers; it refuses us
	now := time.Now()
	var nte *NodeTakenError
	lease := int64(0)
	if errors.As(err, &nte) {
		lease = nte.Lease
	}
	if t.takenSince.IsZero() {
		t.takenSince, t.takenLease, t.renewals = now, lease, 0
		t.log.Error("NODE_ID is held by another live process; this node's connections are not counted until its lease runs out",
			"node", t.o.Node, "gives_up_in", t.o.TakenGrace, "err", err)
		return
	}
	if lease > t.takenLease && t.takenLease != 0 {
		t.renewals++
	}
	t.takenLease = max(t.takenLease, lease)
	if !t.gaveUp && (t.renewals >= 2 || now.Sub(t.takenSince) >= t.o.TakenGrace) {
		t.gaveUp = true
		t.conflict <- fmt.Errorf("presence: NODE_ID %q is in use by another live process (it keeps renewing its lease); give every node its own NODE_ID", t.o.Node)
	}
}

func (t *Tracker) release() {
	t.mu.Lock()
	waiters := t.waiters
	t.waiters = nil
	t.stopped = true
	t.mu.Unlock()
	closeAll(waiters)
}

func closeAll(chs []chan struct{}) {
	for _, ch := range chs {
		close(ch)
	}
}
