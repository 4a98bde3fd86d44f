// Package presence is the domain of presenced: who is connected to this
// node (Tracker) and the shared state that sums every node's connections
// into the cluster-wide online count (Store).
//
// The package does no I/O of its own. presence/redisstore keeps the shared
// state in Redis (managed mode), presence/memstore keeps it in process
// memory (the embedded, single-node default), and both pass the contract
// tests in presence/storetest.
package presence

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrResync is returned by Store.Apply and Store.Heartbeat when the store
// does not hold the node's share as the node last left it: the node was
// reaped (it missed its lease), or the store lost data (a restart without
// persistence, FLUSHALL, a failover to a replica that lagged). The caller
// must rewrite its whole share with Store.Sync.
var ErrResync = errors.New("presence: node share missing or out of date, resync needed")

// ErrNodeTaken is returned by Store.Sync when another process holds the
// node id: its lease is live and carries another process's token (two
// processes started with one NODE_ID). Nothing is changed. The id is free
// again once that lease expires.
var ErrNodeTaken = errors.New("presence: node id held by another live process")

// NodeTakenError is the ErrNodeTaken a store returns when it can say
// until when the holder's lease runs: a lease that keeps moving forward
// means the holder is alive, not a crashed process whose lease has yet
// to run out.
type NodeTakenError struct {
	Node  string
	Lease int64 // the holder's lease expiry on the store's clock (ms)
}

func (e *NodeTakenError) Error() string {
	return fmt.Sprintf("presence: node id %s held by another live process (lease until %d)", e.Node, e.Lease)
}

// Is makes errors.Is(err, ErrNodeTaken) true.
func (e *NodeTakenError) Is(target error) bool { return target == ErrNodeTaken }

// ErrRefused is wrapped by stores whose server answers but refuses writes
// (Redis at maxmemory under noeviction, a read-only replica): the counts
// it serves are frozen, not lost.
var ErrRefused = errors.New("presence: store refuses writes")

// ErrNotApplied is returned by Store.Apply when the call failed in a way
// that left its outcome unknown (a timeout, a broken connection) and the
// store, read back, says the batch was not applied: nothing changed, and
// the batch may be sent again with the same Seq (a late copy of the first
// one cannot apply after it, since both need Seq-1).
var ErrNotApplied = errors.New("presence: batch not applied")

// ErrStale is returned by Store.Sync when the store holds a newer
// sequence from this process than the rewrite's: a late call of an
// abandoned attempt. Nothing is changed.
var ErrStale = errors.New("presence: rewrite older than the stored one refused")

// ErrNoData is returned by Reader.Counts when the store holds no count at
// all (for example a Redis that has just come back empty).
var ErrNoData = errors.New("presence: no online count in store")

// Counts is the cluster-wide presence picture.
type Counts struct {
	Users       int64 // unique online users (the online_users key)
	Connections int64 // all live connections, guests included
	Guests      int64 // anonymous connections
	PeakToday   int64 // highest Users seen today (from midnight in STATS_TIMEZONE)

	// Partial is true while the store is being rebuilt after it lost
	// data: some nodes may not have rewritten their share yet, so Users
	// may be below the truth. Readers should prefer another source.
	Partial bool
}

// Delta is a change of one user's connection count on one node.
type Delta struct {
	User string
	N    int64
}

// Batch is a set of per-user deltas from one node, applied atomically.
type Batch struct {
	Node string
	// Seq is the node's sequence number after this batch. The store must
	// hold Seq-1 for the node, or Apply returns ErrResync.
	Seq    uint64
	Deltas []Delta
	Guests int64 // change in guest connections
}

// Share is a node's whole contribution to the shared state.
type Share struct {
	Node   string
	Seq    uint64
	Users  map[string]int64 // user -> live connections on the node (> 0)
	Guests int64
	// Rejoin is set when the node has written its share before. (The
	// Redis store no longer needs it: it marks every new data set as
	// recovering, whoever writes first, since a node that just started
	// cannot tell a first start from data loss either.)
	Rejoin bool
}

// NodeInfo is what a node publishes about itself with each heartbeat, for
// the server-load stats.
type NodeInfo struct {
	ID          string  `json:"id"`
	Host        string  `json:"host"`
	PID         int     `json:"pid"`
	Version     string  `json:"version"`
	Connections int64   `json:"connections"`
	Users       int64   `json:"users"`
	Guests      int64   `json:"guests"`
	CPUPercent  float64 `json:"cpuPercent"`
	MemoryBytes uint64  `json:"memoryBytes"`
	Goroutines  int     `json:"goroutines"`
	// Transports counts the node's connections by transport ("websocket"
	// for /ws, "socketio-websocket", "socketio-polling").
	Transports    map[string]int64 `json:"transports,omitempty"`
	StartedAt     time.Time        `json:"startedAt"`
	LastHeartbeat time.Time        `json:"lastHeartbeat"`
	// Healthy is set by the reader: the node's lease has not expired.
	Healthy bool `json:"healthy"`
}

// Reader reads the cluster-wide presence picture.
type Reader interface {
	// Counts returns the cluster-wide counts, or ErrNoData.
	Counts(ctx context.Context) (Counts, error)
	// Nodes returns the load figures of every node whose lease is live.
	Nodes(ctx context.Context) ([]NodeInfo, error)
}

// Store is the shared presence state of a cluster. Each node writes only
// its own share; the store keeps the sum of all live shares exact.
// Implementations are safe for concurrent use, but a node calls Apply,
// Sync, Heartbeat and Leave from one goroutine so its Seq stays ordered.
type Store interface {
	Reader

	// Apply adds the batch's deltas to the node's share and to the
	// cluster sums, and returns the number of online users after it.
	// It returns ErrResync, changing nothing, when the node is not
	// registered or its stored Seq is not b.Seq-1.
	Apply(ctx context.Context, b Batch) (online int64, err error)

	// Sync replaces the node's share (removing the old one from the sums),
	// registers the node with a fresh lease and returns the online users.
	Sync(ctx context.Context, s Share) (online int64, err error)

	// Heartbeat renews the node's lease, stores its load figures and reaps
	// every node whose lease has expired, returning what it reaped (the
	// reaping is done, and returned, even with ErrResync). It returns
	// ErrResync when the node is not registered or its stored Seq differs
	// from seq.
	Heartbeat(ctx context.Context, seq uint64, info NodeInfo) ([]Reaped, error)

	// Leave removes the node's share and lease.
	Leave(ctx context.Context, node string) error
}

// Publisher is implemented by a Reader that takes this node's load
// figures when there is no Store to heartbeat (the external counter's
// reader), so that the server-load stats and the connection count cover
// every node. A Tracker without a Store publishes every heartbeat.
type Publisher interface {
	Publish(ctx context.Context, info NodeInfo) error
}

// Repairer is implemented by stores that can lose parts of their data
// while staying up (Redis evicting keys under an allkeys-* policy). A
// Tracker calls Repair after every heartbeat.
type Repairer interface {
	// Repair checks that the store holds the node's share as the node
	// holds it (its users, connections and guests as of seq; -1 skips a
	// figure the node cannot vouch for), returning ErrResync when it
	// does not, and checks a bounded slice of the cluster sums against
	// the shares, fixing what differs. It returns how many users it
	// fixed.
	Repair(ctx context.Context, node string, seq uint64, users, conns, guests int64) (fixed int64, err error)
}

// DayNumber numbers t's calendar day in t's location: days from
// 1970-01-01 to that date. Peaks of the day are kept per DayNumber, so
// the zone of t decides when "today" starts; for UTC it is Unix/86400.
func DayNumber(t time.Time) int64 {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
}
