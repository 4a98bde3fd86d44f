package store_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/store"
	"github.com/presenced/presenced/store/sqlitestore"
)

// MustOpenSQLite opens a real SQLite store under tb.TempDir().
func MustOpenSQLite(tb testing.TB) *sqlitestore.Store {
	tb.Helper()
	s, err := sqlitestore.Open(context.Background(), tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// outage wraps a real store; while down, TouchLastSeen fails as an
// unreachable database does, without reaching the store.
type outage struct {
	store.Store
	down     atomic.Bool
	failures atomic.Int64
}

func (o *outage) TouchLastSeen(ctx context.Context, seen []store.LastSeen) error {
	if o.down.Load() {
		o.failures.Add(1)
		return fmt.Errorf("outage: %w", store.ErrUnavailable)
	}
	return o.Store.TouchLastSeen(ctx, seen)
}

// clock is a settable time source for LastSeenOptions.Now.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.set(t); return c }
func (c *clock) set(t time.Time)  { c.ns.Store(t.UnixNano()) }
func (c *clock) now() time.Time   { return time.Unix(0, c.ns.Load()).UTC() }

// quiet discards the logs of tests that do not look at them.
var quiet = slog.New(slog.DiscardHandler)

var t0 = time.Date(2025, 3, 10, 15, 0, 0, 0, time.UTC)

// start runs w until the test ends, waiting for Run to return.
func start(t *testing.T, w *store.LastSeenWriter) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		w.Run(ctx)
		close(done)
	}()
	stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond until it holds; the generous limit only keeps a broken
// test from hanging, it asserts no duration.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func seenSince(t *testing.T, s store.Store, since time.Time) int64 {
	t.Helper()
	n, err := s.SeenSince(context.Background(), since)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestLastSeenWriterFlushes(t *testing.T) {
	t.Parallel()
	s := MustOpenSQLite(t)
	clk := newClock(t0)
	w := store.NewLastSeenWriter(s, store.LastSeenOptions{FlushInterval: time.Millisecond, RefreshInterval: time.Hour, Now: clk.now, Logger: quiet})
	start(t, w)

	w.Seen("a")
	w.Seen("b")
	waitFor(t, "a and b written", func() bool { return seenSince(t, s, t0) == 2 })

	clk.set(t0.Add(time.Minute))
	w.Seen("a")
	waitFor(t, "a moved forward", func() bool { return seenSince(t, s, t0.Add(time.Minute)) == 1 })
}

func TestLastSeenWriterRefreshesOnline(t *testing.T) {
	t.Parallel()
	s := MustOpenSQLite(t)
	clk := newClock(t0)
	w := store.NewLastSeenWriter(s, store.LastSeenOptions{
		FlushInterval:   time.Hour,
		RefreshInterval: time.Millisecond,
		Online:          func() []string { return []string{"x", "y"} },
		Now:             clk.now,
		Logger:          quiet,
	})
	start(t, w)

	waitFor(t, "online users written", func() bool { return seenSince(t, s, t0) == 2 })
	later := t0.Add(30 * time.Second)
	clk.set(later)
	waitFor(t, "online users touched again", func() bool { return seenSince(t, s, later) == 2 })
}

// TestLastSeenWriterRetries keeps the store down for several flushes:
// nothing is lost, and a time recorded during the outage replaces the
// older pending one.
func TestLastSeenWriterRetries(t *testing.T) {
	t.Parallel()
	real := MustOpenSQLite(t)
	s := &outage{Store: real}
	s.down.Store(true)
	clk := newClock(t0)
	var logs syncBuffer
	w := store.NewLastSeenWriter(s, store.LastSeenOptions{
		FlushInterval:   time.Millisecond,
		RefreshInterval: time.Hour,
		Now:             clk.now,
		Logger:          slog.New(slog.NewTextHandler(&logs, nil)),
	})
	start(t, w)

	w.Seen("a")
	waitFor(t, "a failed flush", func() bool { return s.failures.Load() >= 1 })
	later := t0.Add(time.Minute)
	clk.set(later)
	w.Seen("a")
	w.Seen("b")
	n := s.failures.Load()
	waitFor(t, "another failed flush", func() bool { return s.failures.Load() > n })
	if got := seenSince(t, real, time.Time{}); got != 0 {
		t.Fatalf("%d users written while the store was down", got)
	}

	s.down.Store(false)
	waitFor(t, "a and b written at the later time", func() bool { return seenSince(t, real, later) == 2 })
	waitFor(t, "the recovery logged", func() bool { return strings.Contains(logs.String(), "work again") })
	// Several failed flushes, one line for the outage and one for its end.
	if c := strings.Count(logs.String(), "failed"); c != 1 || s.failures.Load() < 2 {
		t.Errorf("%d failure lines for %d failed flushes, want 1; logs:\n%s", c, s.failures.Load(), logs.String())
	}
}

// TestLastSeenWriterMaxPending fills the buffer before Run starts; the
// final flush at stop writes what fits and the drop is logged.
func TestLastSeenWriterMaxPending(t *testing.T) {
	t.Parallel()
	s := MustOpenSQLite(t)
	var logs syncBuffer
	w := store.NewLastSeenWriter(s, store.LastSeenOptions{
		FlushInterval:   time.Hour,
		RefreshInterval: time.Hour,
		MaxPending:      2,
		Now:             newClock(t0).now,
		Logger:          slog.New(slog.NewTextHandler(&logs, nil)),
	})
	w.Seen("a")
	w.Seen("b")
	w.Seen("a") // already pending: not a new user
	w.Seen("c") // dropped
	stop := start(t, w)
	stop()

	if got := seenSince(t, s, t0); got != 2 {
		t.Fatalf("users written = %d, want 2", got)
	}
	if !strings.Contains(logs.String(), "dropped=1") {
		t.Errorf("drop not logged; logs:\n%s", logs.String())
	}
}

// TestLastSeenWriterFinalFlush checks that stopping Run writes what is
// pending, without waiting for the next tick.
func TestLastSeenWriterFinalFlush(t *testing.T) {
	t.Parallel()
	s := MustOpenSQLite(t)
	w := store.NewLastSeenWriter(s, store.LastSeenOptions{FlushInterval: time.Hour, RefreshInterval: time.Hour, Now: newClock(t0).now, Logger: quiet})
	stop := start(t, w)
	for i := range 50 {
		w.Seen(fmt.Sprintf("user-%d", i))
	}
	stop()
	if got := seenSince(t, s, t0); got != 50 {
		t.Fatalf("users written at stop = %d, want 50", got)
	}
}

// TestLastSeenWriterConcurrentSeen runs Seen from many goroutines beside
// flushes (for the race detector).
func TestLastSeenWriterConcurrentSeen(t *testing.T) {
	t.Parallel()
	s := MustOpenSQLite(t)
	w := store.NewLastSeenWriter(s, store.LastSeenOptions{FlushInterval: time.Millisecond, Now: newClock(t0).now, Logger: quiet})
	stop := start(t, w)
	done := make(chan struct{})
	for g := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 100 {
				w.Seen(fmt.Sprintf("user-%d", (g*100+i)%300))
			}
		}()
	}
	for range 8 {
		<-done
	}
	stop()
	if got := seenSince(t, s, t0); got != 300 {
		t.Fatalf("users written = %d, want 300", got)
	}
}

type syncBuffer = testenv.Buffer

// TestLastSeenWriterFinalFlushFails checks that times the final flush
// cannot write are reported, not lost silently.
func TestLastSeenWriterFinalFlushFails(t *testing.T) {
	t.Parallel()
	s := &outage{Store: MustOpenSQLite(t)}
	s.down.Store(true)
	var logs syncBuffer
	w := store.NewLastSeenWriter(s, store.LastSeenOptions{
		FlushInterval:   time.Hour,
		RefreshInterval: time.Hour,
		Now:             newClock(t0).now,
		Logger:          slog.New(slog.NewTextHandler(&logs, nil)),
	})
	w.Seen("a")
	stop := start(t, w)
	stop()
	if !strings.Contains(logs.String(), "times lost") || !strings.Contains(logs.String(), "users=1") {
		t.Errorf("final failure not logged; logs:\n%s", logs.String())
	}
}

// TestLastSeenWriterRefreshBypassesBuffer: a refresh of more connected
// users than MaxPending writes every one of them (the buffer is for
// times waiting out an outage, not for the periodic refresh), and only
// rewrites users whose stored time is older than half an interval.
func TestLastSeenWriterRefreshBypassesBuffer(t *testing.T) {
	t.Parallel()
	const n, maxPending = 3000, 2000
	s := MustOpenSQLite(t)
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("u%05d", i)
	}
	clk := newClock(t0)
	var refreshes atomic.Int64
	var logs syncBuffer
	w := store.NewLastSeenWriter(s, store.LastSeenOptions{
		FlushInterval:   time.Hour,
		RefreshInterval: 2 * time.Second,
		MaxPending:      maxPending,
		Online:          func() []string { refreshes.Add(1); return users },
		Now:             clk.now,
		Logger:          slog.New(slog.NewTextHandler(&logs, nil)),
	})
	start(t, w)
	waitFor(t, "every online user written", func() bool { return seenSince(t, s, t0) == n })

	// 400 ms later is within half an interval: nothing is rewritten,
	// however many refreshes run.
	clk.set(t0.Add(400 * time.Millisecond))
	r := refreshes.Load()
	waitFor(t, "two more refreshes", func() bool { return refreshes.Load() >= r+2 })
	if got := seenSince(t, s, t0.Add(time.Millisecond)); got != 0 {
		t.Fatalf("%d fresh users rewritten", got)
	}

	later := t0.Add(time.Minute)
	clk.set(later)
	waitFor(t, "every online user rewritten", func() bool { return seenSince(t, s, later) == n })
	if strings.Contains(logs.String(), "dropped") || strings.Contains(logs.String(), "failed") {
		t.Errorf("refresh dropped or failed; logs:\n%s", logs.String())
	}
}

// TestLastSeenWriterRecordsUsers: with RecordUsers a user written from
// Seen enters the users table created at the first time it was seen, and
// keeps that time when seen again.
func TestLastSeenWriterRecordsUsers(t *testing.T) {
	t.Parallel()
	s := MustOpenSQLite(t)
	clk := newClock(t0)
	w := store.NewLastSeenWriter(s, store.LastSeenOptions{
		FlushInterval: time.Millisecond, RefreshInterval: time.Hour, RecordUsers: true, Now: clk.now, Logger: quiet,
	})
	start(t, w)
	w.Seen("a")
	w.Seen("b")
	waitFor(t, "a and b written", func() bool { return seenSince(t, s, t0) == 2 })
	next := t0.Add(24 * time.Hour)
	clk.set(next)
	w.Seen("a")
	w.Seen("c")
	waitFor(t, "a and c written", func() bool { return seenSince(t, s, next) == 2 })

	st, err := s.UserStats(context.Background(), next)
	if err != nil {
		t.Fatal(err)
	}
	if st.TotalUsers != 3 || st.NewUsersToday != 1 {
		t.Errorf("UserStats = %+v, want 3 users, 1 new today (c; a was created the day before)", st)
	}
}
