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
	// every RefreshInterval. Nil means none.
	Online func() []string
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
}

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
			w.refresh()
			w.flush(ctx, false)
		}
	}
}

// refresh records the connected users at now, so a user connected for
// hours keeps a recent last-seen time.
func (w *LastSeenWriter) refresh() {
	users := w.o.Online()
	now := w.o.Now()
	w.mu.Lock()
	for _, u := range users {
		w.add(u, now)
	}
	w.mu.Unlock()
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
		cancel()
	}
	if err == nil {
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
	dropped += w.dropped
	w.dropped = 0
	w.mu.Unlock()
	w.log.Warn("store: write last-seen times failed, retrying", "users", len(batch), "pending", pending, "dropped", dropped, "max_pending", w.o.MaxPending, "err", err)
}
