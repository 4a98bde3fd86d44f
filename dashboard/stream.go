package dashboard

import (
	"context"
	"sync"
	"time"
)

// StreamEvery is how often the shared stream poller recomputes the
// overview while anyone is subscribed: a change shows on the stream within
// about this long.
const StreamEvery = 50 * time.Millisecond

// StreamMaxEvents is how many changes the stream sends in any one second,
// at most; a change beyond that waits, and the newest value is sent once
// the second has passed.
const StreamMaxEvents = 4

// Stream shares one overview poller among every subscriber of a node (the
// SSE streams): however many streams are open, the overview is computed
// once per StreamEvery, and not at all when none is; a change is sent at
// once unless StreamMaxEvents have gone out in the last second. It is
// safe for concurrent use.
type Stream struct {
	svc *Service

	mu      sync.Mutex
	subs    int
	cur     Overview
	ver     uint64        // bumped on every change; 0 until the first value
	changed chan struct{} // closed and replaced on every change
	stop    context.CancelFunc
	done    chan struct{} // closed when the running poller has returned
}

// Subscription is one subscriber's view of a Stream.
type Subscription struct {
	st     *Stream
	closed bool
}

// Stream returns the Service's shared overview stream.
func (s *Service) Stream() *Stream {
	s.streamOnce.Do(func() {
		s.stream = &Stream{svc: s, changed: make(chan struct{})}
	})
	return s.stream
}

// Subscribe registers a subscriber, starting the poller if it is the
// first. Close the Subscription when done.
func (st *Stream) Subscribe() *Subscription {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.subs++
	if st.subs == 1 {
		if st.done != nil {
			// The previous poller may still be finishing its last round.
			done := st.done
			st.mu.Unlock()
			<-done
			st.mu.Lock()
		}
		if st.stop == nil {
			ctx, cancel := context.WithCancel(context.Background())
			st.stop, st.done = cancel, make(chan struct{})
			go st.poll(ctx, st.done)
		}
	}
	return &Subscription{st: st}
}

// Latest returns the current overview, its version (0 before the first
// value) and a channel closed when a newer one is available.
func (sub *Subscription) Latest() (Overview, uint64, <-chan struct{}) {
	st := sub.st
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.cur, st.ver, st.changed
}

// Close unregisters the subscriber; the poller stops with the last one.
func (sub *Subscription) Close() {
	st := sub.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if sub.closed {
		return
	}
	sub.closed = true
	st.subs--
	if st.subs == 0 && st.stop != nil {
		st.stop()
		st.stop = nil
	}
}

// Subscribers returns the number of open subscriptions.
func (st *Stream) Subscribers() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.subs
}

func (st *Stream) poll(ctx context.Context, done chan struct{}) {
	defer close(done)
	tick := time.NewTicker(StreamEvery)
	defer tick.Stop()
	var sent [StreamMaxEvents]time.Time // the last changes' times, oldest at next
	next := 0
	for {
		o := st.svc.Overview(ctx)
		if ctx.Err() != nil {
			return
		}
		if now := time.Now(); now.Sub(sent[next]) >= time.Second && st.publish(o) {
			sent[next] = now
			next = (next + 1) % len(sent)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// publish stores o when it differs from the current value in anything but
// its timestamp, and wakes every subscriber. It reports whether it did.
func (st *Stream) publish(o Overview) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	a, b := o, st.cur
	a.GeneratedAt, b.GeneratedAt = time.Time{}, time.Time{}
	if st.ver > 0 && a == b {
		return false
	}
	st.cur = o
	st.ver++
	close(st.changed)
	st.changed = make(chan struct{})
	return true
}
