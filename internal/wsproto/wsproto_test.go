package wsproto

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// mask builds a masked client frame with the given first byte and
// payload, using the shortest length form unless lenForm forces 126/127.
func clientFrame(b0 byte, payload []byte, lenForm int) []byte {
	var out []byte
	out = append(out, b0)
	n := len(payload)
	switch {
	case lenForm == 127 || (lenForm == 0 && n > 0xFFFF):
		out = append(out, 0x80|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	case lenForm == 126 || (lenForm == 0 && n > 125):
		out = append(out, 0x80|126, byte(n>>8), byte(n))
	default:
		out = append(out, 0x80|byte(n))
	}
	key := []byte{0x12, 0x34, 0x56, 0x78}
	out = append(out, key...)
	for i, c := range payload {
		out = append(out, c^key[i&3])
	}
	return out
}

func closePayload(code int, reason string) []byte {
	p := binary.BigEndian.AppendUint16(nil, uint16(code))
	return append(p, reason...)
}

type event struct {
	op   byte
	data string
}

// decode feeds input in chunks of size chunk (all at once when 0) and
// returns the events and the close code of the violation (0 if none).
func decode(input []byte, chunk, max int) ([]event, int) {
	var d Decoder
	var evs []event
	h := func(op byte, data []byte) bool {
		evs = append(evs, event{op, string(data)})
		return op != OpClose
	}
	in := append([]byte(nil), input...)
	for len(in) > 0 {
		n := len(in)
		if chunk > 0 && chunk < n {
			n = chunk
		}
		if _, err := d.Feed(in[:n], max, h); err != nil {
			return evs, err.Code
		}
		if len(evs) > 0 && evs[len(evs)-1].op == OpClose {
			return evs, 0
		}
		in = in[n:]
	}
	return evs, 0
}

func TestDecoder(t *testing.T) {
	text := func(s string) []byte { return clientFrame(0x81, []byte(s), 0) }
	cases := []struct {
		name  string
		input []byte
		want  []event
		code  int
	}{
		{"text", text("hello"), []event{{OpText, "hello"}}, 0},
		{"binary", clientFrame(0x82, []byte{0, 1, 2}, 0), []event{{OpBinary, "\x00\x01\x02"}}, 0},
		{"two messages", append(text("a"), text("b")...), []event{{OpText, "a"}, {OpText, "b"}}, 0},
		{"fragmented", append(append(clientFrame(0x01, []byte("he"), 0), clientFrame(0x00, []byte("l"), 0)...), clientFrame(0x80, []byte("lo"), 0)...), []event{{OpText, "hello"}}, 0},
		{"ping inside fragments", append(append(clientFrame(0x01, []byte("he"), 0), clientFrame(0x89, []byte("p"), 0)...), clientFrame(0x80, []byte("y"), 0)...), []event{{OpPing, "p"}, {OpText, "hey"}}, 0},
		{"rune split across fragments", append(clientFrame(0x01, []byte{0xC3}, 0), clientFrame(0x80, []byte{0xA9}, 0)...), []event{{OpText, "é"}}, 0},
		{"126 length form", text(strings.Repeat("x", 200)), []event{{OpText, strings.Repeat("x", 200)}}, 0},
		{"ping", clientFrame(0x89, []byte("abc"), 0), []event{{OpPing, "abc"}}, 0},
		{"pong", clientFrame(0x8A, nil, 0), []event{{OpPong, ""}}, 0},
		{"close 1000", clientFrame(0x88, closePayload(1000, "bye"), 0), []event{{OpClose, "\x03\xe8bye"}}, 0},
		{"close empty", clientFrame(0x88, nil, 0), []event{{OpClose, ""}}, 0},
		{"close 4000", clientFrame(0x88, closePayload(4000, ""), 0), []event{{OpClose, "\x0f\xa0"}}, 0},

		{"unmasked", []byte{0x81, 0x02, 'h', 'i'}, nil, CloseProtocolError},
		{"rsv1", clientFrame(0xC1, []byte("x"), 0), nil, CloseProtocolError},
		{"rsv2", clientFrame(0xA1, []byte("x"), 0), nil, CloseProtocolError},
		{"rsv3", clientFrame(0x91, []byte("x"), 0), nil, CloseProtocolError},
		{"opcode 3", clientFrame(0x83, nil, 0), nil, CloseProtocolError},
		{"opcode 0xB", clientFrame(0x8B, nil, 0), nil, CloseProtocolError},
		{"fragmented ping", clientFrame(0x09, nil, 0), nil, CloseProtocolError},
		{"ping 126 bytes", clientFrame(0x89, make([]byte, 126), 0), nil, CloseProtocolError},
		{"stray continuation", clientFrame(0x80, []byte("x"), 0), nil, CloseProtocolError},
		{"new message inside fragments", append(clientFrame(0x01, []byte("a"), 0), text("b")...), nil, CloseProtocolError},
		{"64-bit length top bit", []byte{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0}, nil, CloseProtocolError},
		{"non-minimal 16-bit length", clientFrame(0x81, []byte("x"), 126), nil, CloseProtocolError},
		{"non-minimal 64-bit length", clientFrame(0x81, []byte("x"), 127), nil, CloseProtocolError},
		{"invalid utf-8", text("\xff\xfe"), nil, CloseInvalidPayload},
		{"invalid utf-8 fragmented", append(clientFrame(0x01, []byte("a"), 0), clientFrame(0x80, []byte{0xC3}, 0)...), nil, CloseInvalidPayload},
		{"close 1-byte", clientFrame(0x88, []byte{3}, 0), nil, CloseProtocolError},
		{"close 999", clientFrame(0x88, closePayload(999, ""), 0), nil, CloseProtocolError},
		{"close 1005", clientFrame(0x88, closePayload(1005, ""), 0), nil, CloseProtocolError},
		{"close 1006", clientFrame(0x88, closePayload(1006, ""), 0), nil, CloseProtocolError},
		{"close 1015", clientFrame(0x88, closePayload(1015, ""), 0), nil, CloseProtocolError},
		{"close 2000", clientFrame(0x88, closePayload(2000, ""), 0), nil, CloseProtocolError},
		{"close 5000", clientFrame(0x88, closePayload(5000, ""), 0), nil, CloseProtocolError},
		{"close reason not utf-8", clientFrame(0x88, closePayload(1000, "\xff"), 0), nil, CloseInvalidPayload},
		{"too big frame", text(strings.Repeat("x", 301)), nil, CloseTooBig},
		{"too big fragmented", append(clientFrame(0x01, make([]byte, 160), 0), clientFrame(0x80, make([]byte, 160), 0)...), nil, CloseTooBig},
	}
	for _, tc := range cases {
		for _, chunk := range []int{0, 1, 3} {
			t.Run(fmt.Sprintf("%s/chunk%d", tc.name, chunk), func(t *testing.T) {
				got, code := decode(tc.input, chunk, 300)
				if code != tc.code {
					t.Fatalf("close code %d, want %d (events %q)", code, tc.code, got)
				}
				if tc.code == 0 && fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Fatalf("events %q, want %q", got, tc.want)
				}
			})
		}
	}
}

// TestDecoderIdleHoldsNothing: after whole frames the decoder keeps no
// buffer, which is what makes an idle connection cheap.
func TestDecoderIdleHoldsNothing(t *testing.T) {
	var d Decoder
	in := clientFrame(0x81, []byte("hello"), 0)
	if _, err := d.Feed(in[:3], 100, func(byte, []byte) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if d.p == nil {
		t.Fatal("partial frame not kept")
	}
	if _, err := d.Feed(in[3:], 100, func(byte, []byte) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if d.p != nil {
		t.Fatalf("decoder holds %+v after a whole frame", d.p)
	}
}

// TestFeedRestWhenStopped: when the handler stops, the bytes after that
// frame come back untouched and frame-aligned.
func TestFeedRestWhenStopped(t *testing.T) {
	in := append(clientFrame(0x81, []byte("stop"), 0), clientFrame(0x88, closePayload(1000, ""), 0)...)
	var d Decoder
	rest, err := d.Feed(in, 100, func(op byte, data []byte) bool { return string(data) != "stop" })
	if err != nil {
		t.Fatal(err)
	}
	got, code := decode(rest, 0, 100)
	if code != 0 || len(got) != 1 || got[0].op != OpClose {
		t.Fatalf("rest decodes as %q (code %d), want the close frame", got, code)
	}
}

func TestAppendFrame(t *testing.T) {
	for _, n := range []int{0, 125, 126, 65535, 65536} {
		f := AppendFrame(nil, true, OpBinary, make([]byte, n))
		// Re-mask it as a client would and decode it.
		var hdr int
		switch {
		case n <= 125:
			hdr = 2
		case n <= 0xFFFF:
			hdr = 4
		default:
			hdr = 10
		}
		if len(f) != hdr+n {
			t.Fatalf("frame of %d: %d bytes, want %d", n, len(f), hdr+n)
		}
		client := append([]byte(nil), f[:hdr]...)
		client[1] |= 0x80
		client = append(client, 0, 0, 0, 0)
		client = append(client, f[hdr:]...)
		got, code := decode(client, 0, 1<<20)
		if code != 0 || len(got) != 1 || len(got[0].data) != n {
			t.Fatalf("frame of %d decoded as %d events, code %d", n, len(got), code)
		}
	}
}

func TestAppendCloseCutsReason(t *testing.T) {
	f := AppendClose(nil, 1008, strings.Repeat("é", 100))
	if len(f) > 2+MaxControlPayload {
		t.Fatalf("close frame of %d bytes", len(f))
	}
	if _, _, err := ParseClose(f[2:]); err != nil {
		t.Fatalf("own close frame invalid: %v", err)
	}
}

func TestCheckHandshake(t *testing.T) {
	good := func() *http.Request {
		r, _ := http.NewRequest("GET", "/ws", nil)
		r.Header.Set("Connection", "keep-alive, Upgrade")
		r.Header.Set("Upgrade", "websocket")
		r.Header.Set("Sec-WebSocket-Version", "13")
		r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		return r
	}
	if key, err := CheckHandshake(good()); err != nil || key != "dGhlIHNhbXBsZSBub25jZQ==" {
		t.Fatalf("good handshake: %q %v", key, err)
	}
	if got := AcceptKey("dGhlIHNhbXBsZSBub25jZQ=="); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("AcceptKey = %q (RFC 6455 section 1.3 example)", got)
	}
	cases := []struct {
		name   string
		edit   func(r *http.Request)
		status int
	}{
		{"HTTP/1.0", func(r *http.Request) { r.ProtoMajor, r.ProtoMinor = 1, 0 }, 400},
		{"no Connection upgrade", func(r *http.Request) { r.Header.Set("Connection", "keep-alive") }, 400},
		{"no Upgrade", func(r *http.Request) { r.Header.Del("Upgrade") }, 400},
		{"version 8", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Version", "8") }, 426},
		{"no key", func(r *http.Request) { r.Header.Del("Sec-WebSocket-Key") }, 400},
		{"short key", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "c2hvcnQ=") }, 400},
		{"two keys", func(r *http.Request) { r.Header.Add("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==") }, 400},
	}
	for _, tc := range cases {
		r := good()
		tc.edit(r)
		if _, err := CheckHandshake(r); err == nil || err.Status != tc.status {
			t.Errorf("%s: %v, want status %d", tc.name, err, tc.status)
		}
	}
}

// FuzzDecoder feeds arbitrary bytes, whole and split at an arbitrary
// point: the decoder must never panic, and where the split falls must not
// change what it decodes or the violation it reports.
func FuzzDecoder(f *testing.F) {
	f.Add(clientFrame(0x81, []byte(`{"type":"ping"}`), 0), uint16(3))
	f.Add(append(clientFrame(0x01, []byte("a"), 0), clientFrame(0x80, []byte("b"), 0)...), uint16(7))
	f.Add(clientFrame(0x88, closePayload(1000, "x"), 0), uint16(1))
	f.Add([]byte{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0}, uint16(5))
	f.Add(clientFrame(0x89, make([]byte, 126), 0), uint16(2))
	f.Fuzz(func(t *testing.T, input []byte, split uint16) {
		whole, wholeCode := decode(input, 0, 512)
		var d Decoder
		var parts []event
		code := 0
		h := func(op byte, data []byte) bool {
			parts = append(parts, event{op, string(data)})
			return op != OpClose
		}
		in := append([]byte(nil), input...)
		at := int(split) % (len(in) + 1)
		stopped := false
		for _, chunk := range [][]byte{in[:at], in[at:]} {
			if stopped {
				break
			}
			if _, err := d.Feed(chunk, 512, h); err != nil {
				code = err.Code
				break
			}
			stopped = len(parts) > 0 && parts[len(parts)-1].op == OpClose
		}
		if code != wholeCode {
			t.Fatalf("split at %d: code %d, whole: %d", at, code, wholeCode)
		}
		if !bytes.Equal([]byte(fmt.Sprint(parts)), []byte(fmt.Sprint(whole))) {
			t.Fatalf("split at %d: %q, whole: %q", at, parts, whole)
		}
		for _, e := range parts {
			if e.op&0x8 == 0 && len(e.data) > 512 {
				t.Fatalf("message of %d bytes over the limit", len(e.data))
			}
		}
	})
}
