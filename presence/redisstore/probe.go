package redisstore

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Probe measures a Redis server for the server-load stats and /readyz.
type Probe struct{ rdb redis.UniversalClient }

// NewProbe returns a Probe of rdb.
func NewProbe(rdb redis.UniversalClient) *Probe { return &Probe{rdb: rdb} }

// Ping measures one round trip.
func (p *Probe) Ping(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	if err := p.rdb.Ping(ctx).Err(); err != nil {
		return 0, fmt.Errorf("redisstore: ping: %w", err)
	}
	return time.Since(start), nil
}

// UsedMemory returns the used_memory figure of INFO memory.
func (p *Probe) UsedMemory(ctx context.Context) (int64, error) {
	info, err := p.rdb.Info(ctx, "memory").Result()
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
