package events_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/presenced/presenced/events"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/presence/memstore"
)

type watcher struct {
	mu  sync.Mutex
	got []string
}

func (w *watcher) Presence(user string, online bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.got = append(w.got, fmt.Sprintf("%s:%v", user, online))
}

// perUser splits messages by user, keeping each user's order: events of
// one store write come in no particular order across users.
func perUser(msgs []string) map[string][]string {
	out := map[string][]string{}
	for _, m := range msgs {
		u, _, _ := strings.Cut(m, ":")
		out[u] = append(out[u], m)
	}
	return out
}

func (w *watcher) wait(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		w.mu.Lock()
		got := slices.Clone(w.got)
		w.mu.Unlock()
		if maps.EqualFunc(perUser(got), perUser(want), slices.Equal) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("watcher got %v, want %v", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// setup runs a Feed on a memory store into a Hub, as serve does.
func setup(t *testing.T) (*memstore.Store, *events.Hub) {
	ms := memstore.New(time.Minute, nil)
	hub := events.NewHub(ms, nil)
	feed := events.NewFeed(ms, nil)
	feed.Subscribe(hub.Deliver)
	ctx, cancel := context.WithCancel(context.Background())
	feed.Start(ctx)
	done := make(chan struct{})
	go func() { defer close(done); feed.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return ms, hub
}

func sync1(t *testing.T, ms *memstore.Store, seq uint64, users map[string]int64) {
	t.Helper()
	if _, err := ms.Sync(context.Background(), presence.Share{Node: "n", Seq: seq, Users: users}); err != nil {
		t.Fatal(err)
	}
}

func TestHubStateThenChanges(t *testing.T) {
	ms, hub := setup(t)
	sync1(t, ms, 1, map[string]int64{"alice": 1})
	w := &watcher{}
	if err := hub.Watch(w, []string{"alice", "bob", "alice"}); err != nil {
		t.Fatal(err)
	}
	w.wait(t, "alice:true", "bob:false")
	sync1(t, ms, 2, map[string]int64{"bob": 2})
	w.wait(t, "alice:true", "bob:false", "alice:false", "bob:true")
	if hub.Watchers() != 1 || hub.Watched() != 2 {
		t.Fatalf("watchers %d, watched %d; want 1, 2", hub.Watchers(), hub.Watched())
	}

	// Replacing the list: only carol is reported now.
	if err := hub.Watch(w, []string{"carol"}); err != nil {
		t.Fatal(err)
	}
	w.wait(t, "alice:true", "bob:false", "alice:false", "bob:true", "carol:false")
	sync1(t, ms, 3, map[string]int64{"carol": 1})
	w.wait(t, "alice:true", "bob:false", "alice:false", "bob:true", "carol:false", "carol:true")

	hub.Unwatch(w)
	sync1(t, ms, 4, nil)
	time.Sleep(50 * time.Millisecond)
	w.wait(t, "alice:true", "bob:false", "alice:false", "bob:true", "carol:false", "carol:true")
	if hub.Watchers() != 0 || hub.Watched() != 0 {
		t.Fatalf("after Unwatch: watchers %d, watched %d", hub.Watchers(), hub.Watched())
	}
}

func TestHubLimits(t *testing.T) {
	_, hub := setup(t)
	w := &watcher{}
	ids := make([]string, events.MaxWatch+1)
	for i := range ids {
		ids[i] = fmt.Sprint("u", i)
	}
	if err := hub.Watch(w, ids); err != events.ErrTooMany {
		t.Fatalf("Watch(%d ids) = %v, want ErrTooMany", len(ids), err)
	}
	if err := hub.Watch(w, ids[:events.MaxWatch]); err != nil {
		t.Fatalf("Watch(%d ids) = %v", events.MaxWatch, err)
	}
	// Ids no token can carry, as the status API refuses them.
	for _, bad := range []string{"", "a\x00b", "tab\there", "\xff", strings.Repeat("x", events.MaxUserIDBytes+1)} {
		if err := hub.Watch(w, []string{"ok", bad}); err != events.ErrBadID {
			t.Fatalf("Watch(%q) = %v, want ErrBadID", bad, err)
		}
	}
	if hub.Watched() != events.MaxWatch {
		t.Fatalf("a refused list changed the watch: watched %d", hub.Watched())
	}
}

// TestHubManyWatchersOneUser: a change reaches every watcher of a user
// exactly once, and the final state is right under a burst of changes.
func TestHubManyWatchersOneUser(t *testing.T) {
	ms, hub := setup(t)
	ws := make([]*watcher, 50)
	for i := range ws {
		ws[i] = &watcher{}
		if err := hub.Watch(ws[i], []string{"alice"}); err != nil {
			t.Fatal(err)
		}
	}
	for seq := uint64(1); seq <= 20; seq++ {
		users := map[string]int64{}
		if seq%2 == 1 {
			users["alice"] = 1
		}
		sync1(t, ms, seq, users)
	}
	for _, w := range ws {
		deadline := time.Now().Add(5 * time.Second)
		for {
			w.mu.Lock()
			got := slices.Clone(w.got)
			w.mu.Unlock()
			if len(got) > 0 && got[len(got)-1] == "alice:false" && len(got) >= 2 {
				for i := 1; i < len(got); i++ {
					if got[i] == got[i-1] {
						t.Fatalf("watcher got a repeated state: %v", got)
					}
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("watcher got %v, want alternating states ending offline", got)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}
