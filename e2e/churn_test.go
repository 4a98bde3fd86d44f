package e2e_test

import (
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/presenced/presenced/internal/testenv"
)

// TestChurn is a property test: random sequences of connects,
// disconnects, kill -9 and SIGTERM of nodes (each replaced by a new node)
// and Redis restarts without persistence, with the presence invariants
// checked against the ground-truth model after every step. The seed is
// logged; PRESENCE_CHURN_SEED=<seed> replays a run.
func TestChurn(t *testing.T) {
	seed := time.Now().UnixNano()
	if s := os.Getenv("PRESENCE_CHURN_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("PRESENCE_CHURN_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay: PRESENCE_CHURN_SEED=%d go test -run Churn ./e2e/)", seed, seed)
	rng := rand.New(rand.NewSource(seed))

	const (
		userPool = 60
		budget   = 75 * time.Second // the whole test stays under 90s
	)
	began := time.Now()
	r := testenv.StartRedis(t)
	m := newTruthModel(t, singleRedis{r})
	nodeSeq := 0
	startNode := func() *liveNode {
		nodeSeq++
		return m.startNode(t, fmt.Sprintf("churn-%d", nodeSeq))
	}
	for range 2 + rng.Intn(2) {
		startNode()
	}
	randomUser := func() string { return fmt.Sprintf("c%02d", rng.Intn(userPool)) }

	steps := 25 + rng.Intn(16)
	var done int
	for step := 1; step <= steps; step++ {
		if time.Since(began) > budget {
			t.Logf("time budget spent after %d of %d steps", done, steps)
			break
		}
		live := m.liveNodes()
		open := m.openClients()
		var what string
		floor := true
		switch p := rng.Intn(100); {
		case p < 45 || len(open) == 0: // connect k clients
			k := 1 + rng.Intn(12)
			specs := make([]dialSpec, k)
			for i := range specs {
				specs[i] = dialSpec{user: randomUser(), node: live[rng.Intn(len(live))]}
			}
			m.dial(t, specs)
			what = fmt.Sprintf("connect %d", k)
		case p < 66: // disconnect k clients
			k := min(1+rng.Intn(6), len(open))
			rng.Shuffle(len(open), func(i, j int) { open[i], open[j] = open[j], open[i] })
			for _, c := range open[:k] {
				c.close()
			}
			what = fmt.Sprintf("disconnect %d", k)
		case p < 78: // kill -9 a node, start a replacement
			n := live[rng.Intn(len(live))]
			clients := m.clientsOn(n)
			n.dead.Store(true)
			n.Kill()
			m.waitEnded(t, clients, 5*time.Second)
			startNode()
			what = fmt.Sprintf("kill -9 %s (%d clients), start a replacement", n.id, len(clients))
		case p < 89: // SIGTERM a node, start a replacement
			n := live[rng.Intn(len(live))]
			clients := m.clientsOn(n)
			n.dead.Store(true)
			if code, _ := n.Term(); code != 0 {
				t.Fatalf("step %d: %s exit code %d after SIGTERM", step, n.id, code)
			}
			m.waitEnded(t, clients, 5*time.Second)
			for _, c := range clients {
				if code := c.code.Load(); code != websocket.CloseGoingAway {
					t.Fatalf("step %d: a client of %s got close code %d after SIGTERM, want 1001", step, n.id, code)
				}
			}
			startNode()
			what = fmt.Sprintf("SIGTERM %s (%d clients), start a replacement", n.id, len(clients))
		default: // restart Redis without persistence
			r.Kill()
			r.Start()
			what = "restart redis"
			floor = false // Redis lost the count: it is rebuilt from below
		}
		took := m.settle(t, fmt.Sprintf("step %d (%s)", step, what), floor)
		done = step
		t.Logf("step %2d: %-50s -> %d users, %d connections on %d nodes; settled in %v",
			step, what, m.truthUsers(), len(m.openClients()), len(m.liveNodes()), took.Round(time.Millisecond))
	}
	t.Logf("%d steps in %v", done, time.Since(began).Round(time.Millisecond))
}
