package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/presenced/presenced/auth"
	"github.com/presenced/presenced/gateway"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/presence/memstore"
)

func TestHelloForEveryTokenCarrier(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Options{})
	tok := token(t, "alice")
	tests := []struct {
		name     string
		dial     dialOpts
		wantEcho string // the Sec-WebSocket-Protocol the server must answer
	}{
		{name: "query", dial: dialOpts{query: "token=" + tok}},
		{name: "authorization header", dial: dialOpts{header: http.Header{"Authorization": {"Bearer " + tok}}}},
		{name: "bearer subprotocol pair", dial: dialOpts{subprotocols: []string{"bearer", tok}}, wantEcho: "bearer"},
		{name: "lone JWT subprotocol", dial: dialOpts{subprotocols: []string{tok}}, wantEcho: tok},
	}
	ids := make(map[string]string) // connection id -> case that got it
	// Sequential on purpose: the cases share one gateway so that their
	// connection ids can be checked for uniqueness.
	parent := t
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, resp, err := e.dial(parent, tt.dial) // stays open for the next cases
			if err != nil {
				t.Fatalf("dial: %v (%s)", err, describe(resp))
			}
			if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != tt.wantEcho {
				t.Errorf("Sec-WebSocket-Protocol answered %q, want %q", got, tt.wantEcho)
			}
			if got := c.Subprotocol(); got != tt.wantEcho {
				t.Errorf("negotiated subprotocol %q, want %q", got, tt.wantEcho)
			}
			h := readHello(t, c)
			if h.UserID == nil || *h.UserID != "alice" {
				t.Errorf("hello userId %v, want \"alice\"", h.UserID)
			}
			if h.Guest {
				t.Error("hello says guest for an authenticated user")
			}
			if h.OnlineUsers < 1 {
				t.Errorf("hello onlineUsers %d, want >= 1", h.OnlineUsers)
			}
			if prev, dup := ids[h.ConnectionID]; dup {
				t.Errorf("connection id %q given to both %q and %q", h.ConnectionID, prev, tt.name)
			}
			ids[h.ConnectionID] = tt.name
			// Every connection so far stays open (closed at test end).
			e.waitLocal(t, 1, int64(i+1), 0)
		})
	}
}

func TestConnectionIDsUnique(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Options{})
	const n = 30
	ids := make(chan string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, resp, err := e.dial(t, dialOpts{query: "token=" + token(t, "u"+string(rune('a'+i%5)))})
			if err != nil {
				t.Errorf("dial: %v (%s)", err, describe(resp))
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
			var h hello
			if err := c.ReadJSON(&h); err != nil {
				t.Errorf("read hello: %v", err)
				return
			}
			ids <- h.ConnectionID
		}()
	}
	wg.Wait()
	close(ids)
	seen := make(map[string]bool)
	for id := range ids {
		if id == "" || seen[id] {
			t.Errorf("connection id %q empty or repeated", id)
		}
		seen[id] = true
	}
}

// tokenWithoutSub is a correctly signed, unexpired token with no sub, which
// auth.Mint refuses to make.
func tokenWithoutSub(tb testing.TB) string {
	tb.Helper()
	now := time.Now()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}).SignedString(testSecret)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestBadTokensRefusedBeforeUpgrade(t *testing.T) {
	t.Parallel()
	badSig, err := auth.Mint([]byte("another-secret-another-secret-0123"), "alice", false, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	expired, err := auth.Mint(testSecret, "alice", false, time.Hour, time.Now().Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	noSub := tokenWithoutSub(t)
	tests := []struct {
		name string
		dial dialOpts
	}{
		{"bad signature", dialOpts{query: "token=" + badSig}},
		{"expired", dialOpts{query: "token=" + expired}},
		{"no sub", dialOpts{query: "token=" + noSub}},
		{"not a JWT", dialOpts{query: "token=hello"}},
		{"bad signature in header", dialOpts{header: http.Header{"Authorization": {"Bearer " + badSig}}}},
		{"expired in subprotocol", dialOpts{subprotocols: []string{"bearer", expired}}},
		{"no sub as lone subprotocol", dialOpts{subprotocols: []string{noSub}}},
	}
	for _, anonymous := range []bool{false, true} {
		e := newEnv(t, gateway.Options{AllowAnonymous: anonymous})
		name := "authenticated only"
		if anonymous {
			name = "anonymous allowed"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			all := tests
			if !anonymous {
				all = append(all, struct {
					name string
					dial dialOpts
				}{"no token", dialOpts{}})
			}
			for _, tt := range all {
				t.Run(tt.name, func(t *testing.T) {
					c, resp, err := e.dial(t, tt.dial)
					expectStatus(t, c, resp, err, http.StatusUnauthorized)
				})
			}
			if n := e.gw.Count(); n != 0 {
				t.Errorf("Count() = %d after refused handshakes", n)
			}
			if u, c, g := e.tracker.Local(); u != 0 || c != 0 || g != 0 {
				t.Errorf("Local() = %d, %d, %d after refused handshakes", u, c, g)
			}
		})
	}
}

func TestAnonymousGuest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Options{AllowAnonymous: true})
	c, resp, err := e.dial(t, dialOpts{})
	if err != nil {
		t.Fatalf("dial without token: %v (%s)", err, describe(resp))
	}
	h := readHello(t, c)
	if h.UserID != nil {
		t.Errorf("guest hello userId %q, want null", *h.UserID)
	}
	if !h.Guest {
		t.Error("hello guest = false for a connection without token")
	}
	e.waitLocal(t, 0, 1, 1)

	// A user next to the guest is counted apart.
	_, uh := e.connect(t, "bob")
	if uh.Guest || uh.UserID == nil || *uh.UserID != "bob" {
		t.Errorf("user hello %+v next to a guest", uh)
	}
	e.waitLocal(t, 1, 2, 1)

	_ = c.Close()
	e.waitLocal(t, 1, 1, 0)
}

func TestOnlineUsersCountsOwnConnection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Options{})
	const n = 5
	var conns []*websocket.Conn
	for i := 1; i <= n; i++ {
		user := "user-" + string(rune('0'+i))
		c, h := e.connect(t, user)
		conns = append(conns, c)
		if h.OnlineUsers < int64(i) {
			t.Errorf("hello #%d says onlineUsers %d, want >= %d", i, h.OnlineUsers, i)
		}
		if u, _, _ := e.tracker.Local(); u != int64(i) {
			t.Errorf("after %d users, Local() users = %d", i, u)
		}
	}
	e.waitLocal(t, n, n, 0)
	if got := e.gw.Count(); got != n {
		t.Errorf("Count() = %d, want %d", got, n)
	}
	for _, c := range conns {
		_ = c.Close()
	}
	e.waitEmpty(t)
}

func TestSameUserManyConnections(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Options{})
	var conns []*websocket.Conn
	for range 3 {
		c, h := e.connect(t, "carol")
		if h.OnlineUsers != 1 {
			t.Errorf("hello onlineUsers %d with one user in 1..3 tabs, want 1", h.OnlineUsers)
		}
		conns = append(conns, c)
	}
	e.waitLocal(t, 1, 3, 0)
	if got := e.gw.Count(); got != 3 {
		t.Errorf("Count() = %d, want 3", got)
	}
	// A polite close (close frame) and an abrupt one both count.
	if err := conns[0].WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")); err != nil {
		t.Fatal(err)
	}
	e.waitLocal(t, 1, 2, 0)
	_ = conns[1].Close()
	_ = conns[2].Close()
	e.waitEmpty(t)
}

func TestPingPong(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Options{})
	e.connect(t, "dave")
	c, _ := e.connect(t, "erin")
	// A protocol-level ping is answered with a pong carrying its data.
	pong := make(chan string, 1)
	c.SetPongHandler(func(data string) error { pong <- data; return nil })
	if err := c.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	for range 3 { // the connection stays usable after a pong
		if err := c.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
		mt, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("read pong: %v", err)
		}
		if mt != websocket.TextMessage {
			t.Fatalf("pong is message type %d", mt)
		}
		var pong struct {
			Type        string `json:"type"`
			OnlineUsers *int64 `json:"onlineUsers"`
		}
		if err := json.Unmarshal(data, &pong); err != nil {
			t.Fatalf("pong %q: %v", data, err)
		}
		if pong.Type != "pong" || pong.OnlineUsers == nil || *pong.OnlineUsers != 2 {
			t.Fatalf("got %s, want {\"type\":\"pong\",\"onlineUsers\":2}", data)
		}
	}
	select {
	case data := <-pong:
		if data != "are you there" {
			t.Errorf("pong data %q", data)
		}
	default: // the pong arrived ahead of the messages read above
		t.Error("no pong for a protocol ping")
	}
}

func TestBadMessagesClose(t *testing.T) {
	t.Parallel()
	const limit = 4096
	tests := []struct {
		name string
		mt   int
		data []byte
		code int
	}{
		{"text over the limit", websocket.TextMessage, []byte(strings.Repeat("x", limit+1)), gateway.CloseTooBig},
		{"big ping over the limit", websocket.TextMessage, []byte(`{"type":"ping","pad":"` + strings.Repeat("p", limit) + `"}`), gateway.CloseTooBig},
		{"binary over the limit", websocket.BinaryMessage, make([]byte, 3*limit), gateway.CloseTooBig},
		{"garbage at the limit", websocket.TextMessage, []byte(strings.Repeat("x", limit)), gateway.ClosePolicyViolation},
		{"not json", websocket.TextMessage, []byte("not json"), gateway.ClosePolicyViolation},
		{"unknown type", websocket.TextMessage, []byte(`{"type":"nope"}`), gateway.ClosePolicyViolation},
		{"json without type", websocket.TextMessage, []byte(`{}`), gateway.ClosePolicyViolation},
		{"json array", websocket.TextMessage, []byte(`[1,2]`), gateway.ClosePolicyViolation},
		{"binary", websocket.BinaryMessage, []byte{1, 2, 3}, gateway.ClosePolicyViolation},
		{"ping as binary", websocket.BinaryMessage, []byte(`{"type":"ping"}`), gateway.ClosePolicyViolation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, gateway.Options{MaxMessageBytes: limit})
			other, _ := e.connect(t, "bystander")
			c, _ := e.connect(t, "frank")
			e.waitLocal(t, 2, 2, 0)
			// The server may close before it has read a message over the
			// limit, so the write can fail: what counts is the close frame.
			if err := c.WriteMessage(tt.mt, tt.data); err != nil && tt.code != gateway.CloseTooBig {
				t.Fatal(err)
			}
			expectClose(t, c, tt.code)
			waitFor(t, "Count() = 1", func() bool { return e.gw.Count() == 1 })
			e.waitLocal(t, 1, 1, 0)
			// The other connection is untouched.
			if err := other.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`)); err != nil {
				t.Fatal(err)
			}
			_ = other.SetReadDeadline(time.Now().Add(waitTimeout))
			if _, data, err := other.ReadMessage(); err != nil || !strings.Contains(string(data), `"pong"`) {
				t.Fatalf("bystander after the close: %q, %v", data, err)
			}
		})
	}
}

func TestFragmentedMessageOverLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Options{MaxMessageBytes: 4096})
	c, _ := e.connect(t, "gina")
	w, err := c.NextWriter(websocket.TextMessage)
	if err != nil {
		t.Fatal(err)
	}
	// gorilla sends each Write over its buffer as its own frame; no single
	// frame is over the limit, the message is.
	chunk := []byte(strings.Repeat("y", 3000))
	for range 3 {
		if _, err := w.Write(chunk); err != nil {
			break // the server may already have closed
		}
	}
	_ = w.Close()
	expectClose(t, c, gateway.CloseTooBig)
	e.waitEmpty(t)
}

func TestMaxConnsPerIP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Options{MaxConnsPerIP: 2})
	first, _ := e.connect(t, "u1")
	e.connect(t, "u2")
	c, resp, err := e.dial(t, dialOpts{query: "token=" + token(t, "u3")})
	expectStatus(t, c, resp, err, http.StatusTooManyRequests)
	if got := e.gw.Count(); got != 2 {
		t.Errorf("Count() = %d after a refused third connection, want 2", got)
	}
	e.waitLocal(t, 2, 2, 0)

	_ = first.Close()
	// The slot frees when the server has processed the close: retry while
	// it still says 429.
	tok := token(t, "u3")
	waitFor(t, "a new connection to be accepted after one closed", func() bool {
		c, resp, err := e.dial(t, dialOpts{query: "token=" + tok})
		if err != nil {
			if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("dial: %v (%s)", err, describe(resp))
			}
			return false
		}
		readHello(t, c)
		return true
	})
	e.waitLocal(t, 2, 2, 0)
}

// TestRefusedUpgradeReleasesIPSlot checks that handshakes the upgrader
// refuses after the per-IP reservation do not leak the reservation.
func TestRefusedUpgradeReleasesIPSlot(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Options{MaxConnsPerIP: 1, Origins: []string{"https://app.example"}})
	tok := token(t, "hank")
	for range 3 {
		c, resp, err := e.dial(t, dialOpts{query: "token=" + tok, header: http.Header{"Origin": {"https://evil.example"}}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("evil origin: err %v, %s, want 403 (conn %v)", err, describe(resp), c != nil)
		}
	}
	// A plain GET (no upgrade headers) with a valid token.
	for range 3 {
		resp, err := e.httpClient(t).Get("http://" + e.addr + "/ws?token=" + tok)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("plain GET /ws: HTTP %d, want an error", resp.StatusCode)
		}
	}
	e.connect(t, "hank")
}

// slowStore is a memory store whose writes take delay, like a Redis that
// answers late.
type slowStore struct {
	presence.Store
	delay time.Duration
}

func (s slowStore) Apply(ctx context.Context, b presence.Batch) (int64, error) {
	time.Sleep(s.delay)
	return s.Store.Apply(ctx, b)
}

// TestHelloIsFirstFrame: while a connection's hello waits for the store to
// count it, the keepalive sweep does not ping it; the hello is the first
// frame a client gets.
func TestHelloIsFirstFrame(t *testing.T) {
	t.Parallel()
	e := newEnvOn(t, gateway.Options{PingInterval: 20 * time.Millisecond, HelloTimeout: 2 * time.Second},
		slowStore{Store: memstore.New(time.Minute, nil), delay: 300 * time.Millisecond})
	c, _, err := e.dial(t, dialOpts{query: "token=" + token(t, "first")})
	if err != nil {
		t.Fatal(err)
	}
	var pings atomic.Int64
	c.SetPingHandler(func(data string) error {
		pings.Add(1)
		return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(waitTimeout))
	})
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	_, msg, err := c.ReadMessage()
	if err != nil || !strings.Contains(string(msg), `"type":"hello"`) {
		t.Fatalf("first message %q, %v; want the hello", msg, err)
	}
	if n := pings.Load(); n != 0 {
		t.Fatalf("%d pings came before the hello", n)
	}
	waitFor(t, "a ping after the hello", func() bool {
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		_, _, _ = c.ReadMessage()
		return pings.Load() > 0
	})
}

func TestIdle(t *testing.T) {
	// Not parallel with the other tests: the responsive client must get
	// its pongs in within IdleTimeout, which a loaded machine might delay.
	e := newEnv(t, gateway.Options{PingInterval: 100 * time.Millisecond, IdleTimeout: 300 * time.Millisecond})

	t.Run("group", func(t *testing.T) { testIdle(t, e) })
	if !t.Failed() {
		e.waitEmpty(t)
	}
}

func testIdle(t *testing.T, e *env) {
	t.Run("client answering pings stays", func(t *testing.T) {
		t.Parallel()
		c, _ := e.connect(t, "ivy")
		var pings atomic.Int64
		c.SetPingHandler(func(data string) error {
			pings.Add(1)
			return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(waitTimeout))
		})
		readErr := make(chan error, 1)
		go func() {
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					readErr <- err
					return
				}
			}
		}()
		waitFor(t, "a ping from the server", func() bool { return pings.Load() >= 1 })
		// Stay for several idle timeouts (and across a second boundary).
		stay := time.Now().Add(1500 * time.Millisecond)
		for time.Now().Before(stay) {
			select {
			case err := <-readErr:
				t.Fatalf("connection answering pings was closed: %v (after %d pings)", err, pings.Load())
			case <-time.After(20 * time.Millisecond):
			}
		}
		if p := pings.Load(); p < 2 {
			t.Errorf("%d pings in 1.5s with PingInterval 100ms", p)
		}
		_ = c.Close()
		<-readErr
	})

	t.Run("client sending app pings stays", func(t *testing.T) {
		t.Parallel()
		// It never answers the server's pings, but its messages count as
		// activity.
		c, _ := e.connect(t, "jill")
		c.SetPingHandler(func(string) error { return nil })
		stay := time.Now().Add(1500 * time.Millisecond)
		for time.Now().Before(stay) {
			if err := c.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`)); err != nil {
				t.Fatalf("write: %v", err)
			}
			_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
			if _, data, err := c.ReadMessage(); err != nil || !strings.Contains(string(data), `"pong"`) {
				t.Fatalf("active client: %q, %v", data, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = c.Close()
	})

	t.Run("silent client closed", func(t *testing.T) {
		t.Parallel()
		// gorilla answers pings only while reading: this client does not
		// read until the server has given up on it.
		c, resp, err := e.dial(t, dialOpts{query: "token=" + token(t, "jack")})
		if err != nil {
			t.Fatalf("dial: %v (%s)", err, describe(resp))
		}
		waitFor(t, "the silent user to be counted", func() bool {
			for _, u := range e.tracker.Users() {
				if u == "jack" {
					return true
				}
			}
			return false
		})
		waitFor(t, "the silent user to be dropped", func() bool {
			for _, u := range e.tracker.Users() {
				if u == "jack" {
					return false
				}
			}
			return true
		})
		// Now read what the server sent: the hello, pings, then a close.
		var pings int
		c.SetPingHandler(func(string) error { pings++; return nil })
		readHello(t, c)
		expectClose(t, c, gateway.CloseNormal)
		if pings < 1 {
			t.Error("the server sent no ping before closing an idle connection")
		}
	})
}

func TestShutdown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Options{AllowAnonymous: true})
	var conns []*websocket.Conn
	for _, user := range []string{"kate", "kate", "leo"} {
		c, _ := e.connect(t, user)
		conns = append(conns, c)
	}
	guest, resp, err := e.dial(t, dialOpts{})
	if err != nil {
		t.Fatalf("guest dial: %v (%s)", err, describe(resp))
	}
	readHello(t, guest)
	conns = append(conns, guest)
	e.waitLocal(t, 2, 4, 1)

	if n := e.gw.Shutdown(); n != len(conns) {
		t.Errorf("Shutdown() = %d, want %d", n, len(conns))
	}
	for _, c := range conns {
		expectClose(t, c, gateway.CloseGoingAway)
	}
	e.waitEmpty(t)

	for _, d := range []dialOpts{{query: "token=" + token(t, "kate")}, {}} {
		c, resp, err := e.dial(t, d)
		expectStatus(t, c, resp, err, http.StatusServiceUnavailable)
	}
	if n := e.gw.Shutdown(); n != 0 {
		t.Errorf("second Shutdown() = %d, want 0", n)
	}
}

func TestOrigins(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Options{Origins: []string{"https://app.example"}})
	tests := []struct {
		name   string
		origin string // "" sends none
		ok     bool
	}{
		{"foreign origin", "https://evil.example", false},
		{"allowed origin's subdomain", "https://x.app.example", false},
		{"allowed origin over http", "http://app.example", false},
		{"no origin", "", true},
		{"allowed origin", "https://app.example", true},
		{"allowed origin in other case", "https://APP.example", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			if tt.origin != "" {
				h.Set("Origin", tt.origin)
			}
			c, resp, err := e.dial(t, dialOpts{query: "token=" + token(t, "mia"), header: h})
			if !tt.ok {
				if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
					t.Fatalf("origin %q: err %v, %s, want HTTP 403", tt.origin, err, describe(resp))
				}
				return
			}
			if err != nil {
				t.Fatalf("origin %q: %v (%s)", tt.origin, err, describe(resp))
			}
			readHello(t, c)
		})
	}
}

func TestAnyOriginByDefault(t *testing.T) {
	t.Parallel()
	for _, origins := range [][]string{nil, {"*"}} {
		e := newEnv(t, gateway.Options{Origins: origins})
		c, resp, err := e.dial(t, dialOpts{query: "token=" + token(t, "ned"), header: http.Header{"Origin": {"https://anywhere.example"}}})
		if err != nil {
			t.Fatalf("Origins %q: %v (%s)", origins, err, describe(resp))
		}
		readHello(t, c)
	}
}

// TestShutdownDuringConnects shuts down while handshakes are in flight:
// every connection that got in must be closed with 1001 and none may stay
// counted.
func TestShutdownDuringConnects(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Options{})
	tok := token(t, "olga")
	const n = 60
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c, resp, err := e.dial(t, dialOpts{query: "token=" + tok})
			if err != nil {
				if resp != nil && resp.StatusCode != http.StatusServiceUnavailable {
					t.Errorf("dial during shutdown: %s", describe(resp))
				}
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
			for {
				_, _, err := c.ReadMessage()
				if err == nil {
					continue // the hello
				}
				if !websocket.IsCloseError(err, gateway.CloseGoingAway) {
					t.Errorf("connection admitted during shutdown ended with %v, want close 1001", err)
				}
				return
			}
		}()
	}
	close(start)
	waitFor(t, "some connections", func() bool { return e.gw.Count() >= n/4 })
	e.gw.Shutdown()
	wg.Wait()
	e.waitEmpty(t)
}
