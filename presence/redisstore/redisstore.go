// Package redisstore keeps presenced's shared presence state in Redis
// (managed mode), and reads a counter another program keeps (external
// mode).
//
// Every write is one Lua script (lua/*.lua, embedded) that changes a
// node's share and the cluster sums together and rewrites online_users
// from the users hash, so `GET online_users` is always the exact number of
// unique online users and never negative. All presence keys share the hash
// tag of the key prefix.
package redisstore

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/presence"
)

//go:embed lua/*.lua
var luaFiles embed.FS

// Options configures a Store. The zero value of each field means the
// documented default.
type Options struct {
	// Prefix starts every presence key; zero means "{presence}". It must
	// contain a {hash tag} so that all keys land in one Cluster slot.
	Prefix string
	// OnlineKey is the string key holding the online count; zero means
	// "online_users".
	OnlineKey string
	// NodeTTL is the lease a heartbeat grants; zero means 6s.
	NodeTTL time.Duration
	// RecoveryWindow is how long after a node finds that Redis lost its
	// data Counts reports Partial, because other nodes may not have
	// rewritten their shares yet. Zero means 3s; set it a little above the
	// heartbeat interval, since every node notices at its next heartbeat.
	RecoveryWindow time.Duration
	// Location is STATS_TIMEZONE: the day's peak is kept under a key per
	// calendar day in it; nil means UTC. Every node must use the same.
	Location *time.Location
}

// Store is presence.Store on Redis.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	online string
	ttl    time.Duration
	window time.Duration
	loc    *time.Location

	apply, sync, heartbeat, leave, counts, nodes *redis.Script
}

var _ presence.Store = (*Store)(nil)

// New returns a Store that uses rdb. It does not touch Redis.
func New(rdb redis.UniversalClient, o Options) (*Store, error) {
	if o.Prefix == "" {
		o.Prefix = "{presence}"
	}
	if o.OnlineKey == "" {
		o.OnlineKey = "online_users"
	}
	if o.NodeTTL == 0 {
		o.NodeTTL = 6 * time.Second
	}
	if o.RecoveryWindow == 0 {
		o.RecoveryWindow = 3 * time.Second
	}
	if o.Location == nil {
		o.Location = time.UTC
	}
	if o.NodeTTL < time.Millisecond {
		return nil, fmt.Errorf("redisstore: node TTL %v too short", o.NodeTTL)
	}
	if !strings.Contains(o.Prefix, "{") || !strings.Contains(o.Prefix, "}") {
		return nil, fmt.Errorf("redisstore: key prefix %q has no {hash tag}", o.Prefix)
	}
	s := &Store{rdb: rdb, prefix: o.Prefix, online: o.OnlineKey, ttl: o.NodeTTL, window: o.RecoveryWindow, loc: o.Location}
	lib, err := luaFiles.ReadFile("lua/lib.lua")
	if err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	for name, dst := range map[string]**redis.Script{
		"apply": &s.apply, "sync": &s.sync, "heartbeat": &s.heartbeat,
		"leave": &s.leave, "counts": &s.counts, "nodes": &s.nodes,
	} {
		src, err := luaFiles.ReadFile("lua/" + name + ".lua")
		if err != nil {
			return nil, fmt.Errorf("redisstore: %w", err)
		}
		*dst = redis.NewScript(string(lib) + "\n" + string(src))
	}
	return s, nil
}

// keys returns the KEYS every script takes (see lua/lib.lua).
func (s *Store) keys(node string) []string {
	p := s.prefix
	return []string{
		p + ":nodes", p + ":users", p + ":conns", p + ":guests", p + ":seq",
		s.online, p + ":epoch", p + ":node:" + node, p + ":nodeinfo:" + node,
		s.PeakKey(time.Now()),
	}
}

// PeakKey names the key holding the peak of t's day, the day taken in
// Options.Location: <prefix>:peak:<days since 1970-01-01>.
func (s *Store) PeakKey(t time.Time) string {
	return s.prefix + ":peak:" + strconv.FormatInt(presence.DayNumber(t.In(s.loc)), 10)
}

// Apply implements presence.Store.
func (s *Store) Apply(ctx context.Context, b presence.Batch) (int64, error) {
	args := make([]any, 0, 5+2*len(b.Deltas))
	args = append(args, s.prefix, b.Node, strconv.FormatUint(b.Seq-1, 10), strconv.FormatUint(b.Seq, 10), b.Guests)
	for _, d := range b.Deltas {
		args = append(args, d.User, d.N)
	}
	n, err := s.apply.Run(ctx, s.rdb, s.keys(b.Node), args...).Int64()
	if err != nil {
		return 0, wrap("apply", err)
	}
	return n, nil
}

// Sync implements presence.Store.
func (s *Store) Sync(ctx context.Context, sh presence.Share) (int64, error) {
	lost := int64(0)
	if sh.Rejoin {
		lost = s.window.Milliseconds()
	}
	args := make([]any, 0, 7+2*len(sh.Users))
	args = append(args, s.prefix, sh.Node, strconv.FormatUint(sh.Seq, 10), s.ttl.Milliseconds(), sh.Guests, "", lost)
	for u, n := range sh.Users {
		if n > 0 {
			args = append(args, u, n)
		}
	}
	n, err := s.sync.Run(ctx, s.rdb, s.keys(sh.Node), args...).Int64()
	if err != nil {
		return 0, wrap("sync", err)
	}
	return n, nil
}

// Heartbeat implements presence.Store.
func (s *Store) Heartbeat(ctx context.Context, seq uint64, info presence.NodeInfo) error {
	info.Healthy = false // set by readers, not stored
	raw, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("redisstore: heartbeat: %w", err)
	}
	err = s.heartbeat.Run(ctx, s.rdb, s.keys(info.ID),
		s.prefix, info.ID, strconv.FormatUint(seq, 10), s.ttl.Milliseconds(), raw, s.window.Milliseconds()).Err()
	return wrap("heartbeat", err)
}

// Leave implements presence.Store.
func (s *Store) Leave(ctx context.Context, node string) error {
	return wrap("leave", s.leave.Run(ctx, s.rdb, s.keys(node), s.prefix, node).Err())
}

// Counts implements presence.Reader. It returns presence.ErrNoData when
// Redis holds no online count (it came back empty and no node has
// written yet), and marks the counts Partial while nodes rewrite the
// shares Redis lost.
func (s *Store) Counts(ctx context.Context) (presence.Counts, error) {
	res, err := s.counts.Run(ctx, s.rdb, s.keys(""), s.prefix).Slice()
	if err != nil {
		return presence.Counts{}, wrap("counts", err)
	}
	if len(res) != 6 {
		return presence.Counts{}, fmt.Errorf("redisstore: counts: unexpected reply %v", res)
	}
	if res[0] == nil || toInt(res[4]) == 0 {
		return presence.Counts{}, presence.ErrNoData
	}
	users, err := strconv.ParseInt(fmt.Sprint(res[0]), 10, 64)
	if err != nil {
		return presence.Counts{}, fmt.Errorf("redisstore: counts: %s holds %q, not a number", s.online, res[0])
	}
	return presence.Counts{
		Users:       max(users, 0),
		Connections: max(toInt(res[1]), 0),
		Guests:      max(toInt(res[2]), 0),
		PeakToday:   toInt(res[3]),
		Partial:     toInt(res[5]) == 1,
	}, nil
}

// Nodes implements presence.Reader.
func (s *Store) Nodes(ctx context.Context) ([]presence.NodeInfo, error) {
	res, err := s.nodes.Run(ctx, s.rdb, s.keys(""), s.prefix).Slice()
	if err != nil {
		return nil, wrap("nodes", err)
	}
	if len(res) == 0 {
		return nil, fmt.Errorf("redisstore: nodes: empty reply")
	}
	now := toInt(res[0])
	out := make([]presence.NodeInfo, 0, (len(res)-1)/3)
	for i := 1; i+2 < len(res); i += 3 {
		id := fmt.Sprint(res[i])
		lease, _ := strconv.ParseFloat(fmt.Sprint(res[i+1]), 64)
		info := presence.NodeInfo{ID: id}
		if raw, ok := res[i+2].(string); ok {
			if err := json.Unmarshal([]byte(raw), &info); err != nil {
				return nil, fmt.Errorf("redisstore: nodes: load figures of %s: %w", id, err)
			}
		}
		info.ID = id
		info.Healthy = int64(lease) > now
		out = append(out, info)
	}
	return out, nil
}

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if strings.HasPrefix(err.Error(), "RESYNC") {
		return fmt.Errorf("redisstore: %s: %w (%s)", op, presence.ErrResync, err.Error())
	}
	return fmt.Errorf("redisstore: %s: %w", op, err)
}

func toInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}

// External reads the online count that another program keeps in a plain
// string key (PRESENCE_MODE=external). It writes nothing.
type External struct {
	rdb redis.UniversalClient
	key string
}

var _ presence.Reader = (*External)(nil)

// NewExternal returns a reader of key (zero means "online_users").
func NewExternal(rdb redis.UniversalClient, key string) *External {
	if key == "" {
		key = "online_users"
	}
	return &External{rdb: rdb, key: key}
}

// Counts implements presence.Reader. Only Users is known; a negative value
// (an INCR/DECR counter that drifted) is reported as 0.
func (e *External) Counts(ctx context.Context) (presence.Counts, error) {
	n, err := e.rdb.Get(ctx, e.key).Int64()
	if errors.Is(err, redis.Nil) {
		return presence.Counts{}, presence.ErrNoData
	}
	if err != nil {
		return presence.Counts{}, fmt.Errorf("redisstore: get %s: %w", e.key, err)
	}
	return presence.Counts{Users: max(n, 0)}, nil
}

// Nodes implements presence.Reader: an external counter knows no nodes.
func (e *External) Nodes(context.Context) ([]presence.NodeInfo, error) { return nil, nil }

// ClaimMinute elects one node per minute for cluster-wide chores such as
// writing the history point: the first caller for minute t wins.
func (s *Store) ClaimMinute(ctx context.Context, t time.Time) (bool, error) {
	key := s.prefix + ":history:" + strconv.FormatInt(t.Unix()/60, 10)
	ok, err := s.rdb.SetNX(ctx, key, "1", 2*time.Minute).Result()
	if err != nil {
		return false, fmt.Errorf("redisstore: claim minute: %w", err)
	}
	return ok, nil
}
