package main

import (
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"sync"
)

// gcTuner sets GOGC after every collection so that the next one comes
// after percent% of the live heap has been allocated, but never after less
// than floor bytes.
//
// presenced runs at GOGC=50 so that RSS stays near 1.5x the live heap with
// many idle connections (BENCHMARKS.md). With few connections the live heap
// is ~1 MiB, and 50% of it is half a megabyte of headroom: a busy admin
// endpoint allocating ~100 MiB/s then collects ~90 times a second, and those
// back-to-back cycles (each taking a core's quarter for marking) are the
// overview's latency tail. The floor keeps small heaps from collecting that
// often; it costs at most floor bytes of RSS, and once the live heap is big
// (percent% of it above floor) the tuner changes nothing.
type gcTuner struct {
	percent int
	floor   uint64

	mu      sync.Mutex
	current int
	sample  []rtmetrics.Sample
}

// gcTunerOnce starts serve's tuner once per process (tests run serve
// several times in one).
var gcTunerOnce sync.Once

// startGCTuner applies percent at once and retunes after each collection
// for the life of the process.
func startGCTuner(percent int, floor uint64) *gcTuner {
	t := &gcTuner{percent: percent, floor: floor, current: -2,
		sample: []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	t.tune()
	t.arm()
	return t
}

// gcSentinel holds a pointer so that it is never batched by the tiny
// allocator (whose objects' finalizers may not run).
type gcSentinel struct{ t *gcTuner }

// arm leaves an unreachable object whose finalizer runs after the next
// collection, retunes, and arms again.
func (t *gcTuner) arm() {
	runtime.SetFinalizer(&gcSentinel{t: t}, func(s *gcSentinel) {
		s.t.tune()
		s.t.arm()
	})
}

// want is the GOGC for a live heap of live bytes.
func (t *gcTuner) want(live uint64) int {
	p := t.percent
	if live > 0 && live*uint64(p)/100 < t.floor {
		p = int(min(t.floor*100/live, 10000))
	}
	return p
}

func (t *gcTuner) tune() {
	t.mu.Lock()
	defer t.mu.Unlock()
	rtmetrics.Read(t.sample)
	var live uint64
	if v := t.sample[0].Value; v.Kind() == rtmetrics.KindUint64 {
		live = v.Uint64()
	}
	if p := t.want(live); p != t.current {
		debug.SetGCPercent(p)
		t.current = p
	}
}

// gcPercent is the GOGC the tuner last set.
func (t *gcTuner) gcPercent() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.current
}
