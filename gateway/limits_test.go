package gateway_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/presenced/presenced/gateway"
	"github.com/presenced/presenced/internal/clientip"
)

// TestChurnDropsNoHandshake: 20 workers connect, read the hello and close,
// over and over. Every valid handshake must succeed (the nbio HTTP engine
// this replaced dropped about one in 3 000 under this load).
func TestChurnDropsNoHandshake(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Options{})
	const workers, each = 20, 100
	var tokens []string
	for i := range workers {
		tokens = append(tokens, token(t, fmt.Sprintf("churn-%d", i)))
	}
	var failed atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := websocket.Dialer{HandshakeTimeout: waitTimeout, NetDialContext: e.dialContext}
			for i := range each {
				c, resp, err := d.Dial(e.url+"?token="+tokens[w], nil)
				if err != nil {
					failed.Add(1)
					t.Errorf("worker %d handshake %d: %v (%s)", w, i, err, describe(resp))
					return
				}
				_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
				if _, _, err := c.ReadMessage(); err != nil {
					failed.Add(1)
					t.Errorf("worker %d handshake %d: no hello: %v", w, i, err)
				}
				if i%2 == 0 {
					_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(time.Second))
				}
				_ = c.Close()
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d handshakes failed", n, workers*each)
	}
	e.waitEmpty(t)
}

// TestPingRateLimit: past the burst, pings (control or {"type":"ping"})
// close the connection with 1008.
func TestPingRateLimit(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"control", "message"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, gateway.Options{PingRate: 5, PingBurst: 10})
			c, _ := e.connect(t, "pinger")
			for range 30 {
				var err error
				if kind == "control" {
					err = c.WriteControl(websocket.PingMessage, []byte("x"), time.Now().Add(time.Second))
				} else {
					err = c.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`))
				}
				if err != nil {
					break
				}
			}
			expectClose(t, c, gateway.ClosePolicyViolation)
			e.waitEmpty(t)
			if n := e.gw.Stats().PolicyCloses.Load(); n != 1 {
				t.Errorf("Stats().PolicyCloses = %d, want 1", n)
			}
		})
	}
}

// TestPingsWithinRateStayOpen: a client pinging at the allowed rate is
// never closed.
func TestPingsWithinRateStayOpen(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Options{PingRate: 50, PingBurst: 5})
	c, _ := e.connect(t, "polite")
	for range 40 {
		if err := c.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
		if _, _, err := c.ReadMessage(); err != nil {
			t.Fatalf("read pong: %v", err)
		}
		time.Sleep(25 * time.Millisecond) // 40/s, under 50/s
	}
}

// TestSlowConsumerClosed: a client that sends pings and never reads gets
// closed once the bytes queued for it pass the cap, and the server does
// not hold more than that for it.
func TestSlowConsumerClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Options{PingRate: 1_000_000, PingBurst: 1_000_000, MaxQueuedBytes: 8 << 10})
	conn, _ := rawHandshake(t, e, token(t, "slow"))
	defer conn.Close()
	// Each 131-byte ping earns a 127-byte pong. Once the kernel buffers on
	// both sides are full (a few MiB on loopback), pongs queue in the
	// server, and 8 KiB later the client is closed.
	batch := make([]byte, 0, 1000*131)
	for range 1000 {
		batch = append(batch, maskedFrame(0x89, make([]byte, 125))...)
	}
	sent := 0
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) && e.gw.Count() > 0 {
		_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
		n, err := conn.Write(batch)
		sent += n
		if err != nil {
			break
		}
	}
	e.waitEmpty(t)
	// The close can be seen before the writer counts it.
	waitFor(t, "Stats().SlowConsumers = 1", func() bool { return e.gw.Stats().SlowConsumers.Load() == 1 })
	t.Logf("closed after the client sent %d KiB of pings without reading", sent>>10)
}

// rawHandshake performs a WebSocket handshake by hand and returns the
// connection positioned after the 101 answer.
func rawHandshake(tb testing.TB, e *env, tok string) (net.Conn, *bufio.Reader) {
	tb.Helper()
	conn, err := net.DialTimeout("tcp", e.addr, waitTimeout)
	if err != nil {
		tb.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /ws?token=%s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", tok)
	br := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(waitTimeout))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		tb.Fatalf("handshake: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		tb.Fatalf("handshake: HTTP %d", resp.StatusCode)
	}
	_ = conn.SetReadDeadline(time.Time{})
	return conn, br
}

func maskedFrame(b0 byte, payload []byte) []byte {
	out := []byte{b0, 0x80 | byte(len(payload)), 1, 2, 3, 4}
	for i, c := range payload {
		out = append(out, c^[]byte{1, 2, 3, 4}[i&3])
	}
	return out
}

// TestFramesWithHandshake: frames sent in the same packet as the
// handshake (before the 101 arrives) are decoded, in order.
func TestFramesWithHandshake(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Options{})
	conn, err := net.DialTimeout("tcp", e.addr, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := fmt.Sprintf("GET /ws?token=%s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", token(t, "eager"))
	msg := append(maskedFrame(0x81, []byte(`{"type":"ping"}`)), maskedFrame(0x89, []byte("p1"))...)
	if _, err := conn.Write(append([]byte(req), msg...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(waitTimeout))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	var got []string
	for len(got) < 3 {
		op, payload := readFrame(t, br)
		got = append(got, fmt.Sprintf("%x:%s", op, payload))
	}
	// The pong for the text ping and the control pong come before or after
	// the hello (which waits for the count); their order must hold.
	var order []string
	for _, g := range got {
		switch {
		case g == "a:p1":
			order = append(order, "control pong")
		case len(g) > 2 && g[:2] == "1:" && contains(g, `"pong"`):
			order = append(order, "message pong")
		}
	}
	if len(order) != 2 || order[0] != "message pong" {
		t.Fatalf("frames %q: pongs out of order or missing", got)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// readFrame reads one unmasked server frame (payload under 64 KiB).
func readFrame(tb testing.TB, br *bufio.Reader) (byte, []byte) {
	tb.Helper()
	h := make([]byte, 2)
	if _, err := io.ReadFull(br, h); err != nil {
		tb.Fatalf("read frame: %v", err)
	}
	n := int(h[1] & 0x7F)
	if n == 126 {
		ext := make([]byte, 2)
		if _, err := io.ReadFull(br, ext); err != nil {
			tb.Fatal(err)
		}
		n = int(ext[0])<<8 | int(ext[1])
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(br, p); err != nil {
		tb.Fatal(err)
	}
	return h[0] & 0x0F, p
}

// TestConnectRatePerIP: past the burst (twice the rate), new connections
// from one address get 429 with Retry-After; behind a trusted proxy the
// limit applies per forwarded client address, not to the proxy.
func TestConnectRatePerIP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Options{
		ConnectRatePerIP: 2,
		ClientIP:         clientip.New([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}),
	})
	tok := token(t, "rater")
	from := func(ip string) http.Header { return http.Header{"X-Forwarded-For": {ip}} }
	accepted := 0
	var refused *http.Response
	for range 6 {
		c, resp, err := e.dial(t, dialOpts{query: "token=" + tok, header: from("198.51.100.1")})
		if err != nil {
			refused = resp
			expectStatus(t, c, resp, err, http.StatusTooManyRequests)
			break
		}
		readHello(t, c)
		accepted++
	}
	if refused == nil {
		t.Fatalf("6 connections in a burst from one address all accepted, want 429 after 4")
	}
	if accepted < 4 {
		t.Fatalf("only %d connections accepted before 429, want the burst of 4", accepted)
	}
	if refused.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	// Another client behind the same proxy is not affected.
	c, resp, err := e.dial(t, dialOpts{query: "token=" + tok, header: from("198.51.100.2")})
	if err != nil {
		t.Fatalf("another forwarded address: %v (%s)", err, describe(resp))
	}
	readHello(t, c)
	if n := e.gw.Stats().RefusedLimit.Load(); n != 1 {
		t.Errorf("Stats().RefusedLimit = %d, want 1", n)
	}
}

// TestForwardedForIgnoredFromUntrustedPeer: without TRUSTED_PROXIES, a
// client cannot dodge a per-address cap by writing X-Forwarded-For.
func TestForwardedForIgnoredFromUntrustedPeer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Options{MaxConnsPerIP: 1})
	e.connect(t, "first")
	c, resp, err := e.dial(t, dialOpts{query: "token=" + token(t, "second"), header: http.Header{"X-Forwarded-For": {"203.0.113.9"}}})
	expectStatus(t, c, resp, err, http.StatusTooManyRequests)
}
