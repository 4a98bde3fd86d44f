package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/auth"
	"github.com/presenced/presenced/config"
	"github.com/presenced/presenced/dashboard"
	"github.com/presenced/presenced/events"
	"github.com/presenced/presenced/gateway"
	"github.com/presenced/presenced/httpapi"
	"github.com/presenced/presenced/internal/clientip"
	"github.com/presenced/presenced/internal/instrument"
	"github.com/presenced/presenced/internal/procstat"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/presence/memstore"
	"github.com/presenced/presenced/presence/redisstore"
	"github.com/presenced/presenced/store"
	"github.com/presenced/presenced/store/mongostore"
	"github.com/presenced/presenced/store/sqlitestore"
	"github.com/presenced/presenced/web"
	"github.com/presenced/presenced/webhook"
)

// serve wires the configured implementations together, serves until ctx
// is done, then shuts down in order.
func serve(ctx context.Context, cfg config.Config, log *slog.Logger, stdout io.Writer) error {
	quietNBIO(log)
	node := cfg.NodeID
	if node == "" {
		node = newNodeID()
	}
	log = log.With("node", node)
	started := time.Now()

	ds, err := openStore(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	measure := instrument.New()
	ds = measure.DataStore(ds)
	log.Info("data store ready", "kind", ds.Kind())
	if cfg.RedisURL != "" && cfg.MongoURI == "" {
		log.Warn("no MONGODB_URI: while Redis is unavailable the dashboard falls back to this node's SQLite, which knows only this node's users (fallbackScope: node); a cluster-wide fallback needs MONGODB_URI")
	}

	secret, err := jwtSecret(cfg, func(path string) { log.Info("created a new JWT secret", "path", path) })
	if err != nil {
		_ = ds.Close(context.Background())
		return err
	}
	verifier, err := auth.NewVerifier(auth.VerifierOptions{
		Secret: secret, JWKSURL: cfg.JWKSURL, Logger: log,
		Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, Leeway: &cfg.JWTLeeway,
	})
	if err != nil {
		_ = ds.Close(context.Background())
		return fmt.Errorf("auth: %w", err)
	}
	adminToken, err := serveAdminToken(cfg, stdout, func(path string) { log.Info("admin token kept", "path", path) })
	if err != nil {
		_ = ds.Close(context.Background())
		return err
	}
	if cfg.JWTSecret == "" && cfg.JWKSURL == "" {
		warnOpenKept(cfg, jwtSecretFile, func(msg string) { log.Warn(msg) })
	}
	if cfg.AdminToken == "" {
		warnOpenKept(cfg, adminTokenFile, func(msg string) { log.Warn(msg) })
	}

	// Presence: Redis (managed or external) or memory.
	var (
		rdb      redis.UniversalClient
		pstore   presence.Store
		reader   presence.Reader
		source   = "memory"
		probe    dashboard.RedisProbe
		redisMon *redisMonitor
	)
	if cfg.RedisConfigured() {
		redis.SetLogger(goRedisLogger{log: log})
		rdb, err = redisstore.NewUniversalClient(redisClientOptions(cfg))
		if err != nil {
			_ = ds.Close(context.Background())
			return &config.Error{Var: "REDIS_URL", Reason: err.Error()}
		}
		source = "redis"
		p := redisstore.NewProbe(rdb)
		probe = p
		redisMon = &redisMonitor{probe: p, log: log, topology: cfg.RedisTopology(), addrs: redisAddrs(cfg), allowEviction: cfg.RedisAllowEviction, fatal: make(chan error, 1)}
		if cfg.PresenceMode == "external" {
			reader = redisstore.NewExternal(rdb, redisstore.ExternalOptions{Key: cfg.OnlineUsersKey, Prefix: cfg.KeyPrefix, NodeTTL: cfg.NodeTTL})
		} else {
			ps, err := newPresenceStore(ctx, rdb, cfg, log)
			if err != nil {
				_ = ds.Close(context.Background())
				return err
			}
			pstore, reader = ps, ps
		}
	} else {
		ms := memstore.New(cfg.NodeTTL, func() time.Time { return time.Now().In(cfg.StatsTimezone) })
		pstore, reader = ms, ms
	}

	// Who is online, transitions, watching and the webhook: managed and
	// embedded modes (the store decides transitions; external mode has
	// neither). They take the store itself, not its measured wrapper.
	who, err := newWho(pstore, cfg, node, log)
	if err != nil {
		_ = ds.Close(context.Background())
		return err
	}

	unmeasured := pstore // the claimer below needs the Redis store itself
	if pstore != nil {
		pstore = measure.Presence(pstore)
		reader = pstore
	} else {
		reader = measure.Reader(reader)
	}

	var (
		sampler procstat.Sampler
		gw      *gateway.Gateway // set below, before the tracker runs (its heartbeats call localInfo)
	)
	hostname, _ := os.Hostname()
	localInfo := func() presence.NodeInfo {
		cpu, rss, gor := sampler.Sample()
		return presence.NodeInfo{
			ID: node, Host: hostname, PID: os.Getpid(), Version: version,
			CPUPercent: cpu, MemoryBytes: rss, Goroutines: gor,
			StartedAt: started.UTC(), LastHeartbeat: time.Now().UTC(), Transports: gw.Transports(),
		}
	}
	var lastSeen *store.LastSeenWriter
	seen := func(user string) { lastSeen.Seen(user) }
	// PRESENCE_BATCH_MAX is users per script call: with shards a batch
	// is split over them, so a node's batch may hold that many per shard.
	batchMax := cfg.BatchMax * max(cfg.PresenceShards, 1)
	tracker := presence.NewTracker(presence.TrackerOptions{
		Node: node, Store: pstore, Counter: reader, BatchWindow: cfg.BatchWindow, BatchMax: batchMax,
		HeartbeatInterval: cfg.HeartbeatInterval, Info: localInfo,
		OnOnline: seen, OnOffline: seen, Logger: log,
		// A predecessor killed without leaving holds the id for at most a
		// lease (two if an outage grace extended it): wait that long.
		TakenGrace: 2*cfg.NodeTTL + cfg.HeartbeatInterval,
	})
	lastSeen = store.NewLastSeenWriter(ds, store.LastSeenOptions{
		RefreshInterval: cfg.LastSeenInterval, Online: tracker.Users, Logger: log,
		RecordUsers: ds.Kind() == "sqlite", // embedded: the users table is presenced's own
	})
	ips := clientip.New(cfg.TrustedProxies)
	gw, err = gateway.New(gateway.Options{
		Node: node, Tracker: tracker, Verifier: verifier, AllowAnonymous: cfg.AllowAnonymous,
		PingInterval: cfg.PingInterval, IdleTimeout: cfg.IdleTimeout, MaxMessageBytes: cfg.MaxMessageBytes,
		MaxQueuedBytes: cfg.MaxQueuedBytes, PingRate: cfg.PingRate, PingBurst: cfg.PingBurst,
		MaxConnsPerIP: cfg.MaxConnsPerIP, ConnectRatePerIP: cfg.ConnectRatePerIP, ClientIP: ips,
		Origins: cfg.CORSOrigins, Logger: log, Watch: who.hub,
		SocketIO: gateway.SocketIOOptions{
			PingInterval: cfg.SocketIOPingInterval, PingTimeout: cfg.SocketIOPingTimeout,
			ConnectTimeout: cfg.SocketIOConnectTimeout, MaxPayload: cfg.SocketIOMaxPayload,
		},
		Counter: func(ctx context.Context) (int64, int64, error) {
			c, err := reader.Counts(ctx)
			return c.Users, c.Connections, err
		},
	})
	if err != nil {
		_ = ds.Close(context.Background())
		return err
	}
	// Chores on a data store every node shares (MongoDB) are done once per
	// cluster, claimed in Redis: the user stats of each refresh period.
	var shared dashboard.Sharer
	if rs, ok := unmeasured.(dashboard.Sharer); ok && ds.Kind() == "mongodb" {
		shared = rs
	}
	dash := dashboard.New(dashboard.Options{
		Presence: reader, Source: source, External: cfg.PresenceMode == "external" && cfg.RedisURL != "", Store: ds, Tracker: tracker, Redis: probe,
		LocalNode:    tracker.NodeInfo,
		StatsRefresh: cfg.StatsRefresh, LastSeenInterval: cfg.LastSeenInterval, Location: cfg.StatsTimezone, Logger: log, Shared: shared,
	})
	history := &dashboard.HistoryRecorder{Presence: reader, Store: ds, Logger: log}
	if rs, ok := unmeasured.(dashboard.Claimer); ok {
		history.Claimer = rs
	}
	admin := auth.NewAdmin(adminToken, verifier, auth.AdminOptions{Secret: secret, SessionTTL: cfg.AdminSessionTTL})
	handler := httpapi.NewServer(httpapi.Deps{
		Logger: log, Dashboard: dash, Admin: admin, Sessions: admin, Panel: panelFiles(),
		WebSocket: gw, SocketIO: http.HandlerFunc(gw.ServeSocketIO), SocketIOPath: cfg.SocketIOPath, CORSOrigins: cfg.CORSOrigins, Metrics: append(metrics(tracker, gw, dash), who.metrics()...),
		Collectors: measure.Collectors(),
		ClientIP:   ips, AdminFailures: cfg.AdminAuthFailures, MaxBodyBytes: int64(cfg.MaxBodyBytes),
		Who: who.dir, LastSeen: lastSeenLookup(ds), APIKey: cfg.APIKey,
	})

	if who.feed != nil {
		who.feed.Start(ctx) // before clients come: watchers miss no event
	}
	// No TCP keep-alive probes on accepted connections: WebSockets and
	// Socket.IO sessions are pinged by the gateway (WS_PING_INTERVAL,
	// SOCKETIO_PING_INTERVAL) and idle HTTP connections end at
	// HTTP_IDLE_TIMEOUT, so the probes would find nothing those miss,
	// and setting them costs every connect four setsockopt calls.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort("", strconv.Itoa(cfg.Port)))
	if err != nil {
		gw.Close()
		_ = ds.Close(context.Background())
		return &config.Error{Var: "PORT", Value: strconv.Itoa(cfg.Port), Reason: "cannot listen: " + err.Error()}
	}
	srv := httpapi.Listen(ln, handler, httpapi.Limits{
		ReadHeaderTimeout: cfg.ReadHeaderTimeout, IdleTimeout: cfg.HTTPIdleTimeout,
		MaxHeaderBytes: cfg.MaxHeaderBytes,
	}, log)
	log.Info("presenced listening", append([]any{"addr", ln.Addr().String()}, startAttrs(cfg, ds)...)...)

	// Background loops stop when bg is cancelled, after the connections
	// are closed.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	for _, loop := range []func(context.Context){tracker.Run, gw.Run, dash.Run, verifier.Run, history.Run} {
		wg.Add(1)
		go func() { defer wg.Done(); loop(bg) }()
	}
	seenCtx, stopSeen := context.WithCancel(context.WithoutCancel(ctx))
	seenDone := make(chan struct{})
	go func() { defer close(seenDone); lastSeen.Run(seenCtx) }()
	dsMon := &dataStoreMonitor{ds: ds, log: log, interval: 2 * time.Second}
	wg.Add(1)
	go func() { defer wg.Done(); dsMon.run(bg) }()
	if redisMon != nil {
		wg.Add(1)
		go func() { defer wg.Done(); redisMon.run(bg) }()
	}
	// The event feed and the webhook only read and post: shutdown waits
	// for them a moment after Leave, not for a blocked read on a hanging
	// Redis.
	var whoWG sync.WaitGroup
	for _, loop := range who.loops() {
		whoWG.Add(1)
		go func() { defer whoWG.Done(); loop(bg) }()
	}

	var fatal error
	select {
	case <-ctx.Done():
	case fatal = <-redisMon.fatalC():
		log.Error("stopping: " + fatal.Error())
	case fatal = <-tracker.Conflict():
		log.Error("stopping: NODE_ID is in use by another live process", "node", node, "err", fatal)
	}
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()

	srv.StopAccepting()
	log.Info("stopped accepting connections")
	n := gw.Shutdown()
	log.Info("websocket connections closed with 1001", "count", n)
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("http drain incomplete", "err", err)
	}
	log.Info("http server drained")
	gw.Close()
	stopBG()
	wg.Wait()
	// Leaving is worth a few seconds, not the whole budget: a Redis that
	// hangs must not keep the data store from closing in time (other nodes
	// reap the share when its lease ends).
	lctx, lcancel := context.WithTimeout(sctx, 3*time.Second)
	err = tracker.Leave(lctx)
	lcancel()
	if err != nil {
		log.Warn("presence share not removed; other nodes reap it when its lease ends", "err", err)
	} else {
		log.Info("presence share removed")
	}
	// After the share is gone (its offline events are in the log for the
	// other nodes), not before: a blocked XREAD must not delay Leave.
	waitAtMost(&whoWG, time.Second)
	stopSeen()
	<-seenDone
	if rdb != nil {
		if err := rdb.Close(); err != nil {
			log.Warn("redis close", "err", err)
		}
		log.Info("Redis connection closed")
	}
	if err := ds.Close(sctx); err != nil {
		log.Warn("data store close", "err", err)
	}
	log.Info("data store closed", "kind", ds.Kind())
	log.Info("shutdown complete")
	return fatal
}

// openStore opens the configured data store. With startDown, a MongoDB
// that cannot be reached does not stop the server: it starts, and the
// store is retried (writes wait in the last-seen buffer, user stats are
// marked stale).
func openStore(ctx context.Context, cfg config.Config, log *slog.Logger, startDown bool) (store.Store, error) {
	if cfg.MongoURI == "" {
		s, err := sqlitestore.Open(ctx, cfg.DataDir)
		if err != nil {
			return nil, fmt.Errorf("data store (DATA_DIR=%s): %w", cfg.DataDir, err)
		}
		return s, nil
	}
	s, err := mongostore.Open(ctx, mongostore.Options{
		URI: cfg.MongoURI, Database: cfg.MongoDB, UsersCollection: cfg.UsersCollection,
		BatchSize: cfg.MongoBatchSize, Logger: log, StartUnavailable: startDown,
	})
	if err != nil {
		return nil, fmt.Errorf("data store (MONGODB_URI): %w", err)
	}
	return s, nil
}

func modeName(cfg config.Config) string {
	switch {
	case !cfg.RedisConfigured():
		return "embedded"
	case cfg.PresenceMode == "external":
		return "external"
	}
	return "managed"
}

func newNodeID() string {
	host, _ := os.Hostname()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}

// panelFiles returns the admin panel's files embedded in the binary.
func panelFiles() fs.FS {
	sub, err := fs.Sub(web.Static, "static")
	if err != nil { // only if the embed directive changed
		panic(err)
	}
	return sub
}

func count(n *atomic.Int64) func() float64 { return func() float64 { return float64(n.Load()) } }

// metrics are the gauges and counters served on /metrics beside the
// stores' (internal/instrument) and the Go runtime's. Names follow the
// Prometheus conventions: base units, _total on counters, one name with
// labels rather than one name per case. docs/operations.md lists them.
func metrics(tr *presence.Tracker, gw *gateway.Gateway, dash *dashboard.Service) []httpapi.Gauge {
	local := func(pick func(users, conns, guests int64) int64) func() float64 {
		return func() float64 { return float64(pick(tr.Local())) }
	}
	st := gw.Stats()
	gauges := []httpapi.Gauge{
		{Name: "presenced_online_users", Help: "Online users in the cluster, as of this node's last write to the presence store.",
			Value: func() float64 { return float64(tr.Online()) }},
		{Name: "presenced_node_users", Help: "Distinct users connected to this node.",
			Value: local(func(u, _, _ int64) int64 { return u })},
		{Name: "presenced_node_connections", Help: "Connections to this node, guests included.",
			Value: local(func(_, c, _ int64) int64 { return c })},
		{Name: "presenced_node_guests", Help: "Anonymous connections to this node.",
			Value: local(func(_, _, g int64) int64 { return g })},
		{Name: "presenced_presence_store_up", Help: "1 when the last write to the presence store succeeded, 0 while it fails.",
			Value: func() float64 {
				if tr.StoreDown() {
					return 0
				}
				return 1
			}},
		{Name: "presenced_sse_clients", Help: "Open admin event streams (/api/admin/dashboard/stream) on this node.",
			Value: func() float64 { return float64(dash.Stream().Subscribers()) }},
		{Name: "presenced_auth_failures_total", Help: "Connections refused for their token, by reason: missing or invalid.",
			Labels: map[string]string{"reason": "missing"}, Value: count(&st.AuthMissing), Counter: true},
		{Name: "presenced_auth_failures_total", Help: "Connections refused for their token, by reason: missing or invalid.",
			Labels: map[string]string{"reason": "invalid"}, Value: count(&st.AuthInvalid), Counter: true},
	}
	for _, c := range []struct {
		reason string
		n      *atomic.Int64
	}{{"protocol_error", &st.ProtocolErrors}, {"policy", &st.PolicyCloses}, {"slow_consumer", &st.SlowConsumers}} {
		gauges = append(gauges, httpapi.Gauge{
			Name: "presenced_server_closes_total", Help: "WebSocket connections the server closed, by reason: protocol_error (1002, 1007, 1009), policy (1008: a bad message or too many pings), slow_consumer (over WS_MAX_QUEUED_BYTES queued).",
			Labels: map[string]string{"reason": c.reason}, Value: count(c.n), Counter: true,
		})
	}
	for _, source := range []string{"data_store", "stale"} {
		gauges = append(gauges, httpapi.Gauge{
			Name: "presenced_fallback_answers_total", Help: "Online counts answered without the presence store (failing, slow or rebuilding): from the data store's fallback, or the last good value marked stale.",
			Labels: map[string]string{"source": source},
			Value: func() float64 {
				fb, stale := dash.Fallbacks()
				if source == "stale" {
					return float64(stale)
				}
				return float64(fb)
			}, Counter: true,
		})
	}
	for _, name := range gateway.Transports {
		help := "Connection attempts by transport and result: accepted (counted online), unauthorized (missing or bad token), rate_limited (CONNECT_RATE_PER_IP or MAX_CONNS_PER_IP)."
		gauges = append(gauges,
			httpapi.Gauge{
				Name: "presenced_connections", Help: "Open client connections on this node by transport (Socket.IO sessions counted from their open).",
				Labels: map[string]string{"transport": name},
				Value:  func() float64 { return float64(gw.Transports()[name]) },
			},
			httpapi.Gauge{Name: "presenced_connects_total", Help: help, Counter: true,
				Labels: map[string]string{"transport": name, "result": "accepted"}, Value: func() float64 { return float64(st.Connects.Load(name)) }},
			httpapi.Gauge{Name: "presenced_connects_total", Help: help, Counter: true,
				Labels: map[string]string{"transport": name, "result": "unauthorized"}, Value: func() float64 { return float64(st.Unauthorized.Load(name)) }},
			httpapi.Gauge{Name: "presenced_connects_total", Help: help, Counter: true,
				Labels: map[string]string{"transport": name, "result": "rate_limited"}, Value: func() float64 { return float64(st.RateLimited.Load(name)) }},
			httpapi.Gauge{Name: "presenced_disconnects_total", Help: "Counted connections that ended, by transport.", Counter: true,
				Labels: map[string]string{"transport": name}, Value: func() float64 { return float64(st.Disconnects.Load(name)) }},
		)
	}
	return gauges
}

// whoParts are the who-is-online pieces of a node: nil fields when the
// mode has none.
type whoParts struct {
	dir  presence.Directory
	feed *events.Feed
	hub  *events.Hub
	hook *webhook.Sender
}

// newWho builds the directory, the node's event feed and watch hub, and
// the webhook sender when WEBHOOK_URL is set, on the presence store (nil
// in external mode: no parts).
func newWho(ps presence.Store, cfg config.Config, node string, log *slog.Logger) (whoParts, error) {
	var w whoParts
	dir, ok1 := ps.(presence.Directory)
	elog, ok2 := ps.(presence.EventLog)
	if ps == nil || !ok1 || !ok2 {
		return w, nil
	}
	w.dir = dir
	w.feed = events.NewFeed(elog, log)
	w.hub = events.NewHub(dir, log)
	w.feed.Subscribe(w.hub.Deliver)
	if cfg.WebhookURL != "" {
		coord, ok := ps.(webhook.Coordinator)
		if !ok {
			return w, fmt.Errorf("webhook: the presence store cannot coordinate deliveries")
		}
		hook, err := webhook.New(webhook.Options{
			URL: cfg.WebhookURL, Secret: cfg.WebhookSecret, Node: node, Log: elog, Coord: coord, Logger: log,
		})
		if err != nil {
			return w, err
		}
		w.hook = hook
	}
	return w, nil
}

// newPresenceStore returns the managed-mode store: one Store, or a
// Sharded one with PRESENCE_SHARDS > 1. Keys in use by live nodes with
// another PRESENCE_SHARDS stop the start (a Redis that cannot be read now
// is not held against it: the scripts refuse a mismatch too).
func newPresenceStore(ctx context.Context, rdb redis.UniversalClient, cfg config.Config, log *slog.Logger) (presence.Store, error) {
	o := redisstore.Options{
		Prefix: cfg.KeyPrefix, OnlineKey: cfg.OnlineUsersKey, NodeTTL: cfg.NodeTTL,
		RecoveryWindow: cfg.HeartbeatInterval * 3 / 2, Location: cfg.StatsTimezone,
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err := redisstore.CheckLayout(cctx, rdb, cfg.KeyPrefix, cfg.PresenceShards)
	cancel()
	switch {
	case errors.Is(err, redisstore.ErrLayout):
		return nil, &config.Error{Var: "PRESENCE_SHARDS", Value: strconv.Itoa(cfg.PresenceShards), Reason: err.Error()}
	case err != nil:
		log.Warn("cannot check the presence layout of the keys in Redis now", "err", err)
	}
	if cfg.PresenceShards > 1 {
		return redisstore.NewSharded(rdb, o, cfg.PresenceShards)
	}
	return redisstore.New(rdb, o)
}

// loops are the goroutines of the parts.
func (w whoParts) loops() []func(context.Context) {
	var out []func(context.Context)
	if w.feed != nil {
		out = append(out, w.feed.Run)
	}
	if w.hook != nil {
		out = append(out, w.hook.Run)
	}
	return out
}

// metrics are the parts' numbers on /metrics.
func (w whoParts) metrics() []httpapi.Gauge {
	var out []httpapi.Gauge
	if w.hub != nil {
		out = append(out,
			httpapi.Gauge{Name: "presenced_watch_connections", Help: "Connections on this node watching users' presence.",
				Value: func() float64 { return float64(w.hub.Watchers()) }},
			httpapi.Gauge{Name: "presenced_watch_entries", Help: "Watched (connection, user) pairs on this node.",
				Value: func() float64 { return float64(w.hub.Watched()) }},
		)
	}
	if w.hook != nil {
		out = append(out,
			httpapi.Gauge{Name: "presenced_webhook_events_delivered_total", Help: "Online/offline events this node delivered to WEBHOOK_URL.",
				Value: func() float64 { return float64(w.hook.Delivered()) }, Counter: true},
			httpapi.Gauge{Name: "presenced_webhook_events_dropped_total", Help: "Online/offline events this node dropped after every delivery attempt to WEBHOOK_URL failed.",
				Value: func() float64 { return float64(w.hook.Dropped()) }, Counter: true},
			httpapi.Gauge{Name: "presenced_webhook_failures_total", Help: "Failed POSTs to WEBHOOK_URL (each is retried with backoff).",
				Value: func() float64 { return float64(w.hook.Failures()) }, Counter: true},
		)
	}
	return out
}

// waitAtMost waits for wg, or d.
func waitAtMost(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// lastSeenLookup returns the data store's one-user last-seen lookup, if it
// has one.
func lastSeenLookup(ds store.Store) httpapi.LastSeenLookup {
	if l, ok := ds.(httpapi.LastSeenLookup); ok {
		return l
	}
	return nil
}
