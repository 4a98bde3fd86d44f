package memstore

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/presenced/presenced/presence"
)

var (
	_ presence.Directory = (*Store)(nil)
	_ presence.EventLog  = (*Store)(nil)
)

// eventsMax bounds the events kept in memory, like the Redis stream's
// MAXLEN.
const eventsMax = 100000

// events is the in-memory log of transitions, with ids shaped like Redis
// Stream ids ("<ms>-<seq>") so that they order the same way.
type events struct {
	max    int
	list   []presence.Event
	keys   []eventKey // parallel to list
	lastMs int64
	seq    int64
	wake   chan struct{} // closed and replaced at each add
}

type eventKey struct{ ms, seq int64 }

func newEvents(max int) events {
	return events{max: max, wake: make(chan struct{})}
}

func (l *events) add(kind, user string, now time.Time) {
	ms := now.UnixMilli()
	if ms <= l.lastMs {
		ms = l.lastMs
		l.seq++
	} else {
		l.lastMs, l.seq = ms, 0
	}
	k := eventKey{ms, l.seq}
	l.list = append(l.list, presence.Event{ID: k.String(), Type: kind, User: user, At: time.UnixMilli(now.UnixMilli()).UTC()})
	l.keys = append(l.keys, k)
	if len(l.list) > l.max+l.max/10 {
		drop := len(l.list) - l.max
		l.list = slices.Delete(l.list, 0, drop)
		l.keys = slices.Delete(l.keys, 0, drop)
	}
	close(l.wake)
	l.wake = make(chan struct{})
}

func (k eventKey) String() string {
	return strconv.FormatInt(k.ms, 10) + "-" + strconv.FormatInt(k.seq, 10)
}

func (k eventKey) less(o eventKey) bool { return k.ms < o.ms || (k.ms == o.ms && k.seq < o.seq) }

func parseKey(id string) (eventKey, error) {
	if id == "" {
		return eventKey{}, nil
	}
	a, b, ok := strings.Cut(id, "-")
	ms, err1 := strconv.ParseInt(a, 10, 64)
	seq, err2 := int64(0), error(nil)
	if ok {
		seq, err2 = strconv.ParseInt(b, 10, 64)
	}
	if err1 != nil || err2 != nil {
		return eventKey{}, fmt.Errorf("memstore: read events: invalid id %q", id)
	}
	return eventKey{ms, seq}, nil
}

// ReadEvents implements presence.EventLog.
func (s *Store) ReadEvents(ctx context.Context, after string, count int, block time.Duration) ([]presence.Event, error) {
	k, err := parseKey(after)
	if err != nil {
		return nil, err
	}
	count = max(count, 1)
	var timeout <-chan time.Time
	if block > 0 {
		t := time.NewTimer(block)
		defer t.Stop()
		timeout = t.C
	}
	for {
		s.mu.Lock()
		l := &s.log
		i, _ := slices.BinarySearchFunc(l.keys, k, func(e, t eventKey) int {
			switch {
			case e.less(t):
				return -1
			case t.less(e):
				return 1
			}
			return 0
		})
		for i < len(l.keys) && !k.less(l.keys[i]) {
			i++
		}
		if i < len(l.list) {
			out := slices.Clone(l.list[i:min(len(l.list), i+count)])
			s.mu.Unlock()
			return out, nil
		}
		wake := l.wake
		s.mu.Unlock()
		if timeout == nil {
			return nil, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timeout:
			return nil, nil
		case <-wake:
		}
	}
}

// LastEventID implements presence.EventLog.
func (s *Store) LastEventID(context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.log.keys); n > 0 {
		return s.log.keys[n-1].String(), nil
	}
	return "0-0", nil
}

// ListUsers implements presence.Directory: users in id order after the
// last one of the previous page, so a walk returns each user online
// throughout it exactly once.
func (s *Store) ListUsers(_ context.Context, cursor string, limit int) (presence.UserPage, error) {
	after := ""
	if cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil || !strings.HasPrefix(string(b), "m1:") {
			return presence.UserPage{}, presence.ErrBadCursor
		}
		after = string(b[3:])
	}
	limit = max(limit, 1)
	s.mu.Lock()
	ids := make([]string, 0, len(s.users))
	for u := range s.users {
		if cursor == "" || u > after {
			ids = append(ids, u)
		}
	}
	slices.Sort(ids)
	more := len(ids) > limit
	ids = ids[:min(len(ids), limit)]
	page := presence.UserPage{Users: make([]presence.UserCount, len(ids)), Total: int64(len(s.users))}
	for i, u := range ids {
		page.Users[i] = presence.UserCount{User: u, Connections: s.users[u]}
	}
	s.mu.Unlock()
	if more {
		page.Cursor = base64.RawURLEncoding.EncodeToString([]byte("m1:" + ids[len(ids)-1]))
	}
	return page, nil
}

// Connections implements presence.Directory.
func (s *Store) Connections(_ context.Context, users []string) ([]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]int64, len(users))
	for i, u := range users {
		out[i] = s.users[u]
	}
	return out, nil
}

// Lease implements the webhook's lease: a memory store has one node, which
// always holds it.
func (s *Store) Lease(context.Context, string, time.Duration) (bool, error) { return true, nil }

// Release implements the webhook's lease.
func (s *Store) Release(context.Context, string) error { return nil }

// Position returns the webhook's position ("" when none was stored).
func (s *Store) Position(context.Context) (string, error) {
	s.posMu.Lock()
	defer s.posMu.Unlock()
	return s.position, nil
}

// SavePosition stores the webhook's position.
func (s *Store) SavePosition(_ context.Context, _ string, id string) (bool, error) {
	s.posMu.Lock()
	defer s.posMu.Unlock()
	s.position = id
	return true, nil
}
