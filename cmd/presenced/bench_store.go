package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/presence/redisstore"
)

// The goals of issue 8 that `presenced bench store` reports against.
const (
	storeGoalBytesPerUser = 150
	storeGoalConnectsPerS = 250_000
	storeGoalScript       = 10 * time.Millisecond
)

// storeBenchOptions is the command line of `presenced bench store`.
type storeBenchOptions struct {
	redisURL  string
	cluster   []string
	users     int
	nodes     int
	batch     int
	reapUsers int
	shards    int
	ttl       time.Duration
	interval  time.Duration
	timeout   time.Duration
}

// runBenchStore is `presenced bench store`: a simulation of a cluster of
// presenced nodes in this one process, without sockets, that drives the
// redisstore.Store API directly against a real, empty Redis (or Redis
// Cluster). Each in-process node has its own Store (its own lease token),
// heartbeats every --heartbeat-interval with a Repair after each heartbeat
// as a node does, and writes its users' connects as Apply batches of
// --batch. It connects --users users over --nodes nodes, half of each
// node's users one batch at a time from one goroutine (sequential), the
// other half with every node writing at once (concurrent), then measures
// Redis's memory per user, a quiet heartbeat, the reap of a dead node of
// --reap-users users and the rewrite of every share after FLUSHALL, and
// checks the count is exact. It prints a table and a "summary" line.
//
// It runs FLUSHALL, so it refuses a Redis that holds any key.
func runBenchStore(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench store", flag.ContinueOnError)
	var o storeBenchOptions
	fs.StringVar(&o.redisURL, "redis-url", getenv("REDIS_URL"), "an empty Redis on this machine (default $REDIS_URL); it is FLUSHALLed")
	cluster := fs.String("cluster", "", "host:port,... seeds of an empty Redis Cluster on this machine, instead of --redis-url")
	fs.IntVar(&o.users, "users", 1_000_000, "online users, spread evenly over --nodes")
	fs.IntVar(&o.nodes, "nodes", 100, "in-process nodes")
	fs.IntVar(&o.batch, "batch", 1000, "connects per Apply call (PRESENCE_BATCH_MAX)")
	fs.IntVar(&o.reapUsers, "reap-users", 100_000, "users of the extra node that is killed, reaped and rewritten")
	fs.IntVar(&o.shards, "shards", 1, "PRESENCE_SHARDS: hash tags the users are split over")
	fs.DurationVar(&o.ttl, "node-ttl", 6*time.Second, "NODE_TTL: the lease a heartbeat grants")
	fs.DurationVar(&o.interval, "heartbeat-interval", 2*time.Second, "HEARTBEAT_INTERVAL")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "bound on the whole run")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	switch {
	case o.nodes < 1 || o.nodes > 1000:
		return usageError{"bench store: --nodes must be 1 to 1000"}
	case o.users < o.nodes || o.users > 10_000_000:
		return usageError{"bench store: --users must be --nodes to 10000000"}
	case o.batch < 1 || o.batch > 10_000:
		return usageError{"bench store: --batch must be 1 to 10000"}
	case o.reapUsers < 1 || o.reapUsers > 1_000_000:
		return usageError{"bench store: --reap-users must be 1 to 1000000"}
	case o.shards < 1 || o.shards > redisstore.MaxShards:
		return usageError{fmt.Sprintf("bench store: --shards must be 1 to %d", redisstore.MaxShards)}
	case o.interval <= 0 || o.ttl <= o.interval:
		return usageError{"bench store: want 0 < --heartbeat-interval < --node-ttl"}
	case o.timeout <= 0:
		return usageError{"bench store: --timeout must be positive"}
	}
	var rdb redis.UniversalClient
	pool := o.nodes + 16 // each node writes on its own connection, as separate processes would
	if *cluster != "" {
		for _, a := range strings.Split(*cluster, ",") {
			if err := checkLoopback("--cluster", hostOf(a)); err != nil {
				return err
			}
			o.cluster = append(o.cluster, a)
		}
		rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: o.cluster, PoolSize: pool})
	} else {
		if o.redisURL == "" {
			return usageError{"bench store: no Redis: set REDIS_URL or pass --redis-url or --cluster"}
		}
		ropts, err := redis.ParseURL(o.redisURL)
		if err != nil {
			return usageError{fmt.Sprintf("bench store: --redis-url: %v", err)}
		}
		if err := checkLoopback("--redis-url", hostOf(ropts.Addr)); err != nil {
			return err
		}
		ropts.PoolSize = pool
		rdb = redis.NewClient(ropts)
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	sim := &storeSim{o: o, rdb: rdb, log: stderr}
	r, err := sim.run(ctx)
	if err != nil {
		return fmt.Errorf("bench store: %w", err)
	}
	r.print(stdout, o)
	if r.online != r.expected || r.hlen != r.expected {
		return fmt.Errorf("bench store: the count is not exact: online_users %d, HLEN users %d, want %d", r.online, r.hlen, r.expected)
	}
	return nil
}

// simNode is one in-process node: its store, its sequence and its users
// (the global user numbers [first, first+n)). mu serialises its writes
// and heartbeats, as a Tracker does.
type simNode struct {
	id    string
	store simStore
	first int
	n     int

	mu     sync.Mutex
	seq    uint64
	online int // users connected so far (the first ones of the range)

	stopped atomic.Bool // no more heartbeats: dead or paused
	dead    atomic.Bool
	lastHB  atomic.Int64 // unix ns of the start of its last heartbeat (its leases were renewed after it)
}

// simStore is what a node's store does: a redisstore.Store or, with
// --shards above 1, a redisstore.Sharded.
type simStore interface {
	presence.Store
	presence.Repairer
}

// prefixes are the key prefixes the users are kept under: the default
// one, or each shard's.
func (o storeBenchOptions) prefixes() []string {
	home := redisstore.DefaultPrefix("online_users")
	if o.shards == 1 {
		return []string{home}
	}
	out := make([]string, o.shards)
	for i := range out {
		out[i] = redisstore.ShardPrefix(home, i, o.shards)
	}
	return out
}

func simUser(k int) string { return "user-" + strconv.Itoa(k) }

// hbSample is one heartbeat call.
type hbSample struct {
	phase      string
	start, end time.Time
	repair     time.Duration // the Repair that followed it, 0 if none
	reaped     []presence.Reaped
}

type storeSim struct {
	o     storeBenchOptions
	rdb   redis.UniversalClient
	log   io.Writer
	nodes []*simNode // the --nodes nodes, then the big one

	phase   atomic.Value // string: the label heartbeats are recorded under
	hbMu    sync.Mutex
	samples []hbSample
	hbErrs  atomic.Int64
}

// storeResult is what a run measured.
type storeResult struct {
	topology                 string
	baseline, afterConnect   int64 // used_memory
	usersHash, shares        int64 // MEMORY USAGE after the connects
	events                   int64
	afterRewrite             int64
	seqRate, concRate        float64 // connects/s
	bigRate                  float64 // connects/s of the big node alone
	scriptConnect            time.Duration
	scriptReap, scriptRewrte time.Duration
	hbBusy, hbQuiet          []time.Duration
	repairQuiet              []time.Duration
	reapCall, reapTotal      time.Duration // the heartbeat that reaped; first heartbeat after expiry to count exact
	deadToExact              time.Duration
	rejoin                   time.Duration // the big node's Sync into a live Redis
	rewriteAlone             time.Duration // the big node's rewrite after FLUSHALL, alone
	rewriteBig, rewriteAll   time.Duration // the same with every node at once; every node
	hbErrors                 int64
	keysPerMaster            string
	redisCPU                 []time.Duration // per master, busiest first: CPU time of its main thread during the connects
	online, hlen, expected   int64
}

func (s *storeSim) logf(format string, args ...any) {
	fmt.Fprintf(s.log, "bench store: "+format+"\n", args...)
}

// masters calls fn on every master: the one server, or each master of a
// cluster.
func (s *storeSim) masters(ctx context.Context, fn func(ctx context.Context, c *redis.Client) error) error {
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, fn)
	}
	return fn(ctx, s.rdb.(*redis.Client))
}

// usedMemory sums INFO memory used_memory over the masters, as the
// server-load stats read it.
func (s *storeSim) usedMemory(ctx context.Context) (int64, error) {
	return redisstore.NewProbe(s.rdb).UsedMemory(ctx)
}

// cpuTimes returns each master's CPU time so far (INFO cpu, main thread,
// user + system), in the order of addresses.
func (s *storeSim) cpuTimes(ctx context.Context) (map[string]time.Duration, error) {
	var mu sync.Mutex
	out := map[string]time.Duration{}
	err := s.masters(ctx, func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "cpu").Result()
		if err != nil {
			return err
		}
		var secs float64
		for _, line := range strings.Split(info, "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if ok && (k == "used_cpu_user_main_thread" || k == "used_cpu_sys_main_thread") {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return fmt.Errorf("INFO cpu: %q", line)
				}
				secs += f
			}
		}
		mu.Lock()
		out[c.Options().Addr] = time.Duration(secs * float64(time.Second))
		mu.Unlock()
		return nil
	})
	return out, err
}

// cpuSince returns each master's CPU time since before (from cpuTimes),
// busiest first.
func (s *storeSim) cpuSince(ctx context.Context, before map[string]time.Duration) ([]time.Duration, error) {
	now, err := s.cpuTimes(ctx)
	if err != nil {
		return nil, err
	}
	var out []time.Duration
	for addr, t := range now {
		out = append(out, t-before[addr])
	}
	slices.SortFunc(out, func(a, b time.Duration) int { return int(b - a) })
	return out, nil
}

// longestScript returns the longest script call (EVAL, EVALSHA, FCALL and
// their _RO forms) in the SLOWLOG of every master, and resets the logs.
// Redis 7 also logs the commands a script runs, under their own names;
// they are not counted.
func (s *storeSim) longestScript(ctx context.Context) (time.Duration, error) {
	var mu sync.Mutex
	var longest time.Duration
	which := ""
	defer func() {
		if longest > 0 {
			s.logf("longest script since the last look: %.2f ms, %s", float64(longest.Microseconds())/1000, which)
		}
	}()
	err := s.masters(ctx, func(ctx context.Context, c *redis.Client) error {
		entries, err := c.SlowLogGet(ctx, 100_000).Result()
		if err != nil {
			return err
		}
		mu.Lock()
		for _, e := range entries {
			if len(e.Args) > 0 && slices.Contains([]string{"eval", "evalsha", "fcall", "eval_ro", "evalsha_ro", "fcall_ro"}, strings.ToLower(e.Args[0])) {
				if e.Duration > longest {
					longest, which = e.Duration, scriptCall(e.Args)
				}
			}
		}
		mu.Unlock()
		return c.SlowLogReset(ctx).Err()
	})
	return longest, err
}

// scriptCall names a script call from its SLOWLOG arguments (EVALSHA
// sha numkeys KEYS... ARGV...): its node and which of the Store's
// scripts it is, told apart by their arguments (see lua/*.lua).
func scriptCall(args []string) string {
	nk, err := strconv.Atoi(args[min(2, len(args)-1)])
	if err != nil || len(args) < 3+nk+2 {
		return strings.Join(args[:min(4, len(args))], " ")
	}
	argv := args[3+nk:]
	kind := "apply"
	switch {
	case len(argv) == 2:
		kind = "reap"
	case len(argv) == 6 && strings.HasPrefix(argv[4], "{"):
		kind = "heartbeat"
	case len(argv) >= 9 && argv[5] == "":
		kind = "sync (chunk " + argv[7] + " of " + argv[8] + ")"
	case len(argv) == 8:
		kind = "repair"
	}
	return fmt.Sprintf("%s of %s, %d arguments", kind, argv[1], len(args))
}

func (s *storeSim) run(ctx context.Context) (*storeResult, error) {
	o := s.o
	r := &storeResult{topology: "Redis Cluster " + strings.Join(o.cluster, ",")}
	if c, ok := s.rdb.(*redis.Client); ok {
		r.topology = "Redis " + c.Options().Addr
	}
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("ping: %w", err)
	}
	// An empty Redis only: the run ends with FLUSHALL.
	var keys atomic.Int64
	if err := s.masters(ctx, func(ctx context.Context, c *redis.Client) error {
		n, err := c.DBSize(ctx).Result()
		keys.Add(n)
		return err
	}); err != nil {
		return nil, fmt.Errorf("DBSIZE: %w", err)
	}
	if n := keys.Load(); n != 0 {
		return nil, fmt.Errorf("the Redis holds %d keys: bench store needs an empty one, since it runs FLUSHALL", n)
	}
	// Log every command over 100 µs, and put the settings back at the end.
	// (A threshold of 0 would fill the log with the commands the scripts
	// run, a microsecond each.)
	var restore []func()
	defer func() {
		for _, f := range restore {
			f()
		}
	}()
	if err := s.masters(ctx, func(ctx context.Context, c *redis.Client) error {
		old, err := c.ConfigGet(ctx, "slowlog-*").Result()
		if err != nil {
			return err
		}
		restore = append(restore, func() {
			for k, v := range old {
				c.ConfigSet(context.Background(), k, v)
			}
		})
		if err := c.ConfigSet(ctx, "slowlog-log-slower-than", "100").Err(); err != nil {
			return err
		}
		if err := c.ConfigSet(ctx, "slowlog-max-len", "100000").Err(); err != nil {
			return err
		}
		return c.SlowLogReset(ctx).Err()
	}); err != nil {
		return nil, fmt.Errorf("SLOWLOG set-up: %w", err)
	}
	var err error
	if r.baseline, err = s.usedMemory(ctx); err != nil {
		return nil, err
	}

	// The nodes, each registered with an empty share, as a node starts.
	per, rem := o.users/o.nodes, o.users%o.nodes
	first := 0
	for i := range o.nodes + 1 {
		n := per
		if i < rem {
			n++
		}
		if i == o.nodes {
			n = o.reapUsers
		}
		so := redisstore.Options{NodeTTL: o.ttl, RecoveryWindow: o.interval * 3 / 2}
		var st simStore
		var err error
		if o.shards > 1 {
			st, err = redisstore.NewSharded(s.rdb, so, o.shards)
		} else {
			st, err = redisstore.New(s.rdb, so)
		}
		if err != nil {
			return nil, err
		}
		s.nodes = append(s.nodes, &simNode{id: fmt.Sprintf("sim-%03d", i), store: st, first: first, n: n})
		first += n
	}
	big := s.nodes[o.nodes]
	nodes := s.nodes[:o.nodes]
	s.phase.Store("connects")
	for _, n := range nodes {
		if err := s.rewrite(ctx, n); err != nil {
			return nil, err
		}
	}
	hbCtx, stopHB := context.WithCancel(ctx)
	var hbWG sync.WaitGroup
	defer func() { stopHB(); hbWG.Wait() }()
	for _, n := range nodes {
		hbWG.Add(1)
		go func() { defer hbWG.Done(); s.heartbeats(hbCtx, n) }()
	}

	// Connects: half of each node's users from one goroutine, a batch at
	// a time, then the other half with every node writing at once.
	s.logf("connecting %d users over %d nodes, %d a batch", o.users, o.nodes, o.batch)
	half := func(n *simNode) int { return n.n / 2 }
	cpuBefore, err := s.cpuTimes(ctx)
	if err != nil {
		return nil, fmt.Errorf("INFO cpu: %w", err)
	}
	start := time.Now()
	seqN := 0
	for _, n := range nodes {
		if err := s.connect(ctx, n, half(n)); err != nil {
			return nil, err
		}
		seqN += half(n)
	}
	r.seqRate = float64(seqN) / time.Since(start).Seconds()
	start = time.Now()
	errc := make(chan error, len(nodes))
	for _, n := range nodes {
		go func() { errc <- s.connect(ctx, n, n.n-half(n)) }()
	}
	for range nodes {
		if e := <-errc; e != nil && err == nil {
			err = e
		}
	}
	if err != nil {
		return nil, err
	}
	r.concRate = float64(o.users-seqN) / time.Since(start).Seconds()
	if r.redisCPU, err = s.cpuSince(ctx, cpuBefore); err != nil {
		return nil, err
	}
	if r.afterConnect, err = s.usedMemory(ctx); err != nil {
		return nil, err
	}
	// Where the bytes go (MEMORY USAGE samples big hashes: an estimate).
	usage := func(key string) int64 { return s.rdb.MemoryUsage(ctx, key).Val() }
	for _, p := range o.prefixes() {
		r.usersHash += usage(p + ":users")
		r.events += usage(p + ":transitions")
		for _, n := range nodes {
			r.shares += usage(p + ":node:" + n.id)
		}
	}
	if r.scriptConnect, err = s.longestScript(ctx); err != nil {
		return nil, err
	}
	if err := s.checkCount(ctx, int64(o.users)); err != nil {
		return nil, err
	}

	// A quiet while: heartbeats and repairs only.
	s.logf("%d users online; %v of heartbeats alone", o.users, 2*o.interval)
	s.phase.Store("quiet")
	if err := sleepCtx(ctx, 2*o.interval+o.interval/4); err != nil {
		return nil, err
	}

	// The big node joins, then dies: it stops heartbeating and the other
	// nodes' heartbeats reap it once its lease has run out.
	s.phase.Store("big")
	if err := s.rewrite(ctx, big); err != nil {
		return nil, err
	}
	start = time.Now()
	if err := s.connect(ctx, big, big.n); err != nil {
		return nil, err
	}
	r.bigRate = float64(big.n) / time.Since(start).Seconds()
	if _, err := s.heartbeat(ctx, big); err != nil {
		return nil, fmt.Errorf("heartbeat of %s: %w", big.id, err)
	}
	if err := s.checkCount(ctx, int64(o.users+big.n)); err != nil {
		return nil, err
	}
	if _, err := s.longestScript(ctx); err != nil {
		return nil, err
	}
	big.stopped.Store(true)
	big.dead.Store(true)
	s.phase.Store("reap")
	dead := time.Unix(0, big.lastHB.Load())
	s.logf("%s (%d users) stopped heartbeating; waiting NODE_TTL %v for the others to reap it", big.id, big.n, o.ttl)
	var exactAt time.Time
	for {
		v, err := s.rdb.Get(ctx, "online_users").Int64()
		if err != nil {
			return nil, fmt.Errorf("GET online_users: %w", err)
		}
		if v == int64(o.users) {
			exactAt = time.Now()
			break
		}
		if err := sleepCtx(ctx, 5*time.Millisecond); err != nil {
			return nil, fmt.Errorf("%s not reaped: %w", big.id, err)
		}
	}
	r.deadToExact = exactAt.Sub(dead)
	// The heartbeat that reaped it may not have returned yet.
	for wait := time.Now().Add(o.ttl); time.Now().Before(wait); {
		if s.reaped(big.id) {
			break
		}
		if err := sleepCtx(ctx, 5*time.Millisecond); err != nil {
			return nil, err
		}
	}
	expire := dead.Add(o.ttl)
	var reapStart time.Time
	s.hbMu.Lock()
	for _, h := range s.samples {
		if h.phase != "reap" {
			continue
		}
		if h.start.After(expire) && (reapStart.IsZero() || h.start.Before(reapStart)) {
			reapStart = h.start
		}
		for _, rp := range h.reaped {
			if rp.Node == big.id {
				r.reapCall = max(r.reapCall, h.end.Sub(h.start))
			}
		}
	}
	s.hbMu.Unlock()
	if !reapStart.IsZero() && exactAt.After(reapStart) {
		r.reapTotal = exactAt.Sub(reapStart)
	}
	if r.scriptReap, err = s.longestScript(ctx); err != nil {
		return nil, err
	}

	// The big node comes back (one Sync into a live Redis), then Redis
	// loses everything: every node rewrites its share at once, as each
	// does when its next heartbeat answers RESYNC.
	big.dead.Store(false)
	start = time.Now()
	if err := s.rewrite(ctx, big); err != nil {
		return nil, err
	}
	r.rejoin = time.Since(start)
	s.phase.Store("rewrite")
	if _, err := s.longestScript(ctx); err != nil {
		return nil, err
	}
	// FLUSHALL, and the big node rewrites its share alone (then the
	// others, untimed); FLUSHALL again, and every node rewrites at once.
	if err := s.flushAll(ctx); err != nil {
		return nil, err
	}
	s.logf("FLUSHALL; %s rewrites its share alone, then the others", big.id)
	bigShare := big.share()
	start = time.Now()
	if err := s.rewriteShare(ctx, big, bigShare); err != nil {
		return nil, err
	}
	r.rewriteAlone = time.Since(start)
	if _, _, err := s.rewriteAll(ctx, nodes, nil); err != nil {
		return nil, err
	}
	if err := s.flushAll(ctx); err != nil {
		return nil, err
	}
	s.logf("FLUSHALL; %d nodes rewrite their shares at once", len(s.nodes))
	if r.rewriteAll, r.rewriteBig, err = s.rewriteAll(ctx, s.nodes, big); err != nil {
		return nil, err
	}
	if r.scriptRewrte, err = s.longestScript(ctx); err != nil {
		return nil, err
	}
	r.expected = int64(o.users + big.n)
	if r.afterRewrite, err = s.usedMemory(ctx); err != nil {
		return nil, err
	}
	stopHB()
	hbWG.Wait()

	if r.online, err = s.rdb.Get(ctx, "online_users").Int64(); err != nil {
		return nil, fmt.Errorf("GET online_users: %w", err)
	}
	if r.hlen, err = s.usersLen(ctx); err != nil {
		return nil, err
	}
	var km []string
	var kmMu sync.Mutex
	_ = s.masters(ctx, func(ctx context.Context, c *redis.Client) error {
		n, err := c.DBSize(ctx).Result()
		kmMu.Lock()
		km = append(km, fmt.Sprintf("%s=%d", c.Options().Addr, n))
		kmMu.Unlock()
		return err
	})
	slices.Sort(km)
	r.keysPerMaster = strings.Join(km, " ")
	s.hbMu.Lock()
	for _, h := range s.samples {
		switch h.phase {
		case "connects":
			r.hbBusy = append(r.hbBusy, h.end.Sub(h.start))
		case "quiet":
			r.hbQuiet = append(r.hbQuiet, h.end.Sub(h.start))
			if h.repair > 0 {
				r.repairQuiet = append(r.repairQuiet, h.repair)
			}
		}
	}
	s.hbMu.Unlock()
	r.hbErrors = s.hbErrs.Load()
	// Leave an empty Redis, as found.
	if err := s.masters(ctx, func(ctx context.Context, c *redis.Client) error { return c.FlushAll(ctx).Err() }); err != nil {
		return nil, fmt.Errorf("FLUSHALL: %w", err)
	}
	return r, nil
}

// usersLen sums HLEN of the users hashes (one per shard).
func (s *storeSim) usersLen(ctx context.Context) (int64, error) {
	var total int64
	for _, p := range s.o.prefixes() {
		n, err := s.rdb.HLen(ctx, p+":users").Result()
		if err != nil {
			return 0, fmt.Errorf("HLEN %s:users: %w", p, err)
		}
		total += n
	}
	return total, nil
}

// flushAll stops the heartbeats, waits for those in flight and runs
// FLUSHALL on every master; rewrite starts each node's heartbeats again.
func (s *storeSim) flushAll(ctx context.Context) error {
	for _, n := range s.nodes {
		n.stopped.Store(true)
		n.mu.Lock()
	}
	err := s.masters(ctx, func(ctx context.Context, c *redis.Client) error { return c.FlushAll(ctx).Err() })
	for _, n := range s.nodes {
		n.mu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("FLUSHALL: %w", err)
	}
	return nil
}

// rewriteAll rewrites the shares of nodes at once and returns how long
// that took, and how long mark's own rewrite took.
//
// The shares are built first, so that building them does not take the
// machine's CPU from Redis while they are written.
func (s *storeSim) rewriteAll(ctx context.Context, nodes []*simNode, mark *simNode) (all, marked time.Duration, err error) {
	shares := make([]map[string]int64, len(nodes))
	for i, n := range nodes {
		shares[i] = n.share()
	}
	runtime.GC()
	start := time.Now()
	var took atomic.Int64
	errc := make(chan error, len(nodes))
	for i, n := range nodes {
		go func() {
			t0 := time.Now()
			e := s.rewriteShare(ctx, n, shares[i])
			if n == mark {
				took.Store(int64(time.Since(t0)))
			}
			errc <- e
		}()
	}
	for range nodes {
		if e := <-errc; e != nil && err == nil {
			err = e
		}
	}
	return time.Since(start), time.Duration(took.Load()), err
}

// reaped reports whether a recorded heartbeat reaped node.
func (s *storeSim) reaped(node string) bool {
	s.hbMu.Lock()
	defer s.hbMu.Unlock()
	for _, h := range s.samples {
		for _, rp := range h.reaped {
			if rp.Node == node {
				return true
			}
		}
	}
	return false
}

func (s *storeSim) checkCount(ctx context.Context, want int64) error {
	v, err := s.rdb.Get(ctx, "online_users").Int64()
	if err != nil {
		return fmt.Errorf("GET online_users: %w", err)
	}
	if v != want {
		return fmt.Errorf("online_users = %d, want %d", v, want)
	}
	return nil
}

// rewrite writes n's whole share (its connected users) with a fresh
// sequence, as a Tracker's writeShare does.
func (s *storeSim) rewrite(ctx context.Context, n *simNode) error {
	return s.rewriteShare(ctx, n, n.share())
}

// share is n's connected users, as a Share holds them.
func (n *simNode) share() map[string]int64 {
	users := make(map[string]int64, n.online)
	for k := n.first; k < n.first+n.online; k++ {
		users[simUser(k)] = 1
	}
	return users
}

func (s *storeSim) rewriteShare(ctx context.Context, n *simNode, users map[string]int64) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.seq++
	if _, err := n.store.Sync(ctx, presence.Share{Node: n.id, Seq: n.seq, Users: users}); err != nil {
		return fmt.Errorf("sync %s: %w", n.id, err)
	}
	n.stopped.Store(false)
	return nil
}

// connect connects the next count users of n, o.batch per Apply call.
func (s *storeSim) connect(ctx context.Context, n *simNode, count int) error {
	deltas := make([]presence.Delta, 0, s.o.batch)
	for count > 0 {
		k := min(count, s.o.batch)
		deltas = deltas[:0]
		n.mu.Lock()
		for u := n.first + n.online; u < n.first+n.online+k; u++ {
			deltas = append(deltas, presence.Delta{User: simUser(u), N: 1})
		}
		_, err := n.store.Apply(ctx, presence.Batch{Node: n.id, Seq: n.seq + 1, Deltas: deltas})
		if err == nil {
			n.seq++
			n.online += k
		}
		n.mu.Unlock()
		if err != nil {
			return fmt.Errorf("apply %s: %w", n.id, err)
		}
		count -= k
	}
	return nil
}

// heartbeats heartbeats n every interval (the first after a random part
// of one, so the nodes are spread out) until ctx is done.
func (s *storeSim) heartbeats(ctx context.Context, n *simNode) {
	if sleepCtx(ctx, rand.N(s.o.interval)) != nil {
		return
	}
	t := time.NewTicker(s.o.interval)
	defer t.Stop()
	for {
		if !n.stopped.Load() {
			if _, err := s.heartbeat(ctx, n); err != nil && ctx.Err() == nil {
				s.hbErrs.Add(1)
				s.logf("heartbeat of %s: %v", n.id, err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// heartbeat is one heartbeat of n and the Repair after it, as a Tracker
// does them, timed and recorded.
func (s *storeSim) heartbeat(ctx context.Context, n *simNode) (hbSample, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped.Load() { // checked again under mu: see the FLUSHALL in run
		return hbSample{}, nil
	}
	info := presence.NodeInfo{ID: n.id, Host: "bench-store", PID: os.Getpid(), Version: version,
		Connections: int64(n.online), Users: int64(n.online), Transports: map[string]int64{"websocket": int64(n.online)},
		StartedAt: time.Now(), LastHeartbeat: time.Now()}
	cctx, cancel := context.WithTimeout(ctx, s.o.ttl)
	defer cancel()
	h := hbSample{phase: s.phase.Load().(string), start: time.Now()}
	reaped, err := n.store.Heartbeat(cctx, n.seq, info)
	h.end, h.reaped = time.Now(), reaped
	if err == nil {
		n.lastHB.Store(h.start.UnixNano())
		t0 := time.Now()
		if _, rerr := n.store.Repair(cctx, n.id, n.seq, int64(n.online), int64(n.online), 0); rerr == nil {
			h.repair = time.Since(t0)
		} else {
			err = fmt.Errorf("repair: %w", rerr)
		}
	}
	s.hbMu.Lock()
	s.samples = append(s.samples, h)
	s.hbMu.Unlock()
	return h, err
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// avgP99 returns the mean, the 99th percentile and the longest of ds in
// milliseconds.
func avgP99(ds []time.Duration) (avg, p99, longest float64) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return ms(sum / time.Duration(len(ds))), ms(ds[min(len(ds)-1, len(ds)*99/100)]), ms(ds[len(ds)-1])
}

// capacity is the connects per CPU second of the busiest master during
// the connects: what the masters sustain when each has a core of its own
// (on this machine they share two with the bench process).
func (r *storeResult) capacity(o storeBenchOptions) float64 {
	if len(r.redisCPU) == 0 || r.redisCPU[0] <= 0 {
		return 0
	}
	return float64(o.users) / r.redisCPU[0].Seconds()
}

func (r *storeResult) print(w io.Writer, o storeBenchOptions) {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	verdict := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "MISSED"
	}
	bpu := float64(r.afterConnect-r.baseline) / float64(o.users)
	bpuFresh := float64(r.afterRewrite-r.baseline) / float64(r.expected)
	longest := max(r.scriptConnect, r.scriptReap, r.scriptRewrte)
	fmt.Fprintf(w, "bench store: %d users over %d nodes (batches of %d) + one node of %d; %s; PRESENCE_SHARDS %d; NODE_TTL %v, HEARTBEAT_INTERVAL %v\n",
		o.users, o.nodes, o.batch, o.reapUsers, r.topology, o.shards, o.ttl, o.interval)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "measure\tvalue\tgoal\t")
	fmt.Fprintf(tw, "Redis memory per online user (used_memory delta / users)\t%.1f B\t<= %d B\t%s\n", bpu, storeGoalBytesPerUser, verdict(bpu <= storeGoalBytesPerUser))
	per := func(b int64) float64 { return float64(b) / float64(o.users) }
	fmt.Fprintf(tw, "  users hash / node shares / events stream (MEMORY USAGE)\t%.1f / %.1f / %.1f B\t\t\n", per(r.usersHash), per(r.shares), per(r.events))
	fmt.Fprintf(tw, "  the same after the rewrite (fresh data set)\t%.1f B\t\t\n", bpuFresh)
	fmt.Fprintf(tw, "connects/s, one Apply at a time\t%.0f\t>= %d\t%s\n", r.seqRate, storeGoalConnectsPerS, verdict(r.seqRate >= storeGoalConnectsPerS))
	fmt.Fprintf(tw, "connects/s, %d nodes at once\t%.0f\t>= %d\t%s\n", o.nodes, r.concRate, storeGoalConnectsPerS, verdict(r.concRate >= storeGoalConnectsPerS))
	fmt.Fprintf(tw, "connects/s, the %d-user node alone\t%.0f\t\t\n", o.reapUsers, r.bigRate)
	busy := make([]string, len(r.redisCPU))
	for i, d := range r.redisCPU {
		busy[i] = fmt.Sprintf("%.0f", ms(d))
	}
	fmt.Fprintf(tw, "Redis CPU time during the connects, per master (INFO cpu, main thread)\t%s ms\t\t\n", strings.Join(busy, " / "))
	fmt.Fprintf(tw, "  connects per CPU second of the busiest master (what it sustains with a core of its own)\t%.0f\t\t\n", r.capacity(o))
	fmt.Fprintf(tw, "longest script: connects / reap / rewrite (SLOWLOG)\t%.2f / %.2f / %.2f ms\t<= %v\t%s\n",
		ms(r.scriptConnect), ms(r.scriptReap), ms(r.scriptRewrte), storeGoalScript, verdict(longest <= storeGoalScript))
	a, p, m := avgP99(r.hbQuiet)
	fmt.Fprintf(tw, "heartbeat call, quiet: avg / p99 / max (%d calls)\t%.2f / %.2f / %.2f ms\t\t\n", len(r.hbQuiet), a, p, m)
	a, p, m = avgP99(r.repairQuiet)
	fmt.Fprintf(tw, "repair call after it, quiet: avg / p99 / max\t%.2f / %.2f / %.2f ms\t\t\n", a, p, m)
	a, p, m = avgP99(r.hbBusy)
	fmt.Fprintf(tw, "heartbeat call, during the connects: avg / p99 / max (%d calls)\t%.2f / %.2f / %.2f ms\t\t\n", len(r.hbBusy), a, p, m)
	fmt.Fprintf(tw, "reap of the %d-user node: first heartbeat after its lease ran out to count exact\t%.0f ms\t<= %v\t%s\n",
		o.reapUsers, ms(r.reapTotal), o.interval, verdict(r.reapTotal > 0 && r.reapTotal <= o.interval))
	fmt.Fprintf(tw, "  the heartbeat call that reaped it\t%.0f ms\t\t\n", ms(r.reapCall))
	fmt.Fprintf(tw, "  its last heartbeat to count exact (NODE_TTL + wait for a heartbeat + reap)\t%.0f ms\t\t\n", ms(r.deadToExact))
	fmt.Fprintf(tw, "the %d-user node's rewrite (Sync) into a live Redis\t%.0f ms\t\t\n", o.reapUsers, ms(r.rejoin))
	fmt.Fprintf(tw, "rewrite after FLUSHALL of the %d-user node alone\t%.0f ms\t<= %v\t%s\n",
		o.reapUsers, ms(r.rewriteAlone), o.interval, verdict(r.rewriteAlone <= o.interval))
	fmt.Fprintf(tw, "rewrite after FLUSHALL, all %d nodes at once: the %d-user node\t%.0f ms\t<= %v\t%s\n",
		o.nodes+1, o.reapUsers, ms(r.rewriteBig), o.interval, verdict(r.rewriteBig <= o.interval))
	fmt.Fprintf(tw, "  every share rewritten\t%.0f ms\t\t\n", ms(r.rewriteAll))
	fmt.Fprintf(tw, "online_users / HLEN users at the end\t%d / %d\t= %d\t%s\n", r.online, r.hlen, r.expected, verdict(r.online == r.expected && r.hlen == r.expected))
	fmt.Fprintf(tw, "heartbeat or repair errors\t%d\t0\t%s\n", r.hbErrors, verdict(r.hbErrors == 0))
	tw.Flush()
	fmt.Fprintf(w, "keys per master before the final FLUSHALL: %s\n", r.keysPerMaster)
	aq, pq, _ := avgP99(r.hbQuiet)
	fmt.Fprintf(w, "summary users %d nodes %d shards %d bytes/user %.1f seq-conns/s %.0f conc-conns/s %.0f capacity-conns/s %.0f longest-script-ms %.2f hb-avg-ms %.2f hb-p99-ms %.2f reap-ms %.2f rewrite-ms %.2f rewrite-all-ms %.2f online %d hlen %d expected %d errors %d\n",
		o.users, o.nodes, o.shards, bpu, r.seqRate, r.concRate, r.capacity(o), ms(longest), aq, pq, ms(r.reapTotal), ms(r.rewriteAlone), ms(r.rewriteAll), r.online, r.hlen, r.expected, r.hbErrors)
}
