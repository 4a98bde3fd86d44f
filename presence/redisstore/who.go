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

// Event ids. The events stream (<prefix>:transitions) holds one entry per
// script call that made any transition (see flush in lua/lib.lua): fields
// "at" (ms), then "+" user or "-" user per transition, in the order the
// call made them. The k-th transition (from 0) of entry <ms>-<seq> has the
// id "<ms>-<seq>" for k = 0 and "<ms>-<seq>.<k>" after; ids order by ms,
// seq, then k. (Versions that wrote one transition per entry used another
// key, <prefix>:events, so that neither version misreads the other's
// entries during a rolling upgrade; a webhook position stored by them is
// an entry id, which reads as a time here.)

// eventPos is a position in the stream: after the transition k of entry.
type eventPos struct {
	entry string // "<ms>-<seq>", or "0-0" before the first entry
	k     int
}

func parseEventID(id string) (eventPos, error) {
	if id == "" || id == "0-0" {
		return eventPos{entry: "0-0"}, nil
	}
	entry, k, dotted := strings.Cut(id, ".")
	ms, seq, ok := strings.Cut(entry, "-")
	_, err1 := strconv.ParseUint(ms, 10, 64)
	_, err2 := strconv.ParseUint(seq, 10, 64)
	pos := eventPos{entry: entry}
	var err3 error
	if dotted {
		pos.k, err3 = strconv.Atoi(k)
	}
	if !ok || err1 != nil || err2 != nil || err3 != nil || pos.k < 0 {
		return eventPos{}, fmt.Errorf("redisstore: read events: invalid event id %q", id)
	}
	return pos, nil
}

func eventID(entry string, k int) string {
	if k == 0 {
		return entry
	}
	return entry + "." + strconv.Itoa(k)
}

// ReadEvents implements presence.EventLog with XRANGE on the events
// stream, and XREAD BLOCK to wait when block > 0 and nothing is there.
// It returns whole entries (the rest of the one after names): count is
// reached, but may be passed by the last entry's transitions.
func (s *Store) ReadEvents(ctx context.Context, after string, count int, block time.Duration) ([]presence.Event, error) {
	pos, err := parseEventID(after)
	if err != nil {
		return nil, err
	}
	count = max(count, 1)
	// A Redis that hangs must not hold the reader (and a shutdown) for
	// go-redis's read timeout on top of the block.
	ctx, cancel := context.WithTimeout(ctx, max(block, 0)+time.Second)
	defer cancel()
	out, err := s.readEvents(ctx, pos, count)
	if err != nil || len(out) > 0 || block <= 0 {
		return out, err
	}
	// Nothing yet: wait for an entry after pos.entry (the rest of that
	// entry was empty), then read it as above.
	args := &redis.XReadArgs{Streams: []string{s.events, pos.entry}, Count: 1, Block: block}
	if err := s.rdb.XRead(ctx, args).Err(); errors.Is(err, redis.Nil) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("redisstore: read events: %w", err)
	}
	return s.readEvents(ctx, pos, count)
}

// readEvents reads the transitions after pos, about count of them, in
// whole entries. It asks for one entry after pos.entry first and then for
// as many as the sizes seen say count still needs, so that neither entries
// of one transition nor ones of thousands make it read far too much or
// too often.
func (s *Store) readEvents(ctx context.Context, pos eventPos, count int) ([]presence.Event, error) {
	var out []presence.Event
	start, entries := "-", 0
	if pos.entry != "0-0" {
		start = pos.entry // inclusive: the rest of the entry pos names
	}
	ask := 2 // the rest of pos.entry, and one more
	for {
		page, err := s.xrange(ctx, "XRANGE", start, "+", ask)
		if err != nil {
			return nil, fmt.Errorf("redisstore: read events: %w", err)
		}
		for _, m := range page {
			if len(out) >= count {
				return out, nil
			}
			skip := 0
			if m.id == pos.entry {
				skip = pos.k + 1
			} else {
				entries++
			}
			out = m.events(out, skip)
			start = "(" + m.id
		}
		if len(page) < ask || len(out) >= count {
			return out, nil
		}
		ask = (count-len(out))*max(entries, 1)/max(len(out), 1) + 1
	}
}

// LastEventID implements presence.EventLog: the id of the last transition
// of the newest entry.
func (s *Store) LastEventID(ctx context.Context) (string, error) {
	page, err := s.xrange(ctx, "XREVRANGE", "+", "-", 1)
	if err != nil {
		return "", fmt.Errorf("redisstore: last event: %w", err)
	}
	if len(page) == 0 {
		return "0-0", nil
	}
	evs := page[0].events(nil, 0)
	if len(evs) == 0 {
		return page[0].id, nil
	}
	return evs[len(evs)-1].ID, nil
}

// streamEntry is one entry of the events stream as Redis sent it: go-redis's
// XMessage keeps the fields in a map, which loses repeated ones.
type streamEntry struct {
	id     string
	fields []string
}

// xrange runs XRANGE or XREVRANGE (cmd) from start to end, up to count
// entries.
func (s *Store) xrange(ctx context.Context, cmd, start, end string, count int) ([]streamEntry, error) {
	raw, err := s.rdb.Do(ctx, cmd, s.events, start, end, "COUNT", count).Slice()
	if err != nil {
		return nil, err
	}
	out := make([]streamEntry, 0, len(raw))
	for _, r := range raw {
		pair, ok := r.([]any)
		if !ok || len(pair) != 2 {
			return nil, fmt.Errorf("unexpected %s entry %v", cmd, r)
		}
		id, _ := pair[0].(string)
		kv, _ := pair[1].([]any)
		e := streamEntry{id: id, fields: make([]string, len(kv))}
		for i, f := range kv {
			e.fields[i], _ = f.(string)
		}
		out = append(out, e)
	}
	return out, nil
}

// events appends the entry's transitions after the first skip to out.
func (m streamEntry) events(out []presence.Event, skip int) []presence.Event {
	var at time.Time
	for i := 0; i+1 < len(m.fields); i += 2 {
		if m.fields[i] == "at" {
			if ms, err := strconv.ParseInt(m.fields[i+1], 10, 64); err == nil {
				at = time.UnixMilli(ms).UTC()
			}
		}
	}
	k := 0
	for i := 0; i+1 < len(m.fields); i += 2 {
		kind := ""
		switch m.fields[i] {
		case "+":
			kind = "online"
		case "-":
			kind = "offline"
		default:
			continue
		}
		if k >= skip {
			out = append(out, presence.Event{ID: eventID(m.id, k), Type: kind, User: m.fields[i+1], At: at})
		}
		k++
	}
	return out
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
