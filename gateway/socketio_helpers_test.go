package gateway_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presenced/presenced/gateway"
	"github.com/presenced/presenced/presence"
)

// fastSIO returns Socket.IO options with short timeouts, for the tests
// that wait for them.
func fastSIO(interval, timeout, connect time.Duration) gateway.SocketIOOptions {
	return gateway.SocketIOOptions{PingInterval: interval, PingTimeout: timeout, ConnectTimeout: connect}
}

// newSIOEnv is newEnv with a Counter that reads the env's own tracker, so
// presence:count reports this node's local counts.
func newSIOEnv(tb testing.TB, o gateway.Options) *env {
	tb.Helper()
	var tr atomic.Pointer[presence.Tracker]
	o.Counter = func(context.Context) (int64, int64, error) {
		t := tr.Load()
		if t == nil {
			return 0, 0, errors.New("tracker not ready")
		}
		u, c, _ := t.Local()
		return u, c, nil
	}
	e := newEnv(tb, o)
	tr.Store(e.tracker)
	// Closing a Gateway soon after New can hang for ever: each nbio poller
	// clears its shutdown flag when its goroutine starts, so an
	// Engine.Stop that comes first is lost (reported with these tests).
	// Many of these tests are over in milliseconds, so let each env live
	// long enough for its pollers to start. This cleanup runs before
	// newEnv's.
	born := time.Now()
	tb.Cleanup(func() { time.Sleep(time.Until(born.Add(500 * time.Millisecond))) })
	return e
}

// sioURL is the Socket.IO endpoint with query.
func (e *env) sioURL(query string) string { return "http://" + e.addr + "/socket.io/?" + query }

// sioOpen is the open packet's data.
type sioOpen struct {
	SID          string   `json:"sid"`
	Upgrades     []string `json:"upgrades"`
	PingInterval int64    `json:"pingInterval"`
	PingTimeout  int64    `json:"pingTimeout"`
	MaxPayload   int64    `json:"maxPayload"`
}

// parseOpen checks that pkt is an open packet with exactly the fields of
// engine.io-protocol v4 and returns them.
func parseOpen(tb testing.TB, pkt string) sioOpen {
	tb.Helper()
	if !strings.HasPrefix(pkt, "0") {
		tb.Fatalf("first packet %q, want an open packet (0{...})", pkt)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(pkt[1:]), &fields); err != nil {
		tb.Fatalf("open packet %q is not 0 + a JSON object: %v", pkt, err)
	}
	for _, k := range []string{"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"} {
		if _, ok := fields[k]; !ok {
			tb.Errorf("open packet %s has no %q", pkt, k)
		}
	}
	var o sioOpen
	if err := json.Unmarshal([]byte(pkt[1:]), &o); err != nil {
		tb.Fatalf("open packet %q: %v", pkt, err)
	}
	if o.SID == "" {
		tb.Fatalf("open packet %s has an empty sid", pkt)
	}
	if o.Upgrades == nil {
		tb.Errorf("open packet %s: upgrades is not an array", pkt)
	}
	return o
}

// httpTry sends one request; it is safe to call from any goroutine.
func httpTry(ctx context.Context, hc *http.Client, method, url, body string) (int, string, error) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return 0, "", err
	}
	if body != "" {
		req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// httpDo is httpTry that fails the test on a transport error.
func httpDo(tb testing.TB, hc *http.Client, method, url, body string) (int, string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	status, b, err := httpTry(ctx, hc, method, url, body)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	return status, b
}

// sioTransport is one Engine.IO session seen from the client: a polling
// session or a WebSocket.
type sioTransport interface {
	sid() string
	// write sends one text packet and fails the test if the server does
	// not take it (a polling POST not answered 200 "ok").
	write(tb testing.TB, pkt string)
	// writeAny sends one text packet, whatever the answer.
	writeAny(tb testing.TB, pkt string)
	// writeBinary sends one binary message.
	writeBinary(tb testing.TB, b []byte)
	// recv returns the next packet from the server before until, or
	// ended (with the close code on a WebSocket, 0 on polling) when the
	// session or its connection is gone: a close frame, or a polling GET
	// answered 400.
	recv(tb testing.TB, until time.Time) (pkt string, ended bool, code int)
	name() string
}

// sioClient is a Socket.IO client over a transport that answers pings
// when asked to read.
type sioClient struct {
	sioTransport
	pongs int // pings answered
}

// next returns the next packet that is neither a ping (answered) nor a
// noop; the session must stay open.
func (c *sioClient) next(tb testing.TB) string {
	tb.Helper()
	until := time.Now().Add(waitTimeout)
	for {
		pkt, ended, code := c.recv(tb, until)
		switch {
		case ended:
			tb.Fatalf("%s session ended (close code %d) while waiting for a packet", c.name(), code)
		case pkt == "2":
			c.write(tb, "3")
			c.pongs++
		case pkt == "6":
		case pkt == "1":
			tb.Fatalf("%s session closed (packet 1) while waiting for a packet", c.name())
		default:
			return pkt
		}
	}
}

// pump reads until n more pings have been answered; any packet but a
// ping or a noop fails the test.
func (c *sioClient) pump(tb testing.TB, n int) {
	tb.Helper()
	until := time.Now().Add(waitTimeout)
	for i := 0; i < n; {
		pkt, ended, code := c.recv(tb, until)
		switch {
		case ended:
			tb.Fatalf("%s session ended (close code %d) after %d of %d pings answered", c.name(), code, i, n)
		case pkt == "2":
			c.write(tb, "3")
			c.pongs++
			i++
		case pkt == "6":
		default:
			tb.Fatalf("%s: unexpected packet %q while answering pings", c.name(), pkt)
		}
	}
}

// expectClosed reads, without answering pings, until the session ends,
// and returns the packets that came before (a polling close packet "1"
// included) and the WebSocket close code.
func (c *sioClient) expectClosed(tb testing.TB) ([]string, int) {
	tb.Helper()
	until := time.Now().Add(waitTimeout)
	var got []string
	for {
		pkt, ended, code := c.recv(tb, until)
		if ended {
			return got, code
		}
		got = append(got, pkt)
	}
}

// connect sends CONNECT with user's token and returns the Socket.IO sid
// of the answer.
func (c *sioClient) connect(tb testing.TB, user string) string {
	tb.Helper()
	c.write(tb, `40{"token":"`+token(tb, user)+`"}`)
	return connectSID(tb, c.next(tb))
}

// connectSID checks that pkt is CONNECT to the main namespace with a sid
// and returns it.
func connectSID(tb testing.TB, pkt string) string {
	tb.Helper()
	if !strings.HasPrefix(pkt, "40{") {
		tb.Fatalf("got %q, want a CONNECT answer 40{\"sid\":...}", pkt)
	}
	var d struct {
		SID string `json:"sid"`
	}
	if err := json.Unmarshal([]byte(pkt[2:]), &d); err != nil || d.SID == "" {
		tb.Fatalf("CONNECT answer %q has no sid (%v)", pkt, err)
	}
	return d.SID
}

// alive checks that the session still answers: presence:count with an ack
// id must come back as that ack, before any other packet.
func (c *sioClient) alive(tb testing.TB, ackID int) {
	tb.Helper()
	c.write(tb, fmt.Sprintf(`42%d["presence:count"]`, ackID))
	if got, want := c.next(tb), fmt.Sprintf("43%d[", ackID); !strings.HasPrefix(got, want) {
		tb.Fatalf("%s: asked for an ack %d, got %q (want %s...)", c.name(), ackID, got, want)
	}
}

// sioPolling is a session on the polling transport.
type sioPolling struct {
	e       *env
	hc      *http.Client
	id      string
	pending []string
}

// openPolling opens a polling session.
func openPolling(tb testing.TB, e *env) (*sioClient, sioOpen) {
	tb.Helper()
	hc := e.httpClient(tb)
	status, body := httpDo(tb, hc, http.MethodGet, e.sioURL("EIO=4&transport=polling"), "")
	if status != http.StatusOK {
		tb.Fatalf("open polling session: HTTP %d %q", status, body)
	}
	o := parseOpen(tb, body)
	return &sioClient{sioTransport: &sioPolling{e: e, hc: hc, id: o.SID}}, o
}

func (p *sioPolling) name() string { return "polling" }
func (p *sioPolling) sid() string  { return p.id }
func (p *sioPolling) url() string {
	return p.e.sioURL("EIO=4&transport=polling&sid=" + p.id)
}

// httpResult is the outcome of a request made in a goroutine.
type httpResult struct {
	status int
	body   string
	err    error
}

// goGet starts a polling GET in a goroutine; its result comes on the
// channel within waitTimeout.
func (p *sioPolling) goGet() <-chan httpResult {
	ch := make(chan httpResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		s, b, err := httpTry(ctx, p.hc, http.MethodGet, p.url(), "")
		ch <- httpResult{s, b, err}
	}()
	return ch
}

func (p *sioPolling) get(tb testing.TB) (int, string) {
	tb.Helper()
	return httpDo(tb, p.hc, http.MethodGet, p.url(), "")
}

func (p *sioPolling) post(tb testing.TB, body string) (int, string) {
	tb.Helper()
	return httpDo(tb, p.hc, http.MethodPost, p.url(), body)
}

func (p *sioPolling) write(tb testing.TB, pkt string) {
	tb.Helper()
	if status, body := p.post(tb, pkt); status != http.StatusOK || body != "ok" {
		tb.Fatalf("POST %.60q: HTTP %d %q, want 200 \"ok\"", pkt, status, body)
	}
}

func (p *sioPolling) writeAny(tb testing.TB, pkt string) {
	tb.Helper()
	status, body := p.post(tb, pkt)
	tb.Logf("POST %.60q: HTTP %d %.80q", pkt, status, body)
}

func (p *sioPolling) writeBinary(tb testing.TB, b []byte) {
	tb.Helper()
	p.write(tb, "b"+base64.StdEncoding.EncodeToString(b))
}

func (p *sioPolling) recv(tb testing.TB, until time.Time) (string, bool, int) {
	tb.Helper()
	for len(p.pending) == 0 {
		ctx, cancel := context.WithDeadline(context.Background(), until)
		status, body, err := httpTry(ctx, p.hc, http.MethodGet, p.url(), "")
		cancel()
		if err != nil {
			tb.Fatalf("polling GET: %v", err)
		}
		if status == http.StatusBadRequest {
			return "", true, 0
		}
		if status != http.StatusOK {
			tb.Fatalf("polling GET: HTTP %d %q", status, body)
		}
		p.pending = strings.Split(body, "\x1e")
	}
	pkt := p.pending[0]
	p.pending = p.pending[1:]
	return pkt, false, 0
}

// sioWS is a raw WebSocket to /socket.io/.
type sioWS struct {
	conn net.Conn
	br   *bufio.Reader
	id   string
	done bool // a close frame was received
}

// dialSIO performs a WebSocket handshake on /socket.io/?query. It returns
// the WebSocket on 101, or nil and the response (body read) otherwise.
func dialSIO(tb testing.TB, e *env, query string) (*sioWS, *http.Response, string) {
	tb.Helper()
	conn, err := net.DialTimeout("tcp", e.addr, waitTimeout)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(waitTimeout))
	fmt.Fprintf(conn, "GET /socket.io/?%s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", query)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		tb.Fatalf("handshake on /socket.io/?%s: %v", query, err)
	}
	_ = conn.SetDeadline(time.Time{})
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(resp.Body)
		_ = conn.Close()
		return nil, resp, string(b)
	}
	return &sioWS{conn: conn, br: br}, resp, ""
}

// openWS opens a session on the WebSocket transport and reads its open
// packet.
func openWS(tb testing.TB, e *env) (*sioClient, sioOpen) {
	tb.Helper()
	w, resp, body := dialSIO(tb, e, "EIO=4&transport=websocket")
	if w == nil {
		tb.Fatalf("WebSocket handshake: HTTP %d %q", resp.StatusCode, body)
	}
	op, payload := w.frame(tb, time.Now().Add(waitTimeout))
	if op != 1 {
		tb.Fatalf("first frame has opcode %d (%q), want a text open packet", op, payload)
	}
	o := parseOpen(tb, string(payload))
	w.id = o.SID
	return &sioClient{sioTransport: w}, o
}

// sioFrame is a masked client frame with any payload length.
func sioFrame(op byte, payload []byte) []byte {
	b := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	mask := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i&3])
	}
	return b
}

func (w *sioWS) name() string { return "websocket" }
func (w *sioWS) sid() string  { return w.id }

func (w *sioWS) writeFrame(tb testing.TB, op byte, payload []byte) {
	tb.Helper()
	_ = w.conn.SetWriteDeadline(time.Now().Add(waitTimeout))
	if _, err := w.conn.Write(sioFrame(op, payload)); err != nil {
		tb.Fatalf("write frame: %v", err)
	}
}

func (w *sioWS) write(tb testing.TB, pkt string)    { tb.Helper(); w.writeFrame(tb, 1, []byte(pkt)) }
func (w *sioWS) writeAny(tb testing.TB, pkt string) { tb.Helper(); w.writeFrame(tb, 1, []byte(pkt)) }
func (w *sioWS) writeBinary(tb testing.TB, b []byte) {
	tb.Helper()
	w.writeFrame(tb, 2, b)
}

// readServerFrame reads one unmasked, unfragmented server frame.
func readServerFrame(br *bufio.Reader) (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return 0, nil, err
	}
	if h[0]&0x80 == 0 {
		return 0, nil, errors.New("fragmented server frame")
	}
	if h[1]&0x80 != 0 {
		return 0, nil, errors.New("masked server frame")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(br, ext[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(br, ext[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(ext[:])
	}
	if n > 1<<20 {
		return 0, nil, fmt.Errorf("server frame of %d bytes", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(br, p); err != nil {
		return 0, nil, err
	}
	return h[0] & 0x0f, p, nil
}

// frame reads one frame before until.
func (w *sioWS) frame(tb testing.TB, until time.Time) (byte, []byte) {
	tb.Helper()
	_ = w.conn.SetReadDeadline(until)
	op, p, err := readServerFrame(w.br)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			tb.Fatalf("websocket: nothing from the server in time")
		}
		tb.Fatalf("websocket: read frame: %v", err)
	}
	return op, p
}

func (w *sioWS) recv(tb testing.TB, until time.Time) (string, bool, int) {
	tb.Helper()
	if w.done {
		tb.Fatal("websocket: read after the close frame")
	}
	for {
		op, p := w.frame(tb, until)
		switch op {
		case 1:
			return string(p), false, 0
		case 8:
			code := 1005
			if len(p) >= 2 {
				code = int(binary.BigEndian.Uint16(p))
			}
			w.done = true
			_ = w.conn.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = w.conn.Write(sioFrame(8, p[:min(len(p), 2)]))
			_ = w.conn.Close()
			return "", true, code
		case 9:
			w.writeFrame(tb, 10, p)
		case 10:
		default:
			tb.Fatalf("websocket: unexpected frame opcode %d (%q)", op, p)
		}
	}
}

// sioTransports are the ways to open a session, for tests that hold on
// both transports.
var sioTransports = []struct {
	name      string
	transport string // as in Gateway.Transports
	open      func(testing.TB, *env) (*sioClient, sioOpen)
}{
	{"polling", gateway.TransportSocketIOPolling, openPolling},
	{"websocket", gateway.TransportSocketIOWebSocket, openWS},
}

// waitTransports waits until Gateway.Transports() reports want (missing
// keys mean 0).
func (e *env) waitTransports(tb testing.TB, want map[string]int64) {
	tb.Helper()
	var got map[string]int64
	waitFor(tb, fmt.Sprintf("Transports() = %v", want), func() bool {
		got = e.gw.Transports()
		for _, k := range []string{gateway.TransportWebSocket, gateway.TransportSocketIOWebSocket, gateway.TransportSocketIOPolling} {
			if got[k] != want[k] {
				return false
			}
		}
		return true
	})
}

// sioCount is the data of presence:count.
type sioCount struct {
	OnlineUsers       *int64 `json:"onlineUsers"`
	OnlineConnections *int64 `json:"onlineConnections"`
}

// parseCountEvent returns the counts of a 42["presence:count",{...}]
// packet, or false for any other packet.
func parseCountEvent(tb testing.TB, pkt string) (users, conns int64, ok bool) {
	tb.Helper()
	const prefix = `42["presence:count",`
	if !strings.HasPrefix(pkt, prefix) {
		return 0, 0, false
	}
	var args []json.RawMessage
	if err := json.Unmarshal([]byte(pkt[2:]), &args); err != nil || len(args) != 2 {
		tb.Fatalf("presence:count event %q is not [name, counts] (%v)", pkt, err)
	}
	return parseCounts(tb, pkt, args[1])
}

func parseCounts(tb testing.TB, pkt string, b []byte) (int64, int64, bool) {
	tb.Helper()
	var c sioCount
	if err := json.Unmarshal(b, &c); err != nil || c.OnlineUsers == nil || c.OnlineConnections == nil {
		tb.Fatalf("%q: counts %s are not {\"onlineUsers\":N,\"onlineConnections\":M} (%v)", pkt, b, err)
	}
	return *c.OnlineUsers, *c.OnlineConnections, true
}
