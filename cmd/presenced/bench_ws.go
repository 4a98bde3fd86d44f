package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The bench's WebSocket client is written out here rather than taken from
// a library because it shares the machine's cores with the server it
// measures: with gorilla/websocket the client took more CPU than the
// server during the churn benchmark (a crypto/rand read for each dial's
// key and each frame's mask, an http.Request and header maps per dial).
// This one writes a prepared handshake, reads the answer through a
// 512-byte buffer, masks its frames with the all-zero key (any key is
// valid; servers cannot require an unpredictable one) and allocates only
// the payloads it reads. It speaks only what the benchmarks need: one
// unfragmented message at a time, pings, close.

// benchKey and benchAccept are the handshake key every bench connection
// sends and the Sec-WebSocket-Accept it expects (RFC 6455's example).
const (
	benchKey    = "dGhlIHNhbXBsZSBub25jZQ=="
	benchAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
)

// WebSocket opcodes.
const (
	opText  = 1
	opClose = 8
	opPing  = 9
	opPong  = 10
)

// benchConn is one held connection.
type benchConn struct {
	nc      net.Conn
	br      *bufio.Reader
	wmu     sync.Mutex
	closing atomic.Bool // we close it (churn or the end): its end is not a drop
	started time.Time   // when the dial began
}

// write sends one masked frame.
func (bc *benchConn) write(op byte, payload []byte, deadline time.Time) error {
	var hdr [14]byte
	hdr[0] = 0x80 | op
	n := 2
	switch l := len(payload); {
	case l < 126:
		hdr[1] = 0x80 | byte(l)
	case l < 1<<16:
		hdr[1] = 0x80 | 126
		binary.BigEndian.PutUint16(hdr[2:], uint16(l))
		n = 4
	default:
		hdr[1] = 0x80 | 127
		binary.BigEndian.PutUint64(hdr[2:], uint64(l))
		n = 10
	}
	n += 4 // the masking key: zero, so the payload goes as it is
	frame := append(hdr[:n:n], payload...)
	bc.wmu.Lock()
	defer bc.wmu.Unlock()
	_ = bc.nc.SetWriteDeadline(deadline)
	_, err := bc.nc.Write(frame)
	return err
}

// read returns the next frame's opcode and payload.
func (bc *benchConn) read() (byte, []byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(bc.br, hdr[:]); err != nil {
		return 0, nil, err
	}
	op := hdr[0] & 0x0f
	l := uint64(hdr[1] & 0x7f)
	if hdr[1]&0x80 != 0 {
		return 0, nil, errors.New("masked frame from the server")
	}
	switch l {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(bc.br, ext[:]); err != nil {
			return 0, nil, err
		}
		l = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(bc.br, ext[:]); err != nil {
			return 0, nil, err
		}
		l = binary.BigEndian.Uint64(ext[:])
	}
	if l > 1<<20 {
		return 0, nil, fmt.Errorf("frame of %d bytes", l)
	}
	payload := make([]byte, l)
	if _, err := io.ReadFull(bc.br, payload); err != nil {
		return 0, nil, err
	}
	return op, payload, nil
}

// close sends a close frame, then closes the socket, so that the server
// sees a normal close rather than a reset.
func (bc *benchConn) close(deadline time.Time) {
	bc.closing.Store(true)
	_ = bc.write(opClose, append(binary.BigEndian.AppendUint16(nil, 1000), "bench done"...), deadline)
	_ = bc.nc.Close()
}

// closeError is a close frame the server sent.
type closeError struct {
	code   int
	reason string
}

func (e *closeError) Error() string { return fmt.Sprintf("close %d %s", e.code, e.reason) }

func closeFrame(payload []byte) error {
	if len(payload) < 2 {
		return &closeError{code: 1005}
	}
	return &closeError{code: int(binary.BigEndian.Uint16(payload)), reason: string(payload[2:])}
}

// benchDial opens connection i and waits for its hello (/ws) or for its
// Socket.IO CONNECT answer. It records the outcome in st.
func benchDial(ctx context.Context, o benchOptions, target *url.URL, token string, ips []net.IP, i int, st *benchStats) (*benchConn, error) {
	bc, err := benchOpen(ctx, o, target, token, ips, i)
	if err != nil {
		st.fail(err, 1)
		return nil, err
	}
	st.ok(time.Since(bc.started))
	return bc, nil
}

func benchOpen(ctx context.Context, o benchOptions, target *url.URL, token string, ips []net.IP, i int) (*benchConn, error) {
	nd := &net.Dialer{Timeout: o.timeout}
	if len(ips) > 0 {
		nd.LocalAddr = &net.TCPAddr{IP: ips[i%len(ips)]}
		nd.Control = bindNoPort
	}
	t0 := time.Now()
	dctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	host := target.Host
	if target.Port() == "" {
		host = net.JoinHostPort(target.Hostname(), "80")
	}
	nc, err := nd.DialContext(dctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	bc := &benchConn{nc: nc, br: bufio.NewReaderSize(nc, 512), started: t0}
	_ = nc.SetDeadline(t0.Add(o.timeout))
	path := target.RequestURI()
	var auth string
	if o.transport == "socketio" {
		q := target.Query()
		q.Set("EIO", "4")
		q.Set("transport", "websocket")
		path = target.EscapedPath() + "?" + q.Encode()
	} else {
		auth = "Authorization: Bearer " + token + "\r\n"
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: " + target.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + benchKey +
		"\r\nSec-WebSocket-Version: 13\r\n" + auth + "\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		nc.Close()
		return nil, err
	}
	if err := readSwitch(bc.br); err != nil {
		nc.Close()
		return nil, err
	}
	if o.transport == "socketio" {
		err = sioConnect(bc, token, t0.Add(o.timeout))
	} else if _, _, err = bc.read(); err != nil {
		err = fmt.Errorf("no hello: %w", err)
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return bc, nil
}

// readSwitch reads the handshake's answer: a 101 with our accept key.
func readSwitch(br *bufio.Reader) error {
	status, err := br.ReadSlice('\n')
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	f := bytes.Fields(status)
	if len(f) < 2 || !bytes.HasPrefix(f[0], []byte("HTTP/1.")) {
		return fmt.Errorf("handshake: not an HTTP answer: %.40q", status)
	}
	code, _ := strconv.Atoi(string(f[1]))
	accepted := false
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("handshake: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && strings.EqualFold(string(k), "Sec-WebSocket-Accept") {
			accepted = string(bytes.TrimSpace(v)) == benchAccept
		}
	}
	if code != 101 {
		// The body (if any) is not read: the connection is closed.
		return fmt.Errorf("handshake: HTTP %d", code)
	}
	if !accepted {
		return errors.New("handshake: wrong or missing Sec-WebSocket-Accept")
	}
	return nil
}

// sioConnect reads the Engine.IO open packet, sends a Socket.IO CONNECT
// with the token and waits for the CONNECT answer (answering pings).
func sioConnect(bc *benchConn, token string, deadline time.Time) error {
	_, open, err := bc.read()
	if err != nil || len(open) == 0 || open[0] != '0' {
		return fmt.Errorf("no Engine.IO open packet: %v", err)
	}
	b, _ := json.Marshal(map[string]string{"token": token})
	if err := bc.write(opText, append([]byte("40"), b...), deadline); err != nil {
		return fmt.Errorf("send CONNECT: %w", err)
	}
	for {
		op, m, err := bc.read()
		switch {
		case err != nil:
			return fmt.Errorf("no CONNECT answer: %w", err)
		case op == opClose:
			return fmt.Errorf("no CONNECT answer: %w", closeFrame(m))
		case op == opPing:
			_ = bc.write(opPong, m, deadline)
		case string(m) == "2":
			_ = bc.write(opText, []byte("3"), deadline)
		case bytes.HasPrefix(m, []byte("40")):
			return nil
		case bytes.HasPrefix(m, []byte("44")):
			return fmt.Errorf("CONNECT_ERROR %s", m[2:])
		}
	}
}

// benchRead reads and discards messages until the connection closes,
// answering the server's pings (and with sio, Engine.IO pings "2" with
// "3").
func benchRead(bc *benchConn, st *benchStats, sio bool) {
	drop := func(err error) {
		// A close we did not start (the server's, or a reset) is a drop.
		if st.closing.Load() || bc.closing.Load() {
			return
		}
		st.dropped.Add(1)
		st.mu.Lock()
		st.drops[dropReason(err)]++
		st.mu.Unlock()
	}
	for {
		op, m, err := bc.read()
		if err != nil {
			drop(err)
			return
		}
		switch op {
		case opPing:
			st.pings.Add(1)
			if err := bc.write(opPong, m, time.Now().Add(5*time.Second)); err != nil {
				drop(err)
				return
			}
			continue
		case opPong:
			continue
		case opClose:
			drop(closeFrame(m))
			_ = bc.write(opClose, m[:min(len(m), 2)], time.Now().Add(time.Second))
			_ = bc.nc.Close()
			return
		}
		st.msgs.Add(1)
		if sio && string(m) == "2" {
			st.pings.Add(1)
			if err := bc.write(opText, []byte("3"), time.Now().Add(5*time.Second)); err != nil {
				drop(err)
				return
			}
		}
	}
}

// dropReason names why a connection the server closed ended: its close
// code and reason, or the network error.
func dropReason(err error) string {
	var ce *closeError
	if errors.As(err, &ce) {
		return ce.Error()
	}
	// Drop the addresses that make every network error unique.
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg
}
