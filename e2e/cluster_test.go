package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/presenced/presenced/auth"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence/redisstore"
)

// Cluster tests run with short intervals so that they finish fast; the
// bounds they check are the correctness bounds of DESIGN.md ("Presence in
// Redis"), with a little slack for sampling.
const (
	clusterHeartbeat = 500 * time.Millisecond
	clusterNodeTTL   = 1500 * time.Millisecond
	sampleSlack      = 500 * time.Millisecond
	dialWorkers      = 64
	onlineKey        = "online_users"
	presencePrefix   = "{online_users}" // the default: online_users's own slot
)

// TestCluster runs three nodes on one redis-server through the scenarios of
// issue 3 in order, against a ground-truth model of the connections the
// test holds: 1000 users with 3 tabs each, kill -9 of a node, a Redis
// restart without persistence, and SIGTERM of a node.
func TestCluster(t *testing.T) {
	runThreeNodes(t, singleRedis{testenv.StartRedis(t)}, 1000, 3*time.Second, nil)
}

// runThreeNodes runs the three-node scenarios on the Redis deployment r:
// users users with 3 tabs each spread over three nodes, kill -9 of a node,
// a restart of the Redis server holding the presence keys (down for
// outage, back empty), and SIGTERM of a node. beforeTerm, if set, runs
// after the restart with the live nodes (the Sentinel test fails over
// there).
func runThreeNodes(t *testing.T, r presenceRedis, users int, outage time.Duration, beforeTerm func(m *truthModel, live []*liveNode)) {
	m := newTruthModel(t, r)
	a, b, c := m.startNode(t, "node-a"), m.startNode(t, "node-b"), m.startNode(t, "node-c")
	live := []*liveNode{a, b, c}
	n := int64(users)

	// 1. users x 3 tabs, each tab on a different node.
	ids := make([]string, users)
	var specs []dialSpec
	for i := range ids {
		ids[i] = fmt.Sprintf("u%04d", i)
		for tab := range 3 {
			specs = append(specs, dialSpec{user: ids[i], node: live[(i+tab)%3]})
		}
	}
	start := time.Now()
	m.dial(t, specs)
	t.Logf("%d users x 3 tabs: %d connections dialled in %v", users, len(specs), time.Since(start).Round(time.Millisecond))
	// Every hello is sent after its connection is counted, so the count
	// is exact as soon as the last hello is in.
	m.expectOnlineNow(t, n, fmt.Sprintf("after %d users x 3 tabs", users))
	// Redis cannot tell a cluster's first start from data loss: a new
	// data set is recovering (the dashboard serves the fallback) for the
	// recovery window, 1.5 heartbeats from the first write.
	waitOverview(t, a.Node, 4*clusterHeartbeat, func(o Overview) bool { return o.Source == "redis" })
	o := a.Overview()
	if o.OnlineUsers != n || o.OnlineConnections != 3*n || o.Source != "redis" {
		t.Fatalf("overview = %+v, want %d users, %d connections, source redis", o, n, 3*n)
	}
	// The load figures are published with each heartbeat.
	waitFor(t, 3*time.Second, fmt.Sprintf("server-load lists 3 healthy nodes with %d connections each", users), func() (bool, string) {
		var sl serverLoad
		if err := fetchJSON(a.Node, "/api/admin/dashboard/server-load", &sl); err != nil {
			return false, err.Error()
		}
		sum, byID := int64(0), map[string]int64{}
		for _, n := range sl.Nodes {
			if !n.Healthy {
				return false, fmt.Sprintf("node %s unhealthy: %+v", n.ID, sl.Nodes)
			}
			sum += n.Connections
			byID[n.ID] = n.Connections
		}
		ok := len(sl.Nodes) == 3 && sum == 3*n && byID["node-a"] == n && byID["node-b"] == n && byID["node-c"] == n
		return ok && sl.OnlineUsers == n && sl.Source == "redis", fmt.Sprintf("%+v", sl)
	})

	// 2. kill -9 node-c. Every user has a tab elsewhere, so first give
	// node-c 150 users of its own: they are the ones the count must lose.
	var solo []dialSpec
	for i := range 150 {
		solo = append(solo, dialSpec{user: fmt.Sprintf("k%03d", i), node: c})
	}
	m.dial(t, solo)
	m.expectOnlineNow(t, n+150, "after 150 users on node-c only")
	victims := m.clientsOn(c)
	took := m.killAndSample(t, c)
	t.Logf("kill -9 node-c: online_users exact (%d) %v after the kill (bound %v)", m.truthUsers(), took.Round(time.Millisecond), clusterNodeTTL+clusterHeartbeat+sampleSlack)
	live = []*liveNode{a, b}
	// The killed node's clients reconnect to the others.
	specs = specs[:0]
	for i, cl := range victims {
		specs = append(specs, dialSpec{user: cl.user, node: live[i%2]})
	}
	m.dial(t, specs)
	m.expectOnlineNow(t, n+150, "after node-c's clients reconnected elsewhere")
	if o := a.Overview(); o.OnlineUsers != n+150 || o.OnlineConnections != 3*n+150 || o.Source != "redis" {
		t.Fatalf("overview after reconnect = %+v, want %d users, %d connections, source redis", o, n+150, 3*n+150)
	}

	// 3. Restart Redis without persistence while clients stay connected.
	// A replacement node first: 150 users only there, 100 with a 4th tab.
	d := m.startNode(t, "node-d")
	live = append(live, d)
	specs = specs[:0]
	for i := range 150 {
		specs = append(specs, dialSpec{user: fmt.Sprintf("s%03d", i), node: d})
	}
	for _, u := range ids[:100] {
		specs = append(specs, dialSpec{user: u, node: d})
	}
	m.dial(t, specs)
	m.expectOnlineNow(t, n+300, "after node-d joined")
	// The fallback counts users seen recently: let last-seen reach the
	// data stores (written within a second of a first connection).
	time.Sleep(1500 * time.Millisecond)
	// Down for 3s on one server: long enough for the nodes to fail more
	// dials than a go-redis pool holds connections, which once made the
	// client probe Redis only once a second after it came back.
	m.restartRedis(t, live, outage)

	if beforeTerm != nil {
		beforeTerm(m, live)
	}

	// 4. SIGTERM node-d: its 150 own users leave, the 100 with tabs
	// elsewhere stay.
	m.termAndWatch(t, d, n+150)
	if o := a.Overview(); o.OnlineUsers != n+150 || o.OnlineConnections != 3*n+150 || o.Source != "redis" {
		t.Fatalf("overview after SIGTERM = %+v, want %d users, %d connections, source redis", o, n+150, 3*n+150)
	}
	m.checkSettled(t, "end of the three-node scenarios")
}

// killAndSample kills n with SIGKILL and samples online_users every ~20ms
// from the kill until it is exact: no sample may be below the truth (which
// drops at the kill) or negative, and it must be exact within NODE_TTL +
// HEARTBEAT_INTERVAL (plus sampling slack). It returns the time to exact.
func (m *truthModel) killAndSample(t *testing.T, n *liveNode) time.Duration {
	t.Helper()
	before := m.truthUsers()
	n.dead.Store(true)
	want := int64(m.truthUsers())
	start := time.Now()
	n.Kill()
	bound := clusterNodeTTL + clusterHeartbeat + sampleSlack
	var samples int
	for {
		v, ok, err := m.getOnline()
		elapsed := time.Since(start)
		samples++
		if err != nil {
			t.Fatalf("GET %s %v after kill: %v", onlineKey, elapsed, err)
		}
		if !ok {
			t.Fatalf("%s missing %v after kill", onlineKey, elapsed)
		}
		if v < 0 || v < want {
			t.Fatalf("%s = %d %v after kill -9: below the truth %d (was %d before)", onlineKey, v, elapsed, want, before)
		}
		if v == want {
			if elapsed > bound {
				t.Fatalf("%s exact only %v after kill -9, bound NODE_TTL+HEARTBEAT_INTERVAL+slack = %v", onlineKey, elapsed, bound)
			}
			t.Logf("kill -9 %s: %d samples, %d -> %d", n.id, samples, before, want)
			m.waitEnded(t, m.clientsOn(n), 5*time.Second)
			return elapsed
		}
		if elapsed > bound+5*time.Second {
			t.Fatalf("%s = %d, still not %d %v after kill -9", onlineKey, v, want, elapsed)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// restartRedis kills redis-server, keeps it down for outage and starts it
// again empty, while the overview of every live node is polled every
// ~50ms: it must never show 0 (or less). online_users must be exact
// within one heartbeat (plus slack) of Redis answering again, and the
// overview must then say source "redis" with the exact count.
func (m *truthModel) restartRedis(t *testing.T, live []*liveNode, outage time.Duration) {
	t.Helper()
	want := int64(m.truthUsers())
	stop := make(chan struct{})
	var wg sync.WaitGroup
	type stats struct {
		samples, bad int
		sources      map[string]int
		first        string
	}
	results := make([]stats, len(live))
	for i, n := range live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := stats{sources: map[string]int{}}
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				var o Overview
				err := fetchJSON(n.Node, "/api/admin/dashboard/overview", &o)
				st.samples++
				switch {
				case err != nil:
					st.bad++
					if st.first == "" {
						st.first = err.Error()
					}
				case o.OnlineUsers <= 0:
					st.bad++
					if st.first == "" {
						st.first = fmt.Sprintf("overview %+v", o)
					}
				default:
					key := o.Source
					if o.Stale {
						key += "(stale)"
					}
					st.sources[key]++
				}
				select {
				case <-stop:
					results[i] = st
					return
				case <-tick.C:
				}
			}
		}()
	}
	halt := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer halt() // also when the test fails half way
	time.Sleep(200 * time.Millisecond)
	m.redis.restart(t, outage)
	back := time.Now()

	bound := clusterHeartbeat + sampleSlack
	var exact time.Duration
	for {
		v, ok, err := m.getOnline()
		elapsed := time.Since(back)
		if err != nil {
			t.Fatalf("GET %s %v after Redis came back: %v", onlineKey, elapsed, err)
		}
		if ok && v < 0 {
			t.Fatalf("%s = %d after Redis restart", onlineKey, v)
		}
		if ok && v == want {
			exact = elapsed
			break
		}
		if elapsed > bound+5*time.Second {
			t.Fatalf("%s = %d (present %v), still not %d %v after Redis came back", onlineKey, v, ok, want, elapsed)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("Redis restart (down %v): online_users exact (%d) %v after Redis answered again (bound %v)", outage, want, exact.Round(time.Millisecond), bound)
	var redisAgain time.Duration
	waitFor(t, 5*time.Second, "overview from redis with the exact count", func() (bool, string) {
		var o Overview
		if err := fetchJSON(live[0].Node, "/api/admin/dashboard/overview", &o); err != nil {
			return false, err.Error()
		}
		redisAgain = time.Since(back)
		return o.Source == "redis" && !o.Stale && o.OnlineUsers == want, fmt.Sprintf("%+v", o)
	})
	t.Logf("Redis restart: overview source redis and exact again %v after Redis answered", redisAgain.Round(time.Millisecond))
	halt()
	for i, st := range results {
		t.Logf("overview of %s polled %d times during the restart: %v", live[i].id, st.samples, st.sources)
		if st.bad > 0 {
			t.Errorf("overview of %s: %d of %d samples failed or showed <= 0 users; first: %s", live[i].id, st.bad, st.samples, st.first)
		}
	}
	if exact > bound {
		t.Fatalf("%s exact only %v after Redis came back; bound one heartbeat + slack = %v", onlineKey, exact, bound)
	}
	m.checkSettled(t, "after Redis restart")
}

// termAndWatch sends SIGTERM to n and polls online_users until it equals
// want (the node's own users gone): within 1s, exit code 0, and every
// client of n closed with 1001.
func (m *truthModel) termAndWatch(t *testing.T, n *liveNode, want int64) {
	t.Helper()
	clients := m.clientsOn(n)
	n.dead.Store(true)
	if got := int64(m.truthUsers()); got != want {
		t.Fatalf("model: %d users once %s is gone, want %d", got, n.id, want)
	}
	type result struct {
		took  time.Duration
		below int64 // a value below the truth, if seen
		err   error
	}
	res := make(chan result, 1)
	start := time.Now()
	go func() {
		for {
			v, ok, err := m.getOnline()
			elapsed := time.Since(start)
			if err != nil {
				res <- result{err: err}
				return
			}
			if ok && v < want {
				res <- result{took: elapsed, below: v}
				return
			}
			if ok && v == want {
				res <- result{took: elapsed}
				return
			}
			if elapsed > 10*time.Second {
				res <- result{took: elapsed, err: fmt.Errorf("%s = %d, not %d, %v after SIGTERM", onlineKey, v, want, elapsed)}
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	code, exitTook := n.Term()
	r := <-res
	switch {
	case r.err != nil:
		t.Fatalf("after SIGTERM of %s: %v", n.id, r.err)
	case r.below != 0:
		t.Fatalf("%s = %d after SIGTERM of %s: below the truth %d", onlineKey, r.below, n.id, want)
	}
	t.Logf("SIGTERM %s: its own users left online_users %v after the signal (bound 1s); exit %d after %v",
		n.id, r.took.Round(time.Millisecond), code, exitTook.Round(time.Millisecond))
	if r.took > time.Second {
		t.Errorf("%s's users left the count only %v after SIGTERM, want within 1s", n.id, r.took)
	}
	if code != 0 {
		t.Errorf("%s exit code %d after SIGTERM, want 0", n.id, code)
	}
	m.waitEnded(t, clients, 5*time.Second)
	codes := map[int32]int{}
	for _, cl := range clients {
		codes[cl.code.Load()]++
	}
	if codes[websocket.CloseGoingAway] != len(clients) {
		t.Errorf("%s's %d clients got close codes %v, want all 1001", n.id, len(clients), codes)
	}
}

// truthModel is the ground truth: the nodes the test started and the
// WebSocket clients it holds. A client is open while the test has not
// closed it, its node is live and its read loop runs.
type truthModel struct {
	redis  presenceRedis
	shards int // PRESENCE_SHARDS of the deployment (1: no shards)

	mu      sync.Mutex
	nodes   []*liveNode
	clients []*trackedClient
	tokens  map[string]string
}

// liveNode is a presenced process in the model; dead is set just before
// the test kills or stops it, when the truth drops.
type liveNode struct {
	*Node
	id   string
	dead atomic.Bool
}

// trackedClient is one WebSocket connection with a read loop that notices
// when the server closes it.
type trackedClient struct {
	user  string
	node  *liveNode
	conn  *websocket.Conn
	done  chan struct{} // closed when the read loop ends
	byUs  atomic.Bool   // the test closed it
	code  atomic.Int32  // close code sent by the server, 0 if none
	cause atomic.Value  // string: why the read loop ended
}

type dialSpec struct {
	user string
	node *liveNode
}

func newTruthModel(t testing.TB, r presenceRedis) *truthModel {
	m := &truthModel{redis: r, shards: 1, tokens: map[string]string{}}
	if v, ok := r.env()["PRESENCE_SHARDS"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("PRESENCE_SHARDS=%q", v)
		}
		m.shards = n
	}
	t.Cleanup(m.closeAll)
	return m
}

func clusterEnv(r *testenv.Redis, id string) map[string]string {
	return map[string]string{
		"REDIS_URL":          r.URL(),
		"HEARTBEAT_INTERVAL": clusterHeartbeat.String(),
		"NODE_TTL":           clusterNodeTTL.String(),
		"NODE_ID":            id,
	}
}

func (m *truthModel) startNode(t testing.TB, id string) *liveNode {
	t.Helper()
	env := map[string]string{
		"HEARTBEAT_INTERVAL": clusterHeartbeat.String(),
		"NODE_TTL":           clusterNodeTTL.String(),
		"NODE_ID":            id,
	}
	for k, v := range m.redis.env() {
		env[k] = v
	}
	n := &liveNode{Node: StartNode(t, env), id: id}
	m.mu.Lock()
	m.nodes = append(m.nodes, n)
	m.mu.Unlock()
	return n
}

func (m *truthModel) liveNodes() []*liveNode {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*liveNode
	for _, n := range m.nodes {
		if !n.dead.Load() {
			out = append(out, n)
		}
	}
	return out
}

func (m *truthModel) token(user string) (string, error) {
	m.mu.Lock()
	tok, ok := m.tokens[user]
	m.mu.Unlock()
	if ok {
		return tok, nil
	}
	tok, err := auth.Mint([]byte(testSecret), user, false, time.Hour, time.Now())
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	m.tokens[user] = tok
	m.mu.Unlock()
	return tok, nil
}

// dial opens every spec's connection with a bounded worker pool, each
// after its hello, and fails the test if any dial fails.
func (m *truthModel) dial(t testing.TB, specs []dialSpec) []*trackedClient {
	t.Helper()
	out := make([]*trackedClient, len(specs))
	errs := make([]error, len(specs))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(dialWorkers, len(specs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(specs) {
					return
				}
				out[i], errs[i] = m.dialOne(specs[i])
			}
		}()
	}
	wg.Wait()
	// Register in spec order, so that a seeded test that picks among the
	// clients later picks the same ones when replayed.
	var failed []string
	m.mu.Lock()
	for i, err := range errs {
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s on %s: %v", specs[i].user, specs[i].node.id, err))
		} else {
			m.clients = append(m.clients, out[i])
		}
	}
	m.mu.Unlock()
	if len(failed) > 0 {
		t.Fatalf("%d of %d dials failed; first: %s", len(failed), len(specs), failed[0])
	}
	return out
}

func (m *truthModel) dialOne(s dialSpec) (*trackedClient, error) {
	tok, err := m.token(s.user)
	if err != nil {
		return nil, err
	}
	c, err := DialErr(s.node.Node, tok)
	if err != nil {
		return nil, err
	}
	if c.Hello.UserID == nil || *c.Hello.UserID != s.user {
		c.Conn.Close()
		return nil, fmt.Errorf("hello %+v, want user %s", c.Hello, s.user)
	}
	cl := &trackedClient{user: s.user, node: s.node, conn: c.Conn, done: make(chan struct{})}
	go cl.readLoop()
	return cl, nil
}

func (c *trackedClient) readLoop() {
	defer close(c.done)
	for {
		if _, _, err := c.conn.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				c.code.Store(int32(ce.Code))
			}
			c.cause.Store(err.Error())
			return
		}
	}
}

func (c *trackedClient) ended() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// open reports whether the client counts in the truth.
func (c *trackedClient) open() bool {
	return !c.byUs.Load() && !c.node.dead.Load() && !c.ended()
}

// close closes the connection from the client side (close frame, then
// the TCP connection) and waits for its read loop.
func (c *trackedClient) close() {
	c.byUs.Store(true)
	_ = c.conn.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	_ = c.conn.Close()
	<-c.done
}

func (m *truthModel) closeAll() {
	m.mu.Lock()
	clients := m.clients
	m.mu.Unlock()
	for _, c := range clients {
		if !c.byUs.Load() {
			c.close()
		}
	}
}

// openClients returns the clients that count in the truth.
func (m *truthModel) openClients() []*trackedClient {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*trackedClient
	for _, c := range m.clients {
		if c.open() {
			out = append(out, c)
		}
	}
	return out
}

// clientsOn returns the clients of n the test has not closed.
func (m *truthModel) clientsOn(n *liveNode) []*trackedClient {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*trackedClient
	for _, c := range m.clients {
		if c.node == n && !c.byUs.Load() {
			out = append(out, c)
		}
	}
	return out
}

// perUser returns the open connections of each user.
func (m *truthModel) perUser() map[string]int64 {
	out := map[string]int64{}
	for _, c := range m.openClients() {
		out[c.user]++
	}
	return out
}

func (m *truthModel) truthUsers() int { return len(m.perUser()) }

// waitEnded waits until the read loop of every client has ended.
func (m *truthModel) waitEnded(t testing.TB, clients []*trackedClient, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for _, c := range clients {
		select {
		case <-c.done:
		case <-deadline:
			t.Fatalf("connection of %s on %s still open %v after its node went away", c.user, c.node.id, timeout)
		}
	}
}

// getOnline reads online_users; ok is false when the key is missing.
func (m *truthModel) getOnline() (v int64, ok bool, err error) {
	reply, err := m.redis.DoErr("GET", onlineKey)
	if err != nil {
		return 0, false, err
	}
	if reply == "(nil)" {
		return 0, false, nil
	}
	v, err = strconv.ParseInt(reply, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%s holds %q", onlineKey, reply)
	}
	return v, true, nil
}

// expectOnlineNow checks online_users right away; on a mismatch it polls
// briefly to report how late the count was, and fails the test.
func (m *truthModel) expectOnlineNow(t testing.TB, want int64, when string) {
	t.Helper()
	if got := int64(m.truthUsers()); got != want {
		t.Fatalf("model %s: %d users, want %d", when, got, want)
	}
	v, ok, err := m.getOnline()
	if err != nil {
		t.Fatal(err)
	}
	if ok && v == want {
		return
	}
	start := time.Now()
	for time.Since(start) < 3*time.Second {
		time.Sleep(20 * time.Millisecond)
		if v2, ok2, err := m.getOnline(); err == nil && ok2 && v2 == want {
			t.Fatalf("%s: %s = %d (present %v) right after the last hello, want %d; exact %v later", when, onlineKey, v, ok, want, time.Since(start))
		}
	}
	t.Fatalf("%s: %s = %d (present %v), want %d; still wrong after 3s", when, onlineKey, v, ok, want)
}

// presenceProblems compares Redis and every live node's overview with the
// model and lists each difference; nil means settled. A negative
// online_users is fatal at once.
func (m *truthModel) presenceProblems(t testing.TB) []string {
	t.Helper()
	want := m.perUser()
	conns := int64(0)
	for _, n := range want {
		conns += n
	}
	users := int64(len(want))
	var out []string
	v, ok, err := m.getOnline()
	switch {
	case err != nil:
		out = append(out, err.Error())
	case ok && v < 0:
		t.Fatalf("%s = %d: negative", onlineKey, v)
	case !ok || v != users:
		out = append(out, fmt.Sprintf("%s = %d (present %v), truth %d", onlineKey, v, ok, users))
	}
	if m.shards > 1 {
		out = append(out, m.shardProblems(want)...)
	} else {
		if hlen, err := m.redis.DoErr("HLEN", presencePrefix+":users"); err != nil || hlen != strconv.FormatInt(users, 10) {
			out = append(out, fmt.Sprintf("HLEN %s:users = %s (%v), truth %d", presencePrefix, hlen, err, users))
		}
		if got, err := m.nodeShares(); err != nil {
			out = append(out, err.Error())
		} else if diff := diffCounts(got, want); diff != "" {
			out = append(out, "sum of node shares != open connections per user: "+diff)
		}
	}
	for _, n := range m.liveNodes() {
		var o Overview
		if err := fetchJSON(n.Node, "/api/admin/dashboard/overview", &o); err != nil {
			out = append(out, fmt.Sprintf("overview of %s: %v", n.id, err))
			continue
		}
		if o.OnlineUsers != users || o.OnlineConnections != conns || o.Source != "redis" {
			out = append(out, fmt.Sprintf("overview of %s = %d users, %d connections, source %s; truth %d users, %d connections",
				n.id, o.OnlineUsers, o.OnlineConnections, o.Source, users, conns))
		}
	}
	return out
}

// checkSettled fails the test unless the presence state matches the model
// now, and fails it if a connection dropped that the model did not drop.
func (m *truthModel) checkSettled(t testing.TB, when string) {
	t.Helper()
	m.checkNoStrayCloses(t)
	if p := m.presenceProblems(t); len(p) > 0 {
		t.Fatalf("%s: %s", when, strings.Join(p, "; "))
	}
}

// settle polls until the presence state matches the model, every 50ms
// (each poll opens a few Redis connections) up to NODE_TTL + 2 heartbeats
// + 1s; it returns how long that took. With floor set (Redis kept its
// data), online_users must never be below the truth meanwhile.
func (m *truthModel) settle(t testing.TB, when string, floor bool) time.Duration {
	t.Helper()
	start := time.Now()
	bound := clusterNodeTTL + 2*clusterHeartbeat + time.Second
	for {
		m.checkNoStrayCloses(t)
		if floor {
			truth := int64(m.truthUsers())
			if v, ok, err := m.getOnline(); err == nil && (!ok || v < truth) {
				t.Fatalf("%s: %s = %d (present %v) %v into the step, below the truth %d", when, onlineKey, v, ok, time.Since(start), truth)
			}
		}
		p := m.presenceProblems(t)
		if len(p) == 0 {
			return time.Since(start)
		}
		if time.Since(start) > bound {
			t.Fatalf("%s: not settled after %v: %s", when, bound, strings.Join(p, "; "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkNoStrayCloses fails the test if the server closed a connection on a
// live node that the test did not close.
func (m *truthModel) checkNoStrayCloses(t testing.TB) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.clients {
		if c.ended() && !c.byUs.Load() && !c.node.dead.Load() {
			t.Fatalf("connection of %s on live node %s closed by the server: %v", c.user, c.node.id, c.cause.Load())
		}
	}
}

// nodeShares sums the {online_users}:node:* hashes per user.
func (m *truthModel) nodeShares() (map[string]int64, error) {
	keys, err := m.redis.DoErr("KEYS", presencePrefix+":node:*")
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, k := range respList(keys) {
		all, err := m.redis.DoErr("HGETALL", k)
		if err != nil {
			return nil, err
		}
		f := respList(all)
		for i := 0; i+1 < len(f); i += 2 {
			n, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s[%s] = %q", k, f[i], f[i+1])
			}
			out[f[i]] += n
		}
	}
	return out, nil
}

// respList splits an array reply as testenv renders it ("[a b c]").
func respList(reply string) []string {
	return strings.Fields(strings.TrimSuffix(strings.TrimPrefix(reply, "["), "]"))
}

// diffCounts describes how got differs from want ("" when equal), listing
// a few users.
func diffCounts(got, want map[string]int64) string {
	var diffs []string
	for u, n := range want {
		if got[u] != n {
			diffs = append(diffs, fmt.Sprintf("%s: %d, truth %d", u, got[u], n))
		}
	}
	for u, n := range got {
		if _, ok := want[u]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: %d, truth 0", u, n))
		}
	}
	if len(diffs) == 0 {
		return ""
	}
	sort.Strings(diffs)
	if len(diffs) > 5 {
		diffs = append(diffs[:5], fmt.Sprintf("... %d in all", len(diffs)))
	}
	return strings.Join(diffs, ", ")
}

// waitFor polls cond every 25ms until it holds, failing the test with the
// last detail after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last: %s", what, timeout, detail)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// serverLoad is the part of the server-load stats the tests read.
type serverLoad struct {
	OnlineUsers       int64  `json:"onlineUsers"`
	OnlineConnections int64  `json:"onlineConnections"`
	Source            string `json:"source"`
	Nodes             []struct {
		ID          string `json:"id"`
		Connections int64  `json:"connections"`
		Users       int64  `json:"users"`
		Healthy     bool   `json:"healthy"`
	} `json:"nodes"`
}

// fetchJSON GETs path as admin and decodes the body into out, returning
// errors instead of failing the test, for use from any goroutine.
func fetchJSON(n *Node, path string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d: %s", path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s: decode %q: %w", path, body, err)
	}
	return nil
}

// shardScript reads one shard in one call: the length of its users hash,
// then every user of its node shares with the connections summed over the
// shares.
const shardScript = `
local sums, users = {}, {}
for _, k in ipairs(redis.call('KEYS', ARGV[1] .. ':node:*')) do
  local f = redis.call('HGETALL', k)
  for i = 1, #f, 2 do
    if not sums[f[i]] then
      users[#users + 1] = f[i]
      sums[f[i]] = 0
    end
    sums[f[i]] = sums[f[i]] + tonumber(f[i + 1])
  end
end
local out = {tostring(redis.call('HLEN', ARGV[1] .. ':users'))}
for _, u in ipairs(users) do
  out[#out + 1] = u
  out[#out + 1] = tostring(sums[u])
end
return out`

// shardProblems compares the shards of a deployment with PRESENCE_SHARDS
// above 1 with the open connections per user: the users hashes' lengths
// summed over the shards (redisstore.ShardPrefix of the default prefix),
// and the node shares summed over the shards. Each shard is read on the
// server holding it (one call per shard).
func (m *truthModel) shardProblems(want map[string]int64) []string {
	var hlen int64
	shares := map[string]int64{}
	for i := range m.shards {
		p := redisstore.ShardPrefix(presencePrefix, i, m.shards)
		reply, err := m.doAt(p+":users", "EVAL", shardScript, "0", p)
		if err == nil && strings.HasPrefix(reply, "(error)") {
			err = errors.New(reply)
		}
		if err != nil {
			return []string{fmt.Sprintf("read shard %s: %v", p, err)}
		}
		f := respList(reply)
		if len(f)%2 != 1 {
			return []string{fmt.Sprintf("shard %s: reply %q", p, reply)}
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		hlen += n
		for k := 1; k+1 < len(f); k += 2 {
			c, err := strconv.ParseInt(f[k+1], 10, 64)
			if err != nil {
				return []string{fmt.Sprintf("shard %s: %s holds %q", p, f[k], f[k+1])}
			}
			shares[f[k]] += c
		}
	}
	var out []string
	if hlen != int64(len(want)) {
		out = append(out, fmt.Sprintf("users hashes of the %d shards hold %d users, truth %d", m.shards, hlen, len(want)))
	}
	if diff := diffCounts(shares, want); diff != "" {
		out = append(out, fmt.Sprintf("sum of node shares over the %d shards != open connections per user: %s", m.shards, diff))
	}
	return out
}

// doAt sends one command to the server holding key: the one server, or on
// a Cluster the master of key's slot.
func (m *truthModel) doAt(key string, args ...string) (string, error) {
	if r, ok := m.redis.(interface {
		doAt(key string, args ...string) (string, error)
	}); ok {
		return r.doAt(key, args...)
	}
	return m.redis.DoErr(args...)
}
