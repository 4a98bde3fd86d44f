package e2e_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/testenv"
)

func whoEnv(r *testenv.Redis, id string, extra map[string]string) map[string]string {
	env := clusterEnv(r, id)
	env["API_KEY"] = testAPIKey
	maps.Copy(env, extra)
	return env
}

// TestWhoIsOnline: across three nodes, the admin list and lookup match
// the connected clients, a paginated walk visits every user exactly once
// while other users come and go, and the batch status answers 1000 ids.
func TestWhoIsOnline(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	// Small hashes come back whole from HSCAN; a low listpack limit makes
	// 60 users a real hash table, so the walk is paginated as it is in
	// production with thousands.
	r.Do("CONFIG", "SET", "hash-max-listpack-entries", "16")
	var nodes []*Node
	for i := range 3 {
		nodes = append(nodes, StartNode(t, whoEnv(r, fmt.Sprintf("who-%d", i), nil)))
	}
	const users = 60
	truth := map[string]int64{}
	var stable []*Client
	for i := range users {
		u := fmt.Sprintf("user-%02d", i)
		stable = append(stable, Dial(t, nodes[i%3], Token(t, u)))
		truth[u]++
		if i%5 == 0 { // a second tab on another node
			stable = append(stable, Dial(t, nodes[(i+1)%3], Token(t, u)))
			truth[u]++
		}
	}
	t.Cleanup(func() {
		for _, c := range stable {
			c.Conn.Close()
		}
	})
	wantCounts(t, nodes[0], 10*time.Second, users, int64(len(stable)), 0, "60 users connected")

	// The list, read through each node, is the truth.
	for _, n := range nodes {
		seen, pages, totals := walkUsers(t, n, 7)
		got := map[string]int64{}
		for _, u := range seen {
			if _, dup := got[u.UserID]; dup {
				t.Fatalf("%s listed twice", u.UserID)
			}
			got[u.UserID] = u.Connections
		}
		if d := diffCounts(got, truth); d != "" {
			t.Fatalf("list through %s differs from the connected clients: %s", n.URL, d)
		}
		if pages < 3 {
			t.Errorf("60 users in %d pages of limit 7: the walk is not paginated", pages)
		}
		for _, total := range totals {
			if total != users {
				t.Errorf("page total %d, want %d", total, users)
			}
		}
	}

	// Lookup: online with its connections; an unknown user is offline.
	var st userState
	if status := nodes[2].Get("/api/admin/presence/users/user-05", true, &st); status != http.StatusOK || !st.Online || st.Connections != 2 || st.UserID != "user-05" {
		t.Fatalf("lookup user-05: status %d, %+v; want online with 2 connections", status, st)
	}
	if status := nodes[1].Get("/api/admin/presence/users/nobody", true, &st); status != http.StatusOK || st.Online || st.Connections != 0 || st.LastSeenAt != nil {
		t.Fatalf("lookup nobody: status %d, %+v; want offline, 0 connections, no last-seen", status, st)
	}
	if status := nodes[1].Get("/api/admin/presence/users/user-05", false, nil); status != http.StatusUnauthorized {
		t.Fatalf("lookup without admin credentials: status %d, want 401", status)
	}
	if status := nodes[0].Get("/api/admin/presence/users?cursor=bogus", true, nil); status != http.StatusBadRequest {
		t.Fatalf("list with a bogus cursor: status %d, want 400", status)
	}
	if status := nodes[0].Get("/api/admin/presence/users?limit=0", true, nil); status != http.StatusBadRequest {
		t.Fatalf("list with limit=0: status %d, want 400", status)
	}

	// A walk while other users come and go returns every stable user
	// exactly once, and nobody who was never online.
	var stop atomic.Bool
	var churnWG sync.WaitGroup
	var churned atomic.Int64
	for w := range 3 {
		churnWG.Add(1)
		go func() {
			defer churnWG.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for k := 0; !stop.Load(); k++ {
				u := fmt.Sprintf("churn-%d-%d", w, k%15)
				c, err := DialErr(nodes[rng.IntN(3)], Token(t, u))
				if err != nil {
					continue
				}
				churned.Add(1)
				time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
				c.Conn.Close()
			}
		}()
	}
	walks := 0
	for walk := 0; walk < 3 || churned.Load() < 150; walk++ {
		if walk > 500 {
			t.Fatalf("only %d churn connections in 500 walks", churned.Load())
		}
		walks++
		seen, _, _ := walkUsers(t, nodes[walk%3], 5)
		times := map[string]int{}
		for _, u := range seen {
			times[u.UserID]++
			if truth[u.UserID] == 0 && !strings.HasPrefix(u.UserID, "churn-") {
				t.Fatalf("walk %d listed %s, who was never online", walk, u.UserID)
			}
		}
		for u := range truth {
			if times[u] != 1 {
				t.Fatalf("walk %d during churn listed %s %d times, want exactly once", walk, u, times[u])
			}
		}
	}
	stop.Store(true)
	churnWG.Wait()
	t.Logf("%d walks during churn (%d short connections), every stable user exactly once", walks, churned.Load())

	// Batch status: 1000 ids, 60 of them online, by API key and by admin.
	ids := slices.Sorted(maps.Keys(truth))
	for i := len(ids); i < 1000; i++ {
		ids = append(ids, fmt.Sprintf("absent-%d", i))
	}
	for _, authz := range []string{"Bearer " + testAPIKey, "Bearer " + adminToken} {
		status, body := post(t, nodes[1], "/api/presence/status", authz, jsonIDs(ids))
		var resp struct {
			Online map[string]bool `json:"online"`
		}
		if status != http.StatusOK || json.Unmarshal(body, &resp) != nil {
			t.Fatalf("status of 1000 ids: %d %s", status, body)
		}
		if len(resp.Online) != 1000 {
			t.Fatalf("status answered %d ids, want 1000", len(resp.Online))
		}
		for _, id := range ids {
			if resp.Online[id] != (truth[id] > 0) {
				t.Fatalf("status says %s online=%v, want %v", id, resp.Online[id], truth[id] > 0)
			}
		}
	}
	req, _ := http.NewRequest(http.MethodPost, nodes[0].URL+"/api/presence/status", strings.NewReader(`{"userIds":["user-01"]}`))
	req.Header.Set("X-API-Key", testAPIKey)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("status with X-API-Key: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	for _, c := range []struct {
		authz, body string
		status      int
		msg         string
	}{
		{"", `{"userIds":["a"]}`, 401, ""},
		{"Bearer wrong-key", `{"userIds":["a"]}`, 401, ""},
		{"Bearer " + testAPIKey, jsonIDs(append(ids, "one-too-many")), 400, "at most 1000"},
		{"Bearer " + testAPIKey, `{"userIds":"alice"}`, 400, "array of strings"},
		{"Bearer " + testAPIKey, `{"userIds":[1,2]}`, 400, "userIds[0] must be a string"},
		{"Bearer " + testAPIKey, `{"ids":["a"]}`, 400, "userIds is required"},
		{"Bearer " + testAPIKey, `not json`, 400, "JSON object"},
		{"Bearer " + testAPIKey, `{"userIds":[""]}`, 400, "is missing or empty"},
		{"Bearer " + testAPIKey, `{"userIds":["a\u0001"]}`, 400, "userIds[0] contains a control character"},
	} {
		status, body := post(t, nodes[0], "/api/presence/status", c.authz, c.body)
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		if status != c.status || e.Error == "" || !strings.Contains(e.Error, c.msg) {
			t.Errorf("POST %.60s (auth %q): %d %s; want %d with an error containing %q", c.body, c.authz, status, body, c.status, c.msg)
		}
	}

	// After its last tab closes, a user is offline with its last-seen.
	for _, c := range stable[:2] { // user-00's two tabs
		c.Conn.Close()
	}
	waitFor(t, 10*time.Second, "user-00 offline with a last-seen time", func() (bool, string) {
		var st userState
		nodes[0].Get("/api/admin/presence/users/user-00", true, &st)
		return !st.Online && st.Connections == 0 && st.LastSeenAt != nil && time.Since(*st.LastSeenAt) < time.Minute, fmt.Sprintf("%+v", st)
	})
}

// TestTransitionEvents: a user opening and closing tabs on different
// nodes makes exactly one online and one offline event, in the Redis
// Stream and at the webhook (signed, retried after a 500, no duplicate
// ids); killing the node that delivers the webhook makes offline events
// for its users once it is reaped, logged once by a survivor, and another
// node carries the delivery on.
func TestTransitionEvents(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	rdb := redisClient(t, r)
	hook := startHookServer(t, 1)
	extra := map[string]string{"WEBHOOK_URL": hook.srv.URL + "/hook", "WEBHOOK_SECRET": testWebhookSecret}
	ids := []string{"ev-a", "ev-b", "ev-c"}
	procs := map[string]*Proc{}
	var nodes []*Node
	for _, id := range ids {
		p := StartServing(t, t.TempDir(), whoEnv(r, id, extra))
		procs[id] = p
		nodes = append(nodes, p.Node)
	}

	// Ten users each open and close tabs on the three nodes in a random
	// order; each user has at least one tab somewhere from the first open
	// to the last close.
	const users = 10
	var wg sync.WaitGroup
	for i := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 99))
			u := fmt.Sprintf("tabs-%d", i)
			var open []*Client
			for step := range 8 {
				if len(open) == 0 || (rng.IntN(2) == 0 && step < 6) {
					c, err := DialErr(nodes[rng.IntN(3)], Token(t, u))
					if err != nil {
						t.Errorf("dial %s: %v", u, err)
						return
					}
					open = append(open, c)
				} else {
					k := rng.IntN(len(open))
					if len(open) == 1 { // keep the user online until the end
						c, err := DialErr(nodes[rng.IntN(3)], Token(t, u))
						if err != nil {
							t.Errorf("dial %s: %v", u, err)
							return
						}
						open = append(open, c)
					}
					open[k].Conn.Close()
					open = slices.Delete(open, k, k+1)
				}
				time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
			}
			for _, c := range open {
				c.Conn.Close()
				time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	wantCounts(t, nodes[0], 10*time.Second, 0, 0, 0, "every tab closed")
	checkOnePair := func(evs []streamEvent, u string) string {
		var kinds []string
		for _, e := range evs {
			if e.User == u {
				kinds = append(kinds, e.Type)
			}
		}
		if !slices.Equal(kinds, []string{"online", "offline"}) {
			return fmt.Sprintf("%s: events %v, want [online offline]", u, kinds)
		}
		return ""
	}
	evs := readStream(t, rdb)
	for i := range users {
		if msg := checkOnePair(evs, fmt.Sprintf("tabs-%d", i)); msg != "" {
			t.Error(msg)
		}
	}
	if len(evs) != 2*users {
		t.Fatalf("%d events in the stream, want %d: %v", len(evs), 2*users, evs)
	}

	// The webhook gets them all, the first batch after a 500 and a retry.
	waitFor(t, 15*time.Second, "the webhook receives the tab events", func() (bool, string) {
		acc, _, _, _ := hook.snapshot()
		return len(acc) == len(evs), fmt.Sprintf("%d of %d events", len(acc), len(evs))
	})

	// Kill -9 the node delivering the webhook, with two users on it alone
	// and one also elsewhere.
	holder, err := rdb.Get(t.Context(), keyPrefix+":webhook:lease").Result()
	if err != nil || procs[holder] == nil {
		t.Fatalf("webhook lease holder %q, %v; want one of %v", holder, err, ids)
	}
	victim := procs[holder].Node
	var survivors []*Proc
	var other *Node
	for _, id := range ids {
		if id != holder {
			survivors = append(survivors, procs[id])
			other = procs[id].Node
		}
	}
	var keep []*Client
	for _, u := range []string{"doomed-1", "doomed-1", "doomed-2"} {
		keep = append(keep, Dial(t, victim, Token(t, u)))
	}
	keep = append(keep, Dial(t, victim, Token(t, "both")), Dial(t, other, Token(t, "both")))
	t.Cleanup(func() {
		for _, c := range keep {
			c.Conn.Close()
		}
	})
	wantCounts(t, other, 10*time.Second, 3, 5, 0, "three users on the victim, one also elsewhere")
	before := len(readStream(t, rdb))
	victim.Kill()
	waitFor(t, 10*time.Second, "offline events for the victim's own users", func() (bool, string) {
		evs := readStream(t, rdb)[before:]
		var got []string
		for _, e := range evs {
			got = append(got, e.Type+":"+e.User)
		}
		slices.Sort(got)
		return slices.Equal(got, []string{"offline:doomed-1", "offline:doomed-2"}), fmt.Sprint(got)
	})
	line := fmt.Sprintf("node %s reaped: 3 users, 4 connections", holder)
	waitFor(t, 5*time.Second, "a survivor logs the reap", func() (bool, string) {
		n := 0
		for _, p := range survivors {
			n += strings.Count(p.Stderr.String(), line)
		}
		return n == 1, fmt.Sprintf("%d survivors' lines %q", n, line)
	})

	// The webhook got every event of the stream once, the first batch
	// after a 500, every signature right, from another node after the kill.
	all := readStream(t, rdb)
	waitFor(t, 30*time.Second, "the webhook receives every event", func() (bool, string) {
		acc, _, _, _ := hook.snapshot()
		return len(acc) >= len(all), fmt.Sprintf("%d of %d events", len(acc), len(all))
	})
	acc, failed, posts, bad := hook.snapshot()
	if bad != 0 {
		t.Errorf("%d webhook requests with a bad signature or body", bad)
	}
	seen := map[string]bool{}
	for _, e := range acc {
		if seen[e.ID] {
			t.Errorf("event id %s delivered twice", e.ID)
		}
		seen[e.ID] = true
		if e.At.IsZero() || (e.Type != "online" && e.Type != "offline") || e.UserID == "" {
			t.Errorf("webhook event %+v lacks a field", e)
		}
	}
	for _, e := range all {
		if !seen[e.ID] {
			t.Errorf("stream event %+v never reached the webhook", e)
		}
	}
	if len(failed) == 0 {
		t.Fatal("the webhook's 500 was never exercised")
	}
	for _, id := range failed {
		if !seen[id] {
			t.Errorf("event %s of the batch answered 500 was not retried", id)
		}
	}
	hook.mu.Lock()
	t.Logf("webhook: %d POSTs (node:events %v), %d events, first batch of %d retried after a 500; victim %s", posts, hook.log, len(acc), len(failed), holder)
	hook.mu.Unlock()
}

// TestWatch: a /ws client watching users gets their state at once and
// then each change; so does a Socket.IO client with presence:watch.
func TestWatch(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	a := StartNode(t, whoEnv(r, "watch-a", nil))
	b := StartNode(t, whoEnv(r, "watch-b", nil))
	carol := Dial(t, b, Token(t, "carol"))
	defer carol.Conn.Close()
	wantCounts(t, a, 10*time.Second, 1, 1, 0, "carol online")

	w := dialWatcher(t, a, "watcher")
	w.send(t, map[string]any{"type": "watch", "userIds": []string{"bob", "carol", "bob"}})
	w.waitMsg(t, 0, "watching ack", 5*time.Second, func(m map[string]any) bool { return m["type"] == "watching" && m["count"] == 2.0 })
	w.waitMsg(t, 0, "bob's current state", 5*time.Second, isPresence("bob", false))
	w.waitMsg(t, 0, "carol's current state", 5*time.Second, isPresence("carol", true))

	from := w.count()
	start := time.Now()
	bob := Dial(t, b, Token(t, "bob"))
	_, at := w.waitMsg(t, from, "bob online", 10*time.Second, isPresence("bob", true))
	t.Logf("bob online reached the watcher on the other node %v after his dial began", at.Sub(start).Round(time.Millisecond))
	from = w.count()
	start = time.Now()
	bob.Conn.Close()
	_, at = w.waitMsg(t, from, "bob offline", 10*time.Second, isPresence("bob", false))
	t.Logf("bob offline reached the watcher %v after his close", at.Sub(start).Round(time.Millisecond))

	// Bad watch lists are answered with an error; the connection stays.
	many := make([]string, 501)
	for i := range many {
		many[i] = fmt.Sprint("m", i)
	}
	from = w.count()
	w.send(t, map[string]any{"type": "watch", "userIds": many})
	w.waitMsg(t, from, "error for 501 ids", 5*time.Second, func(m map[string]any) bool {
		return m["type"] == "error" && strings.Contains(fmt.Sprint(m["error"]), "at most 500")
	})
	w.send(t, map[string]any{"type": "watch", "userIds": "bob"})
	w.waitMsg(t, from, "error for a string", 5*time.Second, func(m map[string]any) bool {
		return m["type"] == "error" && strings.Contains(fmt.Sprint(m["error"]), "array of strings")
	})
	w.send(t, map[string]any{"type": "ping"})
	w.waitMsg(t, from, "pong", 5*time.Second, isType("pong"))

	// Unwatch: bob's next visit is not reported.
	w.send(t, map[string]any{"type": "unwatch"})
	w.waitMsg(t, from, "unwatch ack", 5*time.Second, func(m map[string]any) bool { return m["type"] == "watching" && m["count"] == 0.0 })
	from = w.count()
	bob = Dial(t, a, Token(t, "bob"))
	wantCounts(t, a, 10*time.Second, 3, 3, 0, "carol, watcher and bob online")
	time.Sleep(500 * time.Millisecond)
	for _, m := range w.since(from) {
		if m["type"] == "presence" {
			t.Fatalf("presence message after unwatch: %v", m)
		}
	}
	bob.Conn.Close()

	// Socket.IO: presence:watch with an ack, presence:user events.
	d := startSIO(t, sioScenario{URL: b.URL, Clients: []sioClientSpec{{Token: Token(t, "sio-watcher")}}})
	d.waitConnected(1, 10*time.Second)
	ack := d.emit(0, "presence:watch", true, []string{"dave", "carol"})
	if ack.Error != "" || len(ack.Args) != 1 || !strings.Contains(string(ack.Args[0]), `"watching":2`) {
		t.Fatalf("presence:watch ack %s, want {watching: 2}", ack)
	}
	sioUser := func(user string, online bool) func(sioEvent) bool {
		return func(e sioEvent) bool {
			if !message(0, "presence:user")(e) || len(e.Args) != 1 {
				return false
			}
			var p struct {
				UserID string `json:"userId"`
				Online bool   `json:"online"`
			}
			return json.Unmarshal(e.Args[0], &p) == nil && p.UserID == user && p.Online == online
		}
	}
	d.wait("dave offline at once", 5*time.Second, sioUser("dave", false))
	d.wait("carol online at once", 5*time.Second, sioUser("carol", true))
	dave := Dial(t, a, Token(t, "dave"))
	d.wait("dave online", 10*time.Second, sioUser("dave", true))
	dave.Conn.Close()
	d.waitN("dave offline again", 10*time.Second, 2, sioUser("dave", false))
	time.Sleep(150 * time.Millisecond) // at most 10 watch requests a second
	if ack := d.emit(0, "presence:watch", true, "dave"); !strings.Contains(fmt.Sprint(ack), "array of strings") {
		t.Fatalf("presence:watch with a string: ack %s, want an error", ack)
	}
}

// TestWhoEmbedded: without Redis the same answers come from memory:
// list, lookup, status, watching and the webhook.
func TestWhoEmbedded(t *testing.T) {
	t.Parallel()
	hook := startHookServer(t, 0)
	n := StartNode(t, map[string]string{"API_KEY": testAPIKey, "WEBHOOK_URL": hook.srv.URL, "WEBHOOK_SECRET": testWebhookSecret})
	alice := Dial(t, n, Token(t, "alice"))
	defer alice.Conn.Close()
	w := dialWatcher(t, n, "watcher")
	w.send(t, map[string]any{"type": "watch", "userIds": []string{"alice", "bob"}})
	w.waitMsg(t, 0, "alice online at once", 5*time.Second, isPresence("alice", true))
	w.waitMsg(t, 0, "bob offline at once", 5*time.Second, isPresence("bob", false))
	bob := Dial(t, n, Token(t, "bob"))
	i, _ := w.waitMsg(t, 0, "bob online", 10*time.Second, isPresence("bob", true))

	seen, _, _ := walkUsers(t, n, 1)
	got := map[string]int64{}
	for _, u := range seen {
		got[u.UserID] += u.Connections
	}
	if d := diffCounts(got, map[string]int64{"alice": 1, "bob": 1, "watcher": 1}); d != "" {
		t.Fatalf("embedded list: %s", d)
	}
	status, body := post(t, n, "/api/presence/status", "Bearer "+testAPIKey, `{"userIds":["alice","bob","carol"]}`)
	if status != http.StatusOK || !strings.Contains(string(body), `"alice":true`) || !strings.Contains(string(body), `"carol":false`) {
		t.Fatalf("embedded status: %d %s", status, body)
	}
	bob.Conn.Close()
	w.waitMsg(t, i+1, "bob offline", 10*time.Second, isPresence("bob", false))
	var st userState
	waitFor(t, 10*time.Second, "bob offline with a last-seen", func() (bool, string) {
		n.Get("/api/admin/presence/users/bob", true, &st)
		return !st.Online && st.LastSeenAt != nil, fmt.Sprintf("%+v", st)
	})
	waitFor(t, 10*time.Second, "the webhook gets alice, watcher and bob online and bob offline", func() (bool, string) {
		acc, _, _, _ := hook.snapshot()
		var kinds []string
		for _, e := range acc {
			kinds = append(kinds, e.Type+":"+e.UserID)
		}
		slices.Sort(kinds)
		return slices.Equal(kinds, []string{"offline:bob", "online:alice", "online:bob", "online:watcher"}), fmt.Sprint(kinds)
	})
}

// TestWhoOnRedisCluster: list, status, watching and the events stream
// work on a 3-master Redis Cluster with the default key layout (every key
// in the slot of online_users).
func TestWhoOnRedisCluster(t *testing.T) {
	t.Parallel()
	r := newClusterRedis(t)
	env := func(id string) map[string]string {
		e := r.env()
		e["NODE_ID"], e["API_KEY"] = id, testAPIKey
		e["HEARTBEAT_INTERVAL"], e["NODE_TTL"] = clusterHeartbeat.String(), clusterNodeTTL.String()
		return e
	}
	a, b := StartNode(t, env("cl-a")), StartNode(t, env("cl-b"))
	w := dialWatcher(t, a, "cl-watcher")
	w.send(t, map[string]any{"type": "watch", "userIds": []string{"cl-bob"}})
	w.waitMsg(t, 0, "cl-bob offline at once", 10*time.Second, isPresence("cl-bob", false))
	bob := Dial(t, b, Token(t, "cl-bob"))
	w.waitMsg(t, 0, "cl-bob online", 10*time.Second, isPresence("cl-bob", true))
	wantCounts(t, a, 10*time.Second, 2, 2, 0, "watcher and bob")
	seen, _, _ := walkUsers(t, b, 10)
	if len(seen) != 2 {
		t.Fatalf("list on Cluster: %+v, want cl-watcher and cl-bob", seen)
	}
	status, body := post(t, a, "/api/presence/status", "Bearer "+testAPIKey, `{"userIds":["cl-bob","cl-nobody"]}`)
	if status != http.StatusOK || !strings.Contains(string(body), `"cl-bob":true`) || !strings.Contains(string(body), `"cl-nobody":false`) {
		t.Fatalf("status on Cluster: %d %s", status, body)
	}
	from := w.count()
	bob.Conn.Close()
	w.waitMsg(t, from, "cl-bob offline", 10*time.Second, isPresence("cl-bob", false))
	var got []string
	for _, e := range readStream(t, redisClient(t, r.holder)) {
		got = append(got, e.Type+":"+e.User)
	}
	if want := []string{"online:cl-watcher", "online:cl-bob", "offline:cl-bob"}; !slices.Equal(got, want) {
		t.Fatalf("%s on the master of online_users holds %v, want %v", eventsStream, got, want)
	}
}
