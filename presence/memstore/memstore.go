// Package memstore keeps presenced's shared presence state in process
// memory: the embedded, single-node default. It follows the same contract
// as the Redis store (presence/storetest), leases and reaping included, so
// the rest of presenced cannot tell them apart.
package memstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/presenced/presenced/presence"
)

// Store is presence.Store in memory.
type Store struct {
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	nodes map[string]*node
	users map[string]int64 // user -> connections on all live nodes
	peak  int64
	day   int64 // presence.DayNumber of the peak's day

	log events // online/offline transitions

	posMu    sync.Mutex // guards position, apart from the presence state
	position string     // the webhook's position
}

type node struct {
	seq    uint64
	lease  time.Time
	users  map[string]int64
	conns  int64 // guests included
	guests int64
	info   presence.NodeInfo
}

var _ presence.Store = (*Store)(nil)

// New returns an empty Store whose heartbeats grant leases of ttl (zero
// means 6s). now is the clock, in the zone whose midnight starts a new
// day's peak (STATS_TIMEZONE); nil means time.Now in UTC.
func New(ttl time.Duration, now func() time.Time) *Store {
	if ttl == 0 {
		ttl = 6 * time.Second
	}
	if now == nil {
		now = func() time.Time { return time.Now().UTC() }
	}
	return &Store{ttl: ttl, now: now, nodes: make(map[string]*node), users: make(map[string]int64), log: newEvents(eventsMax)}
}

// Apply implements presence.Store.
func (s *Store) Apply(_ context.Context, b presence.Batch) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[b.Node]
	if n == nil {
		return 0, fmt.Errorf("memstore: apply: %w (node %s not registered)", presence.ErrResync, b.Node)
	}
	if n.seq != b.Seq-1 {
		return 0, fmt.Errorf("memstore: apply: %w (sequence %d, batch %d)", presence.ErrResync, n.seq, b.Seq)
	}
	var total int64
	for _, d := range b.Deltas {
		if n.users[d.User]+d.N < 0 {
			return 0, fmt.Errorf("memstore: apply: %w (user %s below zero)", presence.ErrResync, d.User)
		}
		total += d.N
	}
	if n.guests+b.Guests < 0 {
		return 0, fmt.Errorf("memstore: apply: %w (guests below zero)", presence.ErrResync)
	}
	now := s.now()
	for _, d := range b.Deltas {
		add(n.users, d.User, d.N)
		s.addUser(d.User, d.N, now)
	}
	n.conns += total + b.Guests
	n.guests += b.Guests
	n.seq = b.Seq
	return s.publish(), nil
}

// Sync implements presence.Store.
func (s *Store) Sync(_ context.Context, sh presence.Share) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	// Transitions compare each touched user's count before and after the
	// rewrite, as sync.lua does: a user in both shares emits nothing.
	before := make(map[string]int64)
	if old := s.nodes[sh.Node]; old != nil {
		if sh.Seq < old.seq {
			return 0, fmt.Errorf("memstore: sync: %w (sequence %d, stored %d)", presence.ErrStale, sh.Seq, old.seq)
		}
		for u := range old.users {
			before[u] = s.users[u]
		}
		for u, c := range old.users {
			add(s.users, u, -c)
		}
		delete(s.nodes, sh.Node)
	}
	n := &node{seq: sh.Seq, lease: now.Add(s.ttl), users: make(map[string]int64, len(sh.Users)), guests: sh.Guests}
	n.info.ID = sh.Node
	for u, c := range sh.Users {
		if c > 0 {
			if _, ok := before[u]; !ok {
				before[u] = s.users[u]
			}
			n.users[u] = c
			s.users[u] += c
			n.conns += c
		}
	}
	for u, b := range before {
		s.transition(u, b, s.users[u], now)
	}
	n.conns += sh.Guests
	s.nodes[sh.Node] = n
	return s.publish(), nil
}

// Heartbeat implements presence.Store.
func (s *Store) Heartbeat(_ context.Context, seq uint64, info presence.NodeInfo) ([]presence.Reaped, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	n := s.nodes[info.ID]
	current := n != nil && n.seq == seq
	if current {
		n.lease = now.Add(s.ttl)
		info.Healthy = false
		n.info = info
	}
	var reaped []presence.Reaped
	for id, m := range s.nodes {
		if !m.lease.After(now) {
			reaped = append(reaped, presence.Reaped{Node: id, Users: int64(len(m.users)), Connections: m.conns})
			s.drop(id)
		}
	}
	s.publish()
	switch {
	case n == nil:
		return reaped, fmt.Errorf("memstore: heartbeat: %w (node %s not registered)", presence.ErrResync, info.ID)
	case !current:
		return reaped, fmt.Errorf("memstore: heartbeat: %w (sequence %d, node says %d)", presence.ErrResync, n.seq, seq)
	}
	return reaped, nil
}

// Leave implements presence.Store.
func (s *Store) Leave(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop(id)
	s.publish()
	return nil
}

// Counts implements presence.Reader. A memory store never loses data, so
// the counts are never Partial.
func (s *Store) Counts(context.Context) (presence.Counts, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := presence.Counts{Users: int64(len(s.users))}
	for _, n := range s.nodes {
		c.Connections += n.conns
		c.Guests += n.guests
	}
	s.rollDay()
	c.PeakToday = s.peak
	return c, nil
}

// Nodes implements presence.Reader.
func (s *Store) Nodes(context.Context) ([]presence.NodeInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	out := make([]presence.NodeInfo, 0, len(s.nodes))
	for id, n := range s.nodes {
		info := n.info
		info.ID = id
		info.Healthy = n.lease.After(now)
		out = append(out, info)
	}
	return out, nil
}

// drop removes a node's share from the sums. s.mu must be held.
func (s *Store) drop(id string) {
	n := s.nodes[id]
	if n == nil {
		return
	}
	now := s.now()
	for u, c := range n.users {
		s.addUser(u, -c, now)
	}
	delete(s.nodes, id)
}

// publish updates the day's peak and returns the online users. s.mu must
// be held.
func (s *Store) publish() int64 {
	online := int64(len(s.users))
	s.rollDay()
	s.peak = max(s.peak, online)
	return online
}

// rollDay starts a new peak when the day of now (in now's location, which
// serve sets to STATS_TIMEZONE) has changed.
func (s *Store) rollDay() {
	if day := presence.DayNumber(s.now()); day != s.day {
		s.day, s.peak = day, int64(len(s.users))
	}
}

// addUser changes a user's cluster-wide count and emits the transition
// if it crossed 0. s.mu must be held.
func (s *Store) addUser(u string, d int64, now time.Time) {
	b := s.users[u]
	add(s.users, u, d)
	s.transition(u, b, s.users[u], now)
}

// transition emits an event if a user's count went from before to after
// across 0. s.mu must be held.
func (s *Store) transition(u string, before, after int64, now time.Time) {
	switch {
	case before <= 0 && after > 0:
		s.log.add(presence.EventOnline, u, now)
	case before > 0 && after <= 0:
		s.log.add(presence.EventOffline, u, now)
	}
}

func add(m map[string]int64, k string, d int64) {
	if v := m[k] + d; v > 0 {
		m[k] = v
	} else {
		delete(m, k)
	}
}
