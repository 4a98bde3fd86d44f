package main

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestGCTunerWant(t *testing.T) {
	tu := &gcTuner{percent: 50, floor: 8 << 20}
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 50},              // nothing measured yet: GOGC as asked
		{1 << 20, 800},       // 1 MiB live: 8 MiB of headroom is 800%
		{16 << 20, 50},       // 50% of 16 MiB is the floor itself
		{64 << 20, 50},       // big heaps: as asked
		{100, 10000},         // capped
		{4 << 20, 200},       // 4 MiB: 200%
		{(8 << 20) - 1, 100}, // just under 8 MiB: 100%
	} {
		if got := tu.want(c.live); got != c.want {
			t.Errorf("want(%d) = %d, want %d", c.live, got, c.want)
		}
	}
}

// TestGCTunerRetunesAfterCollections: the tuner sets GOGC at start and
// again after collections, from the live heap it then finds.
func TestGCTunerRetunesAfterCollections(t *testing.T) {
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })
	tu := startGCTuner(50, 8<<20)
	// The test binary's live heap is a few MiB: well under 16 MiB, so
	// once a collection has measured it the floor decides and GOGC is
	// above 50.
	waitGC := func(ok func(int) bool) {
		deadline := time.Now().Add(5 * time.Second)
		for !ok(tu.gcPercent()) && time.Now().Before(deadline) {
			runtime.GC()
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitGC(func(p int) bool { return p > 50 })
	if p := tu.gcPercent(); p <= 50 {
		t.Fatalf("GOGC = %d with a small heap, want above 50", p)
	}
	// A 64 MiB live heap makes 50% exceed the floor: after a collection
	// sees it, GOGC is 50.
	big := make([]byte, 64<<20)
	for i := range big {
		big[i] = byte(i)
	}
	waitGC(func(p int) bool { return p == 50 })
	if p := tu.gcPercent(); p != 50 {
		t.Fatalf("GOGC = %d with 64 MiB live, want 50", p)
	}
	runtime.KeepAlive(big)
	if got := debug.SetGCPercent(50); got != 50 {
		t.Fatalf("runtime GOGC = %d, want the tuner's 50", got)
	}
}
