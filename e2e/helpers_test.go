// Package e2e_test runs the real presenced binary as separate processes
// (several nodes, kill -9, SIGTERM) against real redis-server processes,
// and talks to it only as users do: HTTP, WebSocket, Redis keys, exit
// codes.
package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/presenced/presenced/auth"
	"github.com/presenced/presenced/internal/testenv"
)

// binPath is the presenced binary built once for all tests.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "presenced-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "presenced")
	build := exec.Command("go", "build", "-o", binPath, "./cmd/presenced")
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build presenced:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Secrets every test node shares.
const (
	testSecret = "e2e-jwt-secret-0123456789abcdef-x"
	adminToken = "e2e-admin-token"
)

// syncBuffer is testenv.Buffer under the name these tests use.
type syncBuffer = testenv.Buffer

// Node is one presenced process.
type Node struct {
	t    testing.TB
	cmd  *exec.Cmd
	URL  string // http://127.0.0.1:port
	Port int
	out  *syncBuffer
	done chan struct{}
	err  error // from Wait, valid after done
}

// StartNode starts presenced with env on top of test defaults (a free
// PORT, its own DATA_DIR, JWT_SECRET, ADMIN_TOKEN) and waits until
// /healthz answers. The process is killed at cleanup if still running.
func StartNode(t testing.TB, env map[string]string) *Node {
	t.Helper()
	return StartServing(t, t.TempDir(), env).Node
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// Log returns everything the process printed so far.
func (n *Node) Log() string { return n.out.String() }

// WaitLog waits until the log contains substr.
func (n *Node) WaitLog(substr string, timeout time.Duration) {
	n.t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(n.Log(), substr) {
		if time.Now().After(deadline) {
			n.t.Fatalf("log never showed %q within %v", substr, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill sends SIGKILL and waits for the process to end.
func (n *Node) Kill() {
	n.t.Helper()
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
}

// Term sends SIGTERM and returns the exit code and how long the exit took;
// it fails the test if the process is still running after 15s.
func (n *Node) Term() (int, time.Duration) {
	n.t.Helper()
	start := time.Now()
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(15 * time.Second):
		n.t.Fatalf("presenced still running 15s after SIGTERM")
	}
	return n.cmd.ProcessState.ExitCode(), time.Since(start)
}

// Get fetches path with the admin token (when admin is true) and decodes
// the JSON body into out (when out is not nil); it returns the status.
func (n *Node) Get(path string, admin bool, out any) int {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+path, nil)
	if admin {
		req.Header.Set("Authorization", "Bearer "+adminToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			n.t.Fatalf("GET %s: decode %q: %v", path, body, err)
		}
	}
	return resp.StatusCode
}

// Overview is the part of the overview the tests read.
type Overview struct {
	OnlineUsers       int64  `json:"onlineUsers"`
	OnlineConnections int64  `json:"onlineConnections"`
	OnlineGuests      int64  `json:"onlineGuests"`
	PeakOnlineToday   int64  `json:"peakOnlineToday"`
	TotalUsers        int64  `json:"totalUsers"`
	NewUsersToday     int64  `json:"newUsersToday"`
	ActiveUsers24h    int64  `json:"activeUsers24h"`
	Source            string `json:"source"`
	FallbackScope     string `json:"fallbackScope"`
	Stale             bool   `json:"stale"`
}

// Overview fetches the overview as admin.
func (n *Node) Overview() Overview {
	n.t.Helper()
	var o Overview
	if status := n.Get("/api/admin/dashboard/overview", true, &o); status != http.StatusOK {
		n.t.Fatalf("overview: status %d", status)
	}
	return o
}

// Token mints a user token signed with the test secret.
func Token(t testing.TB, user string) string {
	t.Helper()
	tok, err := auth.Mint([]byte(testSecret), user, false, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Hello is the first message of every connection.
type Hello struct {
	Type         string  `json:"type"`
	UserID       *string `json:"userId"`
	Guest        bool    `json:"guest"`
	ConnectionID string  `json:"connectionId"`
	OnlineUsers  int64   `json:"onlineUsers"`
}

// Client is one WebSocket connection.
type Client struct {
	Conn  *websocket.Conn
	Hello Hello
}

// Dial connects to node's /ws with token (none when "") in the query and
// reads the hello.
func Dial(t testing.TB, n *Node, token string) *Client {
	t.Helper()
	c, err := DialErr(n, token)
	if err != nil {
		t.Fatalf("dial %s: %v", n.URL, err)
	}
	return c
}

// DialErr is Dial that returns errors instead of failing the test, for
// use from many goroutines.
func DialErr(n *Node, token string) (*Client, error) {
	u := "ws" + strings.TrimPrefix(n.URL, "http") + "/ws"
	if token != "" {
		u += "?token=" + token
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 512, WriteBufferSize: 512}
	conn, resp, err := d.Dial(u, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("%w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var h Hello
	if err := conn.ReadJSON(&h); err != nil {
		conn.Close()
		return nil, fmt.Errorf("read hello: %w", err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	return &Client{Conn: conn, Hello: h}, nil
}

// Proc is a presenced process started by StartProc: a Node whose stdout
// and stderr are also kept apart.
type Proc struct {
	*Node
	Stdout, Stderr *syncBuffer
}

// StartProc runs presenced with args (nil serves) in dir, with env on top of
// the same defaults as StartNode; an empty value hides a default, so that
// presenced treats the variable as unset (and reads it from dir/.env). It
// does not wait for the process to serve: see WaitHealthy and Wait. The
// process is killed at cleanup if still running.
func StartProc(t testing.TB, dir string, args []string, env map[string]string) *Proc {
	t.Helper()
	port := testenv.FreePort(t)
	vars := map[string]string{
		"PORT":        fmt.Sprint(port),
		"DATA_DIR":    t.TempDir(),
		"JWT_SECRET":  testSecret,
		"ADMIN_TOKEN": adminToken,
		"LOG_LEVEL":   "info",
	}
	for k, v := range env {
		vars[k] = v
	}
	cmd := exec.Command(binPath, args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &Proc{Stdout: &syncBuffer{}, Stderr: &syncBuffer{}}
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = io.MultiWriter(out, p.Stdout), io.MultiWriter(out, p.Stderr)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start presenced: %v", err)
	}
	p.Node = &Node{t: t, cmd: cmd, URL: fmt.Sprintf("http://127.0.0.1:%d", port), Port: port, out: out, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("log of presenced %v on port %d:\n%s", args, port, tail(out.String(), 60))
		}
	})
	return p
}

// StartServing is StartNode for a Proc in dir: it starts presenced with
// env as StartProc does and waits until /healthz answers. FreePort's port
// may be taken (by another test's outgoing connection, say) before
// presenced binds it; then presenced exits saying so, and StartServing
// retries on a new port, unless env sets PORT.
func StartServing(t testing.TB, dir string, env map[string]string) *Proc {
	t.Helper()
	for attempt := 1; ; attempt++ {
		p := StartProc(t, dir, nil, env)
		err := p.waitHealthy(10 * time.Second)
		if err == nil {
			return p
		}
		_, fixed := env["PORT"]
		if fixed || attempt == 5 || !strings.Contains(p.Stderr.String(), "address already in use") {
			t.Fatalf("%v:\n%s", err, p.Log())
		}
	}
}

// WaitHealthy waits until /healthz answers 200; it fails the test if the
// process exits first or does not answer within timeout.
func (n *Node) WaitHealthy(timeout time.Duration) {
	n.t.Helper()
	if err := n.waitHealthy(timeout); err != nil {
		n.t.Fatalf("%v:\n%s", err, n.Log())
	}
}

func (n *Node) waitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(n.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-n.done:
			return fmt.Errorf("presenced exited at start (%v)", n.err)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("presenced did not answer /healthz within %v", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Wait waits for the process to exit by itself and returns its exit code;
// it fails the test if the process is still running after timeout.
func (n *Node) Wait(timeout time.Duration) int {
	n.t.Helper()
	select {
	case <-n.done:
	case <-time.After(timeout):
		n.t.Fatalf("presenced still running after %v:\n%s", timeout, n.Log())
	}
	return n.cmd.ProcessState.ExitCode()
}

// GetToken fetches path with "Authorization: Bearer token" (none when
// token is "") and a client timeout, and returns the status and the body.
func (n *Node) GetToken(path, token string, timeout time.Duration) (int, []byte) {
	n.t.Helper()
	return n.Request(http.MethodGet, path, "Bearer "+token, timeout)
}

// Request sends method to path with the Authorization header authz (none
// when it is "" or "Bearer ") and a client timeout, and returns the status
// and the body; it fails the test when no answer comes within timeout.
func (n *Node) Request(method, path, authz string, timeout time.Duration) (int, []byte) {
	n.t.Helper()
	req, _ := http.NewRequest(method, n.URL+path, nil)
	if authz != "" && authz != "Bearer " {
		req.Header.Set("Authorization", authz)
	}
	resp, err := (&http.Client{Timeout: timeout}).Do(req)
	if err != nil {
		n.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}
