package redisstore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/presence"
)

var (
	_ presence.Directory = (*Store)(nil)
	_ presence.EventLog  = (*Store)(nil)
)

// ListUsers implements presence.Directory with HSCAN over the users hash
// (never an O(N) call): the cursor is HSCAN's, wrapped so that clients
// treat it as opaque. Redis returns a small hash (up to
// hash-max-listpack-entries, 512 by default) whole, whatever the limit. HSCAN returns every user
// present for the whole walk; a user may be returned twice only if the
// hash shrinks during the walk.
func (s *Store) ListUsers(ctx context.Context, cursor string, limit int) (presence.UserPage, error) {
	pos, err := decodeCursor(cursor)
	if err != nil {
		return presence.UserPage{}, err
	}
	limit = max(limit, 1)
	users := s.prefix + ":users"
	var scan *redis.ScanCmd
	var total *redis.IntCmd
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		scan = p.HScan(ctx, users, pos, "", int64(limit))
		total = p.HLen(ctx, users)
		return nil
	})
	if err != nil {
		return presence.UserPage{}, fmt.Errorf("redisstore: list users: %w", err)
	}
	kv, next := scan.Val()
	page := presence.UserPage{Users: make([]presence.UserCount, 0, len(kv)/2), Total: total.Val()}
	for i := 0; i+1 < len(kv); i += 2 {
		n, _ := strconv.ParseInt(kv[i+1], 10, 64)
		if n > 0 {
			page.Users = append(page.Users, presence.UserCount{User: kv[i], Connections: n})
		}
	}
	if next != 0 {
		page.Cursor = encodeCursor(next)
	}
	return page, nil
}

// Connections implements presence.Directory: one HMGET on the users hash.
func (s *Store) Connections(ctx context.Context, users []string) ([]int64, error) {
	out := make([]int64, len(users))
	if len(users) == 0 {
		return out, nil
	}
	vals, err := s.rdb.HMGet(ctx, s.prefix+":users", users...).Result()
	if err != nil {
		return nil, fmt.Errorf("redisstore: connections: %w", err)
	}
	for i, v := range vals {
		if str, ok := v.(string); ok {
			n, _ := strconv.ParseInt(str, 10, 64)
			out[i] = max(n, 0)
		}
	}
	return out, nil
}

func encodeCursor(c uint64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("h1:" + strconv.FormatUint(c, 10)))
}

func decodeCursor(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || !strings.HasPrefix(string(b), "h1:") {
		return 0, presence.ErrBadCursor
	}
	c, err := strconv.ParseUint(string(b[3:]), 10, 64)
	if err != nil {
		return 0, presence.ErrBadCursor
	}
	return c, nil
}

// ReadEvents implements presence.EventLog with XREAD (BLOCK when block >
// 0) on the events stream.
func (s *Store) ReadEvents(ctx context.Context, after string, count int, block time.Duration) ([]presence.Event, error) {
	if after == "" {
		after = "0-0"
	}
	args := &redis.XReadArgs{Streams: []string{s.events, after}, Count: int64(max(count, 1)), Block: -1}
	if block > 0 {
		args.Block = block
	}
	// A Redis that hangs must not hold the reader (and a shutdown) for
	// go-redis's read timeout on top of the block.
	ctx, cancel := context.WithTimeout(ctx, max(block, 0)+time.Second)
	defer cancel()
	res, err := s.rdb.XRead(ctx, args).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("redisstore: read events: %w", err)
	}
	var out []presence.Event
	for _, st := range res {
		for _, m := range st.Messages {
			out = append(out, toEvent(m))
		}
	}
	return out, nil
}

// LastEventID implements presence.EventLog.
func (s *Store) LastEventID(ctx context.Context) (string, error) {
	res, err := s.rdb.XRevRangeN(ctx, s.events, "+", "-", 1).Result()
	if err != nil {
		return "", fmt.Errorf("redisstore: last event: %w", err)
	}
	if len(res) == 0 {
		return "0-0", nil
	}
	return res[0].ID, nil
}

func toEvent(m redis.XMessage) presence.Event {
	e := presence.Event{ID: m.ID}
	e.Type, _ = m.Values["type"].(string)
	e.User, _ = m.Values["user"].(string)
	if at, ok := m.Values["at"].(string); ok {
		if ms, err := strconv.ParseInt(at, 10, 64); err == nil {
			e.At = time.UnixMilli(ms).UTC()
		}
	}
	return e
}

// leaseScript renews or takes the webhook lease.
// KEYS[1] lease key; ARGV[1] holder; ARGV[2] ttl ms.
// Returns 1 when the caller holds the lease after the call.
var leaseScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`)

// savePosScript stores the webhook position if the caller holds the lease.
// KEYS[1] lease key, KEYS[2] position key; ARGV[1] holder, ARGV[2] id.
var savePosScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2])
return 1`)

// releaseScript gives the lease up if the caller holds it.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 0`)

func (s *chores) leaseKeys() []string {
	return []string{s.prefix + ":webhook:lease", s.prefix + ":webhook:position"}
}

// Lease takes or renews the webhook delivery lease for holder (one node
// at a time delivers) and reports whether holder has it.
func (s *chores) Lease(ctx context.Context, holder string, ttl time.Duration) (bool, error) {
	n, err := leaseScript.Run(ctx, s.rdb, s.leaseKeys()[:1], holder, ttl.Milliseconds()).Int64()
	if err != nil {
		return false, fmt.Errorf("redisstore: webhook lease: %w", err)
	}
	return n == 1, nil
}

// Release gives the webhook lease up if holder has it.
func (s *chores) Release(ctx context.Context, holder string) error {
	if err := releaseScript.Run(ctx, s.rdb, s.leaseKeys()[:1], holder).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("redisstore: webhook release: %w", err)
	}
	return nil
}

// Position returns the id of the last event the webhook delivered (or
// dropped), "" when none was stored.
func (s *chores) Position(ctx context.Context) (string, error) {
	v, err := s.rdb.Get(ctx, s.leaseKeys()[1]).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("redisstore: webhook position: %w", err)
	}
	return v, nil
}

// SavePosition stores the webhook position if holder has the lease, and
// reports whether it did.
func (s *chores) SavePosition(ctx context.Context, holder, id string) (bool, error) {
	n, err := savePosScript.Run(ctx, s.rdb, s.leaseKeys(), holder, id).Int64()
	if err != nil {
		return false, fmt.Errorf("redisstore: save webhook position: %w", err)
	}
	return n == 1, nil
}
