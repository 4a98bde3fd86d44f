package dashboard_test

import (
	"context"
	"testing"
	"time"

	"github.com/presenced/presenced/dashboard"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/presence/memstore"
)

// TestStreamCap: while the count changes every 10 ms, a subscriber sees
// at most StreamMaxEvents changes in any one second, and the last value
// once the changes stop.
func TestStreamCap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem := memstore.New(time.Hour, nil)
	svc := startService(t, dashboard.Options{Presence: mem, Source: "memory", Store: mustOpenSQLite(t)})
	sub := svc.Stream().Subscribe()
	defer sub.Close()

	stop := make(chan struct{})
	last := make(chan int, 1)
	go func() {
		n := 0
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for seq := uint64(1); ; seq++ {
			select {
			case <-stop:
				last <- n
				return
			case <-tick.C:
			}
			n = int(seq % 50)
			users := make(map[string]int64, n)
			for i := range n {
				users[string(rune('a'+i))] = 1
			}
			if _, err := mem.Sync(ctx, presence.Share{Node: "n", Seq: seq, Users: users}); err != nil {
				t.Error(err)
			}
		}
	}()

	var seen []time.Time
	var ver uint64
	end := time.After(2500 * time.Millisecond)
watch:
	for {
		_, v, changed := sub.Latest()
		if v != ver {
			ver = v
			seen = append(seen, time.Now())
		}
		select {
		case <-changed:
		case <-end:
			break watch
		}
	}
	close(stop)
	want := <-last
	for i := dashboard.StreamMaxEvents; i < len(seen); i++ {
		// A little slack for the subscriber's own wake-ups.
		if d := seen[i].Sub(seen[i-dashboard.StreamMaxEvents]); d < 950*time.Millisecond {
			t.Fatalf("changes %d..%d came within %s: more than %d in a second", i-dashboard.StreamMaxEvents, i, d, dashboard.StreamMaxEvents)
		}
	}
	if len(seen) < 2 {
		t.Fatalf("saw %d changes in 2.5 s of changing counts", len(seen))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		o, _, changed := sub.Latest()
		if o.OnlineUsers == int64(want) {
			break
		}
		select {
		case <-changed:
		case <-time.After(time.Until(deadline)):
			t.Fatalf("the stream never showed the last count %d (shows %d)", want, o.OnlineUsers)
		}
	}
}
