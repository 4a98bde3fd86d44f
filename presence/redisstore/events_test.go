package redisstore_test

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/presence/redisstore"
)

// rawEvent is one transition as the events stream in Redis holds it:
// entry id, its place in the entry, type and user.
type rawEvent struct {
	entry    string
	k        int
	typ      string
	user     string
	at       string
	position string // what ReadEvents names it: entry, or entry.k after the first
}

// readStream reads the whole stream with XRANGE, parsing the entries
// itself (go-redis's XMessage keeps fields in a map, losing repeated ones):
// each entry is "at" <ms>, then "+" <user> (online) or "-" <user>
// (offline) per transition. It returns the transitions and the entries.
func readStream(t *testing.T, rdb *redis.Client, stream string) ([]rawEvent, int) {
	t.Helper()
	raw, err := rdb.Do(ctx(t), "XRANGE", stream, "-", "+").Slice()
	if err != nil {
		t.Fatalf("XRANGE %s: %v", stream, err)
	}
	var out []rawEvent
	for _, r := range raw {
		pair := r.([]any)
		id, kv := pair[0].(string), pair[1].([]any)
		if len(kv) < 4 || kv[0] != "at" || len(kv)%2 != 0 {
			t.Fatalf("entry %s = %v, want at <ms> then +|- <user> pairs", id, kv)
		}
		for i := 2; i < len(kv); i += 2 {
			typ := map[any]string{"+": "online", "-": "offline"}[kv[i]]
			if typ == "" {
				t.Fatalf("entry %s field %v, want + or -", id, kv[i])
			}
			k := i/2 - 1
			pos := id
			if k > 0 {
				pos += "." + strconv.Itoa(k)
			}
			out = append(out, rawEvent{entry: id, k: k, typ: typ, user: kv[i+1].(string), at: kv[1].(string), position: pos})
		}
	}
	return out, len(raw)
}

// TestEventsStream checks the stream in Redis itself: its name under the
// key prefix, its fields, and its trimming to about EventsMaxLen
// transitions.
func TestEventsStream(t *testing.T) {
	srv := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	s, err := redisstore.New(rdb, redisstore.Options{Prefix: "{ev}", OnlineKey: "{ev}online", NodeTTL: time.Minute, EventsMaxLen: 100})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sync(ctx(t), presence.Share{Node: "n", Seq: 1, Users: map[string]int64{"alice": 1}}); err != nil {
		t.Fatal(err)
	}
	evs, entries := readStream(t, rdb, "{ev}:transitions")
	if entries != 1 || len(evs) != 1 || evs[0].typ != "online" || evs[0].user != "alice" || evs[0].at == "" {
		t.Fatalf("stream %+v in %d entries, want one entry: at, + alice", evs, entries)
	}
	for seq := uint64(2); seq < 1000; seq++ {
		users := map[string]int64{fmt.Sprint("u", seq%7): 1}
		if _, err := s.Sync(ctx(t), presence.Share{Node: "n", Seq: seq, Users: users}); err != nil {
			t.Fatal(err)
		}
	}
	// ~2000 transitions, two per rewrite (one user off, another on), each
	// rewrite one entry: MAXLEN ~ 50 entries, trimmed by whole nodes of
	// 100 entries.
	evs, entries = readStream(t, rdb, "{ev}:transitions")
	if len(evs) < 100 || len(evs) > 300 || len(evs) != 2*entries {
		t.Fatalf("%d transitions in %d entries after ~2000 with EventsMaxLen 100", len(evs), entries)
	}
}

// TestEventsOneEntryPerCall: a batch of 1000 connects is one stream entry
// of 1000 online transitions; ReadEvents from the middle of it returns
// exactly the rest; a batch of offline and online transitions keeps their
// order; a call of more than 2000 transitions writes entries of 2000 in a
// row; LastEventID names the last transition.
func TestEventsOneEntryPerCall(t *testing.T) {
	srv := testenv.StartRedis(t)
	s, rdb, p, _ := mustOpen(t, srv, time.Minute, time.Millisecond)
	if _, err := s.Sync(ctx(t), presence.Share{Node: "n", Seq: 1}); err != nil {
		t.Fatal(err)
	}
	users := func(from, to int) []string {
		var out []string
		for i := from; i < to; i++ {
			out = append(out, fmt.Sprintf("user-%04d", i))
		}
		return out
	}
	batch := func(seq uint64, on, off []string) {
		t.Helper()
		b := presence.Batch{Node: "n", Seq: seq}
		// Interleaved, so that the order in the entry is the batch's.
		for i := range max(len(on), len(off)) {
			if i < len(off) {
				b.Deltas = append(b.Deltas, presence.Delta{User: off[i], N: -1})
			}
			if i < len(on) {
				b.Deltas = append(b.Deltas, presence.Delta{User: on[i], N: 1})
			}
		}
		if _, err := s.Apply(ctx(t), b); err != nil {
			t.Fatalf("Apply %d: %v", seq, err)
		}
	}
	want := func(evs []presence.Event, types, who []string) {
		t.Helper()
		if len(evs) != len(who) {
			t.Fatalf("%d events, want %d", len(evs), len(who))
		}
		for i, e := range evs {
			if e.Type != types[i] || e.User != who[i] || e.At.IsZero() {
				t.Fatalf("event %d = %+v, want %s %s", i, e, types[i], who[i])
			}
		}
	}
	repeat := func(s string, n int) []string { return slices.Repeat([]string{s}, n) }

	batch(2, users(0, 1000), nil)
	raw, entries := readStream(t, rdb, p+":transitions")
	if entries != 1 || len(raw) != 1000 {
		t.Fatalf("1000 connects: %d transitions in %d entries, want 1000 in 1", len(raw), entries)
	}
	all, err := s.ReadEvents(ctx(t), "", 10000, 0)
	if err != nil {
		t.Fatal(err)
	}
	want(all, repeat("online", 1000), users(0, 1000))
	for i, e := range all {
		if e.ID != raw[i].position {
			t.Fatalf("event %d id %q, want %q", i, e.ID, raw[i].position)
		}
	}
	if last, err := s.LastEventID(ctx(t)); err != nil || last != all[999].ID {
		t.Fatalf("LastEventID = %q, %v; want %q", last, err, all[999].ID)
	}
	for _, from := range []int{0, 1, 499, 998} {
		rest, err := s.ReadEvents(ctx(t), all[from].ID, 10000, 0)
		if err != nil {
			t.Fatal(err)
		}
		want(rest, repeat("online", 999-from), users(from+1, 1000))
		if rest[0].ID != all[from+1].ID {
			t.Fatalf("after %s: first id %s, want %s", all[from].ID, rest[0].ID, all[from+1].ID)
		}
	}
	if rest, err := s.ReadEvents(ctx(t), all[999].ID, 10000, 0); err != nil || len(rest) != 0 {
		t.Fatalf("after the last event: %d events, %v; want none", len(rest), err)
	}

	// 500 off and 500 on, interleaved: one entry, in the batch's order.
	batch(3, users(1000, 1500), users(0, 500))
	var types, who []string
	for i := range 500 {
		types, who = append(types, "offline", "online"), append(who, users(i, i+1)[0], users(1000+i, 1001+i)[0])
	}
	mixed, err := s.ReadEvents(ctx(t), all[999].ID, 10000, 0)
	if err != nil {
		t.Fatal(err)
	}
	want(mixed, types, who)
	if _, entries := readStream(t, rdb, p+":transitions"); entries != 2 {
		t.Fatalf("%d entries after two batches, want 2", entries)
	}
	// From the middle of the mixed entry, a few at a time: whole entries,
	// so the rest of this one, then nothing.
	rest, err := s.ReadEvents(ctx(t), mixed[600].ID, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	want(rest, types[601:], who[601:])

	// 4500 connects: entries of 2000, 2000 and 500, read in one walk.
	batch(4, users(2000, 6500), nil)
	raw, entries = readStream(t, rdb, p+":transitions")
	if entries != 5 || len(raw) != 6500 {
		t.Fatalf("after 4500 more: %d transitions in %d entries, want 6500 in 5", len(raw), entries)
	}
	var walk []presence.Event
	for after := mixed[999].ID; ; {
		evs, err := s.ReadEvents(ctx(t), after, 700, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			break
		}
		walk = append(walk, evs...)
		after = evs[len(evs)-1].ID
	}
	want(walk, repeat("online", 4500), users(2000, 6500))
	if last, err := s.LastEventID(ctx(t)); err != nil || last != walk[4499].ID || last != raw[6499].position {
		t.Fatalf("LastEventID = %q, %v; want %q", last, err, walk[4499].ID)
	}
}

// TestEventIDs: the ids of an entry's transitions are "<entry>" then
// "<entry>.<k>", a read resumes after any of them, and malformed ids are
// refused; an entry without transitions reads as none. The stream of the
// one-transition-per-entry versions (<prefix>:events) is not read.
func TestEventIDs(t *testing.T) {
	srv := testenv.StartRedis(t)
	s, rdb, p, _ := mustOpen(t, srv, time.Minute, time.Millisecond)
	if err := rdb.XAdd(ctx(t), &redis.XAddArgs{Stream: p + ":events", Values: []any{"type", "online", "user", "old", "at", "1733050000000"}}).Err(); err != nil {
		t.Fatal(err)
	}
	empty, err := rdb.XAdd(ctx(t), &redis.XAddArgs{Stream: p + ":transitions", Values: []any{"at", "1733050000000"}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sync(ctx(t), presence.Share{Node: "n", Seq: 1, Users: map[string]int64{"b": 1, "c": 1}}); err != nil {
		t.Fatal(err)
	}
	evs, err := s.ReadEvents(ctx(t), "0-0", 100, 0)
	if err != nil || len(evs) != 2 || evs[0].User == "old" {
		t.Fatalf("ReadEvents = %+v, %v; want the rewrite's 2 online events only", evs, err)
	}
	if evs[1].ID != evs[0].ID+".1" {
		t.Fatalf("ids %s, %s: want the second of an entry to be <entry>.1", evs[0].ID, evs[1].ID)
	}
	if id, err := s.LastEventID(ctx(t)); err != nil || id != evs[1].ID {
		t.Fatalf("LastEventID = %q, %v; want %q", id, err, evs[1].ID)
	}
	if rest, err := s.ReadEvents(ctx(t), empty, 100, 0); err != nil || len(rest) != 2 {
		t.Fatalf("after the empty entry: %+v, %v", rest, err)
	}
	if rest, err := s.ReadEvents(ctx(t), evs[0].ID, 100, 0); err != nil || len(rest) != 1 || rest[0].ID != evs[1].ID {
		t.Fatalf("after the first transition: %+v, %v", rest, err)
	}
	for _, bad := range []string{"x", "1-2-3", "1-2.x", "1-2.-1", "abc-1"} {
		if _, err := s.ReadEvents(ctx(t), bad, 10, 0); err == nil {
			t.Errorf("ReadEvents(%q) succeeded, want an error", bad)
		}
	}
}
