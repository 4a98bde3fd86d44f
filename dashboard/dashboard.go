// Package dashboard computes what the admin dashboard shows: the overview
// and the server-load stats. The online count comes from the presence
// store first (Redis in production); when that errors, does not answer
// within a short budget, or is being rebuilt after losing data, it falls
// back to the data store's count of recently seen users. Figures that
// come from the data store are cached and refreshed in the background, so
// no request waits on a slow count.
package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/store"
)

// RedisProbe measures the Redis server for the server-load stats.
type RedisProbe interface {
	Ping(ctx context.Context) (time.Duration, error)
	UsedMemory(ctx context.Context) (int64, error)
}

// Sharer lets the nodes of a cluster share work (Redis in production).
type Sharer interface {
	// Claim reports whether this caller is the first to claim name; the
	// claim lasts ttl.
	Claim(ctx context.Context, name string, ttl time.Duration) (bool, error)
	// PutShared stores v under name for ttl.
	PutShared(ctx context.Context, name string, v []byte, ttl time.Duration) error
	// GetShared returns what is stored under name, or nil when nothing is.
	GetShared(ctx context.Context, name string) ([]byte, error)
}

// Options configures a Service. The zero value of each field means the
// documented default.
type Options struct {
	// Presence reads the cluster-wide counts; required.
	Presence presence.Reader
	// Source names Presence in responses: "redis" or "memory".
	Source string
	// External is set when another program keeps the count
	// (PRESENCE_MODE=external): the data store knows nothing of it, so when
	// Presence fails the last good counts are served, marked stale,
	// instead of the data store's fallback.
	External bool
	// Store is the data store; required.
	Store store.Store
	// Tracker is this node's tracker: its local counts are a floor for the
	// fallback count.
	Tracker *presence.Tracker
	// Redis measures Redis; nil when Redis is not configured.
	Redis RedisProbe
	// LocalNode describes this node; listed when Presence knows no nodes.
	LocalNode func() presence.NodeInfo
	// ReadBudget caps the wait for the presence store; zero means 150ms.
	ReadBudget time.Duration
	// CountsMaxAge is how long counts read from the presence store may be
	// served to later requests of this node; a write by Tracker drops
	// them at once. Zero serves each request from a read that was in
	// flight when it arrived or that it starts itself: never older than
	// one round trip.
	CountsMaxAge time.Duration
	// FailureHold is how long a failed read of the presence store (Redis
	// down or too slow) is remembered: requests in that time get the
	// fallback at once instead of each waiting up to ReadBudget for a
	// store that just failed. A write by Tracker (Redis answering again)
	// ends it at once. Zero means 250ms; negative turns it off.
	FailureHold time.Duration
	// StatsRefresh is how often user totals are recounted; zero means 10s.
	StatsRefresh time.Duration
	// Shared, when set, makes the user totals computed once per
	// StatsRefresh for the whole cluster: the node that claims the period
	// computes them and shares the result, which the others serve. Nil
	// means every node computes its own.
	Shared Sharer
	// LastSeenInterval is LAST_SEEN_INTERVAL: the fallback counts users
	// seen within two of them; zero means 30s.
	LastSeenInterval time.Duration
	Now              func() time.Time
	Logger           *slog.Logger
	// Location is STATS_TIMEZONE: its midnight starts "today" for the new
	// users; nil means UTC.
	Location *time.Location
}

// Overview is GET /api/admin/dashboard/overview. FallbackScope is set
// when the online count comes from the data store's fallback: "cluster"
// when that store is shared by every node (MongoDB), "node" when it only
// knows this node's users (SQLite).
type Overview struct {
	OnlineUsers       int64     `json:"onlineUsers"`
	OnlineConnections int64     `json:"onlineConnections"`
	OnlineGuests      int64     `json:"onlineGuests"`
	PeakOnlineToday   int64     `json:"peakOnlineToday"`
	TotalUsers        int64     `json:"totalUsers"`
	NewUsersToday     int64     `json:"newUsersToday"`
	ActiveUsers24h    int64     `json:"activeUsers24h"`
	Source            string    `json:"source"`
	FallbackScope     string    `json:"fallbackScope,omitempty"`
	Stale             bool      `json:"stale"`
	GeneratedAt       time.Time `json:"generatedAt"`
}

// Dependency is the status of one dependency in the server-load stats.
type Dependency struct {
	Status          string   `json:"status"` // "up", "down" or "not_configured"
	Kind            string   `json:"kind,omitempty"`
	LatencyMs       *float64 `json:"latencyMs"`
	UsedMemoryBytes *int64   `json:"usedMemoryBytes,omitempty"`
	Error           string   `json:"error,omitempty"`
}

// ServerLoad is GET /api/admin/dashboard/server-load.
type ServerLoad struct {
	OnlineUsers       int64               `json:"onlineUsers"`
	OnlineConnections int64               `json:"onlineConnections"`
	Source            string              `json:"source"`
	FallbackScope     string              `json:"fallbackScope,omitempty"`
	Stale             bool                `json:"stale"`
	Nodes             []presence.NodeInfo `json:"nodes"`
	Redis             Dependency          `json:"redis"`
	MongoDB           Dependency          `json:"mongodb"`
	DataStore         Dependency          `json:"dataStore"`
	GeneratedAt       time.Time           `json:"generatedAt"`
}

// Service answers dashboard queries. It is safe for concurrent use.
type Service struct {
	o   Options
	log *slog.Logger

	mu        sync.Mutex
	lastGood  presence.Counts
	haveGood  bool
	stats     store.UserStats
	statsOK   bool // the last user-stats refresh succeeded
	haveStats bool
	fallback  int64
	haveFall  bool
	refresh   chan struct{}
	filled    chan struct{} // closed after the first refresh
	cache     countsCache

	// usersFloor (under mu) is the most users online seen since the last
	// stats refresh: they are users, and were active, even once gone,
	// before the data store's next recount includes them.
	usersFloor int64

	streamOnce sync.Once
	stream     *Stream

	statsFailing bool // the last user-stats refresh failed and was logged; Run's goroutine only

	fallbacks    atomic.Int64 // online counts answered from the data store
	staleAnswers atomic.Int64 // online counts answered from the last good value (or local counts)
}

// Fallbacks returns how many times the online count was answered from the
// data store's fallback, and how many from the last good value marked
// stale, because the presence store failed, was slow or was rebuilding.
// The event streams' poller asks every 50 ms (StreamEvery) while a stream is
// open, so these count answers computed, not HTTP responses.
func (s *Service) Fallbacks() (fallback, stale int64) {
	return s.fallbacks.Load(), s.staleAnswers.Load()
}

// New returns a Service; call Run to keep its cached figures fresh.
func New(o Options) *Service {
	if o.ReadBudget <= 0 {
		o.ReadBudget = 150 * time.Millisecond
	}
	if o.StatsRefresh <= 0 {
		o.StatsRefresh = 10 * time.Second
	}
	if o.FailureHold == 0 {
		o.FailureHold = 250 * time.Millisecond
	}
	if o.LastSeenInterval <= 0 {
		o.LastSeenInterval = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Location == nil {
		o.Location = time.UTC
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{o: o, log: o.Logger, refresh: make(chan struct{}, 1), filled: make(chan struct{})}
}

// Run refreshes the cached data-store figures until ctx is done: user
// totals every StatsRefresh, the fallback count every two seconds and at
// once when the presence store fails.
func (s *Service) Run(ctx context.Context) {
	s.refreshAll(ctx, true)
	close(s.filled)
	stats := time.NewTicker(s.o.StatsRefresh)
	defer stats.Stop()
	fall := time.NewTicker(min(2*time.Second, s.o.StatsRefresh))
	defer fall.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-stats.C:
			s.refreshAll(ctx, true)
		case <-fall.C:
			s.refreshAll(ctx, false)
		case <-s.refresh:
			s.refreshAll(ctx, false)
		}
	}
}

func (s *Service) refreshAll(ctx context.Context, withStats bool) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	now := s.o.Now()
	if withStats {
		st, err := s.userStats(ctx, now.In(s.o.Location))
		s.mu.Lock()
		s.statsOK = err == nil
		if err == nil {
			s.stats, s.haveStats = st, true
			s.usersFloor = 0
		}
		s.mu.Unlock()
		// Said once per change, not at every refresh of an outage.
		switch {
		case err != nil && ctx.Err() == nil && !s.statsFailing:
			s.statsFailing = true
			s.log.Warn("dashboard: user stats refresh failed; serving cached values marked stale until it works", "err", err)
		case err == nil && s.statsFailing:
			s.statsFailing = false
			s.log.Info("dashboard: user stats refreshed again")
		}
	}
	n, err := s.o.Store.SeenSince(ctx, now.Add(-2*s.o.LastSeenInterval))
	if err == nil {
		s.mu.Lock()
		s.fallback, s.haveFall = n, true
		s.mu.Unlock()
	}
}

// sharedStats is the user totals as one node computed them for the
// cluster.
type sharedStats struct {
	Stats store.UserStats `json:"stats"`
	At    time.Time       `json:"at"`
}

// userStats returns the user totals: computed here when this node claims
// the refresh period (or nothing fresh is shared), else the result the
// node that claimed it shared. It is claimed like the history minute.
func (s *Service) userStats(ctx context.Context, now time.Time) (store.UserStats, error) {
	if s.o.Shared == nil {
		return s.o.Store.UserStats(ctx, now)
	}
	every := s.o.StatsRefresh
	slot := strconv.FormatInt(now.UnixNano()/int64(every), 10)
	won, err := s.o.Shared.Claim(ctx, "userstats:"+slot, 2*every)
	if err == nil && !won {
		raw, err := s.o.Shared.GetShared(ctx, "userstats")
		var sh sharedStats
		if err == nil && raw != nil && json.Unmarshal(raw, &sh) == nil && now.Sub(sh.At) <= 2*every {
			return sh.Stats, nil
		}
		// The node that claimed the period has shared nothing fresh yet
		// (it is slow, or it died): count here rather than serve stale.
	}
	st, err := s.o.Store.UserStats(ctx, now)
	if err != nil {
		return st, err
	}
	if raw, jerr := json.Marshal(sharedStats{Stats: st, At: now}); jerr == nil {
		if perr := s.o.Shared.PutShared(ctx, "userstats", raw, 3*every); perr != nil {
			s.log.Debug("dashboard: user stats not shared", "err", perr)
		}
	}
	return st, nil
}

// Overview returns the overview. It never fails: when the presence store
// is unavailable it answers from the data store, and figures it could not
// refresh are served from cache and marked stale.
func (s *Service) Overview(ctx context.Context) Overview {
	s.waitFilled(ctx)
	c, source, stale := s.online(ctx)
	s.mu.Lock()
	st, statsStale := s.stats, !s.statsOK || !s.haveStats
	s.usersFloor = max(s.usersFloor, c.Users)
	floor := s.usersFloor
	s.mu.Unlock()
	return Overview{
		OnlineUsers:       c.Users,
		OnlineConnections: c.Connections,
		OnlineGuests:      c.Guests,
		PeakOnlineToday:   max(c.PeakToday, c.Users),
		TotalUsers:        max(st.TotalUsers, floor), // whoever was online since the last recount is a user
		NewUsersToday:     st.NewUsersToday,
		ActiveUsers24h:    max(st.ActiveUsers24h, floor), // and was active
		Source:            source,
		FallbackScope:     s.fallbackScope(source),
		Stale:             stale || statsStale,
		GeneratedAt:       s.o.Now().UTC(),
	}
}

// waitFilled lets the very first requests wait (within their budget) for
// the first cache fill instead of answering zeros.
func (s *Service) waitFilled(ctx context.Context) {
	select {
	case <-s.filled: // the common case, without a timer for every request
		return
	default:
	}
	t := time.NewTimer(s.o.ReadBudget)
	defer t.Stop()
	select {
	case <-s.filled:
	case <-t.C:
	case <-ctx.Done():
	}
}

// countsCache holds the last counts read from the presence store and the
// read in flight (see Options.CountsMaxAge). Its fields are guarded by
// Service.mu.
type countsCache struct {
	c        presence.Counts
	err      error
	at       time.Time // when the read started
	writes   uint64    // Tracker.Writes when the read started
	ok       bool
	inflight *countsRead // the read in flight, nil when none
}

// countsRead is one read of the presence store, shared by every request
// that arrives while it runs.
type countsRead struct {
	done chan struct{} // closed when c and err are set
	c    presence.Counts
	err  error
}

// counts reads the presence store within the budget. Requests that arrive
// while a read is in flight share its answer instead of sending their own
// (under load the store is read once per round trip, not once per
// request); with CountsMaxAge, counts young enough are served from cache
// as long as this node has written nothing since.
func (s *Service) counts(ctx context.Context) (presence.Counts, error) {
	var writes uint64
	if s.o.Tracker != nil {
		writes = s.o.Tracker.Writes()
	}
	now := time.Now()
	s.mu.Lock()
	cc := &s.cache
	failed := s.o.FailureHold > 0 && cc.ok && cc.writes == writes && cc.err != nil && !errors.Is(cc.err, presence.ErrNoData)
	if cc.ok && cc.writes == writes {
		age := now.Sub(cc.at)
		if (s.o.CountsMaxAge > 0 && age < s.o.CountsMaxAge) || (failed && age < s.o.FailureHold) {
			c, err := cc.c, cc.err
			s.mu.Unlock()
			return c, err
		}
	}
	if f := cc.inflight; f != nil {
		if failed {
			// The store failed last time and is being probed again:
			// answer from the fallback now rather than wait on the probe.
			c, err := cc.c, cc.err
			s.mu.Unlock()
			return c, err
		}
		s.mu.Unlock()
		select {
		case <-f.done:
			return f.c, f.err
		case <-ctx.Done():
			return presence.Counts{}, ctx.Err()
		}
	}
	f := &countsRead{done: make(chan struct{})}
	cc.inflight = f
	s.mu.Unlock()
	// The read serves every request waiting on it: one request going
	// away must not cancel it.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.ReadBudget)
	f.c, f.err = s.o.Presence.Counts(rctx)
	cancel()
	s.mu.Lock()
	*cc = countsCache{c: f.c, err: f.err, at: now, writes: writes, ok: true}
	s.mu.Unlock()
	close(f.done)
	return f.c, f.err
}

// online reads the counts from the presence store within the budget, or
// falls back.
func (s *Service) online(ctx context.Context) (presence.Counts, string, bool) {
	c, err := s.counts(ctx)
	if err == nil && !c.Partial {
		if s.o.Tracker != nil && s.o.Tracker.WriteError() != nil {
			// This node's writes fail (Redis refusing them, say): what
			// Redis holds is frozen, so it is served as stale, with this
			// node's own connections as a floor.
			u, conns, guests := s.o.Tracker.Local()
			c.Users, c.Connections, c.Guests = max(c.Users, u), max(c.Connections, conns), max(c.Guests, guests)
			s.staleAnswers.Add(1)
			return c, s.o.Source, true
		}
		s.mu.Lock()
		s.lastGood, s.haveGood = c, true
		s.mu.Unlock()
		return c, s.o.Source, false
	}
	if err != nil && !errors.Is(err, presence.ErrNoData) {
		s.log.Debug("dashboard: presence store unavailable, using fallback", "err", err)
	}
	if s.o.External {
		s.staleAnswers.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.haveGood {
			return s.lastGood, s.o.Source, true
		}
		return presence.Counts{}, s.o.Source, true
	}
	select { // refresh the fallback in the background
	case s.refresh <- struct{}{}:
	default:
	}
	var localUsers, localConns, localGuests int64
	if s.o.Tracker != nil {
		localUsers, localConns, localGuests = s.o.Tracker.Local()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.haveFall {
		out := presence.Counts{Users: max(s.fallback, localUsers, c.Users)}
		if s.haveGood {
			out.Connections, out.Guests, out.PeakToday = s.lastGood.Connections, s.lastGood.Guests, s.lastGood.PeakToday
		}
		out.Connections = max(out.Connections, localConns, c.Connections)
		out.Guests = max(out.Guests, localGuests, c.Guests)
		s.fallbacks.Add(1)
		return out, s.o.Store.Kind(), false
	}
	s.staleAnswers.Add(1)
	if s.haveGood {
		return s.lastGood, s.o.Source, true
	}
	return presence.Counts{Users: localUsers, Connections: localConns, Guests: localGuests}, s.o.Store.Kind(), true
}

// fallbackScope says how much of the cluster a count from source covers,
// when source is the data store's fallback; "" otherwise.
func (s *Service) fallbackScope(source string) string {
	if source != s.o.Store.Kind() || source == s.o.Source {
		return ""
	}
	if source == "mongodb" {
		return "cluster"
	}
	return "node"
}

// ServerLoad returns the server-load stats.
func (s *Service) ServerLoad(ctx context.Context) ServerLoad {
	var (
		wg                 sync.WaitGroup
		nodes              []presence.NodeInfo
		nodesErr           error
		redis, mongo, data Dependency
	)
	wg.Add(3)
	go func() {
		defer wg.Done()
		rctx, cancel := context.WithTimeout(ctx, s.o.ReadBudget)
		defer cancel()
		nodes, nodesErr = s.o.Presence.Nodes(rctx)
	}()
	go func() {
		defer wg.Done()
		redis = s.probeRedis(ctx)
	}()
	go func() {
		defer wg.Done()
		data = s.probeStore(ctx)
	}()
	c, source, stale := s.online(ctx)
	wg.Wait()
	if nodesErr != nil || len(nodes) == 0 {
		nodes = nil
		if s.o.LocalNode != nil {
			n := s.o.LocalNode()
			n.Healthy = true
			nodes = []presence.NodeInfo{n}
		}
	}
	mongo = Dependency{Status: "not_configured"}
	if data.Kind == "mongodb" {
		mongo = data
	}
	return ServerLoad{
		OnlineUsers: c.Users, OnlineConnections: c.Connections, Source: source, FallbackScope: s.fallbackScope(source), Stale: stale,
		Nodes: nodes, Redis: redis, MongoDB: mongo, DataStore: data, GeneratedAt: s.o.Now().UTC(),
	}
}

func (s *Service) probeRedis(ctx context.Context) Dependency {
	if s.o.Redis == nil {
		return Dependency{Status: "not_configured"}
	}
	ctx, cancel := context.WithTimeout(ctx, s.o.ReadBudget)
	defer cancel()
	d, err := s.o.Redis.Ping(ctx)
	if err != nil {
		// The probe may say why ("auth refused", "wrong database", ...).
		why := "unreachable"
		var st interface{ RedisState() string }
		if errors.As(err, &st) && st.RedisState() != "" {
			why = st.RedisState()
		}
		return Dependency{Status: "down", Error: why}
	}
	dep := Dependency{Status: "up", LatencyMs: ms(d)}
	if s.o.Tracker != nil {
		if reason := writeProblem(s.o.Tracker.WriteError()); reason != "" {
			dep.Status, dep.Error = "degraded", reason
		}
	}
	if used, err := s.o.Redis.UsedMemory(ctx); err == nil {
		dep.UsedMemoryBytes = &used
	}
	return dep
}

func (s *Service) probeStore(ctx context.Context) Dependency {
	ctx, cancel := context.WithTimeout(ctx, s.o.ReadBudget)
	defer cancel()
	start := time.Now()
	if err := s.o.Store.Ping(ctx); err != nil {
		return Dependency{Status: "down", Kind: s.o.Store.Kind(), Error: "unreachable"}
	}
	return Dependency{Status: "up", Kind: s.o.Store.Kind(), LatencyMs: ms(time.Since(start))}
}

// Ready reports each configured dependency's status for /readyz; ok is
// false when any of them is down or degraded.
func (s *Service) Ready(ctx context.Context) (deps map[string]string, ok bool) {
	r := s.Readiness(ctx)
	return r.Dependencies, r.Ready
}

// Readiness is GET /readyz.
type Readiness struct {
	Ready bool `json:"-"`
	// Dependencies maps each dependency to "up", "down", "degraded" or
	// "not_configured".
	Dependencies map[string]string `json:"dependencies"`
	// Reasons says why a dependency is not up.
	Reasons map[string]string `json:"reasons,omitempty"`
}

// Readiness reports each configured dependency's status for /readyz
// (see probeRedis). Redis is "degraded" when it answers but this node's writes to it fail
// (refused for lack of memory, say, or the node id is held by another
// process): the counts are then served stale, and the node is not ready.
func (s *Service) Readiness(ctx context.Context) Readiness {
	redis, data := s.probeRedis(ctx), s.probeStore(ctx)
	r := Readiness{Ready: true, Dependencies: map[string]string{"redis": redis.Status, data.Kind: data.Status}, Reasons: map[string]string{}}
	for name, d := range map[string]Dependency{"redis": redis, data.Kind: data} {
		if d.Status == "down" || d.Status == "degraded" {
			r.Reasons[name] = d.Error
			r.Ready = false
		}
	}
	return r
}

// writeProblem says, in words fit for anyone, why this node's presence
// writes fail; "" when they do not.
func writeProblem(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, presence.ErrRefused):
		return "writes refused (out of memory or read-only); counts are stale"
	case errors.Is(err, presence.ErrNodeTaken):
		return "NODE_ID held by another live process; this node's connections are not counted"
	}
	return "writes failing; counts are stale"
}

func ms(d time.Duration) *float64 {
	v := float64(d.Microseconds()) / 1000
	return &v
}
