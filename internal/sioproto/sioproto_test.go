package sioproto

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
)

func TestParseEPacket(t *testing.T) {
	tests := []struct {
		in       string
		wantType byte
		wantData string
		wantErr  bool
	}{
		{in: "0", wantType: EOpen},
		{in: "1", wantType: EClose},
		{in: "2", wantType: EPing},
		{in: "2probe", wantType: EPing, wantData: "probe"},
		{in: "3probe", wantType: EPong, wantData: "probe"},
		{in: `42["a"]`, wantType: EMessage, wantData: `2["a"]`},
		{in: "5", wantType: EUpgrade},
		{in: "6", wantType: ENoop},
		{in: "", wantErr: true},
		{in: "7", wantErr: true},
		{in: "9", wantErr: true},
		{in: "x", wantErr: true},
		{in: "/", wantErr: true}, // just below '0'
		{in: "b", wantErr: true}, // binary is a payload notation, not a packet
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.in), func(t *testing.T) {
			p, err := ParseEPacket([]byte(tt.in))
			if tt.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("ParseEPacket(%q) = %+v, %v; want ErrMalformed", tt.in, p, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseEPacket(%q): %v", tt.in, err)
			}
			if p.Type != tt.wantType || string(p.Data) != tt.wantData || p.Binary {
				t.Fatalf("ParseEPacket(%q) = {%c %q %v}, want {%c %q false}", tt.in, p.Type, p.Data, p.Binary, tt.wantType, tt.wantData)
			}
		})
	}
}

// ep is an EPacket in a comparable form.
type ep struct {
	typ    byte
	data   string
	binary bool
}

func TestParsePayload(t *testing.T) {
	b64 := func(b ...byte) string { return base64.StdEncoding.EncodeToString(b) }
	tests := []struct {
		name    string
		in      string
		want    []ep
		wantErr bool
	}{
		{name: "one text packet", in: `42["a"]`, want: []ep{{EMessage, `2["a"]`, false}}},
		{name: "several joined", in: "2\x1e42[\"a\"]\x1e6\x1e3", want: []ep{{EPing, "", false}, {EMessage, `2["a"]`, false}, {ENoop, "", false}, {EPong, "", false}}},
		{name: "binary", in: "b" + b64(1, 2, 3), want: []ep{{EMessage, "\x01\x02\x03", true}}},
		{name: "binary with 0x1e inside the data", in: "b" + b64(0x1e, 0xff), want: []ep{{EMessage, "\x1e\xff", true}}},
		{name: "text then binary", in: `451-["x",{"_placeholder":true,"num":0}]` + "\x1eb" + b64(9), want: []ep{{EMessage, `51-["x",{"_placeholder":true,"num":0}]`, false}, {EMessage, "\x09", true}}},
		{name: "empty binary", in: "b", want: []ep{{EMessage, "", true}}},
		{name: "bad base64", in: "b!!!!", wantErr: true},
		{name: "base64 without padding", in: "bAQI", wantErr: true},
		{name: "url-safe base64", in: "b-_8=", wantErr: true},
		{name: "bad base64 after a good packet", in: "6\x1eb@", wantErr: true},
		{name: "empty", in: "", wantErr: true},
		{name: "only a separator", in: "\x1e", wantErr: true},
		{name: "trailing separator", in: "6\x1e", wantErr: true},
		{name: "empty packet between", in: "6\x1e\x1e6", wantErr: true},
		{name: "bad type", in: "9", wantErr: true},
		{name: "bad type after a good packet", in: "6\x1ex", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePayload([]byte(tt.in))
			if tt.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("ParsePayload(%q) = %v, %v; want ErrMalformed", tt.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePayload(%q): %v", tt.in, err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("ParsePayload(%q) = %d packets, want %d", tt.in, len(got), len(tt.want))
			}
			for i, p := range got {
				if g := (ep{p.Type, string(p.Data), p.Binary}); g != tt.want[i] {
					t.Errorf("packet %d = %+v, want %+v", i, g, tt.want[i])
				}
			}
		})
	}
}

func TestAppendPayloadRoundTrip(t *testing.T) {
	packets := [][]byte{[]byte("2"), []byte(`42["a",1]`), []byte("6"), []byte("b" + base64.StdEncoding.EncodeToString([]byte{0, 1, 0x1e}))}
	b := AppendPayload([]byte("prefix:"), packets)
	if !bytes.HasPrefix(b, []byte("prefix:")) {
		t.Fatalf("AppendPayload dropped dst: %q", b)
	}
	b = b[len("prefix:"):]
	if want := "2\x1e42[\"a\",1]\x1e6\x1eb" + base64.StdEncoding.EncodeToString([]byte{0, 1, 0x1e}); string(b) != want {
		t.Fatalf("AppendPayload = %q, want %q", b, want)
	}
	got, err := ParsePayload(b)
	if err != nil || len(got) != 4 {
		t.Fatalf("ParsePayload(AppendPayload(...)) = %v, %v", got, err)
	}
	if !got[3].Binary || string(got[3].Data) != "\x00\x01\x1e" {
		t.Errorf("binary packet came back as %+v", got[3])
	}
	if s := AppendPayload(nil, nil); len(s) != 0 {
		t.Errorf("AppendPayload(nil, nil) = %q, want empty", s)
	}
}

func TestAppendOpen(t *testing.T) {
	tests := []struct {
		name string
		in   Open
		want []string // upgrades as decoded
	}{
		{name: "polling", in: Open{SID: "abc", Upgrades: []string{"websocket"}, PingInterval: 25000, PingTimeout: 20000, MaxPayload: 1e6}, want: []string{"websocket"}},
		{name: "websocket, no upgrades", in: Open{SID: "x-_y", Upgrades: []string{}, PingInterval: 1, PingTimeout: 2, MaxPayload: 3}, want: []string{}},
		{name: "nil upgrades is an empty array", in: Open{SID: "s"}, want: []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := AppendOpen([]byte("x"), tt.in)
			if len(b) < 2 || b[0] != 'x' || b[1] != EOpen {
				t.Fatalf("AppendOpen = %q, want dst then '0'", b)
			}
			var fields map[string]json.RawMessage
			if err := json.Unmarshal(b[2:], &fields); err != nil {
				t.Fatalf("open packet %q: %v", b, err)
			}
			for _, k := range []string{"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"} {
				if _, ok := fields[k]; !ok {
					t.Errorf("open packet %s has no %q", b, k)
				}
			}
			if len(fields) != 5 {
				t.Errorf("open packet %s has %d fields, want 5", b, len(fields))
			}
			if string(fields["upgrades"]) == "null" {
				t.Errorf("open packet %s: upgrades is null, want an array", b)
			}
			var got Open
			if err := json.Unmarshal(b[2:], &got); err != nil {
				t.Fatal(err)
			}
			want := tt.in
			want.Upgrades = tt.want
			if got.SID != want.SID || got.PingInterval != want.PingInterval || got.PingTimeout != want.PingTimeout ||
				got.MaxPayload != want.MaxPayload || strings.Join(got.Upgrades, ",") != strings.Join(want.Upgrades, ",") {
				t.Errorf("open packet decodes to %+v, want %+v", got, want)
			}
		})
	}
}

// sp is an SPacket in a comparable form.
type sp struct {
	typ         byte
	attachments int
	ns          string
	ack         int64
	data        string
	hasData     bool
}

func spOf(p SPacket) sp {
	return sp{p.Type, p.Attachments, p.Namespace, p.AckID, string(p.Data), p.Data != nil}
}

func TestParseSPacket(t *testing.T) {
	tests := []struct {
		in      string
		want    sp
		wantErr bool
	}{
		// CONNECT
		{in: "0", want: sp{SConnect, 0, "/", -1, "", false}},
		{in: `0{"token":"t"}`, want: sp{SConnect, 0, "/", -1, `{"token":"t"}`, true}},
		{in: "0/admin,", want: sp{SConnect, 0, "/admin", -1, "", false}},
		{in: "0/admin", want: sp{SConnect, 0, "/admin", -1, "", false}},
		{in: `0/admin,{"a":1}`, want: sp{SConnect, 0, "/admin", -1, `{"a":1}`, true}},
		{in: "0/,", want: sp{SConnect, 0, "/", -1, "", false}},
		{in: "0[1]", wantErr: true},
		{in: `0"x"`, wantErr: true},
		{in: "0{", wantErr: true},
		// DISCONNECT
		{in: "1", want: sp{SDisconnect, 0, "/", -1, "", false}},
		{in: "1/admin,", want: sp{SDisconnect, 0, "/admin", -1, "", false}},
		// EVENT
		{in: `2["a",1]`, want: sp{SEvent, 0, "/", -1, `["a",1]`, true}},
		{in: `212["a"]`, want: sp{SEvent, 0, "/", 12, `["a"]`, true}},
		{in: `2/admin,12["a"]`, want: sp{SEvent, 0, "/admin", 12, `["a"]`, true}},
		{in: `2/admin,["a"]`, want: sp{SEvent, 0, "/admin", -1, `["a"]`, true}},
		{in: `20["a"]`, want: sp{SEvent, 0, "/", 0, `["a"]`, true}},
		{in: `2[1]`, want: sp{SEvent, 0, "/", -1, `[1]`, true}}, // structure only: the name is EventName's job
		{in: `2[]`, want: sp{SEvent, 0, "/", -1, `[]`, true}},
		{in: "2", wantErr: true},
		{in: "21", wantErr: true},
		{in: `2{"not":"array"}`, wantErr: true},
		{in: `2"a"`, wantErr: true},
		{in: `2["a"`, wantErr: true},
		{in: `2 ["a"]`, wantErr: true}, // valid JSON, but not an array at once
		{in: "2/admin", wantErr: true}, // a namespace without comma swallows the rest
		// ACK
		{in: `31["x"]`, want: sp{SAck, 0, "/", 1, `["x"]`, true}},
		{in: `3/admin,5[]`, want: sp{SAck, 0, "/admin", 5, `[]`, true}},
		{in: `3["x"]`, wantErr: true},
		{in: "31", wantErr: true},
		{in: `31{"a":1}`, wantErr: true},
		// CONNECT_ERROR
		{in: `4{"message":"m"}`, want: sp{SConnectError, 0, "/", -1, `{"message":"m"}`, true}},
		{in: `4/x,{"message":"m"}`, want: sp{SConnectError, 0, "/x", -1, `{"message":"m"}`, true}},
		// BINARY_EVENT
		{in: `51-["a",{"_placeholder":true,"num":0}]`, want: sp{SBinaryEvent, 1, "/", -1, `["a",{"_placeholder":true,"num":0}]`, true}},
		{in: `52-/admin,3["a"]`, want: sp{SBinaryEvent, 2, "/admin", 3, `["a"]`, true}},
		{in: `50-["a"]`, want: sp{SBinaryEvent, 0, "/", -1, `["a"]`, true}},
		{in: `5123456-["a"]`, want: sp{SBinaryEvent, 123456, "/", -1, `["a"]`, true}},
		{in: `51234567-["a"]`, wantErr: true}, // seven digits of attachments
		{in: `5-["a"]`, wantErr: true},
		{in: `5x-["a"]`, wantErr: true},
		{in: `5["a"]`, wantErr: true},
		{in: `5["a-b"]`, wantErr: true},
		{in: `51-`, wantErr: true},
		{in: `51-{"a":1}`, wantErr: true},
		// BINARY_ACK
		{in: `61-7["a"]`, want: sp{SBinaryAck, 1, "/", 7, `["a"]`, true}},
		{in: `61-["a"]`, wantErr: true},
		// type
		{in: "", wantErr: true},
		{in: "7", wantErr: true},
		{in: "x", wantErr: true},
		{in: "zzz", wantErr: true},
		{in: "/", wantErr: true},
		// ack id size: up to 2^53-1, 16 digits
		{in: `29007199254740991["a"]`, want: sp{SEvent, 0, "/", 1<<53 - 1, `["a"]`, true}},
		{in: `20000000000000001["a"]`, want: sp{SEvent, 0, "/", 1, `["a"]`, true}},
		{in: `29007199254740992["a"]`, wantErr: true},
		{in: `200000000000000001["a"]`, wantErr: true}, // 17 digits
		{in: `299999999999999999999["a"]`, wantErr: true},
		// JSON validity
		{in: `2["a",]`, wantErr: true},
		{in: "2[\"\xff\"]", want: sp{SEvent, 0, "/", -1, "[\"\xff\"]", true}}, // json.Valid takes invalid UTF-8
		{in: `1"bye"`, want: sp{SDisconnect, 0, "/", -1, `"bye"`, true}},
		{in: `1nul`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.in), func(t *testing.T) {
			p, err := ParseSPacket([]byte(tt.in))
			if tt.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("ParseSPacket(%q) = %+v, %v; want ErrMalformed", tt.in, spOf(p), err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSPacket(%q): %v", tt.in, err)
			}
			if got := spOf(p); got != tt.want {
				t.Fatalf("ParseSPacket(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestEventName(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: `["presence:subscribe"]`, want: "presence:subscribe"},
		{in: `["hello","x",{"a":1}]`, want: "hello"},
		{in: `[""]`, want: ""},
		{in: `[1]`, wantErr: true},
		{in: `[null]`, wantErr: true},
		{in: `[]`, wantErr: true},
		{in: `{"a":1}`, wantErr: true},
		{in: `"a"`, wantErr: true},
		{in: ``, wantErr: true},
	}
	for _, tt := range tests {
		got, err := EventName([]byte(tt.in))
		if tt.wantErr {
			if err == nil {
				t.Errorf("EventName(%q) = %q, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("EventName(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestAppendSPacket(t *testing.T) {
	tests := []struct {
		typ  byte
		ns   string
		ack  int64
		data string
		want string
	}{
		{SConnect, "/", -1, `{"sid":"x"}`, `40{"sid":"x"}`},
		{SConnect, "", -1, "", `40`},
		{SConnectError, "/other", -1, `{"message":"Invalid namespace"}`, `44/other,{"message":"Invalid namespace"}`},
		{SDisconnect, "/", -1, "", `41`},
		{SEvent, "/", -1, `["presence:count",{"onlineUsers":1}]`, `42["presence:count",{"onlineUsers":1}]`},
		{SAck, "/", 7, `[{"onlineUsers":1}]`, `437[{"onlineUsers":1}]`},
		{SAck, "/a", 0, `[]`, `43/a,0[]`},
		{SEvent, "/a", 1<<53 - 1, `["x"]`, `42/a,9007199254740991["x"]`},
	}
	for _, tt := range tests {
		var data []byte
		if tt.data != "" {
			data = []byte(tt.data)
		}
		b := AppendSPacket([]byte("dst"), tt.typ, tt.ns, tt.ack, data)
		if string(b) != "dst"+tt.want {
			t.Errorf("AppendSPacket(%c, %q, %d, %q) = %q, want %q", tt.typ, tt.ns, tt.ack, tt.data, b, "dst"+tt.want)
			continue
		}
		e, err := ParseEPacket(b[3:])
		if err != nil || e.Type != EMessage {
			t.Errorf("%q is not an Engine.IO message: %v", b[3:], err)
			continue
		}
		p, err := ParseSPacket(e.Data)
		if err != nil {
			t.Errorf("ParseSPacket(%q): %v", e.Data, err)
			continue
		}
		wantNS := tt.ns
		if wantNS == "" {
			wantNS = "/"
		}
		if got, want := spOf(p), (sp{tt.typ, 0, wantNS, tt.ack, tt.data, tt.data != ""}); got != want {
			t.Errorf("round trip of %q = %+v, want %+v", b[3:], got, want)
		}
	}
}

// encodeSPacket builds the Engine.IO message for p with AppendSPacket. For
// the binary types it also writes the attachment count ("N-") after the
// type, which AppendSPacket has no parameter for.
func encodeSPacket(p SPacket) []byte {
	b := AppendSPacket(nil, p.Type, p.Namespace, p.AckID, p.Data)
	if p.Type == SBinaryEvent || p.Type == SBinaryAck {
		head := append([]byte(nil), b[:2]...)
		head = strconv.AppendInt(head, int64(p.Attachments), 10)
		head = append(head, '-')
		b = append(head, b[2:]...)
	}
	return b
}

// checkSPacketRoundTrip checks that the message built from p parses back
// to p.
func checkSPacketRoundTrip(t *testing.T, p SPacket) {
	t.Helper()
	b := encodeSPacket(p)
	if len(b) < 2 || b[0] != EMessage {
		t.Fatalf("AppendSPacket(%+v) = %q, not an Engine.IO message", spOf(p), b)
	}
	q, err := ParseSPacket(b[1:])
	if err != nil {
		t.Fatalf("%+v encodes to %q, which does not parse: %v", spOf(p), b, err)
	}
	if spOf(q) != spOf(p) {
		t.Fatalf("%+v encodes to %q, which parses to %+v", spOf(p), b, spOf(q))
	}
}

// FuzzParse feeds arbitrary bytes to ParsePayload and ParseSPacket: they
// must not panic, and a packet they accept must survive AppendSPacket
// and back unchanged (and a payload AppendPayload and back).
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`40{"token":"abc"}`, "41", `42["presence:subscribe"]`, `421["presence:count"]`,
		`44/other,{"message":"Invalid namespace"}`, `451-["x",{"_placeholder":true,"num":0}]`,
		"2\x1e3\x1e6", "bAQID", "2probe", "", "b", "0/admin", `2/a,12["a"]`, `61-7["a"]`,
		`29007199254740991["a"]`, "4\x1e", `1"bye"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		orig := append([]byte(nil), in...)
		if p, err := ParseSPacket(in); err == nil {
			checkSPacketRoundTrip(t, p)
			if p.Type == SEvent {
				_, _ = EventName(p.Data)
			}
		}
		packets, err := ParsePayload(in)
		if err != nil {
			return
		}
		if len(packets) == 0 {
			t.Fatalf("ParsePayload(%q) accepted it with no packet", in)
		}
		var wire [][]byte
		for _, p := range packets {
			if p.Binary {
				if p.Type != EMessage {
					t.Fatalf("binary packet of type %c", p.Type)
				}
				wire = append(wire, append([]byte{'b'}, base64.StdEncoding.EncodeToString(p.Data)...))
				continue
			}
			wire = append(wire, append([]byte{p.Type}, p.Data...))
			if p.Type == EMessage {
				if sp, err := ParseSPacket(p.Data); err == nil {
					checkSPacketRoundTrip(t, sp)
				}
			}
		}
		again, err := ParsePayload(AppendPayload(nil, wire))
		if err != nil || len(again) != len(packets) {
			t.Fatalf("payload %q re-encoded does not parse back: %d packets, %v", in, len(again), err)
		}
		for i := range again {
			if again[i].Type != packets[i].Type || again[i].Binary != packets[i].Binary || !bytes.Equal(again[i].Data, packets[i].Data) {
				t.Fatalf("payload %q packet %d: %+v re-encoded parses as %+v", in, i, packets[i], again[i])
			}
		}
		if !bytes.Equal(in, orig) {
			t.Fatalf("parsing modified its input")
		}
	})
}
