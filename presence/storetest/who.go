package storetest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/presence"
)

func eventLog(t *testing.T, s presence.Store) presence.EventLog {
	t.Helper()
	l, ok := s.(presence.EventLog)
	if !ok {
		t.Fatalf("%T does not implement presence.EventLog", s)
	}
	return l
}

func directory(t *testing.T, s presence.Store) presence.Directory {
	t.Helper()
	d, ok := s.(presence.Directory)
	if !ok {
		t.Fatalf("%T does not implement presence.Directory", s)
	}
	return d
}

// allEvents reads every event after id without waiting.
func allEvents(t *testing.T, s presence.Store, after string) []presence.Event {
	t.Helper()
	l := eventLog(t, s)
	var out []presence.Event
	for {
		evs, err := l.ReadEvents(ctx(t), after, 7, 0)
		if err != nil {
			t.Fatalf("ReadEvents(%q): %v", after, err)
		}
		if len(evs) == 0 {
			return out
		}
		out = append(out, evs...)
		after = evs[len(evs)-1].ID
	}
}

// eventsSince returns the events after the last one seen by mark, as
// "online:u1" strings, sorted (a script emits in no particular order).
func eventsSince(t *testing.T, s presence.Store, mark *string) []string {
	t.Helper()
	evs := allEvents(t, s, *mark)
	out := make([]string, 0, len(evs))
	for _, e := range evs {
		if e.ID == "" || e.At.IsZero() {
			t.Fatalf("event %+v has no id or time", e)
		}
		out = append(out, e.Type+":"+e.User)
		*mark = e.ID
	}
	slices.Sort(out)
	return out
}

func wantEvents(t *testing.T, s presence.Store, mark *string, when string, want ...string) {
	t.Helper()
	got := eventsSince(t, s, mark)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("%s: events %v, want %v", when, got, want)
	}
}

func testTransitions(t *testing.T, s presence.Store) {
	mark := ""
	mustSync(t, s, presence.Share{Node: "a", Seq: 1, Users: map[string]int64{"u1": 1}})
	wantEvents(t, s, &mark, "u1 opens a tab on a", "online:u1")
	mustSync(t, s, presence.Share{Node: "b", Seq: 1})
	mustApply(t, s, presence.Batch{Node: "b", Seq: 2, Deltas: []presence.Delta{{User: "u1", N: 2}, {User: "u2", N: 1}}})
	wantEvents(t, s, &mark, "u1 opens two tabs on b, u2 one", "online:u2")
	mustApply(t, s, presence.Batch{Node: "a", Seq: 2, Deltas: []presence.Delta{{User: "u1", N: -1}}})
	wantEvents(t, s, &mark, "u1 closes its tab on a")
	mustApply(t, s, presence.Batch{Node: "b", Seq: 3, Deltas: []presence.Delta{{User: "u1", N: -1}}})
	wantEvents(t, s, &mark, "u1 closes one tab on b")
	mustApply(t, s, presence.Batch{Node: "b", Seq: 4, Deltas: []presence.Delta{{User: "u1", N: -1}, {User: "u2", N: -1}}})
	wantEvents(t, s, &mark, "u1 and u2 close their last tabs", "offline:u1", "offline:u2")
	mustApply(t, s, presence.Batch{Node: "a", Seq: 3, Deltas: []presence.Delta{{User: "u1", N: 1}}})
	wantEvents(t, s, &mark, "u1 comes back", "online:u1")
	// Ids order the events.
	evs := allEvents(t, s, "")
	if len(evs) != 5 {
		t.Fatalf("%d events in all, want 5: %+v", len(evs), evs)
	}
	last, err := eventLog(t, s).LastEventID(ctx(t))
	if err != nil || last != evs[len(evs)-1].ID {
		t.Fatalf("LastEventID = %q, %v; want %q", last, err, evs[len(evs)-1].ID)
	}
	if again := allEvents(t, s, last); len(again) != 0 {
		t.Fatalf("events after the last: %+v", again)
	}
}

func testSyncTransitions(t *testing.T, s presence.Store) {
	mark := ""
	mustSync(t, s, presence.Share{Node: "a", Seq: 1, Users: map[string]int64{"u1": 1, "u2": 2}})
	mustSync(t, s, presence.Share{Node: "b", Seq: 1, Users: map[string]int64{"u4": 1}})
	wantEvents(t, s, &mark, "first syncs", "online:u1", "online:u2", "online:u4")
	mustSync(t, s, presence.Share{Node: "a", Seq: 2, Users: map[string]int64{"u1": 1, "u2": 2}})
	wantEvents(t, s, &mark, "a resyncs the same share")
	mustSync(t, s, presence.Share{Node: "a", Seq: 3, Users: map[string]int64{"u2": 1, "u3": 1, "u4": 1}})
	wantEvents(t, s, &mark, "a rewrites its share", "offline:u1", "online:u3")
	mustSync(t, s, presence.Share{Node: "a", Seq: 4})
	wantEvents(t, s, &mark, "a rewrites an empty share", "offline:u2", "offline:u3")
}

func testLeaveReapTransitions(t *testing.T, s presence.Store) {
	mark := ""
	mustSync(t, s, presence.Share{Node: "dead", Seq: 1, Users: map[string]int64{"u1": 1, "u2": 3}, Guests: 2})
	mustSync(t, s, presence.Share{Node: "live", Seq: 1, Users: map[string]int64{"u2": 1}})
	mustSync(t, s, presence.Share{Node: "gone", Seq: 1, Users: map[string]int64{"u3": 1, "u2": 1}})
	wantEvents(t, s, &mark, "three nodes", "online:u1", "online:u2", "online:u3")
	if err := s.Leave(ctx(t), "gone"); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, s, &mark, "gone leaves", "offline:u3")
	var reaped []presence.Reaped
	deadline := time.Now().Add(2 * TTL)
	for time.Now().Before(deadline) {
		r, err := s.Heartbeat(ctx(t), 1, presence.NodeInfo{ID: "live"})
		if err != nil {
			t.Fatalf("Heartbeat(live): %v", err)
		}
		reaped = append(reaped, r...)
		time.Sleep(TTL / 5)
	}
	if want := []presence.Reaped{{Node: "dead", Users: 2, Connections: 6}}; !slices.Equal(reaped, want) {
		t.Fatalf("heartbeats reaped %+v, want %+v", reaped, want)
	}
	wantEvents(t, s, &mark, "dead is reaped", "offline:u1")
}

func testReadEventsBlock(t *testing.T, s presence.Store) {
	l := eventLog(t, s)
	last, err := l.LastEventID(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if evs, err := l.ReadEvents(ctx(t), last, 10, 50*time.Millisecond); err != nil || len(evs) != 0 {
		t.Fatalf("ReadEvents on an empty log = %+v, %v; want none", evs, err)
	}
	got := make(chan []presence.Event, 1)
	go func() {
		evs, _ := l.ReadEvents(ctx(t), last, 10, 5*time.Second)
		got <- evs
	}()
	time.Sleep(50 * time.Millisecond)
	mustSync(t, s, presence.Share{Node: "a", Seq: 1, Users: map[string]int64{"u9": 1}})
	select {
	case evs := <-got:
		if len(evs) != 1 || evs[0].Type != presence.EventOnline || evs[0].User != "u9" {
			t.Fatalf("blocked ReadEvents returned %+v, want online u9", evs)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocked ReadEvents did not return the event")
	}
}

func testListUsers(t *testing.T, s presence.Store) {
	d := directory(t, s)
	users := map[string]int64{}
	for i := range 700 {
		users[fmt.Sprintf("user-%03d", i)] = int64(i%3 + 1)
	}
	mustSync(t, s, presence.Share{Node: "a", Seq: 1, Users: users})
	mustSync(t, s, presence.Share{Node: "b", Seq: 1, Users: map[string]int64{"user-000": 1}})
	seen := map[string]int{}
	cursor, pages := "", 0
	for {
		p, err := d.ListUsers(ctx(t), cursor, 100)
		if err != nil {
			t.Fatalf("ListUsers(%q): %v", cursor, err)
		}
		if p.Total != 700 {
			t.Fatalf("page %d: total %d, want 700", pages, p.Total)
		}
		for _, u := range p.Users {
			seen[u.User]++
			want := users[u.User]
			if u.User == "user-000" {
				want++
			}
			if u.Connections != want {
				t.Fatalf("%s: %d connections, want %d", u.User, u.Connections, want)
			}
		}
		pages++
		if p.Cursor == "" {
			break
		}
		if pages > 700 {
			t.Fatal("the walk does not end")
		}
		cursor = p.Cursor
	}
	if len(seen) != 700 {
		t.Fatalf("the walk saw %d users, want 700", len(seen))
	}
	for u, n := range seen {
		if n != 1 {
			t.Fatalf("the walk saw %s %d times", u, n)
		}
	}
	if pages < 2 {
		t.Fatalf("700 users came in %d page(s) of limit 100", pages)
	}
	for _, bad := range []string{"nope", "%%%", strings.Repeat("A", 20)} {
		if _, err := d.ListUsers(ctx(t), bad, 10); err != presence.ErrBadCursor {
			t.Fatalf("ListUsers(cursor %q): err = %v, want ErrBadCursor", bad, err)
		}
	}
}

func testConnections(t *testing.T, s presence.Store) {
	d := directory(t, s)
	mustSync(t, s, presence.Share{Node: "a", Seq: 1, Users: map[string]int64{"u1": 2, "u2": 1}})
	mustSync(t, s, presence.Share{Node: "b", Seq: 1, Users: map[string]int64{"u1": 1}})
	got, err := d.Connections(ctx(t), []string{"u1", "nobody", "u2", "u1"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{3, 0, 1, 3}; !slices.Equal(got, want) {
		t.Fatalf("Connections = %v, want %v", got, want)
	}
	if got, err := d.Connections(ctx(t), nil); err != nil || len(got) != 0 {
		t.Fatalf("Connections(nil) = %v, %v", got, err)
	}
}
