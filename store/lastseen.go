package store

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// LastSeenOptions configure a LastSeenWriter. Zero values mean the
// documented defaults.
type LastSeenOptions struct {
	// FlushInterval is how often pending times are written: a user's first
	// connection reaches the store within it. Zero means 1s.
	FlushInterval time.Duration
	// RefreshInterval is how often the users in Online are touched again
	// (LAST_SEEN_INTERVAL); it also bounds one flush. Zero means 30s.
	RefreshInterval time.Duration
	// MaxPending bounds the users waiting to be written while the store is
	// down; beyond it new users are dropped, counted and logged at most
	// once per flush. Zero means 100000.
	MaxPending int
	// Online returns the users connected to this node now; it is called
	// every RefreshInterval, and those whose stored time is older than
	// half a RefreshInterval are written again, straight to the store (not
	// through the MaxPending buffer, which would drop users beyond it).
	// Nil means none.
	Online func() []string
	// RecordUsers also adds each user written from Seen to the users
	// collection, created at the time it was seen (a user already there
	// keeps its own): the embedded SQLite store's users table is
	// presenced's own, so its total users are the users who connected.
	// Never set it for MongoDB, whose users collection is the app's.
	RecordUsers bool
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
	// Logger receives flush failures and drop counts. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// LastSeenWriter batches last-seen times in memory and writes them to a
// Store with TouchLastSeen: a user seen many times between two flushes
// costs one write. While the store is down the pending times are kept
// (bounded by MaxPending) and retried at every flush.
type LastSeenWriter struct {
	st  Store
	o   LastSeenOptions
	log *slog.Logger

	mu      sync.Mutex
	pending map[string]time.Time // user -> latest time seen
	dropped int                  // users dropped since the last flush

	refreshFailing bool // the last refresh failed; only Run's goroutine uses it
	flushFailing   bool // the last flush failed and was logged; only Run's goroutine uses it
}

// refreshChunk bounds the users of one RefreshLastSeen call, so that a
// node with many users never builds one huge request and a slow store
// fails a part, not the whole refresh.
const refreshChunk = 5000

// NewLastSeenWriter returns a writer to st. Nothing is written until Run.
func NewLastSeenWriter(st Store, o LastSeenOptions) *LastSeenWriter {
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = 30 * time.Second
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 100_000
	}
	if o.Online == nil {
		o.Online = func() []string { return nil }
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	return &LastSeenWriter{st: st, o: o, log: log, pending: make(map[string]time.Time)}
}

// Seen records that userID is connected now. It never blocks on the store
// and is safe for concurrent use.
func (w *LastSeenWriter) Seen(userID string) {
	now := w.o.Now()
	w.mu.Lock()
	w.add(userID, now)
	w.mu.Unlock()
}

// add records t for user unless the buffer is full; w.mu must be held.
func (w *LastSeenWriter) add(user string, t time.Time) {
	if old, ok := w.pending[user]; ok {
		if t.After(old) {
			w.pending[user] = t
		}
		return
	}
	if len(w.pending) >= w.o.MaxPending {
		w.dropped++
		return
	}
	w.pending[user] = t
}

// Run writes pending times every FlushInterval and touches the Online
// users every RefreshInterval, until ctx is done; then it makes a final
// flush within 2s and returns. Call it once.
func (w *LastSeenWriter) Run(ctx context.Context) {
	flush := time.NewTicker(w.o.FlushInterval)
	defer flush.Stop()
	refresh := time.NewTicker(w.o.RefreshInterval)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			w.flush(final, true)
			cancel()
			return
		case <-flush.C:
			w.flush(ctx, false)
		case <-refresh.C:
			w.refresh(ctx)
		}
	}
}

// refresh writes now as the last-seen time of the connected users whose
// stored time is older than half a RefreshInterval, so a user connected
// for hours keeps a time within 1.5 intervals of now (the fallback count
// looks back two). It goes to the store directly, in chunks: the users
// are still connected, so a failed refresh loses nothing the next one
// does not write. It logs once when refreshes start failing and once
// when they work again.
func (w *LastSeenWriter) refresh(ctx context.Context) {
	users := w.o.Online()
	if len(users) == 0 {
		return
	}
	now := w.o.Now()
	stale := now.Add(-w.o.RefreshInterval / 2)
	written := 0
	var err error
	for start := 0; start < len(users) && err == nil; start += refreshChunk {
		tctx, cancel := context.WithTimeout(ctx, w.o.RefreshInterval)
		var n int
		n, err = w.st.RefreshLastSeen(tctx, users[start:min(start+refreshChunk, len(users))], now, stale)
		cancel()
		written += n
	}
	switch {
	case err != nil && ctx.Err() != nil:
		// Stopping: not a store failure.
	case err != nil && !w.refreshFailing:
		w.refreshFailing = true
		w.log.Warn("store: last-seen refresh failed; the next one retries", "users", len(users), "written", written, "err", err)
	case err == nil && w.refreshFailing:
		w.refreshFailing = false
		w.log.Info("store: last-seen refresh works again", "users", len(users), "written", written)
	}
}

// flush writes the pending times. On failure they go back into the buffer,
// merged with times recorded meanwhile, for the next flush: writing a time
// twice is harmless, as stored times never move backwards. The final flush
// of Run has no next one: what it fails to write is lost. flush logs at
// most once.
func (w *LastSeenWriter) flush(ctx context.Context, final bool) {
	w.mu.Lock()
	var batch map[string]time.Time
	if len(w.pending) > 0 {
		batch = w.pending
		// Not sized like batch: after each refresh that empty map would
		// hold room for every online user until the next one, ~80 bytes
		// per connection for good (about 0.3 KiB of RSS, BENCHMARKS.md).
		w.pending = make(map[string]time.Time)
	}
	dropped := w.dropped
	w.dropped = 0
	w.mu.Unlock()

	var err error
	if len(batch) > 0 {
		seen := make([]LastSeen, 0, len(batch))
		for u, t := range batch {
			seen = append(seen, LastSeen{UserID: u, At: t})
		}
		tctx, cancel := context.WithTimeout(ctx, w.o.RefreshInterval)
		err = w.st.TouchLastSeen(tctx, seen)
		if err == nil && w.o.RecordUsers {
			users := make([]User, len(seen))
			for i, ls := range seen {
				users[i] = User{ID: ls.UserID, CreatedAt: ls.At}
			}
			// Retried with the batch on failure, like the times.
			err = w.st.InsertUsers(tctx, users)
		}
		cancel()
	}
	if err == nil {
		if len(batch) > 0 && w.flushFailing {
			w.flushFailing = false
			w.log.Info("store: last-seen writes work again", "users", len(batch))
		}
		if dropped > 0 {
			w.log.Warn("store: last-seen buffer full, users dropped", "dropped", dropped, "max_pending", w.o.MaxPending)
		}
		return
	}

	if final {
		w.log.Error("store: final write of last-seen times failed, times lost", "users", len(batch), "dropped", dropped, "err", err)
		return
	}
	w.mu.Lock()
	for u, t := range batch {
		w.add(u, t)
	}
	pending := len(w.pending)
	if ctx.Err() != nil {
		// Run is stopping and its final flush retries at once: leave the
		// logging to it.
		w.dropped += dropped
		w.mu.Unlock()
		return
	}
	if w.flushFailing {
		// Said once per outage: the drops add up for the line that
		// follows the first write that works.
		w.dropped += dropped
		w.mu.Unlock()
		return
	}
	w.flushFailing = true
	dropped += w.dropped
	w.dropped = 0
	w.mu.Unlock()
	w.log.Warn("store: write last-seen times failed; retrying every flush, said again when it works", "users", len(batch), "pending", pending, "dropped", dropped, "max_pending", w.o.MaxPending, "err", err)
}
