// Package wsproto is the WebSocket protocol (RFC 6455) as the server side
// of presenced speaks it: the opening handshake's checks, a strict decoder
// for client frames that turns every violation into the close code the
// RFC asks for, and the encoder for server frames. It does no I/O, so the
// event loop can feed it whatever bytes arrive, and it holds no buffer
// between frames: an idle connection costs one nil pointer.
package wsproto

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"strings"
	"unicode/utf8"
)

// Opcodes (RFC 6455 section 5.2).
const (
	OpContinuation byte = 0x0
	OpText         byte = 0x1
	OpBinary       byte = 0x2
	OpClose        byte = 0x8
	OpPing         byte = 0x9
	OpPong         byte = 0xA
)

// Close codes (RFC 6455 section 7.4.1).
const (
	CloseNormal          = 1000
	CloseGoingAway       = 1001
	CloseProtocolError   = 1002
	CloseUnsupported     = 1003
	CloseNoStatus        = 1005 // never sent: "the close frame had no code"
	CloseInvalidPayload  = 1007
	ClosePolicyViolation = 1008
	CloseTooBig          = 1009
	CloseInternalError   = 1011
)

// MaxControlPayload is the largest payload a control frame may carry.
const MaxControlPayload = 125

// Error is a protocol violation: the connection must be closed with Code.
type Error struct {
	Code   int
	Reason string
}

func (e *Error) Error() string { return "websocket: " + e.Reason }

func protocolError(reason string) *Error { return &Error{Code: CloseProtocolError, Reason: reason} }

// ValidCloseCode reports whether code may appear in a close frame on the
// wire: 1000-1003, 1007-1014 (registered, not reserved) and 3000-4999.
// 1004, 1005, 1006 and 1015 are reserved for local use.
func ValidCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// HandshakeError says why a request is not a valid opening handshake and
// which status answers it.
type HandshakeError struct {
	Status int
	Reason string
}

func (e *HandshakeError) Error() string { return "websocket handshake: " + e.Reason }

// CheckHandshake checks the opening handshake of RFC 6455 section 4.2.1 and
// returns the client's Sec-WebSocket-Key. The method is the caller's
// business (the route is GET only).
func CheckHandshake(r *http.Request) (key string, err *HandshakeError) {
	if !r.ProtoAtLeast(1, 1) {
		return "", &HandshakeError{http.StatusBadRequest, "WebSocket needs HTTP/1.1"}
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") {
		return "", &HandshakeError{http.StatusBadRequest, `"Connection: Upgrade" header missing`}
	}
	if !headerHasToken(r.Header, "Upgrade", "websocket") {
		return "", &HandshakeError{http.StatusBadRequest, `"Upgrade: websocket" header missing`}
	}
	if v := r.Header.Values("Sec-Websocket-Version"); len(v) != 1 || strings.TrimSpace(v[0]) != "13" {
		return "", &HandshakeError{http.StatusUpgradeRequired, "unsupported Sec-WebSocket-Version; this server speaks 13"}
	}
	keys := r.Header.Values("Sec-Websocket-Key")
	if len(keys) != 1 {
		return "", &HandshakeError{http.StatusBadRequest, "need exactly one Sec-WebSocket-Key"}
	}
	key = strings.TrimSpace(keys[0])
	if raw, derr := base64.StdEncoding.DecodeString(key); derr != nil || len(raw) != 16 {
		return "", &HandshakeError{http.StatusBadRequest, "Sec-WebSocket-Key must be 16 bytes in base64"}
	}
	return key, nil
}

// headerHasToken reports whether a comma-separated header holds token,
// case-insensitively.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// AcceptKey returns the Sec-WebSocket-Accept value for key.
func AcceptKey(key string) string {
	h := sha1.New()
	h.Write([]byte(key))
	h.Write([]byte("258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// AppendSwitch appends the 101 answer to a handshake with key, naming
// subprotocol when it is not "".
func AppendSwitch(dst []byte, key, subprotocol string) []byte {
	dst = append(dst, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	dst = append(dst, AcceptKey(key)...)
	if subprotocol != "" {
		dst = append(dst, "\r\nSec-WebSocket-Protocol: "...)
		dst = append(dst, subprotocol...)
	}
	return append(dst, "\r\n\r\n"...)
}

// AppendFrame appends one unmasked server frame.
func AppendFrame(dst []byte, fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	switch n := len(payload); {
	case n <= 125:
		dst = append(dst, b0, byte(n))
	case n <= 0xFFFF:
		dst = append(dst, b0, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, b0, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, payload...)
}

// AppendClose appends a close frame with code and reason (cut to fit in a
// control frame on a rune boundary).
func AppendClose(dst []byte, code int, reason string) []byte {
	const room = MaxControlPayload - 2
	if len(reason) > room {
		reason = reason[:room]
		for !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	p := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(p, uint16(code))
	p = append(p, reason...)
	return AppendFrame(dst, true, OpClose, p)
}

// ParseClose reads a close frame's payload: its code (CloseNoStatus when
// empty) and reason, or the violation it commits.
func ParseClose(payload []byte) (code int, reason string, err *Error) {
	switch len(payload) {
	case 0:
		return CloseNoStatus, "", nil
	case 1:
		return 0, "", protocolError("close frame with a 1-byte payload")
	}
	code = int(binary.BigEndian.Uint16(payload))
	if !ValidCloseCode(code) {
		return 0, "", protocolError("invalid close code")
	}
	if !utf8.Valid(payload[2:]) {
		return 0, "", &Error{Code: CloseInvalidPayload, Reason: "close reason is not valid UTF-8"}
	}
	return code, string(payload[2:]), nil
}

// frame is one parsed client frame; payload is unmasked, in place.
type frame struct {
	fin     bool
	op      byte
	payload []byte
}

// parseFrame parses the client frame at the start of b, unmasking its
// payload in place. n == 0 with a nil error means b does not hold the
// whole frame yet; the header has been checked as far as it goes, so a
// violation is reported as soon as its bytes arrive. maxPayload bounds a
// data frame's payload (CloseTooBig beyond).
func parseFrame(b []byte, maxPayload int) (f frame, n int, err *Error) {
	if len(b) < 2 {
		return f, 0, nil
	}
	b0, b1 := b[0], b[1]
	if b0&0x70 != 0 {
		return f, 0, protocolError("reserved bits set without a negotiated extension")
	}
	f.fin, f.op = b0&0x80 != 0, b0&0x0F
	control := f.op&0x8 != 0
	switch f.op {
	case OpContinuation, OpText, OpBinary, OpClose, OpPing, OpPong:
	default:
		return f, 0, protocolError("reserved opcode")
	}
	if b1&0x80 == 0 {
		return f, 0, protocolError("client frame not masked")
	}
	if control && !f.fin {
		return f, 0, protocolError("fragmented control frame")
	}
	length, hdr := uint64(b1&0x7F), 2
	switch length {
	case 126:
		if len(b) < 4 {
			return f, 0, nil
		}
		length, hdr = uint64(binary.BigEndian.Uint16(b[2:])), 4
		if length < 126 {
			return f, 0, protocolError("payload length not in its shortest form")
		}
	case 127:
		if len(b) < 10 {
			return f, 0, nil
		}
		length, hdr = binary.BigEndian.Uint64(b[2:]), 10
		if length>>63 != 0 {
			return f, 0, protocolError("payload length with the most significant bit set")
		}
		if length <= 0xFFFF {
			return f, 0, protocolError("payload length not in its shortest form")
		}
	}
	if control && length > MaxControlPayload {
		return f, 0, protocolError("control frame payload over 125 bytes")
	}
	if !control && length > uint64(maxPayload) {
		return f, 0, &Error{Code: CloseTooBig, Reason: "message too big"}
	}
	hdr += 4 // mask key
	total := hdr + int(length)
	if len(b) < total {
		return f, 0, nil
	}
	mask := b[hdr-4 : hdr]
	f.payload = b[hdr:total]
	for i := range f.payload {
		f.payload[i] ^= mask[i&3]
	}
	return f, total, nil
}

// Handler receives what a Decoder decodes: whole data messages (op is
// OpText or OpBinary, text already checked to be UTF-8) and control frames
// (OpPing, OpPong, OpClose with a checked payload). data is only valid
// during the call. Returning false stops decoding: the rest of the input
// is dropped.
type Handler func(op byte, data []byte) bool

// Decoder turns a client's byte stream into messages. The zero value is
// ready; MaxMessage must be set before use. It holds memory only while a
// frame or a fragmented message is incomplete, never more than about
// MaxMessage bytes.
type Decoder struct {
	p *partial // nil when no frame or message is pending
}

type partial struct {
	buf []byte // the bytes of an incomplete frame
	op  byte   // opcode of the fragmented message in progress, 0 if none
	msg []byte // the fragments so far
}

// Feed decodes data, calling h for each message and control frame. It
// returns the first violation; the connection must then be closed with
// its code, and the stream is out of frame sync. When h returns false,
// rest holds the bytes after that frame (frame-aligned, still encoded),
// and the Decoder holds nothing. Feed may modify data (payloads are
// unmasked in place); rest aliases it.
func (d *Decoder) Feed(data []byte, maxMessage int, h Handler) (rest []byte, err *Error) {
	if d.p != nil && len(d.p.buf) > 0 {
		d.p.buf = append(d.p.buf, data...)
		data, d.p.buf = d.p.buf, nil
	}
	for len(data) > 0 {
		f, n, err := parseFrame(data, maxMessage)
		if err != nil {
			d.p = nil
			return nil, err
		}
		if n == 0 {
			if d.p == nil {
				d.p = &partial{}
			}
			d.p.buf = append(make([]byte, 0, len(data)+64), data...)
			return nil, nil
		}
		data = data[n:]
		ok, err := d.frame(f, maxMessage, h)
		if err != nil {
			d.p = nil
			return nil, err
		}
		if !ok {
			d.p = nil
			return data, nil
		}
	}
	if d.p != nil && d.p.op == 0 {
		d.p = nil
	}
	return nil, nil
}

func (d *Decoder) frame(f frame, maxMessage int, h Handler) (bool, *Error) {
	inMessage := d.p != nil && d.p.op != 0
	switch f.op {
	case OpClose:
		if _, _, err := ParseClose(f.payload); err != nil {
			return false, err
		}
		return h(f.op, f.payload), nil
	case OpPing, OpPong:
		return h(f.op, f.payload), nil
	case OpText, OpBinary:
		if inMessage {
			return false, protocolError("new data frame inside a fragmented message")
		}
		if f.fin {
			return deliver(f.op, f.payload, h)
		}
		if d.p == nil {
			d.p = &partial{}
		}
		d.p.op = f.op
		d.p.msg = append(make([]byte, 0, len(f.payload)), f.payload...)
		return true, nil
	default: // OpContinuation
		if !inMessage {
			return false, protocolError("continuation frame without a message to continue")
		}
		if len(d.p.msg)+len(f.payload) > maxMessage {
			return false, &Error{Code: CloseTooBig, Reason: "message too big"}
		}
		d.p.msg = append(d.p.msg, f.payload...)
		if !f.fin {
			return true, nil
		}
		op, msg := d.p.op, d.p.msg
		d.p.op, d.p.msg = 0, nil
		return deliver(op, msg, h)
	}
}

func deliver(op byte, msg []byte, h Handler) (bool, *Error) {
	if op == OpText && !utf8.Valid(msg) {
		return false, &Error{Code: CloseInvalidPayload, Reason: "text message is not valid UTF-8"}
	}
	return h(op, msg), nil
}
