package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/presenced/presenced/config"
	"github.com/presenced/presenced/presence/redisstore"
)

// redisClientOptions maps the configuration onto the Redis client's.
func redisClientOptions(cfg config.Config) redisstore.ClientOptions {
	return redisstore.ClientOptions{
		URL: cfg.RedisURL, ClusterAddrs: cfg.RedisClusterAddrs,
		SentinelAddrs: cfg.RedisSentinelAddrs, SentinelMaster: cfg.RedisSentinelMaster, SentinelPassword: cfg.RedisSentinelPassword,
		Username: cfg.RedisUsername, Password: cfg.RedisPassword,
		TLSCAFile: cfg.RedisTLSCAFile, TLSCertFile: cfg.RedisTLSCertFile, TLSKeyFile: cfg.RedisTLSKeyFile,
	}
}

// redisAddrs describes where the client connects, for the log: the
// server, the Cluster's seeds or the Sentinels and master name; never a
// credential. With a Cluster or Sentinel, REDIS_URL's host is not used.
func redisAddrs(cfg config.Config) string {
	switch cfg.RedisTopology() {
	case "cluster":
		return strings.Join(cfg.RedisClusterAddrs, ",")
	case "sentinel":
		return cfg.RedisSentinelMaster + "@" + strings.Join(cfg.RedisSentinelAddrs, ",")
	}
	if u, err := url.Parse(cfg.RedisURL); err == nil {
		return u.Host + u.Path
	}
	return ""
}

// redisMonitor logs the Redis connection's state: the three lines of the
// design note when it connects, then one line per change of state (auth
// refused, wrong database, TLS failed, unreachable are told apart), never
// one per retry. At every (re)connect it checks maxmemory-policy and
// sends on fatal when Redis may evict presence keys.
type redisMonitor struct {
	probe         *redisstore.Probe
	log           *slog.Logger
	topology      string // "single", "cluster" or "sentinel"
	addrs         string // where it connects, without credentials
	allowEviction bool   // REDIS_ALLOW_EVICTION
	fatal         chan error
}

// fatalC is the channel on which the monitor reports a reason to stop; nil
// (blocking forever) without Redis.
func (m *redisMonitor) fatalC() <-chan error {
	if m == nil {
		return nil
	}
	return m.fatal
}

func (m *redisMonitor) run(ctx context.Context) {
	const (
		minBackoff = 100 * time.Millisecond
		maxBackoff = 2 * time.Second
		// Retrying cannot fix a refused password or a missing database
		// until the operator changes the configuration; retry gently.
		maxConfigBackoff = 10 * time.Second
		checkEvery       = 250 * time.Millisecond
	)
	state := redisstore.State("")
	for ctx.Err() == nil {
		m.log.Info("Redis client connecting...", "topology", m.topology, "addrs", m.addrs)
		backoff := minBackoff
		for {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := m.probe.Ping(pctx)
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			s := redisstore.Classify(err)
			if s != state {
				m.logState("Redis connection failed", s, err)
				state = s
			} else {
				m.log.Debug("Redis connection failed again", "state", string(s), "err", err, "retry_in", backoff)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			limit := maxBackoff
			if s == redisstore.StateAuthRefused || s == redisstore.StateWrongDatabase {
				limit = maxConfigBackoff
			}
			backoff = min(backoff*2, limit)
		}
		state = redisstore.StateOK
		m.log.Info("Redis client ready")
		m.log.Info("Redis connected successfully", "topology", m.topology)
		if err := m.checkEviction(ctx); err != nil {
			m.fatal <- err
			return
		}
		// Watch the connection; on loss, go back to connecting.
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(checkEvery):
			}
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			_, err := m.probe.Ping(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				if errors.Is(err, context.DeadlineExceeded) {
					err = errors.New("no answer within 1s")
				}
				state = redisstore.Classify(err)
				m.logState("Redis connection lost", state, err)
				break
			}
		}
	}
}

// logState logs one change of the connection's state: what happened, the
// state's name, what it means and Redis's own words (which never hold a
// password).
func (m *redisMonitor) logState(what string, s redisstore.State, err error) {
	level := slog.LevelWarn
	if s == redisstore.StateAuthRefused || s == redisstore.StateWrongDatabase || s == redisstore.StateTLSFailed {
		level = slog.LevelError
	}
	m.log.Log(context.Background(), level, what+": "+string(s), "state", string(s), "advice", s.Advice(), "err", err)
}

// checkEviction refuses a maxmemory-policy that may evict presence keys
// (allkeys-*) unless REDIS_ALLOW_EVICTION allows it, and warns about the
// volatile-* ones. A Redis that refuses CONFIG (managed services often
// rename it) is warned about and accepted.
func (m *redisMonitor) checkEviction(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	policies, err := m.probe.EvictionPolicies(pctx)
	if errors.Is(err, redisstore.ErrConfigUnavailable) {
		m.log.Warn("cannot check Redis maxmemory-policy: CONFIG GET is refused; make sure it is noeviction or volatile-*, since allkeys-* may evict presence keys", "err", err)
		return nil
	}
	if err != nil {
		m.log.Warn("cannot check Redis maxmemory-policy now; checked again at the next reconnect", "err", err)
	}
	for addr, p := range policies {
		where := ""
		if addr != "" {
			where = " on " + addr
		}
		refuse, warning := redisstore.EvictionRisk(p)
		switch {
		case refuse && m.allowEviction:
			m.log.Warn("Redis maxmemory-policy "+p+where+" may evict presence keys; running anyway because REDIS_ALLOW_EVICTION=true", "policy", p)
		case refuse:
			return fmt.Errorf("redis: maxmemory-policy is %s%s, which may evict presence keys and leave online_users wrong: set it to noeviction (or a volatile-* policy), or set REDIS_ALLOW_EVICTION=true to run anyway", p, where)
		case warning != "":
			m.log.Warn("Redis maxmemory-policy "+p+where+": "+warning, "policy", p)
		}
	}
	return nil
}

// goRedisLogger sends go-redis's own messages (a Sentinel naming a new
// master, a pool that cannot dial) to the process's logger, so that they
// follow LOG_FORMAT instead of going to stderr in go-redis's format.
type goRedisLogger struct{ log *slog.Logger }

// Printf logs a Sentinel naming a new master at info level, and go-redis's
// other lines at debug level: they repeat every failed dial and Sentinel
// query (hundreds a minute while Redis or the Sentinels refuse
// presenced), and the Redis monitor already says each change of state
// once (see "Connection states" in the README).
func (l goRedisLogger) Printf(ctx context.Context, format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	level := slog.LevelDebug
	if strings.Contains(msg, "new master") {
		level = slog.LevelInfo
	}
	l.log.Log(ctx, level, msg, "component", "go-redis")
}
