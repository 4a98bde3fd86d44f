package redisstore_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/presence/redisstore"
)

// TestEventsStream checks the stream in Redis itself: its name under the
// key prefix, its fields, and its trimming to about EventsMaxLen.
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
	msgs, err := rdb.XRange(ctx(t), "{ev}:events", "-", "+").Result()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("XRANGE {ev}:events = %v, %v; want one entry", msgs, err)
	}
	v := msgs[0].Values
	if v["type"] != "online" || v["user"] != "alice" || v["at"] == nil {
		t.Fatalf("entry %v, want type online, user alice, at", v)
	}
	for seq := uint64(2); seq < 1000; seq++ {
		users := map[string]int64{fmt.Sprint("u", seq%7): 1}
		if _, err := s.Sync(ctx(t), presence.Share{Node: "n", Seq: seq, Users: users}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := rdb.XLen(ctx(t), "{ev}:events").Result()
	if err != nil || n < 100 || n > 300 {
		t.Fatalf("XLEN after ~2000 events with MAXLEN ~ 100 = %d, %v", n, err)
	}
}
