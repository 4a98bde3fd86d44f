package redisstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Probe measures a Redis server for the server-load stats and /readyz.
type Probe struct{ rdb redis.UniversalClient }

// NewProbe returns a Probe of rdb.
func NewProbe(rdb redis.UniversalClient) *Probe { return &Probe{rdb: rdb} }

// Ping measures one round trip. A failure is a *StateError telling why
// (see Classify).
//
// On a Cluster every master is pinged: a Cluster client's PING reaches any
// one node, which says nothing of the master holding the presence keys,
// and with one master down the cluster refuses writes anyway.
func (p *Probe) Ping(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	var err error
	if c, ok := p.rdb.(*redis.ClusterClient); ok {
		err = c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			return m.Ping(ctx).Err()
		})
	} else {
		err = p.rdb.Ping(ctx).Err()
	}
	if err != nil {
		return 0, classified("ping", err)
	}
	return time.Since(start), nil
}

// UsedMemory returns the used_memory figure of INFO memory; on a Cluster,
// the sum over its masters.
func (p *Probe) UsedMemory(ctx context.Context) (int64, error) {
	if c, ok := p.rdb.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		var sum int64
		err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			n, err := usedMemory(ctx, m)
			mu.Lock()
			sum += n
			mu.Unlock()
			return err
		})
		return sum, err
	}
	return usedMemory(ctx, p.rdb)
}

func usedMemory(ctx context.Context, rdb redis.Cmdable) (int64, error) {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, fmt.Errorf("redisstore: info memory: %w", err)
	}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "used_memory:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("redisstore: info memory: no used_memory field")
}

// ErrConfigUnavailable means Redis refused CONFIG GET (renamed or disabled
// by the provider, or not allowed to presenced's ACL user), so the
// eviction policy could not be checked.
var ErrConfigUnavailable = errors.New("redisstore: CONFIG GET not available")

// EvictionPolicies returns the maxmemory-policy of each master, keyed by
// address ("" for a single server or a Sentinel master). It returns
// ErrConfigUnavailable (wrapped) when Redis refuses CONFIG.
func (p *Probe) EvictionPolicies(ctx context.Context) (map[string]string, error) {
	out := make(map[string]string)
	var mu sync.Mutex
	get := func(ctx context.Context, c *redis.Client, addr string) error {
		res, err := c.ConfigGet(ctx, "maxmemory-policy").Result()
		if err != nil {
			msg := err.Error()
			if strings.Contains(msg, "unknown command") || strings.Contains(msg, "NOPERM") || strings.Contains(msg, "no permissions") {
				return fmt.Errorf("%w: %s", ErrConfigUnavailable, msg)
			}
			return classified("config get maxmemory-policy", err)
		}
		mu.Lock()
		out[addr] = res["maxmemory-policy"]
		mu.Unlock()
		return nil
	}
	switch c := p.rdb.(type) {
	case *redis.ClusterClient:
		err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			return get(ctx, m, m.Options().Addr)
		})
		return out, err
	case *redis.Client:
		return out, get(ctx, c, "")
	}
	return nil, fmt.Errorf("redisstore: eviction policy: unsupported client %T", p.rdb)
}

// EvictionRisk says what a maxmemory-policy means for presence keys.
// refuse is true for the allkeys-* policies, which may evict any key: the
// users hash, a node's share or the lease set, leaving the count wrong
// until the next rewrite. The volatile-* policies evict only keys with an
// expiry; presenced's are online_users (rewritten by the next heartbeat),
// the load figures (rewritten by the next heartbeat), the day's peak and
// the history claims, so they are accepted with a warning. noeviction is
// what presenced wants: writes then fail instead, which it reports.
func EvictionRisk(policy string) (refuse bool, warning string) {
	switch {
	case strings.HasPrefix(policy, "allkeys-"):
		return true, ""
	case strings.HasPrefix(policy, "volatile-"):
		return false, "keys with an expiry may be evicted under memory pressure: online_users and the load figures are rewritten by the next heartbeat, but the day's peak can be lost; noeviction is safest"
	}
	return false, ""
}
