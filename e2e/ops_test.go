package e2e_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/presenced/presenced/internal/testenv"
)

// scrape fetches /metrics and parses it with Prometheus's own text parser,
// which fails on anything a Prometheus server would refuse.
func scrape(t *testing.T, n *Node) map[string]*dto.MetricFamily {
	t.Helper()
	status, body := n.GetToken("/metrics", "", 5*time.Second)
	if status != http.StatusOK {
		t.Fatalf("/metrics: %d", status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	return fams
}

// value returns the value of the sample of family name whose labels
// include want (a histogram's count), and whether there is one.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// TestMetricsScrape checks /metrics of a running binary against the
// Prometheus conventions (types, _total on counters, labels) and that the
// values move with what clients do.
func TestMetricsScrape(t *testing.T) {
	n := StartNode(t, map[string]string{"STATS_REFRESH_INTERVAL": "50ms"})
	fams := scrape(t, n)

	types := map[string]dto.MetricType{
		"presenced_online_users":                    dto.MetricType_GAUGE,
		"presenced_node_users":                      dto.MetricType_GAUGE,
		"presenced_node_connections":                dto.MetricType_GAUGE,
		"presenced_node_guests":                     dto.MetricType_GAUGE,
		"presenced_connections":                     dto.MetricType_GAUGE,
		"presenced_presence_store_up":               dto.MetricType_GAUGE,
		"presenced_sse_clients":                     dto.MetricType_GAUGE,
		"presenced_connects_total":                  dto.MetricType_COUNTER,
		"presenced_disconnects_total":               dto.MetricType_COUNTER,
		"presenced_auth_failures_total":             dto.MetricType_COUNTER,
		"presenced_server_closes_total":             dto.MetricType_COUNTER,
		"presenced_fallback_answers_total":          dto.MetricType_COUNTER,
		"presenced_presence_store_requests_total":   dto.MetricType_COUNTER,
		"presenced_presence_store_duration_seconds": dto.MetricType_HISTOGRAM,
		"presenced_presence_batch_users":            dto.MetricType_HISTOGRAM,
		"presenced_presence_resyncs_total":          dto.MetricType_COUNTER,
		"presenced_data_store_requests_total":       dto.MetricType_COUNTER,
		"presenced_data_store_duration_seconds":     dto.MetricType_HISTOGRAM,
		"go_goroutines":                             dto.MetricType_GAUGE,
		"process_resident_memory_bytes":             dto.MetricType_GAUGE,
	}
	for name, f := range fams {
		if !strings.HasPrefix(name, "presenced_") {
			continue
		}
		if (f.GetType() == dto.MetricType_COUNTER) != strings.HasSuffix(name, "_total") {
			t.Errorf("%s: a %v; counters and only counters end in _total", name, f.GetType())
		}
		if f.GetHelp() == "" {
			t.Errorf("%s has no help", name)
		}
	}
	for _, tr := range []string{"websocket", "socketio-websocket", "socketio-polling"} {
		for _, result := range []string{"accepted", "unauthorized", "rate_limited"} {
			if _, ok := value(fams, "presenced_connects_total", map[string]string{"transport": tr, "result": result}); !ok {
				t.Errorf("no presenced_connects_total{transport=%q,result=%q}", tr, result)
			}
		}
	}

	alice := Dial(t, n, Token(t, "alice"))
	bob := Dial(t, n, Token(t, "bob"))
	defer bob.Conn.Close()
	if _, err := DialErr(n, "not-a-jwt"); err == nil {
		t.Fatal("a bad token was accepted")
	}
	if _, err := DialErr(n, ""); err == nil {
		t.Fatal("a missing token was accepted")
	}
	alice.Conn.Close()

	deadline := time.Now().Add(10 * time.Second)
	want := []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"presenced_connects_total", map[string]string{"transport": "websocket", "result": "accepted"}, 2},
		{"presenced_connects_total", map[string]string{"transport": "websocket", "result": "unauthorized"}, 2},
		{"presenced_auth_failures_total", map[string]string{"reason": "invalid"}, 1},
		{"presenced_auth_failures_total", map[string]string{"reason": "missing"}, 1},
		{"presenced_disconnects_total", map[string]string{"transport": "websocket"}, 1},
		{"presenced_node_connections", nil, 1},
		{"presenced_connections", map[string]string{"transport": "websocket"}, 1},
		{"presenced_online_users", nil, 1},
	}
	for {
		fams = scrape(t, n)
		var wrong []string
		for _, w := range want {
			if v, _ := value(fams, w.name, w.labels); v != w.value {
				wrong = append(wrong, w.name+labelText(w.labels)+" = "+fmtFloat(v)+", want "+fmtFloat(w.value))
			}
		}
		// Counted by the stores once the batches and the last-seen flush ran.
		for _, w := range []struct {
			name   string
			labels map[string]string
		}{
			{"presenced_presence_batch_users", nil},
			{"presenced_presence_store_requests_total", map[string]string{"op": "apply", "result": "ok"}},
			{"presenced_presence_store_duration_seconds", map[string]string{"op": "apply"}},
			{"presenced_data_store_requests_total", map[string]string{"op": "touch_last_seen", "result": "ok"}},
			{"presenced_data_store_duration_seconds", map[string]string{"op": "user_stats"}},
		} {
			if v, _ := value(fams, w.name, w.labels); v < 1 {
				wrong = append(wrong, w.name+labelText(w.labels)+" did not move")
			}
		}
		if len(wrong) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never settled:\n%s", strings.Join(wrong, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Every family is there now (labelled ones appear with their first
	// sample) with its type.
	for name, typ := range types {
		f := fams[name]
		if f == nil {
			t.Errorf("%s missing", name)
			continue
		}
		if f.GetType() != typ {
			t.Errorf("%s is a %v, want %v", name, f.GetType(), typ)
		}
	}
}

func labelText(l map[string]string) string {
	if len(l) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("{")
	for k, v := range l {
		b.WriteString(k + "=" + v + ",")
	}
	return strings.TrimSuffix(b.String(), ",") + "}"
}

func fmtFloat(v float64) string { return model.SampleValue(v).String() }

// TestEmbeddedCountsConnectedUsers: in embedded mode the users who connect
// are the users: totalUsers and newUsersToday count them, created when
// first seen, and a second connection of one user adds nobody.
func TestEmbeddedCountsConnectedUsers(t *testing.T) {
	n := StartNode(t, map[string]string{"STATS_REFRESH_INTERVAL": "50ms"})
	var clients []*Client
	for _, u := range []string{"ann", "ben", "cid", "ann"} {
		clients = append(clients, Dial(t, n, Token(t, u)))
	}
	waitOverview(t, n, 10*time.Second, func(o Overview) bool { // 3 users counted
		return o.TotalUsers == 3 && o.NewUsersToday == 3 && o.ActiveUsers24h == 3
	})
	// Gone again, they stay users: the count comes from the data store,
	// not from who is online.
	for _, c := range clients {
		c.Conn.Close()
	}
	waitOverview(t, n, 10*time.Second, func(o Overview) bool { // everyone gone, still 3 users
		return o.OnlineUsers == 0 && o.TotalUsers == 3 && o.NewUsersToday == 3
	})
}

// TestStatsTimezoneInvalid: a zone that is not an IANA name stops startup
// with exit code 2 naming the variable.
func TestStatsTimezoneInvalid(t *testing.T) {
	p := StartProc(t, t.TempDir(), nil, map[string]string{"STATS_TIMEZONE": "Mars/Olympus_Mons"})
	if code := p.Wait(10 * time.Second); code != 2 {
		t.Fatalf("exit code %d, want 2:\n%s", code, p.Log())
	}
	if !strings.Contains(p.Stderr.String(), "STATS_TIMEZONE") {
		t.Errorf("stderr does not name STATS_TIMEZONE:\n%s", p.Stderr.String())
	}
}

// TestResyncCounted: after FLUSHALL the node rewrites its share, and
// /metrics counts the resync.
func TestResyncCounted(t *testing.T) {
	r := testenv.StartRedis(t)
	n := StartNode(t, map[string]string{"REDIS_URL": r.URL(), "HEARTBEAT_INTERVAL": "100ms", "NODE_TTL": "1s"})
	c := Dial(t, n, Token(t, "zoe"))
	defer c.Conn.Close()
	if v, ok := value(scrape(t, n), "presenced_presence_resyncs_total", nil); !ok || v != 0 {
		t.Fatalf("resyncs_total before any data loss = %v (present %v), want 0: the first registration is no resync", v, ok)
	}
	r.Do("FLUSHALL")
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, _ := value(scrape(t, n), "presenced_presence_resyncs_total", nil)
		if v >= 1 && r.Do("GET", "online_users") == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("resyncs_total = %v, online_users = %q", v, r.Do("GET", "online_users"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cutProxy forwards TCP connections to target until Cut, which closes the
// listener and every connection; Restore listens on the same port again.
// It stands for a network cut between presenced and a real server.
type cutProxy struct {
	t      *testing.T
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	p := &cutProxy{t: t, target: target}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.Cut)
	return p
}

func (p *cutProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(s, c); s.Close() }()
			go func() { _, _ = io.Copy(c, s); c.Close() }()
		}
	}()
}

func (p *cutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *cutProxy) Restore() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy: listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// TestOperatorLogs reads the log of a managed node as an operator would:
// the start line says the node, mode and where Redis and MongoDB are; a
// data-store outage is one line when it starts and one when it ends,
// however long it lasts; shutdown is a line per step; and no password,
// token or secret appears anywhere.
func TestOperatorLogs(t *testing.T) {
	r := testenv.StartRedis(t)
	mongo := newCutProxy(t, strings.TrimSuffix(strings.TrimPrefix(testenv.StartFerretDB(t), "mongodb://"), "/"))
	n := StartNode(t, map[string]string{
		"NODE_ID":     "ops-node-1",
		"REDIS_URL":   r.URL(),
		"MONGODB_URI": "mongodb://" + mongo.addr + "/",
		"LOG_LEVEL":   "info",
	})
	n.WaitLog("Redis connected successfully", 10*time.Second)
	start := logLine(t, n.Log(), "presenced listening")
	for _, want := range []string{"node=ops-node-1", "mode=managed", "data_store=mongodb", "redis=redis://" + r.Addr(), "mongodb=mongodb://" + mongo.addr, "stats_timezone=UTC"} {
		if !strings.Contains(start, want) {
			t.Errorf("start line lacks %q: %s", want, start)
		}
	}

	mongo.Cut()
	n.WaitLog("data store unreachable", 15*time.Second)
	time.Sleep(5 * time.Second) // two more pings, several last-seen flushes and stats refreshes
	mongo.Restore()
	n.WaitLog("data store reachable again", 15*time.Second)
	if c := strings.Count(n.Log(), "data store unreachable"); c != 1 {
		t.Errorf("outage said %d times, want once:\n%s", c, n.Log())
	}

	if code, _ := n.Term(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	log := n.Log()
	steps := []string{"shutting down", "stopped accepting connections", "websocket connections closed", "http server drained", "presence share removed", "Redis connection closed", "data store closed", "shutdown complete"}
	at := 0
	for _, step := range steps {
		i := strings.Index(log[at:], step)
		if i < 0 {
			t.Fatalf("shutdown step %q missing or out of order:\n%s", step, log)
		}
		if !strings.Contains(logLine(t, log[at+i:], step), "node=ops-node-1") {
			t.Errorf("shutdown step %q without the node id", step)
		}
		at += i
	}
	for _, secret := range []string{testSecret, adminToken} {
		if strings.Contains(log, secret) {
			t.Errorf("the log contains the secret %q:\n%s", secret, log)
		}
	}
}

// TestLogsHideRedisPassword: a Redis URL's password never reaches the
// log, even when Redis refuses it and the error is logged. (The MongoDB
// URI goes through the same redactURL; FerretDB refuses the
// authentication mechanisms the driver offers, so it is not shown here.)
func TestLogsHideRedisPassword(t *testing.T) {
	r := testenv.StartRedis(t)
	r.Do("CONFIG", "SET", "requirepass", "the-right-one")
	const pass = "redis-pw-9f8e7d"
	n := StartNode(t, map[string]string{"REDIS_URL": "redis://:" + pass + "@" + r.Addr()})
	n.WaitLog("Redis connection failed", 10*time.Second)
	start := logLine(t, n.Log(), "presenced listening")
	if !strings.Contains(start, "redis=redis://"+r.Addr()) {
		t.Errorf("start line: %s", start)
	}
	if strings.Contains(n.Log(), pass) {
		t.Fatalf("the log contains the Redis password:\n%s", n.Log())
	}
}

// logLine returns the first line of log that contains substr.
func logLine(t *testing.T, log, substr string) string {
	t.Helper()
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, substr) {
			return l
		}
	}
	t.Fatalf("no log line with %q:\n%s", substr, log)
	return ""
}

// TestRedisFailureMetrics: with Redis stopped, the presence store's
// errors and the fallback answers show on /metrics.
func TestRedisFailureMetrics(t *testing.T) {
	r := testenv.StartRedis(t)
	n := StartNode(t, map[string]string{"REDIS_URL": r.URL(), "HEARTBEAT_INTERVAL": "100ms", "NODE_TTL": "1s"})
	c := Dial(t, n, Token(t, "yan"))
	defer c.Conn.Close()
	r.Stop()
	deadline := time.Now().Add(15 * time.Second)
	for {
		o := n.Overview()
		fams := scrape(t, n)
		fb, _ := value(fams, "presenced_fallback_answers_total", map[string]string{"source": "data_store"})
		hbErr, _ := value(fams, "presenced_presence_store_requests_total", map[string]string{"op": "heartbeat", "result": "error"})
		up, _ := value(fams, "presenced_presence_store_up", nil)
		if o.Source == "sqlite" && fb >= 1 && hbErr >= 1 && up == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("source %q, fallback answers %v, heartbeat errors %v, store up %v", o.Source, fb, hbErr, up)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
