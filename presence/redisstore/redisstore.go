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
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/presence"
)

//go:embed lua/*.lua
var luaFiles embed.FS

// Options configures a Store. The zero value of each field means the
// documented default.
type Options struct {
	// Prefix starts every presence key; zero means OnlineKey's own hash
	// tag, or OnlineKey itself as the tag ("{online_users}"), so that every
	// key lands in the Cluster slot of OnlineKey and `GET online_users`
	// keeps working on a Cluster. It must contain a {hash tag}.
	Prefix string
	// OnlineKey is the string key holding the online count; zero means
	// "online_users".
	OnlineKey string
	// NodeTTL is the lease a heartbeat grants; zero means 6s.
	NodeTTL time.Duration
	// RecoveryWindow is how long Counts reports Partial after a new data
	// set is created (whoever writes first: Redis cannot tell a cluster's
	// first start from data loss), because live nodes may not have
	// rewritten their shares yet. Zero means 3s; set it a little above the
	// heartbeat interval, since every node notices at its next heartbeat.
	RecoveryWindow time.Duration
	// EventsMaxLen bounds the events stream (<prefix>:transitions) to about
	// this many transitions: each entry (one per script call) is written
	// with XADD MAXLEN ~ EventsMaxLen / its transitions (see flush in
	// lua/lib.lua), so it may hold more; zero means 100000.
	EventsMaxLen int64
	// Location is STATS_TIMEZONE: the day's peak is kept under a key per
	// calendar day in it; nil means UTC. Every node must use the same.
	Location *time.Location
	// Token identifies this process in the leases it takes; zero means a
	// random one. Two processes that use one node id have different
	// tokens, so the second is refused (presence.ErrNodeTaken) while the
	// first one's lease is live, and neither can write or remove a share
	// the other owns.
	Token string
	// RepairBudget bounds the hash reads of one Repair call, so that it
	// holds Redis for well under a millisecond; zero means 256.
	RepairBudget int
	// Budget bounds the users one script call changes: a rewrite (Sync)
	// is sent in chunks of Budget users and a reap takes Budget users per
	// call, so that no script holds Redis for more than a few
	// milliseconds whatever a share's size (see "Bounded scripts" in
	// BENCHMARKS.md). Zero means 500.
	Budget int
	// CallTimeout bounds each script call of an operation that takes
	// several (Sync, and the reaping in Heartbeat and Leave), within the
	// context's own deadline; zero means NodeTTL/4.
	CallTimeout time.Duration

	// shard is set by Sharded for each of its shards: the writing
	// scripts then also return the shard's state (see shardTrailer),
	// handed to shard.report.
	shard *shardHook
}

// Store is presence.Store on Redis.
type Store struct {
	chores // rdb and prefix, and the cluster-wide chores kept under the prefix
	online string
	ttl    time.Duration
	window time.Duration
	events string // the events stream
	loc    *time.Location
	token  string

	apply, sync, heartbeat, leave, counts, nodes *redis.Script
	repair, reap                                 *redis.Script

	budget      int64 // RepairBudget
	chunk       int   // Budget
	callTimeout time.Duration
	cursors     sync.Map // node -> cursor of its own share's scan (string)

	peak peakMemory // the day's peak as last seen (see restore_peak in lib.lua)

	shard *shardHook // nil unless this Store is a shard of a Sharded
}

var _ presence.Store = (*Store)(nil)

// complete returns o with every zero field set to its documented default
// (a random Token among them), or an error naming what is invalid.
func (o Options) complete() (Options, error) {
	if o.OnlineKey == "" {
		o.OnlineKey = "online_users"
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix(o.OnlineKey)
	}
	if o.NodeTTL == 0 {
		o.NodeTTL = 6 * time.Second
	}
	if o.RecoveryWindow == 0 {
		o.RecoveryWindow = 3 * time.Second
	}
	if o.EventsMaxLen <= 0 {
		o.EventsMaxLen = 100000
	}
	if o.Location == nil {
		o.Location = time.UTC
	}
	if o.NodeTTL < time.Millisecond {
		return o, fmt.Errorf("redisstore: node TTL %v too short", o.NodeTTL)
	}
	if hashTag(o.Prefix) == "" {
		return o, fmt.Errorf("redisstore: key prefix %q has no {hash tag}", o.Prefix)
	}
	if o.Token == "" {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		o.Token = hex.EncodeToString(b)
	}
	if strings.Contains(o.Token, ":") {
		return o, fmt.Errorf("redisstore: lease token %q holds a colon", o.Token)
	}
	if o.RepairBudget <= 0 {
		o.RepairBudget = 256
	}
	if o.Budget <= 0 {
		o.Budget = 500
	}
	if o.Budget > 3000 {
		return o, fmt.Errorf("redisstore: budget %d above 3000 users per call", o.Budget)
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = o.NodeTTL / 4
	}
	return o, nil
}

// New returns a Store that uses rdb. It does not touch Redis.
func New(rdb redis.UniversalClient, o Options) (*Store, error) {
	o, err := o.complete()
	if err != nil {
		return nil, err
	}
	s := &Store{chores: chores{rdb: rdb, prefix: o.Prefix}, online: o.OnlineKey, ttl: o.NodeTTL, window: o.RecoveryWindow, loc: o.Location, token: o.Token,
		budget: int64(o.RepairBudget), chunk: o.Budget, callTimeout: o.CallTimeout, events: o.Prefix + ":transitions", shard: o.shard}
	lib, err := luaFiles.ReadFile("lua/lib.lua")
	if err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	// The named KEYS indexes (see keys), the recovery window, the budget
	// and the events stream's bound, for lib.lua.
	head := fmt.Sprintf("local K_OLD, K_REWRITE, K_REAPING, K_REPAIR = %d, %d, %d, %d\nlocal RECOVERY_MS, BUDGET = %d, %d\nlocal EVENTS_MAXLEN = %d\n",
		kOld+1, kRewrite+1, kReaping+1, kRepair+1, o.RecoveryWindow.Milliseconds(), o.Budget, o.EventsMaxLen)
	for name, dst := range map[string]**redis.Script{
		"apply": &s.apply, "sync": &s.sync, "heartbeat": &s.heartbeat,
		"leave": &s.leave, "counts": &s.counts, "nodes": &s.nodes,
		"repair": &s.repair, "reap": &s.reap,
	} {
		src, err := luaFiles.ReadFile("lua/" + name + ".lua")
		if err != nil {
			return nil, fmt.Errorf("redisstore: %w", err)
		}
		body := head + string(lib) + "\n" + string(src)
		if s.shard != nil && name != "counts" && name != "nodes" {
			body = head + string(lib) + "\nlocal function main()\n" + string(src) + "\nend\n" + shardTrailer
		}
		*dst = redis.NewScript(body)
	}
	return s, nil
}

// shardTrailer ends every writing script of a shard (whose body becomes
// the function main): the script's reply comes back as {reply, state},
// where state is "<ms>:<version>:<users>:<rewriting>": the shard's Redis
// clock and write counter (together they order the states of one shard,
// across data loss too), its number of online users and 1 while a share
// is being rewritten in it (its count is then not the truth, and the
// day's peak is not raised from it). Errors pass through unchanged.
const shardTrailer = `
local reply = main()
if type(reply) == 'table' and reply.err then
  return reply
end
local version = redis.call('HINCRBY', KEYS[7], 'version', 1)
local rewriting = 0
if redis.call('HLEN', KEYS[K_REWRITE]) > 0 then
  rewriting = 1
end
return {reply, now_ms() .. ':' .. version .. ':' .. redis.call('HLEN', KEYS[2]) .. ':' .. rewriting}
`

// run runs one of the store's scripts. For a shard it takes the shard's
// state off the reply (see shardTrailer) and reports it, so that the
// returned command holds what the script itself returned.
func (s *Store) run(ctx context.Context, sc *redis.Script, keys []string, args ...any) *redis.Cmd {
	cmd := sc.Run(ctx, s.rdb, keys, args...)
	if s.shard == nil || cmd.Err() != nil {
		return cmd
	}
	out := redis.NewCmd(ctx)
	v, ok := cmd.Val().([]any)
	if !ok || len(v) != 2 {
		out.SetErr(fmt.Errorf("redisstore: shard %s: unexpected reply %v", s.prefix, cmd.Val()))
		return out
	}
	s.shard.report(fmt.Sprint(v[1]))
	out.SetVal(v[0])
	return out
}

// Positions in keys of the keys lib.lua names K_*.
const (
	kOld = 10 + iota
	kRewrite
	kReaping
	kRepair
)

// keys returns the KEYS every script takes (see lua/lib.lua). go-redis
// routes a script by KEYS[1], and every key here shares the prefix's hash
// tag, which by default is the slot of the online key itself.
//
// extra are a script's own keys, after the common ones; the day's peak
// (<prefix>:peak:<day>, the day in STATS_TIMEZONE, which only this side
// knows) always comes last, where lib.lua's peak_key finds it. Some keys
// are named inside the scripts, at run time, and cannot be listed here:
// when a heartbeat or a listing finds other nodes, their <prefix>:node:<id>,
// <prefix>:old:<id> and <prefix>:nodeinfo:<id> keys, and the shares being
// reaped (<prefix>:reap:<id>:s and :o). They are built from
// the same prefix, so they hash to the same slot as KEYS[1]; Redis Cluster
// serves a script's undeclared keys when they are in a slot of the node
// running it, and these always are (a script without a shebang flag is
// not held to its declared keys). TestOnCluster runs every script,
// reaping included, on a real cluster.
func (s *Store) keys(node string, extra ...string) []string {
	p := s.prefix
	k := []string{
		p + ":nodes", p + ":users", p + ":conns", p + ":guests", p + ":seq",
		s.online, p + ":epoch", p + ":node:" + node, p + ":nodeinfo:" + node,
		s.events,
		p + ":old:" + node, p + ":rewrite", p + ":reaping", p + ":repair",
	}
	k = append(k, extra...)
	return append(k, s.PeakKey(time.Now()))
}

// PeakKey names the key holding the peak of t's day, the day taken in
// Options.Location: <prefix>:peak:<days since 1970-01-01>.
func (s *Store) PeakKey(t time.Time) string { return peakKey(s.prefix, s.loc, t) }

// peakKey names the key under prefix holding the peak of t's day in loc.
func peakKey(prefix string, loc *time.Location, t time.Time) string {
	return prefix + ":peak:" + strconv.FormatInt(presence.DayNumber(t.In(loc)), 10)
}

// seq is how a node's sequence is stored: "<n>:<token>". The token makes
// a sequence from another process with the same node id never match, so
// apply.lua and heartbeat.lua answer RESYNC to it; sync.lua and
// leave.lua read the owner from it (lease_owner in lib.lua).
func (s *Store) seq(n uint64) string { return strconv.FormatUint(n, 10) + ":" + s.token }

// Apply implements presence.Store.
func (s *Store) Apply(ctx context.Context, b presence.Batch) (int64, error) {
	return s.applyAfter(ctx, b, b.Seq-1)
}

// applyAfter is Apply for a store that holds prev as the node's sequence
// (a shard holds the sequence of the last batch that touched it).
func (s *Store) applyAfter(ctx context.Context, b presence.Batch, prev uint64) (int64, error) {
	args := make([]any, 0, 5+2*len(b.Deltas))
	args = append(args, s.prefix, b.Node, s.seq(prev), s.seq(b.Seq), b.Guests)
	for _, d := range b.Deltas {
		args = append(args, d.User, d.N)
	}
	n, err := s.run(ctx, s.apply, s.keys(b.Node), args...).Int64()
	if err != nil && unknownOutcome(ctx, err) {
		// The batch may or may not have been applied: the stored
		// sequence says which (a late copy of it cannot apply after
		// that, since it must find b.Seq-1).
		held, online, rerr := s.readBack(ctx, b.Node)
		switch {
		case rerr != nil:
			return 0, wrap("apply", err)
		case held == s.seq(b.Seq):
			return online, nil
		case held == s.seq(prev):
			return 0, fmt.Errorf("redisstore: apply: %w (%w)", presence.ErrNotApplied, err)
		default:
			return 0, fmt.Errorf("redisstore: apply: %w (the stored sequence is %q after %v)", presence.ErrResync, held, err)
		}
	}
	if err != nil {
		return 0, wrap("apply", err)
	}
	return n, nil
}

// unknownOutcome reports whether err leaves it unknown if a script ran: a
// timeout or a broken connection, not an answer from Redis, and not this
// process shutting down.
func unknownOutcome(ctx context.Context, err error) bool {
	var re redis.Error
	if errors.As(err, &re) {
		return false
	}
	return !errors.Is(ctx.Err(), context.Canceled)
}

// readBack returns the node's stored sequence ("" when it has none) and
// the online count, in one snapshot, on a context of its own: the
// caller's has usually just run out.
func (s *Store) readBack(ctx context.Context, node string) (seq string, online int64, err error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.callTimeout)
	defer cancel()
	var held *redis.StringCmd
	var count *redis.IntCmd
	_, err = s.rdb.TxPipelined(rctx, func(p redis.Pipeliner) error {
		held = p.HGet(rctx, s.prefix+":seq", node)
		count = p.HLen(rctx, s.prefix+":users")
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return "", 0, err
	}
	return held.Val(), count.Val(), nil
}

// readRewrite returns the node's stored sequence and the state of its
// rewrite in progress ("" when none), in one snapshot.
func (s *Store) readRewrite(ctx context.Context, node string) (seq, state string, err error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.callTimeout)
	defer cancel()
	var held, st *redis.StringCmd
	_, err = s.rdb.TxPipelined(rctx, func(p redis.Pipeliner) error {
		held = p.HGet(rctx, s.prefix+":seq", node)
		st = p.HGet(rctx, s.prefix+":rewrite", node)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return "", "", err
	}
	return held.Val(), st.Val(), nil
}

// Sync implements presence.Store. The share is written in chunks of
// Budget users, one script call each (see lua/sync.lua); sh.Seq must be
// fresh for every attempt: a rewrite whose sequence is not above the one
// stored for this process is refused (presence.ErrStale). A call whose
// outcome is unknown (a timeout, a broken connection) is settled by
// reading back the attempt's progress, and the rewrite goes on from there.
// Readers see Counts.Partial until it is done.
func (s *Store) Sync(ctx context.Context, sh presence.Share) (int64, error) {
	pairs := make([]any, 0, 2*len(sh.Users))
	for u, n := range sh.Users {
		if n > 0 {
			pairs = append(pairs, u, n)
		}
	}
	per := 2 * s.chunk
	chunks := (len(pairs) + per - 1) / per
	seq, keys := s.seq(sh.Seq), s.keys(sh.Node)
	done := 0 // chunks Redis holds
	for {
		k, chunk := done+1, []any(nil)
		if k > chunks {
			k = 0
		} else {
			chunk = pairs[(k-1)*per : min(len(pairs), k*per)]
		}
		args := make([]any, 0, 9+len(chunk))
		args = append(args, s.prefix, sh.Node, seq, s.ttl.Milliseconds(), sh.Guests, "", s.peak.get(), k, chunks)
		args = append(args, chunk...)
		cctx, cancel := context.WithTimeout(ctx, s.callTimeout)
		res, err := s.run(cctx, s.sync, keys, args...).Slice()
		cancel()
		if err != nil && unknownOutcome(ctx, err) {
			held, state, rerr := s.readRewrite(ctx, sh.Node)
			switch {
			case rerr != nil:
				return 0, wrap("sync", err)
			case held == seq && state == "":
				// Done: the reply of the last call was lost.
				return s.onlineNow(ctx)
			case held == seq:
				done = rewriteDone(state, sh.Seq)
			default:
				done = 0 // the attempt has not begun in Redis (or was reaped): begin again
			}
			if ctx.Err() != nil {
				return 0, wrap("sync", err)
			}
			continue
		}
		if rest, ok := strings.CutPrefix(fmt.Sprint(err), "TAKEN "); ok && err != nil {
			lease, _, _ := strings.Cut(rest, " ")
			ms, _ := strconv.ParseFloat(lease, 64)
			return 0, fmt.Errorf("redisstore: sync: %w", &presence.NodeTakenError{Node: sh.Node, Lease: int64(ms)})
		}
		if err != nil && strings.HasPrefix(err.Error(), "STALE") {
			return 0, fmt.Errorf("redisstore: sync: %w (%s)", presence.ErrStale, err.Error())
		}
		if err != nil {
			return 0, wrap("sync", err)
		}
		if len(res) < 2 {
			return 0, fmt.Errorf("redisstore: sync: unexpected reply %v", res)
		}
		if res[0] == "done" {
			if len(res) > 2 {
				s.peak.remember(fmt.Sprint(res[2]))
			}
			return toInt(res[1]), nil
		}
		done = int(toInt(res[1]))
	}
}

// rewriteDone returns the chunks applied according to a rewrite state
// "<seq>:<phase>:<chunks>:..." of attempt seq, or 0.
func rewriteDone(state string, seq uint64) int {
	f := strings.SplitN(state, ":", 4)
	if len(f) < 3 || f[0] != strconv.FormatUint(seq, 10) {
		return 0
	}
	n, _ := strconv.Atoi(f[2])
	return n
}

func (s *Store) onlineNow(ctx context.Context) (int64, error) {
	_, online, err := s.readBack(ctx, "")
	if err != nil {
		return 0, wrap("sync", err)
	}
	return online, nil
}

// peakMemory is the day's peak as a store last saw it, "<day>:<peak>",
// so that a Redis that lost its data gets it back (restore_peak in
// lib.lua, and home.lua).
type peakMemory struct {
	mu sync.Mutex
	v  string
}

func (m *peakMemory) get() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.v
}

// remember keeps the highest peak seen for the latest day.
func (m *peakMemory) remember(v string) {
	day, peak, ok := parsePeak(v)
	if !ok {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if oldDay, oldPeak, ok := parsePeak(m.v); !ok || day > oldDay || (day == oldDay && peak > oldPeak) {
		m.v = v
	}
}

func parsePeak(v string) (day, peak int64, ok bool) {
	d, p, found := strings.Cut(v, ":")
	if !found {
		return 0, 0, false
	}
	day, err1 := strconv.ParseInt(d, 10, 64)
	peak, err2 := strconv.ParseInt(p, 10, 64)
	return day, peak, err1 == nil && err2 == nil
}

// Heartbeat implements presence.Store. Dead nodes are retired at once;
// their users are taken out of the sums Budget at a time, by this call's
// script and then by as many reap calls as it takes (any node's heartbeat
// carries on with what is left).
// It returns the reaps finished, by its own script or the reap calls.
func (s *Store) Heartbeat(ctx context.Context, seq uint64, info presence.NodeInfo) ([]presence.Reaped, error) {
	raw, err := nodeInfoJSON(info)
	if err != nil {
		return nil, fmt.Errorf("redisstore: heartbeat: %w", err)
	}
	return s.beat(ctx, info.ID, seq, raw)
}

// nodeInfoJSON is a node's load figures as a heartbeat stores them.
func nodeInfoJSON(info presence.NodeInfo) (string, error) {
	info.Healthy = false // set by readers, not stored
	raw, err := json.Marshal(info)
	return string(raw), err
}

// beat is Heartbeat with the load figures as stored ("" leaves them
// unchanged: a Sharded keeps them in its first shard only).
func (s *Store) beat(ctx context.Context, node string, seq uint64, raw string) ([]presence.Reaped, error) {
	res, err := s.run(ctx, s.heartbeat, s.keys(node),
		s.prefix, node, s.seq(seq), s.ttl.Milliseconds(), raw, s.peak.get()).Slice()
	if err != nil {
		return nil, wrap("heartbeat", err)
	}
	if len(res) < 4 || (len(res)-4)%3 != 0 {
		return nil, fmt.Errorf("redisstore: heartbeat: unexpected reply %v", res)
	}
	s.peak.remember(fmt.Sprint(res[3]))
	reaped := parseReaped(res[4:])
	if toInt(res[2]) == 1 {
		reaped = append(reaped, s.reapAll(ctx, node)...)
	}
	switch toInt(res[1]) {
	case 0:
		return reaped, wrap("heartbeat", errors.New("RESYNC node not registered"))
	case 2:
		return reaped, wrap("heartbeat", errors.New("RESYNC sequence mismatch"))
	}
	return reaped, nil
}

// reapAll calls reap.lua until no share is left to reap, ctx is done or a
// call fails (the next heartbeat of any node goes on), and returns the
// reaps finished.
func (s *Store) reapAll(ctx context.Context, node string) []presence.Reaped {
	var reaped []presence.Reaped
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, s.callTimeout)
		res, err := s.run(cctx, s.reap, s.keys(node), s.prefix, node).Slice()
		cancel()
		if err != nil || len(res) < 2 {
			break
		}
		reaped = append(reaped, parseReaped(res[2:])...)
		if toInt(res[1]) == 0 {
			break
		}
	}
	return reaped
}

// parseReaped reads {node, users, connections, ...} from a script reply.
func parseReaped(res []any) []presence.Reaped {
	var out []presence.Reaped
	for i := 0; i+2 < len(res); i += 3 {
		out = append(out, presence.Reaped{Node: fmt.Sprint(res[i]), Users: toInt(res[i+1]), Connections: toInt(res[i+2])})
	}
	return out
}

// Leave implements presence.Store. It removes nothing when another
// process owns the node id now. The node's lease and figures go at once;
// its users are taken out of the sums Budget at a time, until ctx is done
// (the other nodes' heartbeats take what is left).
func (s *Store) Leave(ctx context.Context, node string) error {
	res, err := s.run(ctx, s.leave, s.keys(node), s.prefix, node, s.token).Slice()
	if err != nil {
		return wrap("leave", err)
	}
	if len(res) >= 2 && toInt(res[1]) == 1 {
		s.reapAll(ctx, node)
	}
	return nil
}

// Repair implements presence.Repairer: it checks that Redis holds node's
// share as the node holds it (users, connections and guests as of seq;
// -1 skips a figure) and returns presence.ErrResync when it does not,
// and it checks a bounded slice of the users hash against the sum of the
// live shares, fixing the entries that differ (phantom users left by
// evicted keys). It returns the number of users it fixed.
func (s *Store) Repair(ctx context.Context, node string, seq uint64, users, conns, guests int64) (int64, error) {
	fixed, _, err := s.repairShare(ctx, node, seq, users, conns, guests)
	return fixed, err
}

// shareFigures is a node's share as Redis holds it: users, connections
// (guests included) and guests; Users is -1 when Redis does not hold the
// sequence the node expects (the share's figures mean nothing then).
type shareFigures struct{ Users, Conns, Guests int64 }

// figures returns the node's share as Redis holds it, in one
// transaction, when Redis holds seq for the node (else Users is -1).
func (s *Store) figures(ctx context.Context, node string, seq uint64) (shareFigures, error) {
	var held, conns, guests *redis.StringCmd
	var users *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		held = p.HGet(ctx, s.prefix+":seq", node)
		users = p.HLen(ctx, s.prefix+":node:"+node)
		conns = p.HGet(ctx, s.prefix+":conns", node)
		guests = p.HGet(ctx, s.prefix+":guests", node)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return shareFigures{}, wrap("repair", err)
	}
	if held.Val() != s.seq(seq) {
		return shareFigures{Users: -1, Conns: -1, Guests: -1}, nil
	}
	c, _ := strconv.ParseInt(conns.Val(), 10, 64)
	g, _ := strconv.ParseInt(guests.Val(), 10, 64)
	return shareFigures{Users: users.Val(), Conns: c, Guests: g}, nil
}

// repairShare is Repair, also returning the node's share as Redis holds it.
func (s *Store) repairShare(ctx context.Context, node string, seq uint64, users, conns, guests int64) (int64, shareFigures, error) {
	cursor := "0"
	if v, ok := s.cursors.Load(node); ok {
		cursor = v.(string)
	}
	res, err := s.run(ctx, s.repair, s.keys(node), s.prefix, node, s.seq(seq), users, conns, guests, s.budget, cursor).Slice()
	if err != nil {
		return 0, shareFigures{}, wrap("repair", err)
	}
	if len(res) != 6 {
		return 0, shareFigures{}, fmt.Errorf("redisstore: repair: unexpected reply %v", res)
	}
	s.cursors.Store(node, fmt.Sprint(res[1]))
	fixed, held := toInt(res[0]), shareFigures{Users: toInt(res[3]), Conns: toInt(res[4]), Guests: toInt(res[5])}
	if toInt(res[2]) == 1 {
		return fixed, held, fmt.Errorf("redisstore: repair: %w (the share in Redis differs from the node's connections)", presence.ErrResync)
	}
	return fixed, held, nil
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
	return parseNodes(res)
}

// parseNodes reads the reply of nodes.lua.
func parseNodes(res []any) ([]presence.NodeInfo, error) {
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
	if refused(err) {
		return fmt.Errorf("redisstore: %s: %w: %w", op, presence.ErrRefused, err)
	}
	if strings.HasPrefix(err.Error(), "TAKEN") {
		return fmt.Errorf("redisstore: %s: %w (%s)", op, presence.ErrNodeTaken, err.Error())
	}
	if strings.HasPrefix(err.Error(), "LAYOUT") {
		return fmt.Errorf("redisstore: %s: %w (%s)", op, ErrLayout, err.Error())
	}
	if strings.HasPrefix(err.Error(), "RESYNC") {
		return fmt.Errorf("redisstore: %s: %w (%s)", op, presence.ErrResync, err.Error())
	}
	return fmt.Errorf("redisstore: %s: %w", op, err)
}

// refused reports whether err is Redis refusing a write while it
// answers: out of memory, a read-only replica, or a failed snapshot that
// stops writes.
func refused(err error) bool {
	msg := err.Error()
	for _, p := range []string{"OOM ", "READONLY ", "MISCONF "} {
		if strings.HasPrefix(msg, p) || strings.Contains(msg, ": "+p) {
			return true
		}
	}
	return false
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
// string key (PRESENCE_MODE=external). It never writes that key. What it
// does write is presenced's own: each node's load figures under a lease
// (Publish), so that connections are summed over every node, and the
// day's peak of the count as presenced observed it.
type External struct {
	rdb    redis.UniversalClient
	key    string
	prefix string
	ttl    time.Duration
	loc    *time.Location

	beat, peak, nodes *redis.Script
}

var _ presence.Reader = (*External)(nil)

// ExternalOptions configures an External. The zero value of each field
// means the documented default.
type ExternalOptions struct {
	// Key is the counter's string key; zero means "online_users".
	Key string
	// Prefix starts presenced's own keys; zero means Key's hash tag, or
	// Key itself as the tag ("{online_users}"), as for Options.Prefix.
	Prefix string
	// NodeTTL is how long a node's published load figures count; zero
	// means 6s.
	NodeTTL time.Duration
	// Location is STATS_TIMEZONE, whose midnight starts the day's peak;
	// nil means UTC.
	Location *time.Location
}

// NewExternal returns a reader of the counter o.Key.
func NewExternal(rdb redis.UniversalClient, o ExternalOptions) *External {
	if o.Key == "" {
		o.Key = "online_users"
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix(o.Key)
	}
	if o.NodeTTL <= 0 {
		o.NodeTTL = 6 * time.Second
	}
	if o.Location == nil {
		o.Location = time.UTC
	}
	e := &External{rdb: rdb, key: o.Key, prefix: o.Prefix, ttl: o.NodeTTL, loc: o.Location}
	e.beat, e.peak, e.nodes = mustScript("ext_beat"), mustScript("ext_peak"), mustScript("nodes")
	return e
}

// mustScript returns lua/<name>.lua with lua/lib.lua before it; the files
// are embedded, so only a broken build can make it fail.
func mustScript(name string) *redis.Script {
	lib, err := luaFiles.ReadFile("lua/lib.lua")
	if err != nil {
		panic(err)
	}
	src, err := luaFiles.ReadFile("lua/" + name + ".lua")
	if err != nil {
		panic(err)
	}
	return redis.NewScript(string(lib) + "\n" + string(src))
}

// Counts implements presence.Reader: Users is the counter (a negative
// value, from an INCR/DECR counter that drifted, is reported as 0);
// Connections and Guests are the sums of every live node's published load
// figures; PeakToday is the highest count presenced has read today (from
// midnight in Location).
// Only the counter's read can fail it.
func (e *External) Counts(ctx context.Context) (presence.Counts, error) {
	n, err := e.rdb.Get(ctx, e.key).Int64()
	if errors.Is(err, redis.Nil) {
		return presence.Counts{}, presence.ErrNoData
	}
	if err != nil {
		return presence.Counts{}, fmt.Errorf("redisstore: get %s: %w", e.key, err)
	}
	c := presence.Counts{Users: max(n, 0), PeakToday: max(n, 0)}
	day := presence.DayNumber(time.Now().In(e.loc))
	if peak, err := e.peak.Run(ctx, e.rdb, []string{e.prefix + ":peak:" + strconv.FormatInt(day, 10)}, e.prefix, c.Users).Int64(); err == nil {
		c.PeakToday = max(peak, c.Users)
	}
	if nodes, err := e.Nodes(ctx); err == nil {
		for _, info := range nodes {
			if info.Healthy {
				c.Connections += info.Connections
				c.Guests += info.Guests
			}
		}
	}
	return c, nil
}

// Publish implements presence.Publisher: it stores the node's load figures
// for one lease.
func (e *External) Publish(ctx context.Context, info presence.NodeInfo) error {
	info.Healthy = false // set by readers, not stored
	raw, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("redisstore: publish: %w", err)
	}
	keys := []string{e.prefix + ":nodes", e.prefix + ":nodeinfo:" + info.ID}
	if err := e.beat.Run(ctx, e.rdb, keys, e.prefix, info.ID, e.ttl.Milliseconds(), raw).Err(); err != nil {
		return wrap("publish", err)
	}
	return nil
}

// Nodes implements presence.Reader: the nodes that published load
// figures within their lease.
func (e *External) Nodes(ctx context.Context) ([]presence.NodeInfo, error) {
	res, err := e.nodes.Run(ctx, e.rdb, []string{e.prefix + ":nodes"}, e.prefix).Slice()
	if err != nil {
		return nil, wrap("nodes", err)
	}
	return parseNodes(res)
}

// chores are the keys under a prefix that elect one node for a
// cluster-wide chore, share its result, and coordinate the webhook. A
// Store keeps them under its prefix, a Sharded under its home prefix.
type chores struct {
	rdb    redis.UniversalClient
	prefix string
}

// Claim reports whether this caller is the first to claim name in the
// cluster (SET NX); the claim lasts ttl. It elects one node for a chore,
// such as the user stats of one refresh period.
func (s *chores) Claim(ctx context.Context, name string, ttl time.Duration) (bool, error) {
	ok, err := s.rdb.SetNX(ctx, s.prefix+":claim:"+name, "1", ttl).Result()
	if err != nil {
		return false, fmt.Errorf("redisstore: claim %s: %w", name, err)
	}
	return ok, nil
}

// PutShared stores v under name for ttl, for the other nodes to read.
func (s *chores) PutShared(ctx context.Context, name string, v []byte, ttl time.Duration) error {
	if err := s.rdb.Set(ctx, s.prefix+":shared:"+name, v, ttl).Err(); err != nil {
		return fmt.Errorf("redisstore: share %s: %w", name, err)
	}
	return nil
}

// GetShared returns what PutShared stored under name, or nil.
func (s *chores) GetShared(ctx context.Context, name string) ([]byte, error) {
	v, err := s.rdb.Get(ctx, s.prefix+":shared:"+name).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("redisstore: read shared %s: %w", name, err)
	}
	return v, nil
}

// ClaimMinute elects one node per minute for cluster-wide chores such as
// writing the history point: the first caller for minute t wins.
func (s *chores) ClaimMinute(ctx context.Context, t time.Time) (bool, error) {
	key := s.prefix + ":history:" + strconv.FormatInt(t.Unix()/60, 10)
	ok, err := s.rdb.SetNX(ctx, key, "1", 2*time.Minute).Result()
	if err != nil {
		return false, fmt.Errorf("redisstore: claim minute: %w", err)
	}
	return ok, nil
}

// hashTag returns the part of key Redis Cluster hashes when it has one: the
// bytes between the first "{" and the next "}", if any; "" when none.
func hashTag(key string) string {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return ""
	}
	end := strings.IndexByte(key[open+1:], '}')
	if end <= 0 {
		return ""
	}
	return key[open+1 : open+1+end]
}

// DefaultPrefix is the key prefix a store uses when Options.Prefix is
// not set: the prefix whose hash tag puts every key in the slot of
// onlineKey (onlineKey's own tag, or onlineKey itself as the tag).
func DefaultPrefix(onlineKey string) string {
	if tag := hashTag(onlineKey); tag != "" {
		return "{" + tag + "}"
	}
	return "{" + onlineKey + "}"
}
