// Package gateway serves the endpoints the app's clients connect to: the
// WebSocket endpoint /ws (and, later, /socket.io/). It authenticates each
// connection, records it in the presence Tracker and keeps it alive.
//
// Memory per idle connection is a design constraint: connections live in
// nbio's event loop (no goroutine and no buffers per connection), each
// holds one small client struct, and one shared ticker pings them all.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lesismal/nbio/nbhttp/websocket"

	"github.com/presenced/presenced/auth"
	"github.com/presenced/presenced/presence"
)

// Close codes sent by the gateway.
const (
	CloseGoingAway       = 1001 // server shutting down
	ClosePolicyViolation = 1008 // a message the protocol does not allow
	CloseTooBig          = 1009 // a message over Options.MaxMessageBytes (sent by nbio)
	CloseNormal          = 1000 // idle timeout
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
	// 1009; zero means 4096.
	MaxMessageBytes int
	// MaxConnsPerIP caps connections from one address (429 beyond it);
	// zero means no cap, since many users share an address behind NAT.
	MaxConnsPerIP int
	// Origins lists the allowed Origin headers; empty allows any, "*" too.
	Origins []string
	// HelloTimeout caps how long a new connection waits to be counted in
	// the store before its hello is sent anyway; zero means 1s.
	HelloTimeout time.Duration
	Logger       *slog.Logger
}

// Gateway is the WebSocket endpoint. It is an http.Handler for /ws.
type Gateway struct {
	o        Options
	log      *slog.Logger
	upgrader *websocket.Upgrader
	nextID   atomic.Uint64

	mu      sync.Mutex
	clients []*client // every open connection; client.idx is its index
	perIP   map[string]int32
	closing bool
}

// client is the whole per-connection state; keep it small.
type client struct {
	conn   *websocket.Conn
	user   string // "" for a guest
	ip     string // set only when a per-IP cap is on
	id     uint64
	active atomic.Int64 // unix seconds of the last frame from the client
	idx    int32        // index in Gateway.clients, -1 once removed
}

// New returns a Gateway. Call Run to start the keepalive ticker.
func New(o Options) *Gateway {
	if o.PingInterval <= 0 {
		o.PingInterval = 25 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 60 * time.Second
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = 4096
	}
	if o.HelloTimeout <= 0 {
		o.HelloTimeout = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{o: o, log: o.Logger, perIP: make(map[string]int32)}
	u := websocket.NewUpgrader()
	u.KeepaliveTime = 0 // one shared ticker instead of a timer per connection
	u.MessageLengthLimit = o.MaxMessageBytes
	u.CheckOrigin = g.checkOrigin
	u.OnMessage(g.onMessage)
	u.OnClose(g.onClose)
	u.SetPongHandler(func(c *websocket.Conn, _ string) { g.touch(c) })
	u.SetPingHandler(func(c *websocket.Conn, data string) {
		g.touch(c)
		_ = c.WriteMessage(websocket.PongMessage, []byte(data))
	})
	g.upgrader = u
	return g
}

// ServeHTTP authenticates the handshake, upgrades it, counts the
// connection and greets the client with one hello message.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token, subprotocol := auth.UserToken(r)
	user, err := g.authenticate(r.Context(), token)
	if err != nil {
		g.log.Debug("ws: refused", "err", err, "remote", r.RemoteAddr)
		writeError(w, http.StatusUnauthorized, "missing or invalid token")
		return
	}
	ip := ""
	if g.o.MaxConnsPerIP > 0 {
		ip = remoteIP(r)
	}
	if status, msg := g.reserve(ip); status != 0 {
		writeError(w, status, msg)
		return
	}
	var header http.Header
	if subprotocol != "" {
		header = http.Header{"Sec-Websocket-Protocol": {subprotocol}}
	}
	conn, err := g.upgrader.Upgrade(w, r, header)
	if err != nil {
		g.unreserve(ip)
		g.log.Debug("ws: upgrade failed", "err", err, "remote", r.RemoteAddr)
		return // the upgrader has answered
	}
	c := &client{conn: conn, user: user, ip: ip, id: g.nextID.Add(1)}
	c.active.Store(time.Now().Unix())
	conn.SetSession(c)
	if !g.add(c) {
		// Shutdown began during the upgrade and did not see this connection.
		g.unreserve(ip)
		_ = conn.WriteClose(CloseGoingAway, "server shutting down")
		_ = conn.Close()
		return
	}

	// Greet only once the connection is counted, so a client holding its
	// hello is always in online_users.
	counted := g.o.Tracker.Connect(user)
	t := time.NewTimer(g.o.HelloTimeout)
	select {
	case <-counted:
	case <-t.C:
	}
	t.Stop()
	_ = conn.WriteMessage(websocket.TextMessage, g.hello(c))
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
// online count); anything else is a protocol violation.
func (g *Gateway) onMessage(conn *websocket.Conn, mt websocket.MessageType, data []byte) {
	g.touch(conn)
	var msg struct {
		Type string `json:"type"`
	}
	if mt != websocket.TextMessage || json.Unmarshal(data, &msg) != nil || msg.Type != "ping" {
		_ = conn.WriteClose(ClosePolicyViolation, "unsupported message")
		_ = conn.Close()
		return
	}
	reply := fmt.Appendf(nil, `{"type":"pong","onlineUsers":%d}`, g.o.Tracker.Online())
	_ = conn.WriteMessage(websocket.TextMessage, reply)
}

func (g *Gateway) onClose(conn *websocket.Conn, _ error) {
	c, ok := conn.Session().(*client)
	if !ok || !g.remove(c) {
		return
	}
	g.o.Tracker.Disconnect(c.user)
}

func (g *Gateway) touch(conn *websocket.Conn) {
	if c, ok := conn.Session().(*client); ok {
		c.active.Store(time.Now().Unix())
	}
}

// reserve checks that the gateway is open and the address is under its
// cap, and counts the new connection against it. It returns a non-zero
// status to refuse.
func (g *Gateway) reserve(ip string) (int, string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return http.StatusServiceUnavailable, "server shutting down"
	}
	if ip == "" {
		return 0, ""
	}
	if g.perIP[ip] >= int32(g.o.MaxConnsPerIP) {
		return http.StatusTooManyRequests, "too many connections from this address"
	}
	g.perIP[ip]++
	return 0, ""
}

func (g *Gateway) unreserve(ip string) {
	if ip == "" {
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

// Count returns the number of open connections.
func (g *Gateway) Count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.clients)
}

// Run pings every connection each PingInterval and closes those silent
// for IdleTimeout, until ctx is done.
func (g *Gateway) Run(ctx context.Context) {
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
			_ = c.conn.WriteClose(CloseNormal, "idle timeout")
			_ = c.conn.Close()
			continue
		}
		// nbio arms the HTTP keep-alive read deadline (2 min, httpapi)
		// just after it registers an accepted connection; when the
		// handshake wins that race, the deadline lands after the upgrader
		// cleared it and closes the WebSocket without a close frame
		// (seen: 6-15 of 19 000 idle connections dropped after 2 min).
		// Clearing it is cheap and does nothing when no deadline is set.
		_ = c.conn.SetReadDeadline(time.Time{})
		_ = c.conn.WriteMessage(websocket.PingMessage, nil)
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
// (going away). The closes reach the Tracker as disconnects.
func (g *Gateway) Shutdown() int {
	g.mu.Lock()
	g.closing = true
	g.mu.Unlock()
	clients := g.snapshot()
	for _, c := range clients {
		_ = c.conn.WriteClose(CloseGoingAway, "server shutting down")
		_ = c.conn.Close()
	}
	return len(clients)
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

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return strings.Clone(r.RemoteAddr)
	}
	return strings.Clone(host)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"error": msg})
	_, _ = w.Write(b)
}
