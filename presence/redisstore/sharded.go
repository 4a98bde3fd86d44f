package redisstore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/keyslot"
	"github.com/presenced/presenced/presence"
)

// Sharded is presence.Store on Redis with the users split over N shards
// (PRESENCE_SHARDS=N > 1), so that presence spreads over the masters of a
// Redis Cluster instead of sitting in the one slot of a hash tag.
//
// A user belongs to shard FNV-1a(user id) mod N. Each shard is a whole
// Store of its own under its own hash tag (see ShardPrefix): its users
// hash, every node's share of its users, and the node leases, sequences,
// rewrites, reaps, repair and events stream that keep that part exact
// under faults, exactly as a Store without shards keeps the whole. Guest
// connections and the nodes' load figures are kept in shard 0.
//
// online_users (and the day's peak, <prefix>:peak:<day>) stay under the
// home prefix, the one a Store without shards uses: online_users is the
// sum of the shards' online users, kept by home.lua from the states each
// shard's scripts return. Counts sums the shards themselves, so the
// dashboard's figures are exact whenever the shards are; `GET
// online_users` lags a shard's write by one round trip, and, if a node
// dies between the two, by at most one heartbeat (every heartbeat hands
// every shard's state to home.lua).
//
// A batch, rewrite, heartbeat or reap touching several shards runs one
// script per shard, concurrently. Each shard fences its writes by the
// sequence of the last batch that touched it, which this Store remembers
// per node: a write whose outcome is unknown on one shard and known on
// another is never sent twice (the node rewrites its share instead).
type Sharded struct {
	chores // under the home prefix
	online string
	loc    *time.Location
	ttl    time.Duration
	shards []*Store
	home   *redis.Script
	poll   time.Duration // how often ReadEvents polls the shards on a Cluster; 0: one blocking XREAD

	repairs atomic.Uint64 // Repair calls: which shard repairs next

	mu     sync.Mutex
	seqs   map[string]*nodeSeqs // what the shards hold for each node this store wrote
	states []shardState         // newest state seen of each shard
	dirty  []bool               // states not yet handed to home.lua
	peak   peakMemory           // the day's peak of the sum as last seen
}

// nodeSeqs are the sequences of a node: the last the node wrote (a batch
// or a rewrite), and the one each shard holds.
type nodeSeqs struct {
	last   uint64
	shards []uint64
}

// shardState is what a shard's writing script returns about the shard.
type shardState struct {
	raw       string // "<ms>:<version>:<users>:<rewriting>"
	ms, ver   int64
	users     int64
	rewriting bool
	received  bool
}

func parseShardState(raw string) (shardState, bool) {
	f := strings.Split(raw, ":")
	if len(f) != 4 {
		return shardState{}, false
	}
	var v [3]int64
	for i := range v {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return shardState{}, false
		}
		v[i] = n
	}
	return shardState{raw: raw, ms: v[0], ver: v[1], users: v[2], rewriting: f[3] == "1", received: true}, true
}

func (a shardState) newer(b shardState) bool {
	return !b.received || a.ms > b.ms || (a.ms == b.ms && a.ver > b.ver)
}

// shardHook hands a shard's state from its Store to the Sharded.
type shardHook struct {
	s *Sharded
	i int
}

func (h *shardHook) report(raw string) {
	st, ok := parseShardState(raw)
	if !ok {
		return
	}
	s := h.s
	s.mu.Lock()
	if st.newer(s.states[h.i]) {
		// Handed over even when its count is the one this node saw
		// last: home.lua may hold another node's newer state since
		// (see pushHome).
		s.states[h.i], s.dirty[h.i] = st, true
	}
	s.mu.Unlock()
}

// MaxShards bounds PRESENCE_SHARDS: every shard gets at least 64 of the
// cluster's slots to place its hash tag in.
const MaxShards = 256

var _ presence.Store = (*Sharded)(nil)
var _ presence.Repairer = (*Sharded)(nil)
var _ presence.Directory = (*Sharded)(nil)
var _ presence.EventLog = (*Sharded)(nil)

// NewSharded returns a store that splits presence over n shards (2 ≤ n ≤
// MaxShards). o is as for New; o.Prefix is the home prefix (online_users'
// slot by default), under which the day's peak and the cluster-wide
// chores are kept, and each shard's prefix is ShardPrefix(o.Prefix, i, n).
// Each shard's events stream keeps o.EventsMaxLen/n entries (at least
// 1 000), so that together they keep about what one stream would; every
// shard takes its leases with the one token of o (one process, one
// token). It does not touch Redis.
func NewSharded(rdb redis.UniversalClient, o Options, n int) (*Sharded, error) {
	if n < 2 || n > MaxShards {
		return nil, fmt.Errorf("redisstore: %d shards: want 2 to %d", n, MaxShards)
	}
	o, err := o.complete()
	if err != nil {
		return nil, err
	}
	s := &Sharded{
		chores: chores{rdb: rdb, prefix: o.Prefix}, online: o.OnlineKey, loc: o.Location, ttl: o.NodeTTL,
		seqs: map[string]*nodeSeqs{}, states: make([]shardState, n), dirty: make([]bool, n),
	}
	if _, ok := rdb.(*redis.ClusterClient); ok {
		s.poll = 100 * time.Millisecond
	}
	for i := range n {
		so := o
		// The events streams together keep what one stream would.
		so.EventsMaxLen = max(1000, o.EventsMaxLen/int64(n))
		so.Prefix = ShardPrefix(o.Prefix, i, n)
		so.OnlineKey = so.Prefix + ":online"
		so.shard = &shardHook{s: s, i: i}
		st, err := New(rdb, so)
		if err != nil {
			return nil, err
		}
		s.shards = append(s.shards, st)
	}
	src, err := luaFiles.ReadFile("lua/home.lua")
	if err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	s.home = redis.NewScript(string(src))
	return s, nil
}

// ShardPrefix is the key prefix of shard i of n under the home prefix
// prefix: the home prefix with its hash tag T replaced by "T:<i>of<n>",
// or by "T:<i>of<n>:<j>" for the smallest j that puts the tag in the i-th
// n-th of the cluster's slots. So the shards spread evenly over masters
// that own equal ranges of slots, as redis-cli --cluster create gives
// them, and layouts with different n never share a key (a node started
// with another PRESENCE_SHARDS cannot write into this layout's shards).
func ShardPrefix(prefix string, i, n int) string {
	if i < 0 || i >= n || n > keyslot.Slots {
		panic(fmt.Sprintf("redisstore: no shard %d of %d", i, n))
	}
	tag := hashTag(prefix)
	open := strings.IndexByte(prefix, '{')
	lo, hi := i*keyslot.Slots/n, (i+1)*keyslot.Slots/n
	base := tag + ":" + strconv.Itoa(i) + "of" + strconv.Itoa(n)
	cand := base
	for j := 1; ; j++ {
		if slot := keyslot.Of("{" + cand + "}"); slot >= lo && slot < hi {
			break
		}
		cand = base + ":" + strconv.Itoa(j)
	}
	return prefix[:open+1] + cand + prefix[open+1+len(tag):]
}

// shardOf returns the shard of user.
func (s *Sharded) shardOf(user string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(user))
	return int(h.Sum32() % uint32(len(s.shards)))
}

// each runs fn for every shard in idx concurrently and returns their
// errors, by position in idx.
func (s *Sharded) each(idx []int, fn func(i int) error) []error {
	errs := make([]error, len(idx))
	if len(idx) == 1 {
		errs[0] = fn(idx[0])
		return errs
	}
	var wg sync.WaitGroup
	for k, i := range idx {
		wg.Add(1)
		go func() { defer wg.Done(); errs[k] = fn(i) }()
	}
	wg.Wait()
	return errs
}

func (s *Sharded) all() []int {
	idx := make([]int, len(s.shards))
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// seqsOf returns the sequences the shards hold for node when the node's
// last write was last, as far as this store knows; ok is false when the
// node's last write this store saw was another (a write the caller thinks
// applied was not: the node must rewrite its share). A node this store
// never wrote is taken at its word: every shard is asked for last.
func (s *Sharded) seqsOf(node string, last uint64) (held []uint64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	held = make([]uint64, len(s.shards))
	ns := s.seqs[node]
	if ns == nil {
		for i := range held {
			held[i] = last
		}
		return held, true
	}
	copy(held, ns.shards)
	return held, ns.last == last
}

// wrote records that shard i holds seq for node, the node's last write.
func (s *Sharded) wrote(node string, i int, seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := s.seqs[node]
	if ns == nil {
		ns = &nodeSeqs{shards: make([]uint64, len(s.shards))}
		s.seqs[node] = ns
	}
	ns.shards[i], ns.last = seq, seq
}

// pushHome hands the shards' states to home.lua (all of them with
// heartbeat set, else those not handed over yet) and returns online_users
// as it sets it; home.lua renews its expiry (two leases). With nothing to
// hand over it returns the local sum.
//
// Every write that may change a shard's users hands its state over before
// it returns (so before a connection it counted is greeted): home.lua then
// holds that state or a newer one, whose count includes the write. A
// state is handed over even when its count equals the last this node saw,
// since home.lua may hold another node's newer state with another count.
func (s *Sharded) pushHome(ctx context.Context, heartbeat bool) (int64, error) {
	s.mu.Lock()
	args := []any{len(s.shards), s.ttl.Milliseconds(), s.peak.get()}
	var sent []int
	var sum int64
	for i, st := range s.states {
		sum += st.users
		if st.received && (heartbeat || s.dirty[i]) {
			args = append(args, i, st.raw)
			sent = append(sent, i)
			s.dirty[i] = false
		}
	}
	s.mu.Unlock()
	if len(sent) == 0 && !heartbeat {
		return sum, nil
	}
	res, err := s.home.Run(ctx, s.rdb, []string{s.online, s.prefix + ":shards", peakKey(s.prefix, s.loc, time.Now())}, args...).Slice()
	if err == nil && len(res) != 3 {
		err = fmt.Errorf("unexpected reply %v", res)
	}
	if err != nil {
		s.mu.Lock()
		for _, i := range sent {
			s.dirty[i] = true
		}
		s.mu.Unlock()
		return sum, wrap("home", err)
	}
	s.peak.remember(fmt.Sprint(res[2]))
	return toInt(res[0]), nil
}

// Apply implements presence.Store: one script per shard the batch
// touches, concurrently. When some shards applied their part and others
// did not, it returns an error that makes the node rewrite its share
// (never presence.ErrNotApplied, which would send the applied parts
// again).
func (s *Sharded) Apply(ctx context.Context, b presence.Batch) (int64, error) {
	parts := make([][]presence.Delta, len(s.shards))
	for _, d := range b.Deltas {
		i := s.shardOf(d.User)
		parts[i] = append(parts[i], d)
	}
	var idx []int
	for i, p := range parts {
		if len(p) > 0 || (i == 0 && (b.Guests != 0 || len(b.Deltas) == 0)) {
			idx = append(idx, i)
		}
	}
	prev, ok := s.seqsOf(b.Node, b.Seq-1)
	if !ok {
		return 0, fmt.Errorf("redisstore: apply: %w (sequence %d does not follow the node's last write)", presence.ErrResync, b.Seq)
	}
	errs := s.each(idx, func(i int) error {
		sb := presence.Batch{Node: b.Node, Seq: b.Seq, Deltas: parts[i]}
		if i == 0 {
			sb.Guests = b.Guests
		}
		// Half the time left first: a part found not applied (read back
		// after a timeout) is sent once more, so that one lost reply
		// does not leave the batch applied on some shards only.
		half, cancel := firstTry(ctx, s.ttl)
		_, err := s.shards[i].applyAfter(half, sb, prev[i])
		cancel()
		if errors.Is(err, presence.ErrNotApplied) && ctx.Err() == nil {
			_, err = s.shards[i].applyAfter(ctx, sb, prev[i])
		}
		if err == nil {
			s.wrote(b.Node, i, b.Seq)
		}
		return err
	})
	if err := combine(errs, true); err != nil {
		return 0, err
	}
	online, err := s.pushHome(ctx, false)
	if errors.Is(err, ErrLayout) {
		return 0, err
	}
	return online, nil
}

// combine returns nil when every shard succeeded; otherwise the first
// ErrNodeTaken, ErrStale or ErrResync, or else the first other error, or
// else (every failure was presence.ErrNotApplied) ErrNotApplied when
// notApplied allows it and no shard changed anything, and an error that
// wraps none of them when some shards did.
func combine(errs []error, notApplied bool) error {
	var decisive, other, notApp error
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, presence.ErrNotApplied):
			notApp = err
		case errors.Is(err, presence.ErrNodeTaken), errors.Is(err, presence.ErrStale), errors.Is(err, presence.ErrResync):
			if decisive == nil {
				decisive = err
			}
		case other == nil:
			other = err
		}
	}
	switch {
	case decisive != nil:
		return decisive
	case other != nil:
		return other
	case notApp == nil:
		return nil
	case notApplied && ok == 0:
		return notApp
	}
	return fmt.Errorf("redisstore: batch applied on %d of %d shards only: %s", ok, len(errs), notApp.Error())
}

// Sync implements presence.Store: every shard rewrites the node's part of
// it (an empty part too: it registers the node there), concurrently.
func (s *Sharded) Sync(ctx context.Context, sh presence.Share) (int64, error) {
	parts := make([]map[string]int64, len(s.shards))
	for i := range parts {
		parts[i] = map[string]int64{}
	}
	for u, n := range sh.Users {
		parts[s.shardOf(u)][u] = n
	}
	errs := s.each(s.all(), func(i int) error {
		part := presence.Share{Node: sh.Node, Seq: sh.Seq, Users: parts[i], Rejoin: sh.Rejoin}
		if i == 0 {
			part.Guests = sh.Guests
		}
		_, err := s.shards[i].Sync(ctx, part)
		if err == nil {
			s.wrote(sh.Node, i, sh.Seq)
		}
		return err
	})
	if err := combine(errs, false); err != nil {
		return 0, err
	}
	online, err := s.pushHome(ctx, false)
	if errors.Is(err, ErrLayout) {
		return 0, err
	}
	return online, nil
}

// Heartbeat implements presence.Store: every shard renews the node's
// lease and reaps its part of the dead nodes, concurrently; then every
// shard's state goes to home.lua, which also renews online_users'
// expiry. Reaps finished on several shards are summed per node.
func (s *Sharded) Heartbeat(ctx context.Context, seq uint64, info presence.NodeInfo) ([]presence.Reaped, error) {
	raw, err := nodeInfoJSON(info)
	if err != nil {
		return nil, fmt.Errorf("redisstore: heartbeat: %w", err)
	}
	held, current := s.seqsOf(info.ID, seq)
	if !current {
		for i := range held {
			held[i] = seq // every shard answers RESYNC, and still reaps
		}
	}
	// The shards get three quarters of the time left: a shard whose
	// master is down takes all it is given, and the states must still go
	// home (see below).
	sctx := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		sctx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(dl)*3/4))
		defer cancel()
	}
	reaped := make([][]presence.Reaped, len(s.shards))
	errs := s.each(s.all(), func(i int) error {
		figures := ""
		if i == 0 {
			figures = raw
		}
		return twice(sctx, s.shards[i].callTimeout, func(ctx context.Context) error {
			var err error
			reaped[i], err = s.shards[i].beat(ctx, info.ID, held[i], figures)
			return err
		})
	})
	out := mergeReaped(reaped)
	// The states go home even when some shard failed (its master is down,
	// say): online_users stays the sum of the newest states seen and its
	// expiry is renewed, instead of vanishing two leases later while the
	// other shards and the home key are served.
	_, herr := s.pushHome(ctx, true)
	if err := combine(errs, false); err != nil {
		return out, err
	}
	if herr != nil {
		return out, herr
	}
	return out, nil
}

// twice runs fn with half the time ctx has left (at most limit), and
// once more with the rest when its outcome is unknown (a timeout, a broken
// connection). It is for the calls that may run twice: a heartbeat (the
// lease is renewed again and the retry reaps on from where the first left
// off; only the reaps the first finished go unreported), the repair, and
// reads (a node's figures, the counts). With N shards each of those is N calls,
// and without the retry one lost reply in any of them would fail it.
func twice(ctx context.Context, limit time.Duration, fn func(context.Context) error) error {
	cctx, cancel := firstTry(ctx, limit)
	err := fn(cctx)
	cancel()
	if err != nil && ctx.Err() == nil && !errors.Is(err, presence.ErrNoData) && unknownOutcome(ctx, err) {
		return fn(ctx)
	}
	return err
}

// firstTry is the context of a first try that leaves time for a second:
// half the time ctx has left, and at most limit.
func firstTry(ctx context.Context, limit time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok {
		limit = min(limit, time.Until(dl)/2)
	}
	return context.WithTimeout(ctx, limit)
}

// mergeReaped sums, per node, the reaps finished on each shard.
func mergeReaped(per [][]presence.Reaped) []presence.Reaped {
	var out []presence.Reaped
	at := map[string]int{}
	for _, rs := range per {
		for _, r := range rs {
			if k, ok := at[r.Node]; ok {
				out[k].Users += r.Users
				out[k].Connections += r.Connections
				continue
			}
			at[r.Node] = len(out)
			out = append(out, r)
		}
	}
	return out
}

// Leave implements presence.Store on every shard, concurrently.
func (s *Sharded) Leave(ctx context.Context, node string) error {
	errs := s.each(s.all(), func(i int) error { return s.shards[i].Leave(ctx, node) })
	s.mu.Lock()
	delete(s.seqs, node)
	s.mu.Unlock()
	if err := combine(errs, false); err != nil {
		return err
	}
	_, err := s.pushHome(ctx, false)
	return err
}

// Repair implements presence.Repairer: the node's parts of the shards,
// read in one transaction per shard and summed, are checked against users,
// conns and guests; and one shard, the next in turn for this node, checks
// a slice of its users hash against its shares (repair.lua), so that a
// node's repair costs about what it costs without shards, and the shards
// are covered as fast, each being 1/N of the users.
func (s *Sharded) Repair(ctx context.Context, node string, seq uint64, users, conns, guests int64) (int64, error) {
	held, current := s.seqsOf(node, seq)
	if !current {
		users, conns, guests = -1, -1, -1
	}
	figures := make([]shareFigures, len(s.shards))
	errs := s.each(s.all(), func(i int) error {
		return twice(ctx, s.shards[i].callTimeout, func(ctx context.Context) error {
			var err error
			figures[i], err = s.shards[i].figures(ctx, node, held[i])
			return err
		})
	})
	if err := combine(errs, false); err != nil {
		return 0, err
	}
	k := int(s.repairs.Add(1) % uint64(len(s.shards)))
	var fixed int64
	err := twice(ctx, s.shards[k].callTimeout, func(ctx context.Context) error {
		var err error
		fixed, _, err = s.shards[k].repairShare(ctx, node, held[k], -1, -1, -1)
		return err
	})
	if err != nil {
		return fixed, err
	}
	if fixed > 0 { // a repair that changed nothing need not be handed over
		if _, err := s.pushHome(ctx, false); err != nil {
			return fixed, err
		}
	}
	var sum shareFigures
	for _, f := range figures {
		if f.Users < 0 {
			return fixed, nil // a shard holds another sequence: the heartbeat says so
		}
		sum.Users, sum.Conns, sum.Guests = sum.Users+f.Users, sum.Conns+f.Conns, sum.Guests+f.Guests
	}
	if (users >= 0 && sum.Users != users) || (conns >= 0 && sum.Conns != conns) || (guests >= 0 && sum.Guests != guests) {
		return fixed, fmt.Errorf("redisstore: repair: %w (the shares in Redis hold %d users, %d connections, %d guests; the node %d, %d, %d)",
			presence.ErrResync, sum.Users, sum.Conns, sum.Guests, users, conns, guests)
	}
	return fixed, nil
}

// Counts implements presence.Reader: the sums of the shards' counts, read
// concurrently, and the day's peak of the sum. It returns
// presence.ErrNoData when no shard holds a count, and Partial while any
// shard is recovering or holds none.
func (s *Sharded) Counts(ctx context.Context) (presence.Counts, error) {
	per := make([]presence.Counts, len(s.shards))
	errs := s.each(s.all(), func(i int) error {
		return twice(ctx, s.shards[i].callTimeout, func(ctx context.Context) error {
			var err error
			per[i], err = s.shards[i].Counts(ctx)
			return err
		})
	})
	var c presence.Counts
	missing := 0
	for i, err := range errs {
		switch {
		case errors.Is(err, presence.ErrNoData):
			missing++
		case err != nil:
			return presence.Counts{}, err
		default:
			c.Users += per[i].Users
			c.Connections += per[i].Connections
			c.Guests += per[i].Guests
			c.Partial = c.Partial || per[i].Partial
		}
	}
	if missing == len(s.shards) {
		return presence.Counts{}, presence.ErrNoData
	}
	c.Partial = c.Partial || missing > 0
	var peak int64
	err := twice(ctx, s.ttl, func(ctx context.Context) error {
		var err error
		peak, err = s.rdb.Get(ctx, peakKey(s.prefix, s.loc, time.Now())).Int64()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		return err
	})
	if err != nil {
		return presence.Counts{}, wrap("counts", err)
	}
	c.PeakToday = peak
	if !c.Partial {
		c.PeakToday = max(peak, c.Users)
	}
	return c, nil
}

// Nodes implements presence.Reader from shard 0, which holds the leases
// and load figures every node keeps in every shard.
func (s *Sharded) Nodes(ctx context.Context) ([]presence.NodeInfo, error) {
	return s.shards[0].Nodes(ctx)
}

// Connections implements presence.Directory: one HMGET per shard holding
// any of users, concurrently.
func (s *Sharded) Connections(ctx context.Context, users []string) ([]int64, error) {
	out := make([]int64, len(users))
	at := make([][]int, len(s.shards)) // positions in users, per shard
	for k, u := range users {
		i := s.shardOf(u)
		at[i] = append(at[i], k)
	}
	var idx []int
	for i, a := range at {
		if len(a) > 0 {
			idx = append(idx, i)
		}
	}
	errs := s.each(idx, func(i int) error {
		ask := make([]string, len(at[i]))
		for j, k := range at[i] {
			ask[j] = users[k]
		}
		got, err := s.shards[i].Connections(ctx, ask)
		for j, k := range at[i] {
			if err == nil {
				out[k] = got[j]
			}
		}
		return err
	})
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ListUsers implements presence.Directory: the shards walked one after
// the other, each with HSCAN; a page goes on into the next shards while
// it has room, and the cursor says which shard and where in it. Total is
// the sum of the shards' users.
func (s *Sharded) ListUsers(ctx context.Context, cursor string, limit int) (presence.UserPage, error) {
	shard, inner, err := decodeShardCursor(cursor, len(s.shards))
	if err != nil {
		return presence.UserPage{}, err
	}
	limit = max(limit, 1)
	var page presence.UserPage
	for shard < len(s.shards) && len(page.Users) < limit {
		part, err := s.shards[shard].ListUsers(ctx, inner, limit-len(page.Users))
		if err != nil {
			return presence.UserPage{}, err
		}
		page.Users = append(page.Users, part.Users...)
		if part.Cursor != "" {
			inner = part.Cursor
			continue
		}
		shard, inner = shard+1, ""
	}
	if shard < len(s.shards) {
		page.Cursor = encodeShardCursor(shard, inner)
	}
	totals := make([]int64, len(s.shards))
	errs := s.each(s.all(), func(i int) error {
		var err error
		totals[i], err = s.rdb.HLen(ctx, s.shards[i].prefix+":users").Result()
		return err
	})
	for i, err := range errs {
		if err != nil {
			return presence.UserPage{}, fmt.Errorf("redisstore: list users: %w", err)
		}
		page.Total += totals[i]
	}
	return page, nil
}

func encodeShardCursor(shard int, inner string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("s1:" + strconv.Itoa(shard) + ":" + inner))
}

func decodeShardCursor(c string, n int) (int, string, error) {
	if c == "" {
		return 0, "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	rest, ok := strings.CutPrefix(string(b), "s1:")
	if err != nil || !ok {
		return 0, "", presence.ErrBadCursor
	}
	num, inner, _ := strings.Cut(rest, ":")
	shard, err := strconv.Atoi(num)
	if err != nil || shard < 0 || shard >= n {
		return 0, "", presence.ErrBadCursor
	}
	if _, err := decodeCursor(inner); err != nil {
		return 0, "", presence.ErrBadCursor
	}
	return shard, inner, nil
}

// Event positions with shards: the position after an event is the list of
// every shard's own position ("e<N>:<id 0>,<id 1>,..."), so that a reader
// resumes each shard's stream where it left it. Each event's ID is the
// position right after it, so IDs are unique and resumable, as
// presence.EventLog asks.

func encodePositions(pos []string) string {
	return "e" + strconv.Itoa(len(pos)) + ":" + strings.Join(pos, ",")
}

func decodePositions(after string, n int) ([]string, error) {
	pos := make([]string, n)
	if after == "" || after == "0-0" {
		for i := range pos {
			pos[i] = "0-0"
		}
		return pos, nil
	}
	rest, ok := strings.CutPrefix(after, "e"+strconv.Itoa(n)+":")
	f := strings.Split(rest, ",")
	if !ok || len(f) != n {
		return nil, fmt.Errorf("redisstore: event position %q is not one of %d shards", after, n)
	}
	return f, nil
}

// LastEventID implements presence.EventLog: every shard's newest event.
func (s *Sharded) LastEventID(ctx context.Context) (string, error) {
	pos := make([]string, len(s.shards))
	errs := s.each(s.all(), func(i int) error {
		var err error
		pos[i], err = s.shards[i].LastEventID(ctx)
		return err
	})
	for _, err := range errs {
		if err != nil {
			return "", err
		}
	}
	return encodePositions(pos), nil
}

// ReadEvents implements presence.EventLog: the events after after on
// every shard (each read as Store.ReadEvents reads, concurrently), in the
// order of their times. When there are none yet and block > 0 it waits:
// on one server (or through Sentinel) in one XREAD BLOCK on every
// shard's stream; on a Cluster, where one XREAD cannot span slots, by
// reading the shards again every 100 ms until block has passed.
func (s *Sharded) ReadEvents(ctx context.Context, after string, count int, block time.Duration) ([]presence.Event, error) {
	pos, err := decodePositions(after, len(s.shards))
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(block)
	for {
		per, err := s.readShards(ctx, pos, count)
		if err != nil {
			return nil, err
		}
		if anyEvents(per) || !time.Now().Before(deadline) {
			out := mergeEvents(per, pos)
			if len(out) > max(count, 1) {
				// Each shard gave up to count events: the earliest count
				// of them are the earliest of all, and the last one's
				// position covers exactly those.
				out = out[:max(count, 1)]
			}
			return out, nil
		}
		if s.poll == 0 {
			if err := s.waitTogether(ctx, pos, time.Until(deadline)); err != nil {
				return nil, err
			}
			deadline = time.Now() // read once more, then return
			continue
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(min(s.poll, time.Until(deadline))):
		}
	}
}

// readShards reads every shard's events after its position, concurrently.
func (s *Sharded) readShards(ctx context.Context, pos []string, count int) ([][]presence.Event, error) {
	per := make([][]presence.Event, len(s.shards))
	errs := s.each(s.all(), func(i int) error {
		var err error
		per[i], err = s.shards[i].ReadEvents(ctx, pos[i], count, 0)
		return err
	})
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return per, nil
}

// waitTogether waits up to block for an entry after pos in any shard's
// stream, in one XREAD (one server holds every stream).
func (s *Sharded) waitTogether(ctx context.Context, pos []string, block time.Duration) error {
	if block <= 0 {
		return nil
	}
	streams := make([]string, 0, 2*len(pos))
	for _, sh := range s.shards {
		streams = append(streams, sh.events)
	}
	for _, p := range pos {
		at, err := parseEventID(p)
		if err != nil {
			return err
		}
		streams = append(streams, at.entry)
	}
	ctx, cancel := context.WithTimeout(ctx, block+time.Second)
	defer cancel()
	err := s.rdb.XRead(ctx, &redis.XReadArgs{Streams: streams, Count: 1, Block: block}).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("redisstore: read events: %w", err)
	}
	return nil
}

func anyEvents(per [][]presence.Event) bool {
	for _, evs := range per {
		if len(evs) > 0 {
			return true
		}
	}
	return false
}

// mergeEvents orders the shards' events by time (a shard's own order
// kept) and gives each the position after it.
func mergeEvents(per [][]presence.Event, pos []string) []presence.Event {
	type item struct {
		ev    presence.Event
		shard int
	}
	var all []item
	for i, evs := range per {
		for _, ev := range evs {
			all = append(all, item{ev, i})
		}
	}
	sort.SliceStable(all, func(a, b int) bool { return all[a].ev.At.Before(all[b].ev.At) })
	out := make([]presence.Event, len(all))
	cur := append([]string(nil), pos...)
	for k, it := range all {
		cur[it.shard] = it.ev.ID
		it.ev.ID = encodePositions(cur)
		out[k] = it.ev
	}
	return out
}

// ErrLayout is wrapped by CheckLayout's error when live nodes use the keys
// with another number of shards, and by a write's error when home.lua
// refuses it for that reason.
var ErrLayout = errors.New("presence keys in use with another PRESENCE_SHARDS")

// CheckLayout returns an error wrapping ErrLayout when the presence keys under prefix are in
// use with another number of shards than n: nodes with different
// PRESENCE_SHARDS would each count only their own layout's users and
// overwrite each other's online_users. It looks at what live nodes keep:
// the home hash of a sharded layout (which expires two leases after the
// last heartbeat) and the leases of a layout without shards.
func CheckLayout(ctx context.Context, rdb redis.UniversalClient, prefix string, n int) error {
	stored, err := rdb.HGet(ctx, prefix+":shards", "n").Int()
	switch {
	case errors.Is(err, redis.Nil):
	case err != nil:
		return fmt.Errorf("redisstore: read the presence layout: %w", err)
	case stored != n:
		return fmt.Errorf("%w: live nodes split presence under %s over %d shards, not %d; every node must run with the same PRESENCE_SHARDS", ErrLayout, prefix, stored, n)
	}
	if n == 1 {
		return nil
	}
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		return fmt.Errorf("redisstore: read the presence layout: %w", err)
	}
	live, err := rdb.ZCount(ctx, prefix+":nodes", strconv.FormatInt(now.UnixMilli(), 10), "+inf").Result()
	if err != nil {
		return fmt.Errorf("redisstore: read the presence layout: %w", err)
	}
	if live > 0 {
		return fmt.Errorf("%w: %d live nodes keep presence under %s without shards (PRESENCE_SHARDS=1), not %d; every node must run with the same PRESENCE_SHARDS", ErrLayout, live, prefix, n)
	}
	return nil
}
