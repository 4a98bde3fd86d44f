package gateway_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/presenced/presenced/gateway"
)

// TestRandomClients throws 200 connections that send random bytes or
// random frames at the gateway, then close (politely or not). The server
// must not panic and must end with no connection left in the gateway or
// the tracker, and still serve a well-behaved client.
func TestRandomClients(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Options{AllowAnonymous: true, MaxMessageBytes: 4096})
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)

	var tokens []string // minted once: minting is the slow part of a handshake
	for _, u := range []string{"r1", "r2", "r3", "r4"} {
		tokens = append(tokens, token(t, u))
	}

	const clients, workers = 200, 16
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				rng := rand.New(rand.NewPCG(seed, uint64(i)))
				if err := randomClient(e, rng, i, tokens); err != nil {
					t.Errorf("client %d: %v", i, err)
				}
			}
		}()
	}
	for i := range clients {
		jobs <- i
	}
	close(jobs)
	wg.Wait()

	e.waitEmpty(t)
	if p := panicLog.panics(); len(p) > 0 {
		t.Fatalf("nbio recovered %d panic(s); the first:\n%s", len(p), p[0])
	}
	c, _ := e.connect(t, "after-the-storm")
	if err := c.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, data, err := c.ReadMessage(); err != nil || !strings.Contains(string(data), `"pong"`) {
		t.Fatalf("after the random clients: %q, %v", data, err)
	}
}

// randomClient is one misbehaving client. Only failures to reach the
// server count as errors; whatever the server answers is fine.
func randomClient(e *env, rng *rand.Rand, i int, tokens []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conn, err := e.dialContext(ctx, "tcp", e.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(waitTimeout))

	switch i % 4 {
	case 0: // garbage instead of a handshake
		_, _ = conn.Write(randomBytes(rng, rng.IntN(2048)))
		return nil
	case 1: // a handshake, then raw garbage
		if !handshake(e, conn, rng, tokens) {
			return nil
		}
		_, _ = conn.Write(randomBytes(rng, rng.IntN(8192)))
	case 2: // a handshake, then frames of random kinds with random payloads
		if !handshake(e, conn, rng, tokens) {
			return nil
		}
		for range 1 + rng.IntN(6) {
			if _, err := conn.Write(randomFrame(rng)); err != nil {
				break
			}
		}
	case 3: // a handshake, a truncated frame (header or payload cut short)
		if !handshake(e, conn, rng, tokens) {
			return nil
		}
		f := randomFrame(rng)
		_, _ = conn.Write(f[:rng.IntN(len(f))])
	}
	if rng.IntN(2) == 0 {
		// Read a little of whatever the server answers.
		_ = conn.SetReadDeadline(time.Now().Add(time.Duration(rng.IntN(50)) * time.Millisecond))
		_, _ = conn.Read(make([]byte, 512))
	}
	if rng.IntN(3) == 0 {
		// Abort: RST instead of FIN.
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
	}
	return nil
}

// handshake sends a WebSocket handshake (with a valid token, a guest's, or
// an invalid one) and reports whether the server switched protocols.
func handshake(e *env, conn net.Conn, rng *rand.Rand, tokens []string) bool {
	var b strings.Builder
	b.WriteString("GET /ws")
	switch rng.IntN(4) {
	case 0, 1:
		b.WriteString("?token=" + tokens[rng.IntN(len(tokens))])
	case 2: // guest
	case 3:
		b.WriteString("?token=not.a.jwt")
	}
	b.WriteString(" HTTP/1.1\r\nHost: " + e.addr + "\r\n")
	b.WriteString("Upgrade: websocket\r\nConnection: Upgrade\r\n")
	b.WriteString("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return false
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return false
	}
	return resp.StatusCode == http.StatusSwitchingProtocols
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// randomFrame builds one client frame with random flags, opcode, mask
// and payload, sometimes valid and sometimes not.
func randomFrame(rng *rand.Rand) []byte {
	opcodes := []byte{0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA, 0xB, 0xF}
	op := opcodes[rng.IntN(len(opcodes))]
	var payload []byte
	switch rng.IntN(5) {
	case 0:
		payload = []byte(`{"type":"ping"}`)
	case 1:
		payload = randomBytes(rng, 6000) // over the 4096 limit
	case 2:
		payload = randomBytes(rng, 200) // over a control frame's 125
	default:
		payload = randomBytes(rng, rng.IntN(130))
	}
	b0 := op
	if rng.IntN(4) != 0 {
		b0 |= 0x80 // fin
	}
	if rng.IntN(8) == 0 {
		b0 |= byte(rng.IntN(8)) << 4 // reserved bits
	}
	masked := rng.IntN(10) != 0
	var f []byte
	f = append(f, b0)
	var b1 byte
	if masked {
		b1 = 0x80
	}
	n := len(payload)
	switch {
	case n < 126:
		f = append(f, b1|byte(n))
	case n < 1<<16:
		f = append(f, b1|126)
		f = binary.BigEndian.AppendUint16(f, uint16(n))
	default:
		f = append(f, b1|127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	if rng.IntN(10) == 0 {
		// Lie about the length: claim a huge payload.
		f[1] = b1 | 127
		f = append(f[:2], binary.BigEndian.AppendUint64(nil, rng.Uint64())...)
	}
	if masked {
		key := randomBytes(rng, 4)
		f = append(f, key...)
		for i := range payload {
			payload[i] ^= key[i%4]
		}
	}
	return append(f, payload...)
}
