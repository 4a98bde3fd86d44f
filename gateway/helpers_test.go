package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/lesismal/nbio/logging"

	"github.com/presenced/presenced/auth"
	"github.com/presenced/presenced/gateway"
	"github.com/presenced/presenced/httpapi"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/presence/memstore"
)

// waitTimeout bounds every wait for the server to react. It is generous
// because -race and parallel tests slow everything down; no test relies
// on it being short.
const waitTimeout = 10 * time.Second

var testSecret = []byte("gateway-test-secret-0123456789-abcdef")

// panicLog collects the panics nbio recovers (it logs them at error level
// with a stack trace), so a handler that panics fails the run instead of
// disappearing into the log.
var panicLog recorder

type recorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) Debug(string, ...any) {}
func (r *recorder) Info(string, ...any)  {}
func (r *recorder) Warn(string, ...any)  {}
func (r *recorder) Error(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if !strings.Contains(msg, "[running]") { // recovered panics carry a stack
		return
	}
	r.mu.Lock()
	r.msgs = append(r.msgs, msg)
	r.mu.Unlock()
}

func (r *recorder) panics() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

func TestMain(m *testing.M) {
	logging.SetLogger(&panicLog)
	code := m.Run()
	if p := panicLog.panics(); len(p) > 0 {
		fmt.Fprintf(os.Stderr, "nbio recovered %d panic(s); the first:\n%s\n", len(p), p[0])
		code = 1
	}
	os.Exit(code)
}

// env is one gateway served over nbio on a loopback port, with its own
// tracker and memory store.
type env struct {
	gw      *gateway.Gateway
	tracker *presence.Tracker
	addr    string // host:port
	url     string // ws://host:port/ws
}

// newEnv starts a gateway configured by o (Tracker, Verifier and Node are
// filled in) and stops everything when the test ends.
func newEnv(tb testing.TB, o gateway.Options) *env {
	tb.Helper()
	return newEnvOn(tb, o, memstore.New(time.Minute, nil))
}

// newEnvOn is newEnv with the tracker writing to st.
func newEnvOn(tb testing.TB, o gateway.Options, st presence.Store) *env {
	tb.Helper()
	tracker := presence.NewTracker(presence.TrackerOptions{Node: "node-test", Store: st})
	verifier, err := auth.NewVerifier(auth.VerifierOptions{Secret: testSecret})
	if err != nil {
		tb.Fatalf("new verifier: %v", err)
	}
	o.Node = "node-test"
	o.Tracker = tracker
	o.Verifier = verifier
	gw, err := gateway.New(o)
	if err != nil {
		tb.Fatalf("gateway.New: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); tracker.Run(ctx) }()
	go func() { defer wg.Done(); gw.Run(ctx) }()

	mux := http.NewServeMux()
	mux.Handle("GET /ws", gw)
	mux.HandleFunc("/socket.io/", gw.ServeSocketIO)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		tb.Fatalf("listen: %v", err)
	}
	srv := httpapi.Listen(ln, mux, httpapi.Limits{}, nil)
	tb.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), waitTimeout)
		defer scancel()
		if err := srv.Shutdown(sctx); err != nil {
			tb.Errorf("server shutdown: %v", err)
		}
		gw.Shutdown()
		gw.Close()
		cancel()
		wg.Wait()
	})
	addr := ln.Addr().String()
	return &env{gw: gw, tracker: tracker, addr: addr, url: "ws://" + addr + "/ws"}
}

// dialContext connects to the server.
func (e *env) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// httpClient is a plain HTTP client for the server.
func (e *env) httpClient(tb testing.TB) *http.Client {
	tr := &http.Transport{DialContext: e.dialContext}
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: waitTimeout, Transport: tr}
}

// token mints a valid token for user.
func token(tb testing.TB, user string) string {
	tb.Helper()
	tok, err := auth.Mint(testSecret, user, false, time.Hour, time.Now())
	if err != nil {
		tb.Fatalf("mint: %v", err)
	}
	return tok
}

// dialOpts describes one handshake.
type dialOpts struct {
	query        string // appended to the URL after "?"
	header       http.Header
	subprotocols []string
}

// dial performs a handshake; the connection (if any) is closed when the
// test ends.
func (e *env) dial(tb testing.TB, o dialOpts) (*websocket.Conn, *http.Response, error) {
	tb.Helper()
	u := e.url
	if o.query != "" {
		u += "?" + o.query
	}
	d := websocket.Dialer{HandshakeTimeout: waitTimeout, Subprotocols: o.subprotocols, NetDialContext: e.dialContext}
	c, resp, err := d.Dial(u, o.header)
	if c != nil {
		tb.Cleanup(func() { _ = c.Close() })
	}
	return c, resp, err
}

// connect dials as user with a ?token= and reads the hello.
func (e *env) connect(tb testing.TB, user string) (*websocket.Conn, hello) {
	tb.Helper()
	c, resp, err := e.dial(tb, dialOpts{query: "token=" + token(tb, user)})
	if err != nil {
		tb.Fatalf("dial as %q: %v (%s)", user, err, describe(resp))
	}
	return c, readHello(tb, c)
}

// describe summarises a failed handshake's response for error messages.
func describe(resp *http.Response) string {
	if resp == nil {
		return "no response"
	}
	b, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("HTTP %d %q", resp.StatusCode, b)
}

type hello struct {
	Type         string  `json:"type"`
	UserID       *string `json:"userId"`
	Guest        bool    `json:"guest"`
	ConnectionID string  `json:"connectionId"`
	OnlineUsers  int64   `json:"onlineUsers"`
}

// readHello reads the first message and checks it has every hello field.
func readHello(tb testing.TB, c *websocket.Conn) hello {
	tb.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	mt, data, err := c.ReadMessage()
	if err != nil {
		tb.Fatalf("read hello: %v", err)
	}
	if mt != websocket.TextMessage {
		tb.Fatalf("hello is message type %d, want text", mt)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		tb.Fatalf("hello %q is not a JSON object: %v", data, err)
	}
	for _, k := range []string{"type", "userId", "guest", "connectionId", "onlineUsers"} {
		if _, ok := fields[k]; !ok {
			tb.Fatalf("hello %s has no %q", data, k)
		}
	}
	var h hello
	if err := json.Unmarshal(data, &h); err != nil {
		tb.Fatalf("hello %q: %v", data, err)
	}
	if h.Type != "hello" {
		tb.Fatalf("first message %s, want a hello", data)
	}
	if h.ConnectionID == "" {
		tb.Fatalf("hello %s has an empty connectionId", data)
	}
	return h
}

// expectStatus checks that a handshake was refused with status and a JSON
// {"error": "..."} body.
func expectStatus(tb testing.TB, c *websocket.Conn, resp *http.Response, err error, status int) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("handshake accepted (subprotocol %q), want HTTP %d", c.Subprotocol(), status)
	}
	if resp == nil {
		tb.Fatalf("handshake failed without a response (%v), want HTTP %d", err, status)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		tb.Fatalf("HTTP %d %q, want %d", resp.StatusCode, body, status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		tb.Errorf("Content-Type %q, want application/json", ct)
	}
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		tb.Errorf("body %q is not {\"error\": \"...\"}", body)
	}
}

// expectClose reads until the connection ends and checks that the server
// sent a close frame with code.
func expectClose(tb testing.TB, c *websocket.Conn, code int) {
	tb.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	for {
		_, data, err := c.ReadMessage()
		if err == nil {
			tb.Logf("message before close: %.100q", data)
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			tb.Fatalf("connection ended with %v, want close code %d", err, code)
		}
		if ce.Code != code {
			tb.Fatalf("close code %d (%q), want %d", ce.Code, ce.Text, code)
		}
		return
	}
}

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitLocal waits until the tracker's local counts are users/conns/guests.
func (e *env) waitLocal(tb testing.TB, users, conns, guests int64) {
	tb.Helper()
	var u, c, g int64
	waitFor(tb, fmt.Sprintf("Local() = %d users, %d connections, %d guests", users, conns, guests), func() bool {
		u, c, g = e.tracker.Local()
		return u == users && c == conns && g == guests
	})
}

// waitEmpty waits until the gateway and the tracker hold no connection.
func (e *env) waitEmpty(tb testing.TB) {
	tb.Helper()
	waitFor(tb, "Count() = 0", func() bool { return e.gw.Count() == 0 })
	e.waitLocal(tb, 0, 0, 0)
}
