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
	runChurn(t, 75*time.Second, true, func(r *testenv.Redis) presenceRedis { return singleRedis{r} })
}

// TestChurnWithInjectedTimeouts is TestChurn with the nodes reaching Redis
// through a proxy that breaks 5% of the requests: it holds one back
// (delivering it late, after its caller gave up) or drops its reply. Every such
// call times out with its outcome unknown, which the nodes settle by
// reading back what Redis holds. The count must still settle exactly
// after every step; it is not checked against the truth as a floor
// during a step, since a connect whose write timed out is greeted before
// it is counted (the gateway waits for a write only up to its deadline).
func TestChurnWithInjectedTimeouts(t *testing.T) {
	var px *testenv.FaultProxy
	runChurn(t, 45*time.Second, false, func(r *testenv.Redis) presenceRedis {
		px = testenv.StartFaultProxy(t, r.Addr())
		px.Random(0.05)
		return proxiedRedis{singleRedis{r}, px}
	})
	t.Logf("%d faults injected", px.Faults())
	if px.Faults() == 0 {
		t.Fatal("no fault was injected")
	}
}

// proxiedRedis is one redis-server that the nodes reach through a
// FaultProxy; the test's own reads go to the server.
type proxiedRedis struct {
	singleRedis
	px *testenv.FaultProxy
}

func (r proxiedRedis) env() map[string]string {
	return map[string]string{"REDIS_URL": "redis://" + r.px.Addr()}
}

// runChurn runs the churn steps for up to budget on the deployment
// deploy makes of a fresh redis-server; with floor, online_users is
// checked never to fall below the truth after connects.
func runChurn(t *testing.T, budget time.Duration, floor bool, deploy func(*testenv.Redis) presenceRedis) {
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

	const userPool = 60
	began := time.Now()
	r := testenv.StartRedis(t)
	m := newTruthModel(t, deploy(r))
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
		floor := floor
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
