// Package sioproto is the wire format of Socket.IO as presenced speaks it:
// Engine.IO v4 packets and payloads (the transport layer: open, close,
// ping, pong, message, upgrade, noop; HTTP long-polling payloads joined by
// 0x1e, binary as "b" + base64) and Socket.IO v5 packets (CONNECT,
// DISCONNECT, EVENT, ACK, CONNECT_ERROR and the binary variants). It does
// no I/O. The specifications are socketio/engine.io-protocol (v4) and
// socketio/socket.io-protocol (v5).
package sioproto

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
)

// Engine.IO packet types.
const (
	EOpen    byte = '0'
	EClose   byte = '1'
	EPing    byte = '2'
	EPong    byte = '3'
	EMessage byte = '4'
	EUpgrade byte = '5'
	ENoop    byte = '6'
)

// Separator joins packets in a long-polling payload.
const Separator = 0x1e

// EPacket is one Engine.IO packet. Binary is set for a binary message
// (Type is EMessage then).
type EPacket struct {
	Type   byte
	Data   []byte
	Binary bool
}

// ErrMalformed is returned for input that is not a valid packet.
var ErrMalformed = errors.New("sioproto: malformed packet")

// ParseEPacket parses one Engine.IO packet received as a WebSocket text
// message (binary WebSocket messages are binary EMessage packets as they
// are). Data aliases b.
func ParseEPacket(b []byte) (EPacket, error) {
	if len(b) == 0 || b[0] < EOpen || b[0] > ENoop {
		return EPacket{}, ErrMalformed
	}
	return EPacket{Type: b[0], Data: b[1:]}, nil
}

// ParsePayload splits a long-polling payload into packets. A packet
// starting with "b" is a binary message in base64. Data of text packets
// aliases b.
func ParsePayload(b []byte) ([]EPacket, error) {
	if len(b) == 0 {
		return nil, ErrMalformed
	}
	var out []EPacket
	for part := range bytes.SplitSeq(b, []byte{Separator}) {
		if len(part) > 0 && part[0] == 'b' {
			raw, err := base64.StdEncoding.DecodeString(string(part[1:]))
			if err != nil {
				return nil, ErrMalformed
			}
			out = append(out, EPacket{Type: EMessage, Data: raw, Binary: true})
			continue
		}
		p, err := ParseEPacket(part)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// AppendPayload appends packets as one long-polling payload.
func AppendPayload(dst []byte, packets [][]byte) []byte {
	for i, p := range packets {
		if i > 0 {
			dst = append(dst, Separator)
		}
		dst = append(dst, p...)
	}
	return dst
}

// Open is the data of the open packet.
type Open struct {
	SID          string   `json:"sid"`
	Upgrades     []string `json:"upgrades"`
	PingInterval int64    `json:"pingInterval"` // milliseconds
	PingTimeout  int64    `json:"pingTimeout"`  // milliseconds
	MaxPayload   int64    `json:"maxPayload"`
}

// AppendOpen appends the open packet.
func AppendOpen(dst []byte, o Open) []byte {
	if o.Upgrades == nil {
		o.Upgrades = []string{}
	}
	b, _ := json.Marshal(o)
	dst = append(dst, EOpen)
	return append(dst, b...)
}

// Socket.IO packet types.
const (
	SConnect      byte = '0'
	SDisconnect   byte = '1'
	SEvent        byte = '2'
	SAck          byte = '3'
	SConnectError byte = '4'
	SBinaryEvent  byte = '5'
	SBinaryAck    byte = '6'
)

// SPacket is one Socket.IO packet.
type SPacket struct {
	Type        byte
	Attachments int    // binary attachments that follow (binary types only)
	Namespace   string // "/" when absent
	AckID       int64  // -1 when absent
	Data        []byte // the JSON payload, nil when absent; aliases the input
}

// maxAckID bounds ack ids; the reference implementation uses a counter.
const maxAckID = 1<<53 - 1

// ParseSPacket parses a Socket.IO packet carried in an Engine.IO message.
// It checks the structure and, when there is a payload, that it is JSON.
func ParseSPacket(b []byte) (SPacket, error) {
	p := SPacket{Namespace: "/", AckID: -1}
	if len(b) == 0 || b[0] < SConnect || b[0] > SBinaryAck {
		return p, ErrMalformed
	}
	p.Type, b = b[0], b[1:]
	if p.Type == SBinaryEvent || p.Type == SBinaryAck {
		i := bytes.IndexByte(b, '-')
		if i <= 0 || i > 6 {
			return p, ErrMalformed
		}
		n, err := strconv.Atoi(string(b[:i]))
		if err != nil || n < 0 {
			return p, ErrMalformed
		}
		p.Attachments, b = n, b[i+1:]
	}
	if len(b) > 0 && b[0] == '/' {
		i := bytes.IndexByte(b, ',')
		if i < 0 {
			p.Namespace, b = string(b), nil
		} else {
			p.Namespace, b = string(b[:i]), b[i+1:]
		}
	}
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		n++
	}
	if n > 0 {
		id, err := strconv.ParseInt(string(b[:n]), 10, 64)
		if err != nil || id > maxAckID || n > 16 {
			return p, ErrMalformed
		}
		p.AckID, b = id, b[n:]
	}
	if len(b) > 0 {
		if !json.Valid(b) {
			return p, ErrMalformed
		}
		p.Data = b
	}
	switch p.Type {
	case SEvent, SBinaryEvent:
		// An event is a non-empty array whose first element is its name.
		if p.Data == nil || p.Data[0] != '[' {
			return p, ErrMalformed
		}
	case SAck, SBinaryAck:
		if p.AckID < 0 || p.Data == nil || p.Data[0] != '[' {
			return p, ErrMalformed
		}
	case SConnect:
		if p.Data != nil && p.Data[0] != '{' {
			return p, ErrMalformed
		}
	}
	return p, nil
}

// EventName returns the name of an EVENT packet's payload: the first
// element of the array, which must be a string.
func EventName(data []byte) (string, error) {
	var args []json.RawMessage
	if err := json.Unmarshal(data, &args); err != nil || len(args) == 0 {
		return "", ErrMalformed
	}
	var name string
	if args[0][0] != '"' || json.Unmarshal(args[0], &name) != nil {
		return "", ErrMalformed // null, a number or an object is no name
	}
	return name, nil
}

// AppendSPacket appends an Engine.IO message carrying a Socket.IO packet:
// "4" + type + [namespace ","] + [ack id] + data.
func AppendSPacket(dst []byte, typ byte, namespace string, ackID int64, data []byte) []byte {
	dst = append(dst, EMessage, typ)
	if namespace != "" && namespace != "/" {
		dst = append(dst, namespace...)
		dst = append(dst, ',')
	}
	if ackID >= 0 {
		dst = strconv.AppendInt(dst, ackID, 10)
	}
	return append(dst, data...)
}
