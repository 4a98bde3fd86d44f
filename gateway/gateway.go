// Package gateway serves the endpoints the app's clients connect to: the
// WebSocket endpoint /ws (and, later, /socket.io/). It authenticates each
// handshake on net/http, then moves the connection onto an event loop
// (nbio's epoll poller) and records it in the presence Tracker.
//
// Memory per idle connection is a design constraint: after the handshake
// a connection has no goroutine and no buffer (internal/wsproto decodes
// in place from the poller's shared read buffer), each holds one small
// client struct, and one shared ticker pings them all.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lesismal/nbio"

	"github.com/presenced/presenced/auth"
	"github.com/presenced/presenced/events"
	"github.com/presenced/presenced/internal/clientip"
	"github.com/presenced/presenced/internal/ratelimit"
	"github.com/presenced/presenced/internal/wsproto"
	"github.com/presenced/presenced/presence"
)

// Close codes sent by the gateway.
const (
	CloseNormal          = wsproto.CloseNormal          // idle timeout
	CloseGoingAway       = wsproto.CloseGoingAway       // server shutting down
	CloseProtocolError   = wsproto.CloseProtocolError   // a frame RFC 6455 forbids
	CloseInvalidPayload  = wsproto.CloseInvalidPayload  // text that is not UTF-8
	ClosePolicyViolation = wsproto.ClosePolicyViolation // a message the protocol does not allow, too many pings
	CloseTooBig          = wsproto.CloseTooBig          // a message over Options.MaxMessageBytes
)

// Verifier checks user tokens.
type Verifier interface {
	Verify(ctx context.Context, token string) (auth.Claims, error)
}

// Options configures a Gateway. The zero value of each field means the
// documented default.
type Options struct {
	Node     string            // this node's id, prefix of connection ids
	Tracker  *presence.Tracker // required
	Verifier Verifier          // nil rejects every token
	// AllowAnonymous lets a connection without a token in as a guest. A
	// token that is present but bad is still refused.
	AllowAnonymous bool
	// PingInterval is how often the server pings; zero means 25s.
	PingInterval time.Duration
	// IdleTimeout closes a connection silent for that long; zero means 60s.
	IdleTimeout time.Duration
	// MaxMessageBytes closes a connection that sends a bigger message with
	// 1009; zero means 32768.
	MaxMessageBytes int
	// MaxQueuedBytes is how much the server queues for one client that
	// does not read; beyond it the client is closed as a slow consumer.
	// Zero means 64 KiB.
	MaxQueuedBytes int
	// PingRate and PingBurst bound the pings one connection may send
	// (control pings and {"type":"ping"} together) per second; beyond them
	// it is closed with 1008. Zero means 10 a second, burst 20.
	PingRate, PingBurst int
	// MaxConnsPerIP caps connections from one address (429 beyond it);
	// zero means no cap, since many users share an address behind NAT.
	MaxConnsPerIP int
	// ConnectRatePerIP limits new connections per second from one address
	// (burst twice that; 429 beyond it); zero means no limit.
	ConnectRatePerIP int
	// ClientIP finds the client address behind trusted proxies.
	ClientIP clientip.Resolver
	// Origins lists the allowed Origin headers; empty allows any, "*" too.
	Origins []string
	// SocketIO configures the Socket.IO endpoint (ServeSocketIO).
	SocketIO SocketIOOptions
	// Counter reads the cluster-wide counts for Socket.IO's presence:count
	// event; nil answers that the count is unavailable.
	Counter Counter
	// Watch lets connections watch users' presence ({"type":"watch"} on
	// /ws, presence:watch on Socket.IO); nil answers that watching is not
	// available.
	Watch *events.Hub
	// HelloTimeout caps how long a new connection waits to be counted in
	// the store before its hello is sent anyway; zero means 1s.
	HelloTimeout time.Duration
	Logger       *slog.Logger
}

// Gateway is the WebSocket endpoint. It is an http.Handler for /ws.
type Gateway struct {
	o       Options
	log     *slog.Logger
	loop    *loop
	limits  wsLimits
	connect *ratelimit.Buckets  // nil without ConnectRatePerIP
	badAuth *ratelimit.Failures // per address and minute, so each is logged once
	nextID  atomic.Uint64
	stats   Stats
	sio     *sio

	mu      sync.Mutex
	clients []*client // every open connection; client.idx is its index
	perIP   map[netip.Addr]int32
	closing bool
}

// Stats counts what the gateway refused and why it closed connections.
// Read its fields with Load.
type Stats struct {
	RefusedAuth    atomic.Int64 // handshakes with a missing or bad token (401)
	RefusedLimit   atomic.Int64 // handshakes over a per-address cap or rate (429)
	ProtocolErrors atomic.Int64 // connections closed for an RFC 6455 violation (1002, 1007, 1009)
	PolicyCloses   atomic.Int64 // connections closed for a bad message or too many pings (1008)
	SlowConsumers  atomic.Int64 // connections closed because too much was queued for them

	Connects     ByTransport  // connections counted in the Tracker (Socket.IO: CONNECTs)
	Disconnects  ByTransport  // counted connections that ended
	Unauthorized ByTransport  // RefusedAuth by transport
	RateLimited  ByTransport  // RefusedLimit by transport
	AuthMissing  atomic.Int64 // RefusedAuth without a token
	AuthInvalid  atomic.Int64 // RefusedAuth with a token that did not verify
}

// Stats returns the gateway's counters.
func (g *Gateway) Stats() *Stats { return &g.stats }

// client is the whole per-connection state; keep it small.
type client struct {
	wsConn
	g    *Gateway
	user string     // "" for a guest
	ip   netip.Addr // set only when a per-IP cap is on
	id   uint64
	idx  int32 // index in Gateway.clients, -1 once removed
	// greeted is set once the hello is sent: the keepalive sweep pings
	// only greeted connections, so the hello is always the first frame
	// a client gets (the hello can wait up to StoreWait for the store).
	greeted atomic.Bool
}

// New returns a Gateway and starts its event loop. Call Run to start the
// keepalive ticker and Close after Shutdown to stop the loop.
func New(o Options) (*Gateway, error) {
	if o.PingInterval <= 0 {
		o.PingInterval = 25 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 60 * time.Second
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = 32768
	}
	if o.MaxQueuedBytes <= 0 {
		o.MaxQueuedBytes = 64 << 10
	}
	if o.PingRate <= 0 {
		o.PingRate = 10
	}
	if o.PingBurst <= 0 {
		o.PingBurst = 20
	}
	if o.HelloTimeout <= 0 {
		o.HelloTimeout = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{
		o: o, log: o.Logger, perIP: make(map[netip.Addr]int32), badAuth: ratelimit.NewFailures(1<<30, nil),
		limits: wsLimits{maxMessage: o.MaxMessageBytes, pingRate: float64(o.PingRate), pingBurst: float64(o.PingBurst)},
	}
	if o.ConnectRatePerIP > 0 {
		g.connect = ratelimit.NewBuckets(float64(o.ConnectRatePerIP), 2*float64(o.ConnectRatePerIP), nil)
	}
	l, err := newLoop("presenced-ws", o.MaxQueuedBytes)
	if err != nil {
		return nil, err
	}
	g.loop = l
	g.sio = newSIO(g, o.SocketIO, o.Counter)
	return g, nil
}

// Close stops the event loop, closing any connection still on it.
func (g *Gateway) Close() { g.loop.stop() }

// ServeHTTP checks and authenticates the handshake, answers it, hands the
// connection to the event loop, counts it and greets the client with one
// hello message.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet { // HEAD reaches GET routes
		w.Header().Set("Allow", "GET")
		writeError(w, http.StatusMethodNotAllowed, "a WebSocket handshake is a GET")
		return
	}
	key, ok := checkHandshake(w, r)
	if !ok {
		return
	}
	addr, ok := g.admit(w, r, TransportWebSocket)
	if !ok {
		return
	}
	token, subprotocol := auth.UserToken(r)
	user, err := g.authenticate(r.Context(), token)
	if err != nil {
		g.stats.refusedAuth(TransportWebSocket, token)
		// A bad token is worth a warning, once per address and minute
		// (anyone can send them fast); a missing one only at debug.
		if token != "" && g.badAuth.Fail(addr) == 1 {
			g.log.Warn("ws: invalid token; further ones from this address this minute are not logged",
				"err", err, "remote", addr.String())
		} else {
			g.log.Debug("ws: refused", "err", err, "remote", addr.String())
		}
		writeError(w, http.StatusUnauthorized, "missing or invalid token")
		return
	}
	ip, ok := g.reserveFor(w, addr, TransportWebSocket)
	if !ok {
		return
	}
	c := &client{g: g, user: user, ip: ip, id: g.nextID.Add(1)}
	c.limits = &g.limits
	c.stats = &g.stats
	counted, ok := g.upgrade(w, c, key, subprotocol)
	if !ok {
		return
	}
	// Greet only once the connection is counted, so a client holding its
	// hello is always in online_users.
	g.awaitCounted(counted)
	_ = c.send(wsproto.OpText, g.hello(c))
	c.greeted.Store(true)
}

// checkHandshake checks the WebSocket handshake and returns its key, or
// answers the error (426 names the version we speak).
func checkHandshake(w http.ResponseWriter, r *http.Request) (string, bool) {
	key, herr := wsproto.CheckHandshake(r)
	if herr != nil {
		if herr.Status == http.StatusUpgradeRequired {
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		writeError(w, herr.Status, herr.Reason)
		return "", false
	}
	return key, true
}

// admit checks a new connection's origin and the connect rate of its
// client address, which it returns; otherwise it has answered.
func (g *Gateway) admit(w http.ResponseWriter, r *http.Request, transport string) (netip.Addr, bool) {
	if !g.checkOrigin(r) {
		writeError(w, http.StatusForbidden, "origin not allowed")
		return netip.Addr{}, false
	}
	addr := g.o.ClientIP.Addr(r)
	if g.connect != nil && !g.connect.Allow(addr) {
		g.stats.refusedLimit(transport)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "too many connection attempts from this address")
		return netip.Addr{}, false
	}
	return addr, true
}

// reserveFor counts a new connection from addr against MaxConnsPerIP and
// the shutdown; it returns the address to unreserve when the connection
// ends (the zero Addr without a cap), or false having answered.
func (g *Gateway) reserveFor(w http.ResponseWriter, addr netip.Addr, transport string) (netip.Addr, bool) {
	var ip netip.Addr
	if g.o.MaxConnsPerIP > 0 {
		ip = addr
	}
	if status, msg := g.reserve(ip); status != 0 {
		if status == http.StatusTooManyRequests {
			g.stats.refusedLimit(transport)
		}
		writeError(w, status, msg)
		return netip.Addr{}, false
	}
	return ip, true
}

// awaitCounted waits until the Tracker has stored a new connection, at
// most HelloTimeout.
func (g *Gateway) awaitCounted(counted <-chan struct{}) {
	t := time.NewTimer(g.o.HelloTimeout)
	defer t.Stop()
	select {
	case <-counted:
	case <-t.C:
	}
}

// upgrade answers the handshake, registers c, counts it in the Tracker
// and moves its connection to the event loop; the channel is closed once
// the Tracker has stored the connection. It reports false if the
// connection is gone (the client left, or the server is shutting down),
// having undone what it did, the per-IP reservation included.
func (g *Gateway) upgrade(w http.ResponseWriter, c *client, key, subprotocol string) (<-chan struct{}, bool) {
	if g.isClosing() {
		g.unreserve(c.ip)
		writeError(w, http.StatusServiceUnavailable, "server shutting down")
		return nil, false
	}
	nc, buffered, ok := g.takeOver(w, key, subprotocol)
	if !ok {
		g.unreserve(c.ip)
		return nil, false
	}
	c.nc = nc
	if !g.add(c) {
		// Shutdown began just now and did not see c: the client has its
		// 101, so it gets a proper 1001 from the loop.
		g.unreserve(c.ip)
		if g.loop.adopt(c, nil) == nil {
			c.fail(CloseGoingAway, "server shutting down")
		}
		return nil, false
	}
	counted := g.o.Tracker.Connect(c.user)
	g.stats.Connects.add(TransportWebSocket)
	if err := g.loop.adopt(c, buffered); err != nil {
		g.log.Warn("ws: connection lost in the hand-off to the event loop", "err", err)
		c.onClosed() // once only: the loop may have run it already
		return nil, false
	}
	return counted, true
}

// takeOver answers a checked handshake with 101 and takes the connection
// out of net/http, with the bytes that came after the handshake. On
// failure the connection is gone (a failed hijack has been answered).
func (g *Gateway) takeOver(w http.ResponseWriter, key, subprotocol string) (*nbio.Conn, []byte, bool) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		g.log.Debug("ws: hijack failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
		return nil, nil, false
	}
	var buffered []byte
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		buffered = append([]byte(nil), b...)
	}
	// net/http's deadlines must not follow the connection to the loop.
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(wsproto.AppendSwitch(make([]byte, 0, 160), key, subprotocol)); err != nil {
		_ = conn.Close()
		return nil, nil, false
	}
	_ = conn.SetDeadline(time.Time{})
	nc, err := wrap(conn)
	if err != nil {
		g.log.Warn("ws: connection lost in the hand-off to the event loop", "err", err)
		return nil, nil, false
	}
	return nc, buffered, true
}

func (g *Gateway) authenticate(ctx context.Context, token string) (user string, err error) {
	if token == "" {
		if g.o.AllowAnonymous {
			return "", nil
		}
		return "", errors.New("no token")
	}
	if g.o.Verifier == nil {
		return "", errors.New("no verifier configured")
	}
	claims, err := g.o.Verifier.Verify(ctx, token)
	if err != nil {
		return "", err
	}
	return claims.UserID, nil
}

type hello struct {
	Type         string  `json:"type"`
	UserID       *string `json:"userId"`
	Guest        bool    `json:"guest"`
	ConnectionID string  `json:"connectionId"`
	OnlineUsers  int64   `json:"onlineUsers"`
}

func (g *Gateway) hello(c *client) []byte {
	h := hello{Type: "hello", Guest: c.user == "", ConnectionID: g.connID(c), OnlineUsers: g.o.Tracker.Online()}
	if c.user != "" {
		h.UserID = &c.user
	}
	b, _ := json.Marshal(h)
	return b
}

func (g *Gateway) connID(c *client) string {
	return g.o.Node + "-" + strconv.FormatUint(c.id, 36)
}

// onMessage accepts {"type":"ping"} (answered with a pong carrying the
// online count), {"type":"watch","userIds":[...]} and {"type":"unwatch"},
// each counted against the ping rate; anything else is a protocol
// violation. It runs with the connection's lock held.
func (c *client) onMessage(op byte, data []byte) bool {
	var msg struct {
		Type    string          `json:"type"`
		UserIDs json.RawMessage `json:"userIds"`
	}
	if op != wsproto.OpText || json.Unmarshal(data, &msg) != nil {
		c.failLocked(ClosePolicyViolation, "unsupported message")
		return false
	}
	switch msg.Type {
	case "ping", "watch", "unwatch":
	default:
		c.failLocked(ClosePolicyViolation, "unsupported message")
		return false
	}
	if !c.allowPingLocked() {
		c.failLocked(ClosePolicyViolation, "too many pings")
		return false
	}
	switch msg.Type {
	case "watch":
		_ = c.send(wsproto.OpText, c.g.watch(c, msg.UserIDs, true))
	case "unwatch":
		_ = c.send(wsproto.OpText, c.g.watch(c, nil, false))
	default:
		_ = c.send(wsproto.OpText, fmt.Appendf(nil, `{"type":"pong","onlineUsers":%d}`, c.g.o.Tracker.Online()))
	}
	return true
}

// watch replaces what w watches with the user ids in raw (a JSON array of
// strings), or stops watching (on false), and returns the /ws answer:
// {"type":"watching","count":N} or {"type":"error","error":"..."}.
func (g *Gateway) watch(w events.Watcher, raw json.RawMessage, on bool) []byte {
	n, err := g.setWatch(w, raw, on)
	if err != nil {
		b, _ := json.Marshal(map[string]string{"type": "error", "error": err.Error()})
		return b
	}
	return fmt.Appendf(nil, `{"type":"watching","count":%d}`, n)
}

// setWatch is watch for both endpoints: it returns the number of users
// now watched, or an error for the client.
func (g *Gateway) setWatch(w events.Watcher, raw json.RawMessage, on bool) (int, error) {
	if g.o.Watch == nil {
		return 0, errors.New("watching is not available on this server")
	}
	if !on {
		g.o.Watch.Unwatch(w)
		return 0, nil
	}
	var ids []string
	if len(raw) == 0 || json.Unmarshal(raw, &ids) != nil || ids == nil {
		return 0, errors.New("userIds must be an array of strings")
	}
	if err := g.o.Watch.Watch(w, ids); err != nil {
		if events.IsLimit(err) {
			return 0, fmt.Errorf("userIds: %s", strings.TrimPrefix(err.Error(), "events: "))
		}
		return 0, err
	}
	uniq := map[string]struct{}{}
	for _, id := range ids {
		uniq[id] = struct{}{}
	}
	return len(uniq), nil
}

// Presence implements events.Watcher: it sends
// {"type":"presence","userId":…,"online":…}. A client that does not read
// is closed as a slow consumer by the event loop's queue cap.
func (c *client) Presence(user string, online bool) {
	b, _ := json.Marshal(struct {
		Type   string `json:"type"`
		UserID string `json:"userId"`
		Online bool   `json:"online"`
	}{"presence", user, online})
	_ = c.send(wsproto.OpText, b)
}

// onClosed takes c out of the registry, the watchers and the Tracker,
// once.
func (c *client) onClosed() {
	if c.g.remove(c) {
		if c.g.o.Watch != nil {
			c.g.o.Watch.Unwatch(c)
		}
		c.g.o.Tracker.Disconnect(c.user)
		c.g.stats.Disconnects.add(TransportWebSocket)
	}
}

// reserve checks that the gateway is open and the address is under its
// cap, and counts the new connection against it. It returns a non-zero
// status to refuse.
func (g *Gateway) reserve(ip netip.Addr) (int, string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return http.StatusServiceUnavailable, "server shutting down"
	}
	if !ip.IsValid() {
		return 0, ""
	}
	if g.perIP[ip] >= int32(g.o.MaxConnsPerIP) {
		return http.StatusTooManyRequests, "too many connections from this address"
	}
	g.perIP[ip]++
	return 0, ""
}

func (g *Gateway) unreserve(ip netip.Addr) {
	if !ip.IsValid() {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.perIP[ip]--; g.perIP[ip] <= 0 {
		delete(g.perIP, ip)
	}
}

// add puts c in the registry; it reports false, leaving c out, once
// Shutdown has begun.
func (g *Gateway) add(c *client) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		c.idx = -1
		return false
	}
	c.idx = int32(len(g.clients))
	g.clients = append(g.clients, c)
	return true
}

// remove takes c out of the registry; it reports false if it was not in.
func (g *Gateway) remove(c *client) bool {
	g.mu.Lock()
	if c.idx < 0 {
		g.mu.Unlock()
		return false
	}
	last := len(g.clients) - 1
	moved := g.clients[last]
	g.clients[c.idx] = moved
	moved.idx = c.idx
	g.clients[last] = nil
	g.clients = g.clients[:last]
	c.idx = -1
	g.mu.Unlock()
	g.unreserve(c.ip)
	return true
}

func (g *Gateway) isClosing() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closing
}

// Count returns the number of open connections.
func (g *Gateway) Count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.clients)
}

// Run pings every connection each PingInterval and closes those silent
// for IdleTimeout, and runs the Socket.IO sessions' pings, timeouts and
// presence:count fan-out, until ctx is done.
func (g *Gateway) Run(ctx context.Context) {
	done := make(chan struct{})
	go func() { defer close(done); g.sio.run(ctx) }()
	defer func() { <-done }()
	t := time.NewTicker(g.o.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			g.sweep(now)
		}
	}
}

func (g *Gateway) sweep(now time.Time) {
	idleBefore := now.Add(-g.o.IdleTimeout).Unix()
	for _, c := range g.snapshot() {
		if c.active.Load() < idleBefore {
			c.fail(CloseNormal, "idle timeout")
			continue
		}
		if !c.greeted.Load() {
			continue // its hello is not sent yet; the next round pings it
		}
		_ = c.send(wsproto.OpPing, nil)
	}
}

func (g *Gateway) snapshot() []*client {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*client, len(g.clients))
	copy(out, g.clients)
	return out
}

// Shutdown refuses new connections and closes every open one with 1001
// (going away), waiting up to a second for clients to answer their close
// frames before the TCP connections are closed; Socket.IO sessions are
// sent a DISCONNECT first. The closes reach the Tracker as disconnects
// before Shutdown returns. It returns the number of connections closed.
func (g *Gateway) Shutdown() int {
	g.mu.Lock()
	g.closing = true
	g.mu.Unlock()
	nsio := g.sio.shutdown()
	clients := g.snapshot()
	for _, c := range clients {
		c.fail(CloseGoingAway, "server shutting down")
	}
	deadline := time.Now().Add(closeGrace)
	for g.Count() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for _, c := range g.snapshot() {
		c.closeNow()
	}
	for g.Count() > 0 && time.Now().Before(deadline.Add(closeGrace)) {
		time.Sleep(5 * time.Millisecond)
	}
	return len(clients) + nsio
}

// Transports returns the open connections by transport: TransportWebSocket
// (/ws), TransportSocketIOWebSocket and TransportSocketIOPolling (Socket.IO
// sessions, connected to the main namespace or not yet).
func (g *Gateway) Transports() map[string]int64 {
	ws, polling := g.sio.counts()
	return map[string]int64{
		TransportWebSocket:         int64(g.Count()),
		TransportSocketIOWebSocket: ws,
		TransportSocketIOPolling:   polling,
	}
}

func (g *Gateway) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || len(g.o.Origins) == 0 {
		return true
	}
	for _, o := range g.o.Origins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"error": msg})
	_, _ = w.Write(b)
}
