package e2e_test

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ioTimeout bounds every read and write of the hostile tests.
const ioTimeout = 5 * time.Second

// PID returns the process id of the presenced process.
func (n *Node) PID() int { return n.cmd.Process.Pid }

// RSS returns the resident set size of the presenced process in bytes,
// from VmRSS in /proc/<pid>/status.
func (n *Node) RSS(t testing.TB) uint64 {
	t.Helper()
	rss, err := n.rss()
	if err != nil {
		t.Fatal(err)
	}
	return rss
}

func (n *Node) rss() (uint64, error) {
	path := fmt.Sprintf("/proc/%d/status", n.PID())
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read RSS: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse %q in %s: %w", line, path, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in %s:\n%s", path, b)
}

// Goroutines returns go_goroutines from /metrics. It scrapes on a
// connection of its own that it closes, so the scrape leaves no idle
// keep-alive connection (and its goroutine) behind.
func (n *Node) Goroutines(t testing.TB) int {
	t.Helper()
	client := &http.Client{Timeout: ioTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(n.URL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read /metrics: %v", err)
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("parse %q: %v", line, err)
			}
			return int(f)
		}
	}
	t.Fatalf("no go_goroutines in /metrics (%d):\n%s", resp.StatusCode, body)
	return 0
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// rawConn is a TCP connection to a node that the test writes bytes to by
// hand. It remembers what was written, for failure messages.
type rawConn struct {
	t  testing.TB
	nc *net.TCPConn
	br *bufio.Reader
	// sent is everything written so far, cut at sentKeep bytes.
	sent []byte
	all  int // bytes written in all
}

const sentKeep = 600

// dialRaw connects to n; the connection is closed at cleanup.
func dialRaw(t testing.TB, n *Node) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.Port), ioTimeout)
	if err != nil {
		t.Fatalf("dial %d: %v", n.Port, err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc.(*net.TCPConn), br: bufio.NewReaderSize(nc, 64<<10)}
}

// write writes b; it returns the error instead of failing.
func (c *rawConn) write(b []byte) error {
	if room := sentKeep - len(c.sent); room > 0 {
		c.sent = append(c.sent, b[:min(room, len(b))]...)
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
	n, err := c.nc.Write(b)
	c.all += n
	return err
}

// send writes b and fails the test if it cannot.
func (c *rawConn) send(b []byte) {
	c.t.Helper()
	if err := c.write(b); err != nil {
		c.t.Fatalf("sent %s: write: %v", c.sentString(), err)
	}
}

// sentString quotes what was sent, for failure messages.
func (c *rawConn) sentString() string {
	s := strconv.Quote(string(c.sent))
	if c.all > len(c.sent) {
		s += fmt.Sprintf("... (%d bytes in all)", c.all)
	}
	return s
}

// response reads one response to a request with method within d, and its
// body; a close-delimited body is read until the server closes (or d).
// err is the first error met, resp is nil when no response came.
func (c *rawConn) response(method string, d time.Duration) (resp *http.Response, body []byte, err error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(d))
	defer c.nc.SetReadDeadline(time.Time{})
	resp, err = http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		return nil, nil, err
	}
	body, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp, body, err
}

// mustResponse is response that fails the test when no response comes.
func (c *rawConn) mustResponse(method string, d time.Duration) (*http.Response, []byte) {
	c.t.Helper()
	resp, body, err := c.response(method, d)
	if resp == nil {
		c.t.Fatalf("sent %s: no response within %v: %v", c.sentString(), d, err)
	}
	return resp, body
}

// more reads whatever else the server sends within d: it returns those
// bytes and how the read ended (a timeout, EOF, a reset).
func (c *rawConn) more(d time.Duration) ([]byte, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(d))
	defer c.nc.SetReadDeadline(time.Time{})
	var got []byte
	buf := make([]byte, 4096)
	for {
		k, err := c.br.Read(buf)
		got = append(got, buf[:k]...)
		if err != nil {
			return got, err
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// dumpResponse renders resp and body for failure messages.
func dumpResponse(resp *http.Response, body []byte) string {
	if resp == nil {
		return "no response"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", resp.Proto, resp.Status)
	for k, vv := range resp.Header {
		for _, v := range vv {
			fmt.Fprintf(&b, " | %s: %s", k, v)
		}
	}
	if len(body) > 300 {
		body = append(body[:300:300], "..."...)
	}
	fmt.Fprintf(&b, " | body %q", body)
	return b.String()
}

// WebSocket, as a client speaks it by hand.

// wsKey is the sample nonce of RFC 6455 section 1.3.
const wsKey = "dGhlIHNhbXBsZSBub25jZQ=="

// wsMask is the mask key of every client frame the tests build.
var wsMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// wsHandshakeRequest returns an opening handshake for /ws; token is put
// in the query unless it is "", extra header lines are added as given.
func wsHandshakeRequest(n *Node, proto, token string, extra ...string) []byte {
	target := "/ws"
	if token != "" {
		target += "?token=" + token
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "GET %s %s\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", target, proto, n.Port)
	has := func(name string) bool {
		for _, e := range extra {
			if strings.HasPrefix(strings.ToLower(e), strings.ToLower(name)+":") {
				return true
			}
		}
		return false
	}
	if !has("Sec-WebSocket-Key") {
		b.WriteString("Sec-WebSocket-Key: " + wsKey + "\r\n")
	}
	if !has("Sec-WebSocket-Version") {
		b.WriteString("Sec-WebSocket-Version: 13\r\n")
	}
	for _, e := range extra {
		b.WriteString(e + "\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// wsAccept is the Sec-WebSocket-Accept that answers key.
func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// dialWS opens a WebSocket to n with a valid token for user, by hand,
// and reads the 101 and the hello; the returned connection has sent
// nothing but the handshake.
func dialWS(t testing.TB, n *Node, user string) *rawConn {
	t.Helper()
	c := dialRaw(t, n)
	c.send(wsHandshakeRequest(n, "HTTP/1.1", Token(t, user)))
	resp, body := c.mustResponse(http.MethodGet, ioTimeout)
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-Websocket-Accept") != wsAccept(wsKey) {
		t.Fatalf("handshake: sent %s, got %s", c.sentString(), dumpResponse(resp, body))
	}
	f, err := c.readFrame()
	if err != nil || f.op != 0x1 || !strings.Contains(string(f.payload), `"type":"hello"`) {
		t.Fatalf("hello: got %v, %v", f, err)
	}
	c.sent, c.all = nil, 0
	return c
}

// wsFrame encodes a client frame whose first byte is b0 (FIN, RSV bits
// and opcode, as given), masked unless unmasked is true, with the length
// in its shortest form.
func wsFrame(b0 byte, payload []byte, unmasked ...bool) []byte {
	masked := len(unmasked) == 0 || !unmasked[0]
	var b1 byte
	if masked {
		b1 = 0x80
	}
	out := []byte{b0}
	switch n := len(payload); {
	case n <= 125:
		out = append(out, b1|byte(n))
	case n <= 0xFFFF:
		out = append(out, b1|126, byte(n>>8), byte(n))
	default:
		out = append(out, b1|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if !masked {
		return append(out, payload...)
	}
	out = append(out, wsMask[:]...)
	for i, p := range payload {
		out = append(out, p^wsMask[i&3])
	}
	return out
}

// Frame first bytes.
const (
	finText   = 0x81
	finBinary = 0x82
	finClose  = 0x88
	finPing   = 0x89
	finCont   = 0x80
)

// wsText is a whole, masked text frame.
func wsText(s string) []byte { return wsFrame(finText, []byte(s)) }

// wsClose is a masked close frame with code.
func wsClose(code int) []byte {
	return wsFrame(finClose, binary.BigEndian.AppendUint16(nil, uint16(code)))
}

// cat joins frames.
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// wsMsg is one frame from the server.
type wsMsg struct {
	fin     bool
	op      byte
	payload []byte
}

func (m wsMsg) String() string {
	names := map[byte]string{0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}
	name := names[m.op]
	if name == "" {
		name = fmt.Sprintf("opcode %#x", m.op)
	}
	if m.op == 8 && len(m.payload) >= 2 {
		return fmt.Sprintf("close %d %q", binary.BigEndian.Uint16(m.payload), m.payload[2:])
	}
	p := m.payload
	if len(p) > 80 {
		p = p[:80]
	}
	return fmt.Sprintf("%s %q", name, p)
}

// readFrame reads one server frame within ioTimeout. A masked server
// frame is an error (RFC 6455 section 5.1).
func (c *rawConn) readFrame() (wsMsg, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	defer c.nc.SetReadDeadline(time.Time{})
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return wsMsg{}, err
	}
	m := wsMsg{fin: h[0]&0x80 != 0, op: h[0] & 0x0F}
	if h[0]&0x70 != 0 {
		return m, fmt.Errorf("server frame with RSV bits %#x", h[0])
	}
	if h[1]&0x80 != 0 {
		return m, errors.New("masked server frame")
	}
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(c.br, l[:]); err != nil {
			return m, err
		}
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(c.br, l[:]); err != nil {
			return m, err
		}
		n = binary.BigEndian.Uint64(l[:])
	}
	if n > 1<<20 {
		return m, fmt.Errorf("server frame of %d bytes", n)
	}
	m.payload = make([]byte, n)
	_, err := io.ReadFull(c.br, m.payload)
	return m, err
}

// closeCode reads server frames until a close frame and returns its code
// (1005 when it has none) and the frames before it. It fails the test if
// the connection ends, or nothing comes, before a close frame.
func (c *rawConn) closeCode() (int, []wsMsg) {
	c.t.Helper()
	code, before, err := c.untilClose()
	if err != nil {
		c.t.Fatalf("sent %s: %v; frames before: %v", c.sentString(), err, before)
	}
	return code, before
}

// untilClose is closeCode that returns what went wrong instead of
// failing.
func (c *rawConn) untilClose() (code int, before []wsMsg, err error) {
	for {
		m, err := c.readFrame()
		if err != nil {
			return 0, before, fmt.Errorf("connection ended without a close frame (%w)", err)
		}
		if m.op != 0x8 {
			before = append(before, m)
			continue
		}
		switch len(m.payload) {
		case 0:
			return 1005, before, nil
		case 1:
			return 0, before, errors.New("server close frame with a 1-byte payload")
		}
		return int(binary.BigEndian.Uint16(m.payload)), before, nil
	}
}

// validWireCloseCode reports whether code may be sent in a close frame
// (RFC 6455 section 7.4).
func validWireCloseCode(code int) bool {
	return code >= 1000 && code <= 1003 || code >= 1007 && code <= 1014 || code >= 3000 && code <= 4999
}

// headerFlood writes prefix and then filler bytes in chunks, up to total,
// while another goroutine reads the answer. It stops at the first of: an
// answer, a write error, total written. It returns the bytes written
// (prefix included), the answer (nil if none came within ioTimeout of
// the last write) and the write error.
func (c *rawConn) headerFlood(prefix []byte, total, chunk int, pause time.Duration) (written int, resp *http.Response, werr error) {
	type answer struct {
		resp *http.Response
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		_ = c.nc.SetReadDeadline(time.Now().Add(2 * time.Minute))
		r, err := http.ReadResponse(c.br, nil)
		if r != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
			r.Body.Close()
		}
		got <- answer{r, err}
	}()
	fill := bytes.Repeat([]byte("a"), chunk)
	werr = c.write(prefix)
	written = len(prefix)
	var a *answer
	for werr == nil && written < total {
		werr = c.write(fill[:min(chunk, total-written)])
		if werr == nil {
			written += min(chunk, total-written)
		}
		if pause > 0 {
			select {
			case r := <-got:
				a = &r
			case <-time.After(pause):
			}
		} else {
			select {
			case r := <-got:
				a = &r
			default:
			}
		}
		if a != nil {
			break
		}
	}
	if a == nil {
		select {
		case r := <-got:
			a = &r
		case <-time.After(ioTimeout):
			_ = c.nc.SetReadDeadline(time.Now())
			r := <-got
			a = &r
		}
	}
	return written, a.resp, werr
}
