package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presenced/presenced/auth"
	"github.com/presenced/presenced/presence"
)

// MaxWatch is the most users one connection may watch.
const MaxWatch = 500

// MaxUserIDBytes bounds one watched user id.
const MaxUserIDBytes = 256

// Watcher is one connection that watches users. Presence is called with
// the hub's lock held, in the order of the changes: it must not block and
// must not call back into the Hub (queue and return).
type Watcher interface {
	Presence(user string, online bool)
}

// ErrTooMany is returned by Watch for a list over MaxWatch users.
var ErrTooMany = fmt.Errorf("events: at most %d users may be watched", MaxWatch)

// ErrBadID is returned by Watch for a user id no token can carry (see
// auth.CheckUserID): empty, too long, not UTF-8 or with a control character.
var ErrBadID = fmt.Errorf("events: a user id must be 1-%d bytes of UTF-8 without control characters", MaxUserIDBytes)

// Hub fans the feed's events out to watchers through an index user ->
// watchers, so an event costs a map lookup plus one send per watcher of
// that user, and a connection costs one index entry per watched user
// (bounded by MaxWatch).
type Hub struct {
	dir    presence.Directory
	logger *slog.Logger

	mu        sync.Mutex
	byUser    map[string]map[Watcher]uint8 // state last sent: unknown, online, offline
	byWatcher map[Watcher]*watchList
	watched   atomic.Int64 // index entries
}

const (
	sentNone uint8 = iota
	sentOnline
	sentOffline
)

type watchList struct {
	ids []string
	gen uint64
}

// NewHub returns a Hub that reads current states from dir.
func NewHub(dir presence.Directory, logger *slog.Logger) *Hub {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Hub{dir: dir, logger: logger, byUser: map[string]map[Watcher]uint8{}, byWatcher: map[Watcher]*watchList{}}
}

// Watch replaces w's watched users with ids (duplicates ignored) and sends
// w their current state as soon as it is read, then every change. It
// returns ErrTooMany or ErrBadID, changing nothing, for a bad list.
func (h *Hub) Watch(w Watcher, ids []string) error {
	uniq := make([]string, 0, len(ids))
	seen := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		if auth.CheckUserID(id) != nil { // 1-256 bytes of UTF-8, no control characters
			return ErrBadID
		}
		if _, ok := seen[id]; !ok {
			seen[id] = struct{}{}
			uniq = append(uniq, id)
		}
	}
	if len(uniq) > MaxWatch {
		return ErrTooMany
	}
	h.mu.Lock()
	old := h.byWatcher[w]
	gen := uint64(1)
	if old != nil {
		gen = old.gen + 1
		h.dropLocked(w, old)
	}
	if len(uniq) == 0 {
		h.mu.Unlock()
		return nil
	}
	h.byWatcher[w] = &watchList{ids: uniq, gen: gen}
	for _, id := range uniq {
		m := h.byUser[id]
		if m == nil {
			m = make(map[Watcher]uint8, 1)
			h.byUser[id] = m
		}
		m[w] = sentNone
	}
	h.watched.Add(int64(len(uniq)))
	h.mu.Unlock()
	go h.initial(w, uniq, gen)
	return nil
}

// initial reads the current state of ids and sends it for each user that
// no event has reached since the watch began: an event sent meanwhile is
// at least as new as the state read (an older one is followed by the
// newer ones still in the feed).
func (h *Hub) initial(w Watcher, ids []string, gen uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conns, err := h.dir.Connections(ctx, ids)
	if err != nil {
		h.logger.Debug("events: cannot read watched users' state", "err", err)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if l := h.byWatcher[w]; l == nil || l.gen != gen {
		return // replaced or gone meanwhile
	}
	for i, id := range ids {
		m := h.byUser[id]
		if m == nil || m[w] != sentNone {
			continue
		}
		online := conns[i] > 0
		m[w] = state(online)
		w.Presence(id, online)
	}
}

func state(online bool) uint8 {
	if online {
		return sentOnline
	}
	return sentOffline
}

// Unwatch stops everything w watches.
func (h *Hub) Unwatch(w Watcher) {
	h.mu.Lock()
	if l := h.byWatcher[w]; l != nil {
		h.dropLocked(w, l)
	}
	h.mu.Unlock()
}

func (h *Hub) dropLocked(w Watcher, l *watchList) {
	for _, id := range l.ids {
		if m := h.byUser[id]; m != nil {
			delete(m, w)
			if len(m) == 0 {
				delete(h.byUser, id)
			}
		}
	}
	delete(h.byWatcher, w)
	h.watched.Add(-int64(len(l.ids)))
}

// Deliver sends events to the watchers of their users; subscribe it to
// the node's Feed. A watcher is told only changes from what it was sent.
func (h *Hub) Deliver(evs []presence.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range evs {
		m := h.byUser[e.User]
		if len(m) == 0 {
			continue
		}
		online := e.Type == presence.EventOnline
		st := state(online)
		for w, sent := range m {
			if sent != st {
				m[w] = st
				w.Presence(e.User, online)
			}
		}
	}
}

// Watchers returns the number of connections watching users.
func (h *Hub) Watchers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.byWatcher)
}

// Watched returns the number of (connection, user) pairs watched.
func (h *Hub) Watched() int64 { return h.watched.Load() }

// IsLimit reports whether err is a bad watch list (ErrTooMany, ErrBadID).
func IsLimit(err error) bool { return errors.Is(err, ErrTooMany) || errors.Is(err, ErrBadID) }
