// Package events carries the online/offline transitions that the presence
// store decides (presence.EventLog) to the parts of a node that act on
// them: one Feed per node reads the log, and a Hub fans the events out to
// the connections watching those users.
package events

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/presenced/presenced/presence"
)

// Feed reads the event log from its newest event on (one reader per node,
// whatever the number of watchers) and hands each batch to its
// subscribers, in order.
type Feed struct {
	log    presence.EventLog
	logger *slog.Logger
	block  time.Duration

	mu    sync.Mutex
	subs  []func([]presence.Event)
	start string // set by Start
}

// NewFeed returns a Feed on log; call Subscribe, then Run.
func NewFeed(log presence.EventLog, logger *slog.Logger) *Feed {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Feed{log: log, logger: logger, block: time.Second}
}

// Subscribe adds fn, called from Run's goroutine with every batch of
// events; fn must not block.
func (f *Feed) Subscribe(fn func([]presence.Event)) {
	f.mu.Lock()
	f.subs = append(f.subs, fn)
	f.mu.Unlock()
}

// Start finds the newest event now, so that Run delivers every event from
// here on even if it begins later (call it before serving clients). If
// the log cannot be read, Run finds its start itself.
func (f *Feed) Start(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if id, err := f.log.LastEventID(ctx); err == nil {
		f.mu.Lock()
		f.start = id
		f.mu.Unlock()
	}
}

// Run reads the log until ctx is done. Events kept in the log while the
// store is unreachable are delivered when it returns.
func (f *Feed) Run(ctx context.Context) {
	const minBackoff, maxBackoff = 100 * time.Millisecond, 2 * time.Second
	backoff, down := minBackoff, false
	fail := func(err error) bool {
		if ctx.Err() != nil {
			return false
		}
		if !down {
			f.logger.Warn("events: cannot read the event log; retrying", "err", err)
			down = true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
		return true
	}
	f.mu.Lock()
	after := f.start
	f.mu.Unlock()
	for after == "" {
		id, err := f.log.LastEventID(ctx)
		if err != nil {
			if !fail(err) {
				return
			}
			continue
		}
		after = id
	}
	for ctx.Err() == nil {
		evs, err := f.log.ReadEvents(ctx, after, 500, f.block)
		if err != nil {
			if errors.Is(err, context.Canceled) || !fail(err) {
				return
			}
			continue
		}
		if down {
			f.logger.Info("events: reading the event log again")
			down, backoff = false, minBackoff
		}
		if len(evs) == 0 {
			continue
		}
		after = evs[len(evs)-1].ID
		f.mu.Lock()
		subs := f.subs
		f.mu.Unlock()
		for _, fn := range subs {
			fn(evs)
		}
	}
}
