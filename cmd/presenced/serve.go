package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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
	"github.com/presenced/presenced/gateway"
	"github.com/presenced/presenced/httpapi"
	"github.com/presenced/presenced/internal/clientip"
	"github.com/presenced/presenced/internal/procstat"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/presence/memstore"
	"github.com/presenced/presenced/presence/redisstore"
	"github.com/presenced/presenced/store"
	"github.com/presenced/presenced/store/mongostore"
	"github.com/presenced/presenced/store/sqlitestore"
	"github.com/presenced/presenced/web"
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
			rs, err := redisstore.New(rdb, redisstore.Options{
				Prefix: cfg.KeyPrefix, OnlineKey: cfg.OnlineUsersKey, NodeTTL: cfg.NodeTTL,
				RecoveryWindow: cfg.HeartbeatInterval * 3 / 2,
			})
			if err != nil {
				_ = ds.Close(context.Background())
				return err
			}
			pstore, reader = rs, rs
		}
	} else {
		ms := memstore.New(cfg.NodeTTL, nil)
		pstore, reader = ms, ms
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
	tracker := presence.NewTracker(presence.TrackerOptions{
		Node: node, Store: pstore, Counter: reader, BatchWindow: cfg.BatchWindow, BatchMax: cfg.BatchMax,
		HeartbeatInterval: cfg.HeartbeatInterval, Info: localInfo,
		OnOnline: seen, OnOffline: seen, Logger: log,
		// A predecessor killed without leaving holds the id for at most a
		// lease (two if an outage grace extended it): wait that long.
		TakenGrace: 2*cfg.NodeTTL + cfg.HeartbeatInterval,
	})
	lastSeen = store.NewLastSeenWriter(ds, store.LastSeenOptions{
		RefreshInterval: cfg.LastSeenInterval, Online: tracker.Users, Logger: log,
	})
	ips := clientip.New(cfg.TrustedProxies)
	gw, err = gateway.New(gateway.Options{
		Node: node, Tracker: tracker, Verifier: verifier, AllowAnonymous: cfg.AllowAnonymous,
		PingInterval: cfg.PingInterval, IdleTimeout: cfg.IdleTimeout, MaxMessageBytes: cfg.MaxMessageBytes,
		MaxQueuedBytes: cfg.MaxQueuedBytes, PingRate: cfg.PingRate, PingBurst: cfg.PingBurst,
		MaxConnsPerIP: cfg.MaxConnsPerIP, ConnectRatePerIP: cfg.ConnectRatePerIP, ClientIP: ips,
		Origins: cfg.CORSOrigins, Logger: log,
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
	if rs, ok := pstore.(*redisstore.Store); ok && ds.Kind() == "mongodb" {
		shared = rs
	}
	dash := dashboard.New(dashboard.Options{
		Presence: reader, Source: source, External: cfg.PresenceMode == "external" && cfg.RedisURL != "", Store: ds, Tracker: tracker, Redis: probe,
		LocalNode:    tracker.NodeInfo,
		StatsRefresh: cfg.StatsRefresh, LastSeenInterval: cfg.LastSeenInterval, Logger: log, Shared: shared,
	})
	history := &dashboard.HistoryRecorder{Presence: reader, Store: ds, Logger: log}
	if rs, ok := pstore.(*redisstore.Store); ok {
		history.Claimer = rs
	}
	admin := auth.NewAdmin(adminToken, verifier, auth.AdminOptions{Secret: secret, SessionTTL: cfg.AdminSessionTTL})
	handler := httpapi.NewServer(httpapi.Deps{
		Logger: log, Dashboard: dash, Admin: admin, Sessions: admin, Panel: panelFiles(),
		WebSocket: gw, SocketIO: http.HandlerFunc(gw.ServeSocketIO), SocketIOPath: cfg.SocketIOPath, CORSOrigins: cfg.CORSOrigins, Metrics: metrics(tracker, gw),
		ClientIP: ips, AdminFailures: cfg.AdminAuthFailures, MaxBodyBytes: int64(cfg.MaxBodyBytes),
	})

	ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(cfg.Port)))
	if err != nil {
		gw.Close()
		_ = ds.Close(context.Background())
		return &config.Error{Var: "PORT", Value: strconv.Itoa(cfg.Port), Reason: "cannot listen: " + err.Error()}
	}
	srv := httpapi.Listen(ln, handler, httpapi.Limits{
		ReadHeaderTimeout: cfg.ReadHeaderTimeout, IdleTimeout: cfg.HTTPIdleTimeout,
		MaxHeaderBytes: cfg.MaxHeaderBytes,
	}, log)
	log.Info("presenced listening", "addr", ln.Addr().String(), "mode", modeName(cfg), "data_store", ds.Kind(), "version", version)

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
	if redisMon != nil {
		wg.Add(1)
		go func() { defer wg.Done(); redisMon.run(bg) }()
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

// metrics are the presence gauges served on /metrics.
func metrics(tr *presence.Tracker, gw *gateway.Gateway) []httpapi.Gauge {
	local := func(pick func(users, conns, guests int64) int64) func() float64 {
		return func() float64 { return float64(pick(tr.Local())) }
	}
	gauges := []httpapi.Gauge{
		{Name: "presenced_online_users", Help: "Online users in the cluster, as of this node's last write to the presence store.",
			Value: func() float64 { return float64(tr.Online()) }},
		{Name: "presenced_node_users", Help: "Distinct users connected to this node.",
			Value: local(func(u, _, _ int64) int64 { return u })},
		{Name: "presenced_node_connections", Help: "Connections to this node, guests included.",
			Value: local(func(_, c, _ int64) int64 { return c })},
		{Name: "presenced_node_guests", Help: "Anonymous connections to this node.",
			Value: local(func(_, _, g int64) int64 { return g })},
		{Name: "presenced_websocket_open", Help: "Open WebSocket connections on this node.",
			Value: func() float64 { return float64(gw.Count()) }},
		{Name: "presenced_websocket_refused_auth_total", Help: "WebSocket handshakes refused for a missing or bad token (401).",
			Value: count(&gw.Stats().RefusedAuth), Counter: true},
		{Name: "presenced_websocket_refused_limit_total", Help: "WebSocket handshakes refused by MAX_CONNS_PER_IP or CONNECT_RATE_PER_IP (429).",
			Value: count(&gw.Stats().RefusedLimit), Counter: true},
		{Name: "presenced_websocket_protocol_errors_total", Help: "WebSocket connections closed for an RFC 6455 violation (1002, 1007, 1009).",
			Value: count(&gw.Stats().ProtocolErrors), Counter: true},
		{Name: "presenced_websocket_policy_closes_total", Help: "WebSocket connections closed for an unsupported message or too many pings (1008).",
			Value: count(&gw.Stats().PolicyCloses), Counter: true},
		{Name: "presenced_websocket_slow_consumers_total", Help: "WebSocket connections closed because over WS_MAX_QUEUED_BYTES were queued for them.",
			Value: count(&gw.Stats().SlowConsumers), Counter: true},
		{Name: "presenced_presence_store_down", Help: "1 when the last write to the presence store failed.",
			Value: func() float64 {
				if tr.StoreDown() {
					return 1
				}
				return 0
			}},
	}
	for _, name := range []string{gateway.TransportWebSocket, gateway.TransportSocketIOWebSocket, gateway.TransportSocketIOPolling} {
		gauges = append(gauges, httpapi.Gauge{
			Name: "presenced_connections", Help: "Open client connections on this node by transport (Socket.IO sessions counted from their open).",
			Labels: map[string]string{"transport": name},
			Value:  func() float64 { return float64(gw.Transports()[name]) },
		})
	}
	return gauges
}
