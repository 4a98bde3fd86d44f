package memstore_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/presence/memstore"
)

// TestPeakStartsAtLocalMidnight: the peak of the day restarts when the
// clock's own zone reaches midnight, not at 00:00 UTC.
func TestPeakStartsAtLocalMidnight(t *testing.T) {
	t.Parallel()
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	var ns atomic.Int64
	set := func(t time.Time) { ns.Store(t.UnixNano()) }
	// 22:30 UTC on 2025-06-01 is 00:30 on 2025-06-02 in Berlin (CEST).
	beforeUTCMidnight := time.Date(2025, 6, 1, 21, 30, 0, 0, time.UTC)
	set(beforeUTCMidnight)
	s := memstore.New(time.Hour, func() time.Time { return time.Unix(0, ns.Load()).In(berlin) })
	ctx := context.Background()
	peak := func() int64 {
		c, err := s.Counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return c.PeakToday
	}
	if _, err := s.Sync(ctx, presence.Share{Node: "n", Seq: 1, Users: map[string]int64{"a": 1, "b": 1, "c": 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, presence.Batch{Node: "n", Seq: 2, Deltas: []presence.Delta{{User: "b", N: -1}, {User: "c", N: -1}}}); err != nil {
		t.Fatal(err)
	}
	if p := peak(); p != 3 {
		t.Fatalf("peak at 23:30 Berlin = %d, want 3", p)
	}
	set(beforeUTCMidnight.Add(time.Hour)) // 00:30 in Berlin, 22:30 UTC
	if p := peak(); p != 1 {
		t.Fatalf("peak after Berlin midnight = %d, want 1 (a new day there)", p)
	}
}
