// Package instrument measures presenced's two stores for /metrics: it
// wraps a presence.Store (Redis or memory) and a store.Store (MongoDB or
// SQLite) and counts every call by operation and result, with its
// latency, the users in each batch and the share rewrites (resyncs).
//
// The wrappers embed the interface they wrap, so a method added to it
// later passes through unmeasured rather than breaking the build.
package instrument

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/store"
)

// Results of a store call, as the "result" label names them.
const (
	ResultOK     = "ok"
	ResultError  = "error"
	ResultResync = "resync" // the presence store answered ErrResync
	ResultNoData = "no_data"
)

// Metrics holds the collectors; the zero value is not usable, call New.
type Metrics struct {
	presenceReq *prometheus.CounterVec
	presenceDur *prometheus.HistogramVec
	batchUsers  prometheus.Histogram
	resyncs     prometheus.Counter
	dataReq     *prometheus.CounterVec
	dataDur     *prometheus.HistogramVec
	reaped      prometheus.Counter
}

// latencyBuckets span a local Redis call (~100 µs) to a call timing out
// at a heartbeat (2 s) or a slow MongoDB.
var latencyBuckets = []float64{.00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

// New returns the metrics, registered nowhere: see Collectors.
func New() *Metrics {
	return &Metrics{
		presenceReq: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "presenced_presence_store_requests_total",
			Help: "Calls to the presence store (Redis, or memory in embedded mode) by operation and result.",
		}, []string{"op", "result"}),
		presenceDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "presenced_presence_store_duration_seconds",
			Help:    "Latency of presence store calls by operation; op=\"apply\" is the flush of one batch.",
			Buckets: latencyBuckets,
		}, []string{"op"}),
		batchUsers: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "presenced_presence_batch_users",
			Help:    "Users changed by one batch flushed to the presence store (PRESENCE_BATCH_MAX caps it).",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000},
		}),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "presenced_presence_resyncs_total",
			Help: "Times this node rewrote its whole share because the store lost it or a write failed (not counting the first registration).",
		}),
		dataReq: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "presenced_data_store_requests_total",
			Help: "Calls to the data store (MongoDB or SQLite) by operation and result.",
		}, []string{"op", "result"}),
		dataDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "presenced_data_store_duration_seconds",
			Help:    "Latency of data store calls by operation.",
			Buckets: latencyBuckets,
		}, []string{"op"}),
		reaped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "presenced_reaped_nodes_total",
			Help: "Dead nodes (lease expired) whose share this node removed.",
		}),
	}
}

// Collectors returns everything to register on /metrics.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.presenceReq, m.presenceDur, m.batchUsers, m.resyncs, m.reaped, m.dataReq, m.dataDur}
}

// Reaped counts n nodes reaped by this node's heartbeats (the measured
// store's Heartbeat calls it with what the store reports).
func (m *Metrics) Reaped(n int) { m.reaped.Add(float64(n)) }

func (m *Metrics) observePresence(op string, start time.Time, err error) {
	m.presenceDur.WithLabelValues(op).Observe(time.Since(start).Seconds())
	result := ResultOK
	switch {
	case errors.Is(err, presence.ErrResync):
		result = ResultResync
	case errors.Is(err, presence.ErrNoData):
		result = ResultNoData
	case err != nil:
		result = ResultError
	}
	m.presenceReq.WithLabelValues(op, result).Inc()
}

func (m *Metrics) observeData(op string, start time.Time, err error) {
	m.dataDur.WithLabelValues(op).Observe(time.Since(start).Seconds())
	result := ResultOK
	if err != nil {
		result = ResultError
	}
	m.dataReq.WithLabelValues(op, result).Inc()
}

// Presence returns s measured. The optional interfaces the Tracker looks
// for (presence.Repairer) are kept when s has them.
func (m *Metrics) Presence(s presence.Store) presence.Store {
	w := &presenceStore{Store: s, m: m}
	if r, ok := s.(presence.Repairer); ok {
		return &repairingStore{presenceStore: w, r: r}
	}
	return w
}

// Reader returns r measured (the external counter, which is only read),
// keeping presence.Publisher when r has it.
func (m *Metrics) Reader(r presence.Reader) presence.Reader {
	w := &presenceReader{Reader: r, m: m}
	if p, ok := r.(presence.Publisher); ok {
		return &publishingReader{presenceReader: w, p: p}
	}
	return w
}

// lastSeenOf is the one-user last-seen lookup some data stores have (the
// who-is-online API looks for it).
type lastSeenOf interface {
	LastSeenOf(ctx context.Context, user string) (time.Time, bool, error)
}

// DataStore returns s measured, keeping its LastSeenOf lookup when s has
// one.
func (m *Metrics) DataStore(s store.Store) store.Store {
	w := &dataStore{Store: s, m: m}
	if l, ok := s.(lastSeenOf); ok {
		return &lookupStore{dataStore: w, l: l}
	}
	return w
}

type lookupStore struct {
	*dataStore
	l lastSeenOf
}

func (s *lookupStore) LastSeenOf(ctx context.Context, user string) (time.Time, bool, error) {
	start := time.Now()
	at, ok, err := s.l.LastSeenOf(ctx, user)
	s.m.observeData("last_seen_of", start, err)
	return at, ok, err
}

type presenceReader struct {
	presence.Reader
	m *Metrics
}

func (r *presenceReader) Counts(ctx context.Context) (presence.Counts, error) {
	start := time.Now()
	c, err := r.Reader.Counts(ctx)
	r.m.observePresence("counts", start, err)
	return c, err
}

func (r *presenceReader) Nodes(ctx context.Context) ([]presence.NodeInfo, error) {
	start := time.Now()
	n, err := r.Reader.Nodes(ctx)
	r.m.observePresence("nodes", start, err)
	return n, err
}

type publishingReader struct {
	*presenceReader
	p presence.Publisher
}

var _ presence.Publisher = (*publishingReader)(nil)

func (r *publishingReader) Publish(ctx context.Context, info presence.NodeInfo) error {
	start := time.Now()
	err := r.p.Publish(ctx, info)
	r.m.observePresence("publish", start, err)
	return err
}

type repairingStore struct {
	*presenceStore
	r presence.Repairer
}

var _ presence.Repairer = (*repairingStore)(nil)

func (s *repairingStore) Repair(ctx context.Context, node string, seq uint64, users, conns, guests int64) (int64, error) {
	start := time.Now()
	n, err := s.r.Repair(ctx, node, seq, users, conns, guests)
	s.m.observePresence("repair", start, err)
	return n, err
}

type presenceStore struct {
	presence.Store
	m *Metrics
}

var _ presence.Store = (*presenceStore)(nil)

func (s *presenceStore) Counts(ctx context.Context) (presence.Counts, error) {
	start := time.Now()
	c, err := s.Store.Counts(ctx)
	s.m.observePresence("counts", start, err)
	return c, err
}

func (s *presenceStore) Nodes(ctx context.Context) ([]presence.NodeInfo, error) {
	start := time.Now()
	n, err := s.Store.Nodes(ctx)
	s.m.observePresence("nodes", start, err)
	return n, err
}

func (s *presenceStore) Apply(ctx context.Context, b presence.Batch) (int64, error) {
	start := time.Now()
	n, err := s.Store.Apply(ctx, b)
	s.m.observePresence("apply", start, err)
	s.m.batchUsers.Observe(float64(len(b.Deltas)))
	return n, err
}

func (s *presenceStore) Sync(ctx context.Context, sh presence.Share) (int64, error) {
	start := time.Now()
	n, err := s.Store.Sync(ctx, sh)
	s.m.observePresence("sync", start, err)
	if sh.Rejoin {
		s.m.resyncs.Inc()
	}
	return n, err
}

func (s *presenceStore) Heartbeat(ctx context.Context, seq uint64, info presence.NodeInfo) ([]presence.Reaped, error) {
	start := time.Now()
	reaped, err := s.Store.Heartbeat(ctx, seq, info)
	s.m.observePresence("heartbeat", start, err)
	s.m.Reaped(len(reaped))
	return reaped, err
}

func (s *presenceStore) Leave(ctx context.Context, node string) error {
	start := time.Now()
	err := s.Store.Leave(ctx, node)
	s.m.observePresence("leave", start, err)
	return err
}

type dataStore struct {
	store.Store
	m *Metrics
}

var _ store.Store = (*dataStore)(nil)

func (s *dataStore) Ping(ctx context.Context) error {
	start := time.Now()
	err := s.Store.Ping(ctx)
	s.m.observeData("ping", start, err)
	return err
}

func (s *dataStore) UserStats(ctx context.Context, now time.Time) (store.UserStats, error) {
	start := time.Now()
	st, err := s.Store.UserStats(ctx, now)
	s.m.observeData("user_stats", start, err)
	return st, err
}

func (s *dataStore) SeenSince(ctx context.Context, since time.Time) (int64, error) {
	start := time.Now()
	n, err := s.Store.SeenSince(ctx, since)
	s.m.observeData("seen_since", start, err)
	return n, err
}

func (s *dataStore) TouchLastSeen(ctx context.Context, seen []store.LastSeen) error {
	start := time.Now()
	err := s.Store.TouchLastSeen(ctx, seen)
	s.m.observeData("touch_last_seen", start, err)
	return err
}

func (s *dataStore) RefreshLastSeen(ctx context.Context, users []string, at, stale time.Time) (int, error) {
	start := time.Now()
	n, err := s.Store.RefreshLastSeen(ctx, users, at, stale)
	s.m.observeData("refresh_last_seen", start, err)
	return n, err
}

func (s *dataStore) AddHistory(ctx context.Context, p store.HistoryPoint) error {
	start := time.Now()
	err := s.Store.AddHistory(ctx, p)
	s.m.observeData("add_history", start, err)
	return err
}

func (s *dataStore) History(ctx context.Context, from, to time.Time) ([]store.HistoryPoint, error) {
	start := time.Now()
	p, err := s.Store.History(ctx, from, to)
	s.m.observeData("history", start, err)
	return p, err
}

func (s *dataStore) InsertUsers(ctx context.Context, users []store.User) error {
	start := time.Now()
	err := s.Store.InsertUsers(ctx, users)
	s.m.observeData("insert_users", start, err)
	return err
}
