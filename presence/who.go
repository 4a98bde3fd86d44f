package presence

import (
	"context"
	"errors"
	"time"
)

// Event types: a user's cluster-wide connection count went from 0 to 1
// (EventOnline) or back to 0 (EventOffline).
const (
	EventOnline  = "online"
	EventOffline = "offline"
)

// Event is one online/offline transition of a user, decided by the store
// where the cluster-wide count changes, so that each transition is
// emitted once for the whole cluster.
type Event struct {
	// ID orders events and identifies each one; receivers deduplicate by
	// it, and it is a position ReadEvents resumes after. The Redis store
	// keeps a script call's transitions in one stream entry "<ms>-<seq>":
	// its k-th transition (from 0) is "<ms>-<seq>" for k = 0 and
	// "<ms>-<seq>.<k>" after, ordered by ms, seq, then k.
	ID   string    `json:"id"`
	Type string    `json:"type"` // EventOnline or EventOffline
	User string    `json:"userId"`
	At   time.Time `json:"at"`
}

// Reaped is what a heartbeat removed from the sums when it reaped a node
// whose lease had expired.
type Reaped struct {
	Node        string
	Users       int64 // users in the node's share
	Connections int64 // connections in the node's share, guests included
}

// UserCount is one online user and its connections on all live nodes.
type UserCount struct {
	User        string `json:"userId"`
	Connections int64  `json:"connections"`
}

// UserPage is one page of the online users.
type UserPage struct {
	Users []UserCount
	// Cursor continues the walk; "" when it is complete.
	Cursor string
	// Total is the number of online users when the page was read.
	Total int64
}

// Directory answers who is online.
type Directory interface {
	// ListUsers returns a page of online users after cursor ("" starts a
	// walk). A walk returns every user online throughout it; limit is a
	// hint (a store may return a small set whole). It returns
	// ErrBadCursor for a cursor it did not make.
	ListUsers(ctx context.Context, cursor string, limit int) (UserPage, error)
	// Connections returns each user's connections on all live nodes (0:
	// offline), in the order of users, in one round trip per shard.
	Connections(ctx context.Context, users []string) ([]int64, error)
}

// EventLog is the log of transitions a store keeps.
type EventLog interface {
	// ReadEvents returns about count events after the event with id after
	// ("" or "0-0" reads from the oldest kept), waiting up to block for
	// the first one; no event within block returns none and no error. A
	// store that keeps events in batches (the Redis store: one stream
	// entry per script call) may return the rest of the last batch beyond
	// count.
	ReadEvents(ctx context.Context, after string, count int, block time.Duration) ([]Event, error)
	// LastEventID returns the id of the newest event kept, "0-0" if none.
	LastEventID(ctx context.Context) (string, error)
}

// ErrBadCursor is returned by Directory.ListUsers for a malformed cursor.
var ErrBadCursor = errors.New("presence: invalid cursor")
