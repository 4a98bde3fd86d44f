package gateway

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lesismal/nbio"

	"github.com/presenced/presenced/internal/sioproto"
	"github.com/presenced/presenced/internal/wsproto"
)

// SocketIOOptions configures the Socket.IO endpoint. The zero value of each
// field means the documented default.
type SocketIOOptions struct {
	// PingInterval is how often the server pings (SOCKETIO_PING_INTERVAL);
	// zero means 25s.
	PingInterval time.Duration
	// PingTimeout closes a session that has not answered a ping within it
	// (SOCKETIO_PING_TIMEOUT); zero means 20s.
	PingTimeout time.Duration
	// ConnectTimeout closes a session that has not connected to the main
	// namespace within it (SOCKETIO_CONNECT_TIMEOUT); zero means 45s.
	ConnectTimeout time.Duration
	// MaxPayload bounds a polling request body and a WebSocket message
	// (SOCKETIO_MAX_PAYLOAD); zero means 1 000 000 bytes.
	MaxPayload int
	// PollTimeout ends a long-polling GET with nothing to send after it
	// (a noop), so proxies do not time it out; zero means PingInterval.
	PollTimeout time.Duration
}

func (o SocketIOOptions) withDefaults() SocketIOOptions {
	if o.PingInterval <= 0 {
		o.PingInterval = 25 * time.Second
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = 20 * time.Second
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 45 * time.Second
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = 1_000_000
	}
	if o.PollTimeout <= 0 {
		o.PollTimeout = o.PingInterval
	}
	return o
}

// Counter returns the cluster-wide users and connections, for the
// presence:count event.
type Counter func(ctx context.Context) (users, connections int64, err error)

// Transports names, as in /metrics and the node's load figures.
const (
	TransportWebSocket         = "websocket"          // /ws
	TransportSocketIOWebSocket = "socketio-websocket" // /socket.io/ on a WebSocket
	TransportSocketIOPolling   = "socketio-polling"   // /socket.io/ by HTTP long-polling
)

// sio is the Socket.IO endpoint of a Gateway: Engine.IO v4 sessions
// (polling, websocket, the upgrade between them) carrying Socket.IO v5 on
// the main namespace.
type sio struct {
	g      *Gateway
	o      SocketIOOptions
	log    *slog.Logger
	limits wsLimits
	count  Counter

	mu       sync.Mutex
	sessions map[string]*sioSession
	closing  bool
	polling  atomic.Int64 // sessions on the polling transport
	ws       atomic.Int64 // sessions on the websocket transport
	subs     atomic.Int64 // sessions subscribed to presence:count

	countMu  sync.Mutex
	countCur []byte // the last count read, {"onlineUsers":…}
	countVer uint64 // bumped when countCur changes
}

func newSIO(g *Gateway, o SocketIOOptions, count Counter) *sio {
	o = o.withDefaults()
	return &sio{
		g: g, o: o, log: g.log, count: count, sessions: make(map[string]*sioSession),
		limits: wsLimits{maxMessage: o.MaxPayload, pingRate: g.limits.pingRate, pingBurst: g.limits.pingBurst},
	}
}

// sioSession is one Engine.IO session. On the websocket transport it is
// the loop's session for its connection (the embedded wsConn); on polling
// the wsConn is unused until an upgrade.
type sioSession struct {
	wsConn
	s   *sio
	sid string
	ip  netip.Addr // set only when a per-IP cap is on

	mu        sync.Mutex // guards what follows; never held while calling wsConn.fail
	state     uint8      // polling, probing, websocket, closed
	getActive bool
	postBusy  bool
	queue     [][]byte      // packets waiting for the next polling GET
	wake      chan struct{} // poked when queue grows or the session closes; polling only
	opened    int64         // unix nanoseconds
	pingSent  int64         // unix nanoseconds of the unanswered ping, 0 if none
	connected bool          // CONNECT to the main namespace accepted
	pending   bool          // CONNECT being verified
	user      string
	subscribe bool
	sentVer   uint64 // version of the presence:count last sent
	sentAt    int64  // unix nanoseconds it was sent
	watchAt   int64  // unix nanoseconds of the last presence:watch/unwatch
	upgraded  bool   // an upgrade was attempted
	skip      int    // binary attachments still to drop
}

const (
	statePolling uint8 = iota
	stateProbing
	stateWebSocket
	stateClosed
)

// ServeSocketIO serves the Socket.IO endpoint (mount it at SOCKETIO_PATH,
// every method: the wrong ones get 400 as the protocol says).
func (g *Gateway) ServeSocketIO(w http.ResponseWriter, r *http.Request) {
	s := g.sio
	q := r.URL.Query()
	if q.Get("EIO") != "4" {
		eioError(w, http.StatusBadRequest, 5, "Unsupported protocol version")
		return
	}
	transport, sid := q.Get("transport"), q.Get("sid")
	switch transport {
	case "polling":
		switch {
		case r.Method == http.MethodGet && sid == "":
			s.openPolling(w, r)
		case r.Method == http.MethodGet:
			s.poll(w, r, sid)
		case r.Method == http.MethodPost && sid != "":
			s.post(w, r, sid)
		default:
			eioError(w, http.StatusBadRequest, 2, "Bad handshake method")
		}
	case "websocket":
		if r.Method != http.MethodGet {
			eioError(w, http.StatusBadRequest, 2, "Bad handshake method")
			return
		}
		s.openWebSocket(w, r, sid)
	default:
		eioError(w, http.StatusBadRequest, 0, "Transport unknown")
	}
}

// eioError answers as the reference server does ({"code","message"}),
// with our "error" field too.
func eioError(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]any{"code": code, "message": msg, "error": msg})
	_, _ = w.Write(b)
}

// admit applies the gateway's checks for a new session: origin, connect
// rate and per-address cap. It returns the reserved address, or false
// having answered.
func (s *sio) admit(w http.ResponseWriter, r *http.Request, transport string) (netip.Addr, bool) {
	addr, ok := s.g.admit(w, r, transport)
	if !ok {
		return netip.Addr{}, false
	}
	return s.g.reserveFor(w, addr, transport)
}

// newSession registers a session; nc is its WebSocket (nil for polling).
func (s *sio) newSession(ip netip.Addr, state uint8, nc *nbio.Conn) (*sioSession, bool) {
	b := make([]byte, 15)
	_, _ = rand.Read(b)
	ss := &sioSession{s: s, sid: base64.RawURLEncoding.EncodeToString(b), ip: ip, state: state, opened: time.Now().UnixNano()}
	ss.nc = nc
	ss.limits = &s.limits
	ss.stats = &s.g.stats
	if state == statePolling {
		ss.wake = make(chan struct{}, 1)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, false
	}
	s.sessions[ss.sid] = ss
	if state == statePolling {
		s.polling.Add(1)
	} else {
		s.ws.Add(1)
	}
	return ss, true
}

func (s *sio) openPacket(sid string, upgrades []string) []byte {
	return sioproto.AppendOpen(nil, sioproto.Open{
		SID: sid, Upgrades: upgrades, PingInterval: s.o.PingInterval.Milliseconds(),
		PingTimeout: s.o.PingTimeout.Milliseconds(), MaxPayload: int64(s.o.MaxPayload),
	})
}

func (s *sio) openPolling(w http.ResponseWriter, r *http.Request) {
	ip, ok := s.admit(w, r, TransportSocketIOPolling)
	if !ok {
		return
	}
	ss, ok := s.newSession(ip, statePolling, nil)
	if !ok {
		s.g.unreserve(ip)
		writeError(w, http.StatusServiceUnavailable, "server shutting down")
		return
	}
	writePayload(w, s.openPacket(ss.sid, []string{"websocket"}))
}

func writePayload(w http.ResponseWriter, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=UTF-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func (s *sio) lookup(sid string) *sioSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[sid]
}

// claim finds polling session sid and marks a request of one kind (the
// GET or the POST, whose flag slot picks) in flight. Two of a kind at once
// break the protocol: the second closes the session (a waiting GET then
// returns the close packet). It returns nil having answered with 400.
func (s *sio) claim(w http.ResponseWriter, sid string, slot func(*sioSession) *bool, kind string) *sioSession {
	ss := s.lookup(sid)
	if ss == nil {
		eioError(w, http.StatusBadRequest, 1, "Session ID unknown")
		return nil
	}
	ss.mu.Lock()
	switch {
	case ss.state == stateWebSocket:
		ss.mu.Unlock()
		eioError(w, http.StatusBadRequest, 3, "Bad request: session upgraded to websocket")
		return nil
	case *slot(ss):
		ss.mu.Unlock()
		ss.close("concurrent polling " + kind)
		eioError(w, http.StatusBadRequest, 3, "Bad request: concurrent "+kind)
		return nil
	}
	*slot(ss) = true
	ss.mu.Unlock()
	return ss
}

// getSlot and postSlot are the flags claim sets for the two kinds of
// polling request.
func getSlot(ss *sioSession) *bool  { return &ss.getActive }
func postSlot(ss *sioSession) *bool { return &ss.postBusy }

// release ends the request claim marked.
func (ss *sioSession) release(slot func(*sioSession) *bool) {
	ss.mu.Lock()
	*slot(ss) = false
	ss.mu.Unlock()
}

// poll is a long-polling GET: it answers with the queued packets, waiting
// for some (or PollTimeout, then a noop) when there are none.
func (s *sio) poll(w http.ResponseWriter, r *http.Request, sid string) {
	ss := s.claim(w, sid, getSlot, "GET")
	if ss == nil {
		return
	}
	defer ss.release(getSlot)
	t := time.NewTimer(s.o.PollTimeout)
	defer t.Stop()
	for {
		ss.mu.Lock()
		if len(ss.queue) > 0 || ss.state == stateClosed {
			q := ss.queue
			ss.queue = nil
			closed := ss.state == stateClosed
			ss.mu.Unlock()
			if closed && len(q) == 0 {
				q = [][]byte{{sioproto.EClose}}
			}
			writePayload(w, sioproto.AppendPayload(nil, q))
			return
		}
		ss.mu.Unlock()
		select {
		case <-ss.wake:
		case <-t.C:
			writePayload(w, []byte{sioproto.ENoop})
			return
		case <-r.Context().Done():
			return
		}
	}
}

// post is a polling POST: the client's packets.
func (s *sio) post(w http.ResponseWriter, r *http.Request, sid string) {
	ss := s.claim(w, sid, postSlot, "POST")
	if ss == nil {
		return
	}
	defer ss.release(postSlot)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(s.o.MaxPayload)))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			ss.close("payload over SOCKETIO_MAX_PAYLOAD")
			eioError(w, http.StatusRequestEntityTooLarge, 3, "payload too large")
			return
		}
		return // the client went away
	}
	packets, err := sioproto.ParsePayload(body)
	if err != nil {
		ss.close("malformed polling payload")
		eioError(w, http.StatusBadRequest, 3, "Bad request: malformed payload")
		return
	}
	for _, p := range packets {
		if !ss.handle(p, false) {
			break
		}
	}
	w.Header().Set("Content-Type", "text/html")
	writePayloadStatus(w, "ok")
}

func writePayloadStatus(w http.ResponseWriter, s string) {
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, s)
}

// openWebSocket opens a session on a WebSocket (no sid), or starts the
// upgrade of a polling session (sid).
func (s *sio) openWebSocket(w http.ResponseWriter, r *http.Request, sid string) {
	key, ok := checkHandshake(w, r)
	if !ok {
		return
	}
	if sid != "" {
		s.upgrade(w, r, sid, key)
		return
	}
	ip, ok := s.admit(w, r, TransportSocketIOWebSocket)
	if !ok {
		return
	}
	if s.isClosing() {
		s.g.unreserve(ip)
		writeError(w, http.StatusServiceUnavailable, "server shutting down")
		return
	}
	nc, buffered, ok := s.g.takeOver(w, key, "")
	if !ok {
		s.g.unreserve(ip)
		return
	}
	ss, ok := s.newSession(ip, stateWebSocket, nc)
	if !ok {
		s.g.unreserve(ip)
		_ = nc.Close()
		return
	}
	if err := s.g.loop.adopt(ss, buffered); err != nil {
		ss.closeState("lost in the hand-off to the event loop")
		return
	}
	_ = ss.send(wsproto.OpText, s.openPacket(ss.sid, []string{}))
}

// upgrade starts the upgrade of polling session sid to this WebSocket:
// the probe packets are handled by probe.
func (s *sio) upgrade(w http.ResponseWriter, r *http.Request, sid, key string) {
	ss := s.lookup(sid)
	if ss == nil {
		eioError(w, http.StatusBadRequest, 1, "Session ID unknown")
		return
	}
	ss.mu.Lock()
	ok := ss.state == statePolling && !ss.upgraded
	if ok {
		ss.upgraded = true // one attempt per session
	}
	ss.mu.Unlock()
	if !ok {
		eioError(w, http.StatusBadRequest, 3, "Bad request: session cannot upgrade")
		return
	}
	nc, buffered, ok := s.g.takeOver(w, key, "")
	if !ok {
		return
	}
	ss.mu.Lock()
	if ss.state != statePolling {
		ss.mu.Unlock()
		_ = nc.Close()
		return
	}
	ss.nc = nc
	ss.state = stateProbing
	ss.mu.Unlock()
	if err := s.g.loop.adopt(ss, buffered); err != nil {
		ss.transportLost()
	}
}

func (s *sio) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// onMessage handles one WebSocket message of the session's connection,
// with the connection's lock held.
func (ss *sioSession) onMessage(op byte, data []byte) bool {
	var p sioproto.EPacket
	if op == wsproto.OpBinary {
		p = sioproto.EPacket{Type: sioproto.EMessage, Data: data, Binary: true}
	}
	ss.mu.Lock()
	probing := ss.state == stateProbing
	ss.mu.Unlock()
	if op != wsproto.OpBinary {
		var err error
		if p, err = sioproto.ParseEPacket(data); err != nil {
			ss.failLocked(wsproto.ClosePolicyViolation, "malformed Engine.IO packet")
			if !probing { // a failed probe leaves the polling transport alone
				ss.closeState("malformed packet")
			}
			return false
		}
	}
	if probing {
		return ss.probe(p)
	}
	return ss.handle(p, true)
}

// probe handles the packets of an upgrade in progress: "2probe" is
// answered with "3probe" (and the pending GET is released with a noop),
// "5" completes the upgrade.
func (ss *sioSession) probe(p sioproto.EPacket) bool {
	switch {
	case p.Type == sioproto.EPing && string(p.Data) == "probe":
		_ = ss.send(wsproto.OpText, []byte("3probe"))
		ss.enqueue([]byte{sioproto.ENoop})
		return true
	case p.Type == sioproto.EUpgrade:
		ss.mu.Lock()
		ss.state = stateWebSocket
		q := ss.queue
		ss.queue = nil
		ss.mu.Unlock()
		ss.s.polling.Add(-1)
		ss.s.ws.Add(1)
		ss.poke() // a GET still waiting returns
		for _, b := range q {
			_ = ss.send(wsproto.OpText, b)
		}
		return true
	}
	// The probe fails; the polling transport carries on (transportLost).
	ss.failLocked(wsproto.ClosePolicyViolation, "unexpected packet during upgrade")
	return false
}

// handle processes one Engine.IO packet from the client. onWS is set when
// it came on the WebSocket (whose lock is held). It returns false once the
// session is closed.
func (ss *sioSession) handle(p sioproto.EPacket, onWS bool) bool {
	switch p.Type {
	case sioproto.EPong:
		ss.mu.Lock()
		ss.pingSent = 0
		ss.mu.Unlock()
		return true
	case sioproto.ENoop:
		return true
	case sioproto.EClose:
		ss.closeFrom(onWS, 0, "client closed")
		return false
	case sioproto.EMessage:
		return ss.message(p, onWS)
	}
	ss.closeFrom(onWS, wsproto.ClosePolicyViolation, "unexpected Engine.IO packet")
	return false
}

// message handles a Socket.IO packet.
func (ss *sioSession) message(p sioproto.EPacket, onWS bool) bool {
	if p.Binary {
		ss.mu.Lock()
		ok := ss.skip > 0
		if ok {
			ss.skip--
		}
		ss.mu.Unlock()
		if !ok {
			ss.closeFrom(onWS, wsproto.ClosePolicyViolation, "unexpected binary message")
		}
		return ok
	}
	sp, err := sioproto.ParseSPacket(p.Data)
	if err != nil {
		ss.closeFrom(onWS, wsproto.ClosePolicyViolation, "malformed Socket.IO packet")
		return false
	}
	if sp.Namespace != "/" {
		if sp.Type == sioproto.SConnect {
			ss.out(sioproto.AppendSPacket(nil, sioproto.SConnectError, sp.Namespace, -1, []byte(`{"message":"Invalid namespace"}`)))
		}
		return true // packets for namespaces never joined are ignored
	}
	switch sp.Type {
	case sioproto.SConnect:
		return ss.connect(sp, onWS)
	case sioproto.SDisconnect:
		ss.closeFrom(onWS, 0, "client disconnected")
		return false
	case sioproto.SEvent:
		return ss.event(sp)
	case sioproto.SBinaryEvent, sioproto.SBinaryAck:
		ss.mu.Lock()
		ss.skip += sp.Attachments
		ss.mu.Unlock()
		return true
	case sioproto.SAck:
		return true
	}
	ss.closeFrom(onWS, wsproto.ClosePolicyViolation, "unexpected Socket.IO packet")
	return false
}

// connect verifies the CONNECT's auth.token and answers CONNECT with a
// fresh Socket.IO sid once the connection is counted, or CONNECT_ERROR.
// Verification and the wait for the count run off the event loop.
func (ss *sioSession) connect(sp sioproto.SPacket, onWS bool) bool {
	ss.mu.Lock()
	if ss.connected || ss.pending {
		ss.mu.Unlock()
		ss.closeFrom(onWS, wsproto.ClosePolicyViolation, "second CONNECT")
		return false
	}
	ss.pending = true
	ss.mu.Unlock()
	var auth struct {
		Token *string `json:"token"`
	}
	if sp.Data != nil {
		if json.Unmarshal(sp.Data, &auth) != nil {
			auth.Token = nil
		}
	}
	token := ""
	if auth.Token != nil {
		token = *auth.Token
	}
	g := ss.s.g
	go func() {
		user, err := g.authenticate(context.Background(), token)
		if err != nil {
			ss.mu.Lock()
			ws := ss.state == stateWebSocket
			ss.mu.Unlock()
			g.stats.refusedAuth(sioTransport(ws), token)
			msg := "invalid token"
			if token == "" {
				msg = "authentication required: pass auth.token"
			}
			ss.mu.Lock()
			ss.pending = false
			ss.mu.Unlock()
			ss.out(sioproto.AppendSPacket(nil, sioproto.SConnectError, "/", -1, []byte(`{"message":"`+msg+`"}`)))
			return
		}
		ss.mu.Lock()
		if ss.state == stateClosed {
			ss.mu.Unlock()
			return
		}
		// Counted under the lock, so a close racing with this CONNECT
		// either sees it connected (and disconnects it) or stops it above.
		ss.pending, ss.connected, ss.user = false, true, user
		counted := g.o.Tracker.Connect(user)
		g.stats.Connects.add(sioTransport(ss.state == stateWebSocket))
		ss.mu.Unlock()
		g.awaitCounted(counted)
		b := make([]byte, 15)
		_, _ = rand.Read(b)
		ss.out(sioproto.AppendSPacket(nil, sioproto.SConnect, "/", -1, []byte(`{"sid":"`+base64.RawURLEncoding.EncodeToString(b)+`"}`)))
	}()
	return true
}

// event handles the events apps may emit; others are ignored.
func (ss *sioSession) event(sp sioproto.SPacket) bool {
	name, err := sioproto.EventName(sp.Data)
	if err != nil {
		return true
	}
	ss.mu.Lock()
	connected := ss.connected
	ss.mu.Unlock()
	if !connected {
		return true
	}
	switch name {
	case "presence:subscribe":
		ss.mu.Lock()
		first := !ss.subscribe
		ss.subscribe = true
		ss.mu.Unlock()
		if first {
			ss.s.subs.Add(1)
			go ss.sendCount() // the current count at once; changes follow
		}
	case "presence:unsubscribe":
		ss.mu.Lock()
		was := ss.subscribe
		ss.subscribe = false
		ss.mu.Unlock()
		if was {
			ss.s.subs.Add(-1)
		}
	case "presence:watch", "presence:unwatch":
		ss.watch(sp, name == "presence:watch")
	case "presence:count":
		if sp.AckID >= 0 {
			id := sp.AckID
			go func() {
				b, ok := ss.s.countJSON()
				if !ok {
					b = []byte(`{"error":"count unavailable"}`)
				}
				ss.out(sioproto.AppendSPacket(nil, sioproto.SAck, "/", id, append(append([]byte{'['}, b...), ']')))
			}()
		}
	}
	return true
}

// watchEvery bounds how often a session may set its watch list (each
// costs a store read).
const watchEvery = 100 * time.Millisecond

// watch handles presence:watch (its argument: an array of user ids) and
// presence:unwatch, answering by ack when asked ({"watching":N} or
// {"error":…}), else errors as a presence:error event.
func (ss *sioSession) watch(sp sioproto.SPacket, on bool) {
	var args []json.RawMessage
	_ = json.Unmarshal(sp.Data, &args)
	var raw json.RawMessage
	if len(args) > 1 {
		raw = args[1]
	}
	now := time.Now().UnixNano()
	ss.mu.Lock()
	tooSoon := now-ss.watchAt < int64(watchEvery)
	if !tooSoon {
		ss.watchAt = now
	}
	ss.mu.Unlock()
	n, err := 0, errors.New("too many watch requests: at most 10 a second")
	if !tooSoon {
		n, err = ss.s.g.setWatch(ss, raw, on)
	}
	var reply []byte
	if err != nil {
		reply, _ = json.Marshal(map[string]string{"error": err.Error()})
	} else {
		reply = []byte(`{"watching":` + strconv.Itoa(n) + `}`)
	}
	switch {
	case sp.AckID >= 0:
		ss.out(sioproto.AppendSPacket(nil, sioproto.SAck, "/", sp.AckID, append(append([]byte{'['}, reply...), ']')))
	case err != nil:
		ss.out(sioproto.AppendSPacket(nil, sioproto.SEvent, "/", -1, append(append([]byte(`["presence:error",`), reply...), ']')))
	}
}

// Presence implements events.Watcher: it emits presence:user
// {"userId":…,"online":…}. It is called with the hub's lock held, so a
// polling client over its queue is closed from another goroutine (closing
// leaves the hub).
func (ss *sioSession) Presence(user string, online bool) {
	b, _ := json.Marshal(struct {
		UserID string `json:"userId"`
		Online bool   `json:"online"`
	}{user, online})
	pkt := sioproto.AppendSPacket(nil, sioproto.SEvent, "/", -1, append(append([]byte(`["presence:user",`), b...), ']'))
	ss.outClosing(pkt, func(reason string) { go ss.close(reason) })
}

// sendCount sends the current count to a new subscriber.
func (ss *sioSession) sendCount() {
	s := ss.s
	s.countMu.Lock()
	if s.countCur == nil {
		if b, ok := s.countJSON(); ok {
			s.countCur, s.countVer = b, s.countVer+1
		}
	}
	cur, ver := s.countCur, s.countVer
	s.countMu.Unlock()
	if cur == nil {
		return
	}
	ss.mu.Lock()
	ss.sentVer, ss.sentAt = ver, time.Now().UnixNano()
	ss.mu.Unlock()
	ss.out(countEvent(cur))
}

func countEvent(b []byte) []byte {
	return sioproto.AppendSPacket(nil, sioproto.SEvent, "/", -1, append(append([]byte(`["presence:count",`), b...), ']'))
}

// countJSON returns {"onlineUsers":N,"onlineConnections":M}.
func (s *sio) countJSON() ([]byte, bool) {
	if s.count == nil {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	u, c, err := s.count(ctx)
	if err != nil {
		return nil, false
	}
	return []byte(`{"onlineUsers":` + strconv.FormatInt(u, 10) + `,"onlineConnections":` + strconv.FormatInt(c, 10) + `}`), true
}

// out sends one packet on the session's transport.
func (ss *sioSession) out(b []byte) { ss.outClosing(b, ss.close) }

// outClosing is out, with closeSlow closing a polling session whose queue
// b takes over maxQueued.
func (ss *sioSession) outClosing(b []byte, closeSlow func(reason string)) {
	ss.mu.Lock()
	state := ss.state
	ss.mu.Unlock()
	switch state {
	case stateWebSocket:
		_ = ss.send(wsproto.OpText, b)
	case statePolling, stateProbing:
		ss.enqueueClosing(b, closeSlow)
	}
}

// maxQueued bounds the packets waiting for a polling client that does not
// poll: past it the session is closed as a slow consumer.
const maxQueued = 64

func (ss *sioSession) enqueue(b []byte) { ss.enqueueClosing(b, ss.close) }

// enqueueClosing queues b for the polling client; closeSlow closes the
// session when the queue goes over maxQueued.
func (ss *sioSession) enqueueClosing(b []byte, closeSlow func(reason string)) {
	ss.mu.Lock()
	if ss.state == stateClosed {
		ss.mu.Unlock()
		return
	}
	ss.queue = append(ss.queue, b)
	over := len(ss.queue) > maxQueued
	ss.mu.Unlock()
	if over {
		ss.s.g.stats.SlowConsumers.Add(1)
		closeSlow("polling client not reading")
		return
	}
	ss.poke()
}

func (ss *sioSession) poke() {
	if ss.wake == nil {
		return
	}
	select {
	case ss.wake <- struct{}{}:
	default:
	}
}

// closeFrom closes the session from packet handling: on the WebSocket
// (lock held) with code when not 0.
func (ss *sioSession) closeFrom(onWS bool, code int, why string) {
	if onWS {
		if code == 0 {
			code = wsproto.CloseNormal
		}
		ss.failLocked(code, why)
	}
	ss.closeState(why)
}

// close ends the session from outside packet handling: the WebSocket, if
// any, is sent a close frame.
func (ss *sioSession) close(why string) {
	if ss.onWebSocket() {
		ss.fail(wsproto.CloseNormal, why)
	}
	ss.closeState(why)
}

// onWebSocket reports whether the session has a WebSocket (active or
// probing).
func (ss *sioSession) onWebSocket() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return (ss.state == stateWebSocket || ss.state == stateProbing) && ss.nc != nil
}

// closeState marks the session closed, once: it leaves the registry, the
// per-IP count and the Tracker; a waiting GET returns the close packet.
func (ss *sioSession) closeState(why string) {
	ss.mu.Lock()
	if ss.state == stateClosed {
		ss.mu.Unlock()
		return
	}
	prev := ss.state
	ss.state = stateClosed
	connected, user, subscribed := ss.connected, ss.user, ss.subscribe
	ss.connected, ss.subscribe = false, false
	ss.mu.Unlock()
	s := ss.s
	s.mu.Lock()
	delete(s.sessions, ss.sid)
	s.mu.Unlock()
	if prev == stateWebSocket {
		s.ws.Add(-1)
	} else {
		s.polling.Add(-1)
	}
	if subscribed {
		s.subs.Add(-1)
	}
	s.g.unreserve(ss.ip)
	if s.g.o.Watch != nil {
		s.g.o.Watch.Unwatch(ss)
	}
	if connected {
		s.g.o.Tracker.Disconnect(user)
		s.g.stats.Disconnects.add(sioTransport(prev == stateWebSocket))
	}
	ss.poke()
	s.log.Debug("socket.io: session closed", "sid", ss.sid, "why", why)
}

// onClosed runs when the session's WebSocket connection is gone.
func (ss *sioSession) onClosed() { ss.transportLost() }

// transportLost handles the end of a WebSocket: the session ends with it,
// unless it was only probing an upgrade (polling carries on).
func (ss *sioSession) transportLost() {
	ss.mu.Lock()
	probing := ss.state == stateProbing
	if probing {
		ss.state = statePolling
	}
	ss.mu.Unlock()
	if !probing {
		ss.closeState("transport closed")
	}
}

// run pings every session each PingInterval, closes those that did not
// answer within PingTimeout or never connected within ConnectTimeout, and
// fans presence:count out to subscribers, until ctx is done.
func (s *sio) run(ctx context.Context) {
	ping := time.NewTicker(s.o.PingInterval)
	defer ping.Stop()
	check := time.NewTicker(min(max(min(s.o.PingTimeout, s.o.ConnectTimeout)/4, 10*time.Millisecond), time.Second))
	defer check.Stop()
	fan := time.NewTicker(fanEvery)
	defer fan.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ping.C:
			s.pingAll()
		case now := <-check.C:
			s.expire(now)
		case now := <-fan.C:
			s.fanout(now)
		}
	}
}

func (s *sio) snapshot() []*sioSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*sioSession, 0, len(s.sessions))
	for _, ss := range s.sessions {
		out = append(out, ss)
	}
	return out
}

func (s *sio) pingAll() {
	now := time.Now().UnixNano()
	for _, ss := range s.snapshot() {
		ss.mu.Lock()
		if ss.pingSent == 0 {
			ss.pingSent = now
		}
		ss.mu.Unlock()
		ss.out([]byte{sioproto.EPing})
	}
}

func (s *sio) expire(now time.Time) {
	for _, ss := range s.snapshot() {
		ss.mu.Lock()
		pingLate := ss.pingSent != 0 && now.UnixNano()-ss.pingSent > int64(s.o.PingTimeout)
		notConnected := !ss.connected && !ss.pending && now.UnixNano()-ss.opened > int64(s.o.ConnectTimeout)
		ss.mu.Unlock()
		switch {
		case pingLate:
			ss.close("ping timeout")
		case notConnected:
			ss.close("no CONNECT within SOCKETIO_CONNECT_TIMEOUT")
		}
	}
}

// fanEvery is how often the count is read while anyone is subscribed;
// each subscriber still gets at most one presence:count a second.
const fanEvery = 250 * time.Millisecond

// fanout reads the count once for the whole node and sends it to every
// subscriber that has not got this version and was last sent one at
// least a second ago.
func (s *sio) fanout(now time.Time) {
	if s.subs.Load() == 0 {
		return
	}
	b, ok := s.countJSON()
	s.countMu.Lock()
	if ok && string(b) != string(s.countCur) {
		s.countCur, s.countVer = b, s.countVer+1
	}
	cur, ver := s.countCur, s.countVer
	s.countMu.Unlock()
	if cur == nil {
		return
	}
	var pkt []byte
	for _, ss := range s.snapshot() {
		ss.mu.Lock()
		due := ss.subscribe && ss.sentVer != ver && now.UnixNano()-ss.sentAt >= int64(time.Second)
		if due {
			ss.sentVer, ss.sentAt = ver, now.UnixNano()
		}
		ss.mu.Unlock()
		if due {
			if pkt == nil {
				pkt = countEvent(cur)
			}
			ss.out(pkt)
		}
	}
}

// shutdown refuses new sessions and disconnects every session: "41" (so
// clients see "io server disconnect" and do not reconnect here), then the
// transport is closed. Polling clients get up to closeGrace to collect
// the DISCONNECT; a GET after that gets the close packet.
func (s *sio) shutdown() int {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	all := s.snapshot()
	disconnect := sioproto.AppendSPacket(nil, sioproto.SDisconnect, "/", -1, nil)
	var polling []*sioSession
	for _, ss := range all {
		ss.mu.Lock()
		connected := ss.connected
		ss.mu.Unlock()
		if connected {
			ss.out(disconnect)
		}
		if ss.onWebSocket() {
			ss.fail(wsproto.CloseGoingAway, "server shutting down")
			ss.closeState("server shutting down")
			continue
		}
		// The close packet comes only once the client has collected the
		// DISCONNECT: in one response, socket.io-client acts on the close
		// first and reports "transport close".
		polling = append(polling, ss)
	}
	deadline := time.Now().Add(closeGrace)
	for _, ss := range polling {
		for !ss.drained() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		ss.closeState("server shutting down")
	}
	return len(all)
}

// drained reports whether a polling client has collected every queued
// packet.
func (ss *sioSession) drained() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.queue) == 0
}

// counts returns the open Socket.IO sessions by transport.
func (s *sio) counts() (websocket, polling int64) { return s.ws.Load(), s.polling.Load() }
