package main

import (
	"context"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/presenced/presenced/config"
	"github.com/presenced/presenced/store"
)

// startAttrs are the fields of the "presenced listening" line beside the
// address: where each dependency is, with credentials left out (a URL's
// user info never reaches the log).
func startAttrs(cfg config.Config, ds store.Store) []any {
	attrs := []any{"mode", modeName(cfg), "data_store", ds.Kind()}
	switch cfg.RedisTopology() {
	case "single":
		attrs = append(attrs, "redis", redactURL(cfg.RedisURL))
	case "cluster", "sentinel":
		attrs = append(attrs, "redis_"+cfg.RedisTopology(), redisAddrs(cfg))
	}
	if cfg.PresenceShards > 1 {
		attrs = append(attrs, "presence_shards", cfg.PresenceShards)
	}
	if cfg.MongoURI != "" {
		attrs = append(attrs, "mongodb", redactURL(cfg.MongoURI))
	} else {
		attrs = append(attrs, "data_dir", cfg.DataDir)
	}
	return append(attrs, "stats_timezone", cfg.StatsTimezone.String(), "version", version)
}

// redactURL returns raw without user info, query or fragment:
// "redis://:secret@cache:6379/2" gives "redis://cache:6379/2". Something
// that does not parse gives "(unparsable)", never the raw text.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(unparsable)"
	}
	return u.Scheme + "://" + u.Host + strings.TrimSuffix(u.Path, "/")
}

// dataStoreMonitor pings the data store every interval and logs when it
// stops answering and when it answers again: one line per change, never
// one per ping. A store that is down when the monitor starts was already
// reported by its Open.
type dataStoreMonitor struct {
	ds       store.Store
	log      *slog.Logger
	interval time.Duration
}

func (m *dataStoreMonitor) run(ctx context.Context) {
	ping := func() error {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return m.ds.Ping(pctx)
	}
	up := ping() == nil
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := ping()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil && up:
			up = false
			m.log.Warn("data store unreachable; last-seen writes wait in a bounded buffer, user stats are served stale", "kind", m.ds.Kind(), "err", err)
		case err == nil && !up:
			up = true
			m.log.Info("data store reachable again", "kind", m.ds.Kind())
		}
	}
}
