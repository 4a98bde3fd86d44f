package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// hostileCase is one thing a hostile or broken client does to a fresh
// connection, and what a strict server must answer.
type hostileCase struct {
	name string
	// ws: send is written after a valid WebSocket handshake and its hello.
	ws   bool
	send []byte
	// expect reads (and may send more on) the connection.
	expect func(t *testing.T, c *rawConn)
}

// TestHostileInput throws malformed, ambiguous and abusive HTTP requests
// and WebSocket frames at one real node over raw TCP, and checks each gets
// the answer RFC 9112 / RFC 6455 ask of a strict server.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	n := StartNode(t, nil)
	host := fmt.Sprintf("127.0.0.1:%d", n.Port)
	// smuggled is a whole request hidden where a lenient parser sees a body.
	const smuggled = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"

	cases := []hostileCase{
		// Request smuggling: framing a front proxy might read differently.
		{name: "te_space_before_colon_with_cl",
			send:   []byte("POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + smuggled),
			expect: parserRejects(400, noSecondResponse)},
		{name: "two_different_content_lengths",
			send:   []byte("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 39\r\n\r\nhello" + smuggled),
			expect: parserRejects(400, noSecondResponse)},
		{name: "content_length_plus_sign",
			send:   []byte(fmt.Sprintf("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: +%d\r\n\r\n%s", len(smuggled), smuggled)),
			expect: parserRejects(400, noSecondResponse)},
		{name: "content_length_space_before_colon",
			send:   []byte(fmt.Sprintf("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length : %d\r\n\r\n%s", len(smuggled), smuggled)),
			expect: parserRejects(400, noSecondResponse)},
		{name: "http11_without_host",
			send:   []byte("GET /healthz HTTP/1.1\r\n\r\n"),
			expect: parserRejects(400)},
		{name: "two_host_headers",
			send:   []byte("GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
			expect: parserRejects(400)},
		{name: "nul_in_header_value",
			send:   []byte("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Note: a\x00b\r\n\r\n"),
			expect: parserRejects(400)},

		// Framing that must stay intact.
		{name: "head_has_no_body_and_keeps_framing",
			send:   []byte("HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
			expect: expectHeadThenGet},
		{name: "http10_keep_alive",
			send:   []byte("GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
			expect: expectHTTP10KeepAlive},
		{name: "expect_100_continue",
			send:   []byte("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"),
			expect: expectContinueOrFinal},
		{name: "absolute_form_target",
			send:   []byte("GET http://" + host + "/healthz HTTP/1.1\r\nHost: " + host + "\r\n\r\n"),
			expect: wantStatus(200)},
		{name: "http_version_9_9",
			send:   []byte("GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n"),
			expect: parserRejects(505)},
		{name: "lf_only_line_endings",
			send:   []byte("GET /healthz HTTP/1.1\nHost: x\n\n"),
			expect: wantStatusWithin(200, 2*time.Second)},
		{name: "content_length_over_1mib",
			send:   []byte(fmt.Sprintf("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", 1<<20+1)),
			expect: wantStatus(413)},
		{name: "header_line_2mib_unterminated",
			expect: expectHeaderTooLarge(2 << 20)},

		// Routing answers.
		{name: "post_admin_overview_without_token",
			send:   []byte("POST /api/admin/dashboard/overview HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
			expect: wantStatus(405, allowHas("GET"), jsonError, noStore)},
		{name: "post_admin_overview_with_token",
			send:   []byte("POST /api/admin/dashboard/overview HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + adminToken + "\r\nContent-Length: 0\r\n\r\n"),
			expect: wantStatus(405, allowHas("GET"), jsonError, noStore)},
		{name: "get_admin_overview",
			send:   []byte("GET /api/admin/dashboard/overview HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + adminToken + "\r\n\r\n"),
			expect: wantStatus(200, jsonBody, noStore)},
		{name: "unknown_admin_path_without_token",
			send:   []byte("GET /api/admin/nope HTTP/1.1\r\nHost: x\r\n\r\n"),
			expect: wantStatus(401, jsonError, noStore)},
		{name: "unknown_admin_path_with_token",
			send:   []byte("GET /api/admin/nope HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + adminToken + "\r\n\r\n"),
			expect: wantStatus(404, jsonError, noStore)},
		{name: "not_found",
			send:   []byte("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"),
			expect: wantStatus(404, jsonError)},

		// WebSocket opening handshakes that must be refused.
		{name: "ws_handshake_missing_token",
			send:   wsHandshakeRequest(n, "HTTP/1.1", ""),
			expect: wantStatus(401)},
		{name: "ws_handshake_bad_token",
			send:   wsHandshakeRequest(n, "HTTP/1.1", Token(t, "mallory")+"x"),
			expect: wantStatus(401)},
		{name: "ws_handshake_version_8",
			send:   wsHandshakeRequest(n, "HTTP/1.1", Token(t, "vera"), "Sec-WebSocket-Version: 8"),
			expect: wantStatus(426, headerIs("Sec-Websocket-Version", "13"))},
		{name: "ws_handshake_key_not_16_bytes",
			send:   wsHandshakeRequest(n, "HTTP/1.1", Token(t, "kim"), "Sec-WebSocket-Key: c2hvcnQ="),
			expect: wantStatus(400)},
		{name: "ws_handshake_http10",
			send:   wsHandshakeRequest(n, "HTTP/1.0", Token(t, "olga")),
			expect: wantStatus(400)},

		// WebSocket frames RFC 6455 forbids.
		{name: "ws_unmasked_text", ws: true, send: wsFrame(finText, []byte(`{"type":"ping"}`), true), expect: wantClose(1002)},
		{name: "ws_rsv1", ws: true, send: wsFrame(finText|0x40, []byte(`{"type":"ping"}`)), expect: wantClose(1002)},
		{name: "ws_rsv2", ws: true, send: wsFrame(finText|0x20, []byte(`{"type":"ping"}`)), expect: wantClose(1002)},
		{name: "ws_rsv3", ws: true, send: wsFrame(finText|0x10, []byte(`{"type":"ping"}`)), expect: wantClose(1002)},
		{name: "ws_reserved_opcode_3", ws: true, send: wsFrame(0x83, []byte("x")), expect: wantClose(1002)},
		{name: "ws_reserved_opcode_0xB", ws: true, send: wsFrame(0x8B, []byte("x")), expect: wantClose(1002)},
		{name: "ws_fragmented_ping", ws: true, send: wsFrame(0x09, []byte("x")), expect: wantClose(1002)},
		{name: "ws_ping_126_bytes", ws: true, send: wsFrame(finPing, bytes.Repeat([]byte("p"), 126)), expect: wantClose(1002)},
		{name: "ws_continuation_without_message", ws: true, send: wsFrame(finCont, []byte("x")), expect: wantClose(1002)},
		{name: "ws_new_text_inside_fragmented_text", ws: true,
			send: cat(wsFrame(0x01, []byte(`{"type":`)), wsText(`{"type":"ping"}`)), expect: wantClose(1002)},
		{name: "ws_64bit_length_top_bit", ws: true,
			send: cat([]byte{finText, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0}, wsMask[:]), expect: wantClose(1002)},
		{name: "ws_invalid_utf8", ws: true, send: wsFrame(finText, []byte{0xff, 0xfe}), expect: wantClose(1007)},
		{name: "ws_fragmented_ping_message_split_midway", ws: true,
			send: cat(wsFrame(0x01, []byte(`{"type":"pi`)), wsFrame(finCont, []byte(`ng"}`))), expect: wantPong},
		{name: "ws_fragmented_text_rune_split", ws: true,
			send: cat(wsFrame(0x01, []byte("{\"type\":\"ping\",\"x\":\"\xc3")), wsFrame(finCont, []byte("\xa9\"}"))), expect: wantPong},
		{name: "ws_close_999", ws: true, send: wsClose(999), expect: wantClose(1002)},
		{name: "ws_close_1004", ws: true, send: wsClose(1004), expect: wantClose(1002)},
		{name: "ws_close_1005", ws: true, send: wsClose(1005), expect: wantClose(1002)},
		{name: "ws_close_1006", ws: true, send: wsClose(1006), expect: wantClose(1002)},
		{name: "ws_close_1015", ws: true, send: wsClose(1015), expect: wantClose(1002)},
		{name: "ws_close_2000", ws: true, send: wsClose(2000), expect: wantClose(1002)},
		{name: "ws_close_1_byte_payload", ws: true, send: wsFrame(finClose, []byte{0x03}), expect: wantClose(1002)},
		{name: "ws_close_1000", ws: true, send: wsClose(1000), expect: wantCloseEcho},

		// WebSocket messages presenced does not accept.
		{name: "ws_text_over_32768", ws: true, send: wsText(`{"type":"ping","pad":"` + strings.Repeat("x", 33000) + `"}`), expect: wantClose(1009)},
		{name: "ws_binary_message", ws: true, send: wsFrame(finBinary, []byte(`{"type":"ping"}`)), expect: wantClose(1008)},
		{name: "ws_unknown_json_message", ws: true, send: wsText(`{"type":"subscribe","channel":"x"}`), expect: wantClose(1008)},
		{name: "ws_ping_flood", ws: true, send: bytes.Repeat(wsFrame(finPing, []byte("flood")), 100), expect: wantClose(1008)},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var c *rawConn
			if tc.ws {
				c = dialWS(t, n, "hostile-"+tc.name)
			} else {
				c = dialRaw(t, n)
			}
			if tc.send != nil {
				c.send(tc.send)
			}
			tc.expect(t, c)
		})
	}
}

// respCheck is one more thing a response must satisfy; it returns what
// is wrong, or "".
type respCheck func(c *rawConn, resp *http.Response, body []byte) string

// parserRejects expects net/http's own parser to refuse the request with
// status and close the connection. Those answers are written by net/http
// before any handler runs (fixed text/plain bodies such as "400 Bad
// Request"), so they cannot carry the headers our middleware adds; the
// row checks that they hold no request content and close the connection.
func parserRejects(status int, checks ...respCheck) func(*testing.T, *rawConn) {
	return func(t *testing.T, c *rawConn) {
		t.Helper()
		resp, body, err := c.response(http.MethodGet, ioTimeout)
		if resp == nil {
			t.Fatalf("sent %s: no response within %v (%v); want %d", c.sentString(), ioTimeout, err, status)
		}
		if resp.StatusCode != status {
			t.Errorf("sent %s: got %s; want %d", c.sentString(), dumpResponse(resp, body), status)
		}
		if !resp.Close {
			t.Errorf("sent %s: connection kept open after a rejected request: %s", c.sentString(), dumpResponse(resp, body))
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("sent %s: Content-Type %q, want net/http's text/plain", c.sentString(), ct)
		}
		for _, check := range checks {
			if msg := check(c, resp, body); msg != "" {
				t.Errorf("sent %s: %s: %s", c.sentString(), msg, dumpResponse(resp, body))
			}
		}
	}
}

// wantStatus expects a final response with status within ioTimeout that
// carries X-Content-Type-Options: nosniff and passes checks.
func wantStatus(status int, checks ...respCheck) func(*testing.T, *rawConn) {
	return wantStatusWithin(status, ioTimeout, checks...)
}

func wantStatusWithin(status int, d time.Duration, checks ...respCheck) func(*testing.T, *rawConn) {
	return func(t *testing.T, c *rawConn) {
		t.Helper()
		resp, body, err := c.response(http.MethodGet, d)
		if resp == nil {
			t.Fatalf("sent %s: no response within %v (%v); want %d", c.sentString(), d, err, status)
		}
		if resp.StatusCode != status {
			t.Errorf("sent %s: got %s; want %d", c.sentString(), dumpResponse(resp, body), status)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("sent %s: response lacks X-Content-Type-Options: nosniff: %s", c.sentString(), dumpResponse(resp, body))
		}
		for _, check := range checks {
			if msg := check(c, resp, body); msg != "" {
				t.Errorf("sent %s: %s: %s", c.sentString(), msg, dumpResponse(resp, body))
			}
		}
	}
}

// noSecondResponse: the request hidden after the first one's body is
// never answered. A close-delimited body would swallow a second
// response, so the body is searched too.
func noSecondResponse(c *rawConn, _ *http.Response, body []byte) string {
	if bytes.Contains(body, []byte("HTTP/1.")) {
		return "a second response inside the first one's body"
	}
	more, err := c.more(time.Second)
	if bytes.Contains(more, []byte("HTTP/1.")) {
		return fmt.Sprintf("a second response followed: %q", more)
	}
	if len(more) > 0 {
		return fmt.Sprintf("bytes after the response (%v): %q", err, more)
	}
	return ""
}

func allowHas(method string) respCheck {
	return func(_ *rawConn, resp *http.Response, _ []byte) string {
		for _, m := range strings.Split(resp.Header.Get("Allow"), ",") {
			if strings.TrimSpace(m) == method {
				return ""
			}
		}
		return "Allow does not list " + method
	}
}

func headerIs(name, value string) respCheck {
	return func(_ *rawConn, resp *http.Response, _ []byte) string {
		if got := resp.Header.Get(name); got != value {
			return fmt.Sprintf("%s is %q, want %q", name, got, value)
		}
		return ""
	}
}

func noStore(c *rawConn, resp *http.Response, body []byte) string {
	return headerIs("Cache-Control", "no-store")(c, resp, body)
}

// jsonError: the body is {"error": "..."} with a JSON content type.
func jsonError(c *rawConn, resp *http.Response, body []byte) string {
	if msg := jsonBody(c, resp, body); msg != "" {
		return msg
	}
	var e struct {
		Error *string `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == nil || *e.Error == "" {
		return `body is not {"error": "..."}`
	}
	return ""
}

func jsonBody(_ *rawConn, resp *http.Response, body []byte) string {
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		return "Content-Type is not application/json"
	}
	if !json.Valid(body) {
		return "body is not JSON"
	}
	return ""
}

// expectHeadThenGet: HEAD gets 200 and no body bytes, and the connection
// then serves a GET normally.
func expectHeadThenGet(t *testing.T, c *rawConn) {
	resp, body := c.mustResponse(http.MethodHead, ioTimeout)
	if resp.StatusCode != 200 || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("sent %s: got %s; want 200 with nosniff", c.sentString(), dumpResponse(resp, body))
	}
	if more, err := c.more(time.Second); len(more) > 0 || !isTimeout(err) {
		t.Fatalf("sent %s: after the HEAD response's headers the server sent %q and then %v; want nothing, connection open", c.sentString(), more, err)
	}
	c.send([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
	resp, body = c.mustResponse(http.MethodGet, ioTimeout)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"status":"ok"`) {
		t.Fatalf("sent %s: second request got %s; want 200 {\"status\":\"ok\"}", c.sentString(), dumpResponse(resp, body))
	}
}

// expectHTTP10KeepAlive: an HTTP/1.0 client asking for keep-alive gets it
// and can send a second request.
func expectHTTP10KeepAlive(t *testing.T, c *rawConn) {
	resp, body := c.mustResponse(http.MethodGet, ioTimeout)
	if resp.StatusCode != 200 || !strings.EqualFold(resp.Header.Get("Connection"), "keep-alive") || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("sent %s: got %s; want 200 with Connection: keep-alive and nosniff", c.sentString(), dumpResponse(resp, body))
	}
	c.send([]byte("GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))
	resp, body, err := c.response(http.MethodGet, ioTimeout)
	if resp == nil || resp.StatusCode != 200 {
		t.Fatalf("sent %s: second request got %s (%v); want 200", c.sentString(), dumpResponse(resp, body), err)
	}
}

// expectContinueOrFinal: a client waiting for 100 Continue hears within
// 1 s, either the 100 (then it sends its body and gets a final answer) or
// a final answer at once.
func expectContinueOrFinal(t *testing.T, c *rawConn) {
	resp, body, err := c.response(http.MethodPost, time.Second)
	if resp == nil {
		t.Fatalf("sent %s without its body: silence for 1s (%v); want 100 Continue or a final response", c.sentString(), err)
	}
	if resp.StatusCode == http.StatusContinue {
		c.send([]byte("{}"))
		resp, body = c.mustResponse(http.MethodPost, ioTimeout)
	}
	if resp.StatusCode < 200 || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("sent %s: got %s; want a final response with nosniff", c.sentString(), dumpResponse(resp, body))
	}
}

// expectHeaderTooLarge sends one header line of size bytes that never
// ends, and expects 431 long before it is all sent.
func expectHeaderTooLarge(size int) func(*testing.T, *rawConn) {
	return func(t *testing.T, c *rawConn) {
		written, resp, werr := c.headerFlood([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: "), size, 16<<10, 5*time.Millisecond)
		if resp == nil {
			t.Fatalf("sent %s: no response (write error %v); want 431", c.sentString(), werr)
		}
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("sent %s: got %s; want 431", c.sentString(), dumpResponse(resp, nil))
		}
		// Written by net/http's parser, like parserRejects' answers.
		if !resp.Close {
			t.Errorf("sent %s: connection kept open after 431", c.sentString())
		}
		if written >= size {
			t.Errorf("the answer came only after all %d bytes of the header line were sent", size)
		}
		t.Logf("answered %d after %d bytes of %d (write error: %v)", resp.StatusCode, written, size, werr)
	}
}

// wantClose expects the server to send a close frame with code (pongs
// and other frames before it are fine) before the TCP connection ends.
func wantClose(code int) func(*testing.T, *rawConn) {
	return func(t *testing.T, c *rawConn) {
		t.Helper()
		got, before := c.closeCode()
		if got != code {
			t.Fatalf("sent %s: server closed with %d; want %d (frames before: %v)", c.sentString(), got, code, before)
		}
	}
}

// wantCloseEcho: after a client's close frame the server answers with a
// valid close frame of its own, then ends the TCP connection.
func wantCloseEcho(t *testing.T, c *rawConn) {
	got, before := c.closeCode()
	if !validWireCloseCode(got) {
		t.Fatalf("sent %s: server answered with close code %d, not valid on the wire (frames before: %v)", c.sentString(), got, before)
	}
	if more, err := c.more(ioTimeout); len(more) > 0 || isTimeout(err) {
		t.Fatalf("sent %s: after its close frame the server sent %q and then %v; want the connection closed", c.sentString(), more, err)
	}
}

// wantPong: the message was whole and valid, so it is answered with a
// pong and the connection stays open.
func wantPong(t *testing.T, c *rawConn) {
	for {
		m, err := c.readFrame()
		if err != nil {
			t.Fatalf("sent %s: no pong (%v)", c.sentString(), err)
		}
		if m.op == 0x8 {
			t.Fatalf("sent %s: server closed (%v); want a pong", c.sentString(), m)
		}
		if m.op == 0x1 && strings.Contains(string(m.payload), `"type":"pong"`) {
			break
		}
	}
	// Still open: a second ping is answered too.
	c.send(wsText(`{"type":"ping"}`))
	m, err := c.readFrame()
	if err != nil || m.op != 0x1 || !strings.Contains(string(m.payload), `"type":"pong"`) {
		t.Fatalf("sent %s: second ping got %v (%v); want a pong", c.sentString(), m, err)
	}
}
