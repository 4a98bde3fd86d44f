package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/auth"
	"github.com/presenced/presenced/internal/testenv"
)

// The Socket.IO tests run the reference client (socket.io-client 4.8 in
// Node.js, see socketio_helpers_test.go) against the real presenced
// binary, and read the counts from the admin overview as the dashboard
// does.

// TestSocketIODefaultTransports: with the client's defaults (polling, then
// the upgrade to websocket) a user connects, upgrades and is counted once;
// when the client disconnects the count goes back to 0.
func TestSocketIODefaultTransports(t *testing.T) {
	t.Parallel()
	n := StartNode(t, nil)
	d := startSIO(t, sioScenario{URL: n.URL, Clients: []sioClientSpec{{Token: Token(t, "alice")}}})
	c := d.waitConnected(1, 10*time.Second)[0]
	if c.ID == "" {
		t.Errorf("connect without a socket id: %s", c)
	}
	// The default Engine.IO session opens on polling and upgrades. With
	// the default 25 s ping interval this also shows the server ending
	// the pending poll during the upgrade instead of at the next ping.
	up := d.wait("upgrade to websocket", 10*time.Second, is(0, "upgrade"))
	if up.Transport != "websocket" {
		t.Fatalf("upgrade line %s, want transport websocket", up)
	}
	wantCounts(t, n, 3*time.Second, 1, 1, 0, "one Socket.IO client, upgraded")
	if st := d.state()[0]; !st.Connected || st.Transport != "websocket" {
		t.Fatalf("client state after the upgrade = %+v, want connected on websocket", st)
	}
	d.closeClient(0)
	if e := d.wait("disconnect", 5*time.Second, is(0, "disconnect")); e.Reason != "io client disconnect" {
		t.Fatalf("disconnect line %s, want reason io client disconnect", e)
	}
	wantCounts(t, n, 3*time.Second, 0, 0, 0, "after the client disconnected")
	if got := d.count(is(0, "connect")); got != 1 {
		t.Errorf("%d connect lines, want 1", got)
	}
}

// TestSocketIOWebSocketOnly: a client that only speaks websocket connects
// on it directly, is counted, keeps answering pings, and leaves the count.
func TestSocketIOWebSocketOnly(t *testing.T) {
	t.Parallel()
	n := StartNode(t, sioShortPings())
	d := startSIO(t, sioScenario{URL: n.URL, Transports: []string{"websocket"}, ReportPings: true,
		Clients: []sioClientSpec{{Token: Token(t, "wsonly")}}})
	if c := d.waitConnected(1, 10*time.Second)[0]; c.Transport != "websocket" {
		t.Fatalf("connect line %s, want transport websocket", c)
	}
	wantCounts(t, n, 3*time.Second, 1, 1, 0, "one websocket-only client")
	// Several ping intervals (300ms) and timeouts (300ms) pass.
	d.waitN("3 server pings", 5*time.Second, 3, is(0, "ping"))
	if st := d.state()[0]; !st.Connected || st.Transport != "websocket" {
		t.Fatalf("client state after 3 pings = %+v, want connected on websocket", st)
	}
	if got := d.count(is(0, "disconnect")) + d.count(is(0, "upgrade")); got != 0 {
		t.Fatalf("disconnect or upgrade lines for a websocket-only client:\n%s", d.output())
	}
	wantCounts(t, n, time.Second, 1, 1, 0, "after 3 pings")
	d.closeClient(0)
	d.wait("disconnect", 5*time.Second, is(0, "disconnect"))
	wantCounts(t, n, 3*time.Second, 0, 0, 0, "after the client disconnected")
}

// TestSocketIOPollingOnly: a polling-only client stays connected and
// counted across several ping intervals (300ms) for 2 s.
func TestSocketIOPollingOnly(t *testing.T) {
	t.Parallel()
	n := StartNode(t, sioShortPings())
	d := startSIO(t, sioScenario{URL: n.URL, Transports: []string{"polling"}, ReportPings: true,
		Clients: []sioClientSpec{{Token: Token(t, "poller")}}})
	if c := d.waitConnected(1, 10*time.Second)[0]; c.Transport != "polling" {
		t.Fatalf("connect line %s, want transport polling", c)
	}
	wantCounts(t, n, 3*time.Second, 1, 1, 0, "one polling-only client")
	// Sample the overview through 2 s of long polls and pings.
	end := time.Now().Add(2 * time.Second)
	samples := 0
	for time.Now().Before(end) {
		if o := n.Overview(); o.OnlineUsers != 1 || o.OnlineConnections != 1 {
			t.Fatalf("overview %+v after %d samples, want 1 user and 1 connection throughout", o, samples)
		}
		samples++
		time.Sleep(100 * time.Millisecond)
	}
	if st := d.state()[0]; !st.Connected || st.Transport != "polling" {
		t.Fatalf("polling client state after 2 s = %+v, want connected on polling\n%s", st, d.output())
	}
	if got := d.count(is(0, "disconnect")); got != 0 {
		t.Fatalf("the polling client was disconnected:\n%s", d.output())
	}
	if got := d.count(is(0, "connect")); got != 1 {
		t.Fatalf("%d connect lines in 2 s, want 1 (no reconnects):\n%s", got, d.output())
	}
	if pings := d.count(is(0, "ping")); pings < 3 {
		t.Fatalf("%d pings in 2 s with SOCKETIO_PING_INTERVAL=300ms, want at least 3", pings)
	}
	d.closeClient(0)
	d.wait("disconnect", 5*time.Second, is(0, "disconnect"))
	wantCounts(t, n, 3*time.Second, 0, 0, 0, "after the polling client disconnected")
}

// TestSocketIOWithWebSocketClients: Socket.IO connections and /ws ones
// count together: 3 Socket.IO tabs of one user and 2 /ws tabs of another
// are 2 users and 5 connections.
func TestSocketIOWithWebSocketClients(t *testing.T) {
	t.Parallel()
	n := StartNode(t, nil)
	tokA := Token(t, "user-a")
	d := startSIO(t, sioScenario{URL: n.URL, Clients: []sioClientSpec{
		{Token: tokA},
		{Token: tokA, Transports: []string{"websocket"}},
		{Token: tokA, Transports: []string{"polling"}},
	}})
	d.waitConnected(3, 10*time.Second)
	b1, b2 := Dial(t, n, Token(t, "user-b")), Dial(t, n, Token(t, "user-b"))
	defer b1.Conn.Close()
	defer b2.Conn.Close()
	wantCounts(t, n, 3*time.Second, 2, 5, 0, "3 Socket.IO tabs of user-a, 2 /ws tabs of user-b")

	d.closeClient(-1)
	d.waitN("3 disconnects", 5*time.Second, 3, is(-1, "disconnect"))
	wantCounts(t, n, 3*time.Second, 1, 2, 0, "after the Socket.IO tabs closed")
	b1.Conn.Close()
	b2.Conn.Close()
	wantCounts(t, n, 3*time.Second, 0, 0, 0, "after every tab closed")
}

// TestSocketIOAuth: a bad or missing token is refused with one
// connect_error that says why, the client does not try again, and
// nothing is counted; with ALLOW_ANONYMOUS=true a client without a token
// is a guest.
func TestSocketIOAuth(t *testing.T) {
	t.Parallel()
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		n := StartNode(t, nil)
		wrongSecret, err := auth.Mint([]byte("not-the-node-secret-0123456789abcdef"), "mallory", false, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		expired, err := auth.Mint([]byte(testSecret), "late", false, time.Hour, time.Now().Add(-2*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name string
			spec sioClientSpec
		}{
			{"wrong secret", sioClientSpec{Token: wrongSecret}},
			{"not a JWT", sioClientSpec{Token: "not-a-jwt"}},
			{"expired", sioClientSpec{Token: expired}},
			{"no auth", sioClientSpec{}},
			{"empty token", sioClientSpec{Auth: map[string]any{"token": ""}}},
			{"websocket, wrong secret", sioClientSpec{Token: wrongSecret, Transports: []string{"websocket"}}},
			{"polling, no auth", sioClientSpec{Transports: []string{"polling"}}},
		}
		sc := sioScenario{URL: n.URL}
		for _, c := range cases {
			sc.Clients = append(sc.Clients, c.spec)
		}
		d := startSIO(t, sc)
		errs := d.waitN("a connect_error for every client", 10*time.Second, len(cases), is(-1, "connect_error"))
		// Give a retrying client (the Manager reconnects after ~1 s by
		// default) 2 s to show itself.
		time.Sleep(2 * time.Second)
		for i, c := range cases {
			var first sioEvent
			for _, e := range errs {
				if e.Client == i {
					first = e
					break
				}
			}
			msg := first.Message
			switch {
			case first.Event == "":
				t.Errorf("%s: no connect_error", c.name)
			case msg == "":
				t.Errorf("%s: connect_error with an empty message: %s", c.name, first)
			case isTransportError(msg):
				// A transport failure, not a CONNECT_ERROR from the server.
				t.Errorf("%s: connect_error %q is the client's transport error: the server dropped the session instead of refusing the CONNECT: %s", c.name, msg, first)
			}
			if got := d.count(is(i, "connect_error")); got != 1 {
				t.Errorf("%s: %d connect_error lines within 2 s, want exactly 1", c.name, got)
			}
			if got := d.count(is(i, "reconnect_attempt")) + d.count(is(i, "connect")); got != 0 {
				t.Errorf("%s: %d connects or reconnect attempts after the refusal, want none", c.name, got)
			}
			t.Logf("%s: connect_error %q", c.name, msg)
		}
		wantCounts(t, n, time.Second, 0, 0, 0, "after refused tokens")
		if o := n.Overview(); o.OnlineUsers != 0 || o.OnlineConnections != 0 || o.OnlineGuests != 0 {
			t.Fatalf("overview after refused tokens = %+v, want all 0", o)
		}
	})
	t.Run("anonymous", func(t *testing.T) {
		t.Parallel()
		n := StartNode(t, map[string]string{"ALLOW_ANONYMOUS": "true"})
		d := startSIO(t, sioScenario{URL: n.URL, Clients: []sioClientSpec{{}}})
		d.waitConnected(1, 10*time.Second)
		wantCounts(t, n, 3*time.Second, 0, 1, 1, "one anonymous Socket.IO client")
		d.closeClient(0)
		d.wait("disconnect", 5*time.Second, is(0, "disconnect"))
		wantCounts(t, n, 3*time.Second, 0, 0, 0, "after the guest left")
	})
}

// isTransportError reports whether msg is one of socket.io-client's own
// messages for a failed transport, as opposed to a message sent by the
// server in a CONNECT_ERROR packet.
func isTransportError(msg string) bool {
	switch msg {
	case "xhr poll error", "websocket error", "xhr post error", "timeout", "server error", "probe error", "transport close", "transport error":
		return true
	}
	return false
}

// TestSocketIOKilledClient: a client process killed with SIGKILL says
// nothing; the server drops its session within ping interval + ping
// timeout (300ms + 300ms here) and the count goes back to 0 within 3 s.
func TestSocketIOKilledClient(t *testing.T) {
	t.Parallel()
	for _, transport := range []string{"polling", "websocket"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			n := StartNode(t, sioShortPings())
			d := startSIO(t, sioScenario{URL: n.URL, Transports: []string{transport},
				Clients: []sioClientSpec{{Token: Token(t, "doomed")}}})
			if c := d.waitConnected(1, 10*time.Second)[0]; c.Transport != transport {
				t.Fatalf("connect line %s, want transport %s", c, transport)
			}
			wantCounts(t, n, 3*time.Second, 1, 1, 0, "before the kill")
			d.kill()
			took := wantCounts(t, n, 3*time.Second, 0, 0, 0, "after SIGKILL of a "+transport+" client")
			t.Logf("%s client killed: count back to 0 %v later", transport, took.Round(time.Millisecond))
		})
	}
}

// TestSocketIOServerSIGTERM: on SIGTERM the server disconnects its
// Socket.IO clients ("io server disconnect", so they do not reconnect)
// on every transport and exits 0; the driver then has nothing left and
// exits 0 by itself.
func TestSocketIOServerSIGTERM(t *testing.T) {
	t.Parallel()
	n := StartNode(t, nil)
	tok := Token(t, "leaver")
	sc := sioScenario{URL: n.URL, ExitWhenDone: true, Clients: []sioClientSpec{
		{Token: tok, Transports: []string{"polling"}},
		{Token: tok, Transports: []string{"websocket"}},
		{Token: tok},
	}}
	d := startSIO(t, sc)
	d.waitConnected(3, 10*time.Second)
	d.wait("client 2 upgrades", 10*time.Second, is(2, "upgrade"))
	wantCounts(t, n, 3*time.Second, 1, 3, 0, "before SIGTERM")
	code, took := n.Term()
	t.Logf("presenced exited %d %v after SIGTERM", code, took.Round(time.Millisecond))
	if code != 0 {
		t.Errorf("presenced exit code %d after SIGTERM, want 0", code)
	}
	if code := d.waitExit(5 * time.Second); code != 0 {
		t.Errorf("driver exit code %d, want 0:\n%s", code, d.output())
	}
	// Each client hears exactly one disconnect, and it says the server
	// ended the session: an app shows "reconnecting" on any other reason.
	for i := range 3 {
		var reasons []string
		for _, e := range d.snapshot() {
			if is(i, "disconnect")(e) {
				reasons = append(reasons, fmt.Sprintf("%q (%s, on %s)", e.Reason, e.Description, e.Transport))
			}
		}
		if len(reasons) != 1 || !strings.HasPrefix(reasons[0], `"io server disconnect"`) {
			t.Errorf("client %d (transports %v): disconnect reasons %v, want exactly one: io server disconnect", i, sc.Clients[i].Transports, reasons)
		}
	}
	if got := d.count(is(-1, "reconnect_attempt")); got != 0 {
		t.Errorf("%d reconnect attempts after io server disconnect, want 0", got)
	}
}

// TestSocketIOManyClients: 500 websocket clients of 100 users are 100
// users and 500 connections; when they all close, 0.
func TestSocketIOManyClients(t *testing.T) {
	t.Parallel()
	const users, tabs = 100, 5
	n := StartNode(t, nil)
	tokens := make([]string, users)
	for i := range tokens {
		tokens[i] = Token(t, fmt.Sprintf("many-%03d", i))
	}
	sc := sioScenario{URL: n.URL, Transports: []string{"websocket"}}
	for i := range users * tabs {
		sc.Clients = append(sc.Clients, sioClientSpec{Token: tokens[i%users]})
	}
	start := time.Now()
	d := startSIO(t, sc)
	d.waitConnected(users*tabs, 60*time.Second)
	t.Logf("%d Socket.IO clients connected in %v", users*tabs, time.Since(start).Round(time.Millisecond))
	wantCounts(t, n, 5*time.Second, users, users*tabs, 0, "500 clients of 100 users")
	d.closeClient(-1)
	d.waitN("500 disconnects", 20*time.Second, users*tabs, is(-1, "disconnect"))
	wantCounts(t, n, 5*time.Second, 0, 0, 0, "after all 500 closed")
	if got := d.count(is(-1, "connect")); got != users*tabs {
		t.Errorf("%d connect lines, want %d (no reconnects)", got, users*tabs)
	}
}

// TestSocketIOEvents: presence:subscribe delivers presence:count when the
// count changes (at most once a second), presence:count with an ack
// answers the current counts, and other events are ignored.
func TestSocketIOEvents(t *testing.T) {
	t.Parallel()
	n := StartNode(t, nil)
	d := startSIO(t, sioScenario{URL: n.URL, Clients: []sioClientSpec{{Token: Token(t, "watcher")}}})
	d.waitConnected(1, 10*time.Second)
	wantCounts(t, n, 3*time.Second, 1, 1, 0, "the watcher alone")
	if ack := d.emit(0, "presence:count", true); ack.Error != "" {
		t.Fatalf("presence:count ack: %s", ack)
	} else if c, ok := ack.counts(); !ok || !c.is(1, 1) {
		t.Fatalf("presence:count ack %s, want {onlineUsers: 1, onlineConnections: 1}", ack)
	}
	d.emit(0, "presence:subscribe", false)
	// Let the subscription reach the server before the count changes.
	time.Sleep(300 * time.Millisecond)

	// Five more users connect at once: the count changes five times
	// within a few milliseconds.
	var more []sioClientSpec
	for i := range 5 {
		more = append(more, sioClientSpec{Token: Token(t, fmt.Sprintf("joiner-%d", i))})
	}
	d.send(map[string]any{"cmd": "open", "clients": more})
	d.waitConnectedFrom(1, 5, 10*time.Second)
	got := d.wait("presence:count {6, 6}", 5*time.Second, func(e sioEvent) bool {
		c, ok := e.counts()
		return message(0, "presence:count")(e) && ok && c.is(6, 6)
	})
	t.Logf("subscribed watcher got %s", got)
	if ack := d.emit(0, "presence:count", true); ack.Error != "" {
		t.Fatalf("presence:count ack: %s", ack)
	} else if c, ok := ack.counts(); !ok || !c.is(6, 6) {
		t.Fatalf("presence:count ack %s, want {onlineUsers: 6, onlineConnections: 6}", ack)
	}
	// Others leave: the watcher hears about it.
	isOne := func(e sioEvent) bool {
		c, ok := e.counts()
		return message(0, "presence:count")(e) && ok && c.is(1, 1)
	}
	before := d.count(isOne)
	for i := 1; i <= 5; i++ {
		d.closeClient(i)
	}
	d.waitN("presence:count {1, 1} after the joiners left", 5*time.Second, before+1, isOne)
	// Change events come at most once a second (measured at the client,
	// so with a little slack for delivery). An event before the joiners
	// opened is a snapshot sent on subscribe, not a change: the contract
	// neither asks for one nor forbids it, so it is left out of the rate.
	opened := d.wait("opened", time.Second, is(-1, "opened"))
	var last float64
	for i, e := range d.snapshot() {
		if !message(0, "presence:count")(e) {
			continue
		}
		t.Logf("watcher: %s", e)
		if _, ok := e.counts(); !ok {
			t.Errorf("presence:count event without {onlineUsers, onlineConnections}: %s", e)
		}
		if e.T < opened.T {
			continue
		}
		if last != 0 && e.T-last < 800 {
			t.Errorf("presence:count change events %.0f ms apart (line %d: %s), want at most one a second", e.T-last, i, e)
		}
		last = e.T
	}
	// Unknown events are ignored: the watcher stays connected.
	d.emit(0, "presence:unknown", false, map[string]any{"x": 1})
	d.emit(0, "chat", false, "hello")
	time.Sleep(500 * time.Millisecond)
	if st := d.state()[0]; !st.Connected {
		t.Fatalf("watcher state after unknown events = %+v, want connected", st)
	}
	if ack := d.emit(0, "presence:count", true); ack.Error != "" {
		t.Fatalf("presence:count ack after unknown events: %s", ack)
	} else if c, ok := ack.counts(); !ok || !c.is(1, 1) {
		t.Fatalf("presence:count ack %s, want {onlineUsers: 1, onlineConnections: 1}", ack)
	}
	if got := d.count(is(0, "disconnect")); got != 0 {
		t.Fatalf("watcher disconnected:\n%s", d.output())
	}
}

// TestSocketIONamespace: only the main namespace exists.
func TestSocketIONamespace(t *testing.T) {
	t.Parallel()
	n := StartNode(t, nil)
	d := startSIO(t, sioScenario{URL: n.URL, Clients: []sioClientSpec{
		{Token: Token(t, "nsuser"), Namespace: "/other"},
		{Token: Token(t, "nsuser"), Namespace: "/other", Transports: []string{"websocket"}},
	}})
	errs := d.waitN("connect_error for /other", 10*time.Second, 2, is(-1, "connect_error"))
	for _, e := range errs {
		if e.Message != "Invalid namespace" {
			t.Errorf("client %d: connect_error %q (%s), want \"Invalid namespace\"", e.Client, e.Message, e)
		}
	}
	time.Sleep(2 * time.Second)
	if got := d.count(is(-1, "connect_error")); got != 2 {
		t.Errorf("%d connect_error lines within 2 s, want exactly 1 per client", got)
	}
	if got := d.count(is(-1, "connect")) + d.count(is(-1, "reconnect_attempt")); got != 0 {
		t.Errorf("%d connects or reconnect attempts for /other, want none", got)
	}
	wantCounts(t, n, time.Second, 0, 0, 0, "after /other was refused")
}

// TestSocketIOPath: SOCKETIO_PATH moves the endpoint.
func TestSocketIOPath(t *testing.T) {
	t.Parallel()
	n := StartNode(t, map[string]string{"SOCKETIO_PATH": "/realtime/"})
	d := startSIO(t, sioScenario{URL: n.URL, Path: "/realtime/", Clients: []sioClientSpec{
		{Token: Token(t, "pathuser")},
		{Token: Token(t, "pathuser"), Transports: []string{"websocket"}},
	}})
	d.waitConnected(2, 10*time.Second)
	wantCounts(t, n, 3*time.Second, 1, 2, 0, "two clients on SOCKETIO_PATH=/realtime/")
}

// TestSocketIOConnectTimeout: an Engine.IO session that never sends the
// Socket.IO CONNECT is closed after SOCKETIO_CONNECT_TIMEOUT. The
// reference client always connects, so this speaks Engine.IO polling by
// hand: open a session, answer pings, never CONNECT.
func TestSocketIOConnectTimeout(t *testing.T) {
	t.Parallel()
	const connectTimeout = 500 * time.Millisecond
	n := StartNode(t, map[string]string{"SOCKETIO_CONNECT_TIMEOUT": connectTimeout.String()})
	hc := &http.Client{Timeout: 5 * time.Second}
	base := n.URL + "/socket.io/?EIO=4&transport=polling"
	resp, err := hc.Get(base)
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "0{") {
		t.Fatalf("Engine.IO handshake: %d %q, want 200 and an open packet", resp.StatusCode, body)
	}
	var open struct {
		SID string `json:"sid"`
	}
	if err := json.Unmarshal([]byte(body[1:]), &open); err != nil || open.SID == "" {
		t.Fatalf("open packet %q: %v", body, err)
	}
	poll := base + "&sid=" + url.QueryEscape(open.SID)
	start := time.Now()
	for {
		if time.Since(start) > connectTimeout+3*time.Second {
			t.Fatalf("session without CONNECT still open %v after the handshake (SOCKETIO_CONNECT_TIMEOUT=%v)", time.Since(start), connectTimeout)
		}
		resp, err := hc.Get(poll)
		if err != nil {
			t.Fatalf("poll: %v", err)
		}
		body := readBody(t, resp)
		if resp.StatusCode != http.StatusOK {
			t.Logf("session closed: poll %v after the handshake answered %d %q", time.Since(start).Round(time.Millisecond), resp.StatusCode, body)
			break
		}
		packets := strings.Split(body, "\x1e")
		if hasPacket(packets, "1") {
			t.Logf("session closed: close packet %v after the handshake", time.Since(start).Round(time.Millisecond))
			break
		}
		if hasPacket(packets, "2") {
			if resp, err := hc.Post(poll, "text/plain;charset=UTF-8", strings.NewReader("3")); err == nil {
				resp.Body.Close()
			}
		}
	}
	if took := time.Since(start); took < connectTimeout-100*time.Millisecond {
		t.Errorf("session closed %v after the handshake, before SOCKETIO_CONNECT_TIMEOUT=%v", took, connectTimeout)
	}
	wantCounts(t, n, time.Second, 0, 0, 0, "a session that never connected")
}

func hasPacket(packets []string, p string) bool {
	for _, q := range packets {
		if q == p {
			return true
		}
	}
	return false
}

func readBody(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return string(b)
}

// TestSocketIOCluster: Socket.IO clients spread over three nodes on one
// Redis; kill -9 of a node takes its users out of the count within
// NODE_TTL + HEARTBEAT_INTERVAL, and after a Redis restart without
// persistence the count is exact again within a heartbeat.
func TestSocketIOCluster(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	nodes := []*Node{
		StartNode(t, clusterEnv(r, "sio-a")),
		StartNode(t, clusterEnv(r, "sio-b")),
		StartNode(t, clusterEnv(r, "sio-c")),
	}
	// 30 users, each on one node (10 per node), and one user with a tab on
	// every node: 31 users, 33 connections. Killed clients must not come
	// back elsewhere, so no reconnection.
	sc := sioScenario{Reconnection: boolp(false)}
	onC := map[int]bool{}
	for i := range 30 {
		spec := sioClientSpec{Token: Token(t, fmt.Sprintf("sio-u%02d", i)), URL: nodes[i%3].URL}
		if i%2 == 0 {
			spec.Transports = []string{"websocket"}
		}
		if i%3 == 2 {
			onC[len(sc.Clients)] = true
		}
		sc.Clients = append(sc.Clients, spec)
	}
	everywhere := Token(t, "sio-everywhere")
	for i, n := range nodes {
		if i == 2 {
			onC[len(sc.Clients)] = true
		}
		sc.Clients = append(sc.Clients, sioClientSpec{Token: everywhere, URL: n.URL})
	}
	d := startSIO(t, sc)
	d.waitConnected(len(sc.Clients), 20*time.Second)
	waitOnline(t, r, 31, 5*time.Second, "33 Socket.IO clients on 3 nodes")
	for _, n := range nodes {
		wantCounts(t, n, 5*time.Second, 31, 33, 0, "33 Socket.IO clients on 3 nodes")
	}

	// kill -9 sio-c: its 10 own users leave; sio-everywhere stays.
	start := time.Now()
	nodes[2].Kill()
	bound := clusterNodeTTL + clusterHeartbeat + sampleSlack
	for {
		v, ok := redisOnline(t, r)
		elapsed := time.Since(start)
		if ok && v < 21 {
			t.Fatalf("%s = %d %v after kill -9: below the truth 21", onlineKey, v, elapsed)
		}
		if ok && v == 21 {
			t.Logf("kill -9 sio-c: %s exact (21) %v after the kill (bound %v)", onlineKey, elapsed.Round(time.Millisecond), bound)
			if elapsed > bound {
				t.Fatalf("%s exact only %v after kill -9, bound NODE_TTL+HEARTBEAT_INTERVAL+slack = %v", onlineKey, elapsed, bound)
			}
			break
		}
		if elapsed > bound+5*time.Second {
			t.Fatalf("%s = %d (present %v), still not 21 %v after kill -9", onlineKey, v, ok, elapsed)
		}
		time.Sleep(20 * time.Millisecond)
	}
	wantCounts(t, nodes[0], 3*time.Second, 21, 22, 0, "after kill -9 of sio-c")
	d.waitN("sio-c's 11 clients see the disconnect", 5*time.Second, len(onC), func(e sioEvent) bool {
		return e.Event == "disconnect" && onC[e.Client]
	})

	// Redis restarts empty while the clients stay connected.
	r.Kill()
	time.Sleep(time.Second)
	r.Start()
	back := time.Now()
	waitOnline(t, r, 21, 5*time.Second, "after the Redis restart")
	exact := time.Since(back)
	t.Logf("Redis restart: %s exact (21) %v after Redis answered again (bound %v)", onlineKey, exact.Round(time.Millisecond), clusterHeartbeat+sampleSlack)
	if exact > clusterHeartbeat+sampleSlack {
		t.Errorf("%s exact only %v after Redis came back, bound one heartbeat + slack = %v", onlineKey, exact, clusterHeartbeat+sampleSlack)
	}
	for _, n := range nodes[:2] {
		wantCounts(t, n, 5*time.Second, 21, 22, 0, "after the Redis restart")
	}
	if got := d.count(func(e sioEvent) bool { return e.Event == "disconnect" && !onC[e.Client] }); got != 0 {
		t.Fatalf("%d clients of the live nodes were disconnected:\n%s", got, d.output())
	}
}

// redisOnline reads online_users; ok is false when it is missing.
func redisOnline(t testing.TB, r *testenv.Redis) (int64, bool) {
	t.Helper()
	reply, err := r.DoErr("GET", onlineKey)
	if err != nil {
		t.Fatalf("GET %s: %v", onlineKey, err)
	}
	if reply == "(nil)" {
		return 0, false
	}
	v, err := strconv.ParseInt(reply, 10, 64)
	if err != nil {
		t.Fatalf("%s holds %q", onlineKey, reply)
	}
	return v, true
}

// waitOnline polls online_users until it is want.
func waitOnline(t testing.TB, r *testenv.Redis, want int64, timeout time.Duration, when string) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("%s: %s = %d", when, onlineKey, want), func() (bool, string) {
		v, ok := redisOnline(t, r)
		return ok && v == want, fmt.Sprintf("%d (present %v)", v, ok)
	})
}
