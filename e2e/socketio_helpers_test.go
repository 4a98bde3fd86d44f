package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The Socket.IO tests drive the reference client, socket.io-client, from
// Node.js: sioclient/driver.mjs, with its dependencies installed by
// `npm ci --prefix e2e/sioclient` (scripts/test.sh does that).
const (
	sioDir = "sioclient" // relative to the e2e package, go test's working directory
	// sioDriverLimit is the driver's own hard limit; the Go side kills it
	// a little later if it is somehow still running.
	sioDriverLimit = 120 * time.Second
)

// sioScenario is the driver's scenario (see the comment at the top of
// driver.mjs); the client fields override the scenario's.
type sioScenario struct {
	URL          string          `json:"url,omitempty"`
	Path         string          `json:"path,omitempty"`
	Transports   []string        `json:"transports,omitempty"`
	Namespace    string          `json:"namespace,omitempty"`
	Reconnection *bool           `json:"reconnection,omitempty"`
	ReportPings  bool            `json:"reportPings,omitempty"`
	ExitWhenDone bool            `json:"exitWhenDone,omitempty"`
	TimeoutMs    int64           `json:"timeoutMs,omitempty"`
	Clients      []sioClientSpec `json:"clients"`
}

// sioClientSpec is one client; Token "" sends no auth at all, Auth (when
// set) is sent as is instead.
type sioClientSpec struct {
	Token        string         `json:"token,omitempty"`
	Auth         map[string]any `json:"auth,omitempty"`
	URL          string         `json:"url,omitempty"`
	Path         string         `json:"path,omitempty"`
	Transports   []string       `json:"transports,omitempty"`
	Namespace    string         `json:"namespace,omitempty"`
	Reconnection *bool          `json:"reconnection,omitempty"`
}

// sioEvent is one line of the driver's output.
type sioEvent struct {
	Client      int               `json:"client"` // -1 for lines about no client
	Event       string            `json:"event"`
	Transport   string            `json:"transport"`
	ID          string            `json:"id"`
	Message     string            `json:"message"`
	Data        json.RawMessage   `json:"data"`
	Reason      string            `json:"reason"`
	Description string            `json:"description"`
	Name        string            `json:"name"`
	Args        []json.RawMessage `json:"args"`
	Error       string            `json:"error"`
	Attempt     int               `json:"attempt"`
	Code        int               `json:"code"`
	Clients     json.RawMessage   `json:"clients"`
	T           float64           `json:"t"` // ms since the driver started
	raw         string
}

func (e sioEvent) String() string { return e.raw }

// sioCounts is the payload of "presence:count" events and acks.
type sioCounts struct {
	OnlineUsers       *int64 `json:"onlineUsers"`
	OnlineConnections *int64 `json:"onlineConnections"`
}

func (c sioCounts) is(users, conns int64) bool {
	return c.OnlineUsers != nil && c.OnlineConnections != nil && *c.OnlineUsers == users && *c.OnlineConnections == conns
}

// counts decodes the first argument of a message or ack line.
func (e sioEvent) counts() (sioCounts, bool) {
	var c sioCounts
	if len(e.Args) == 0 || json.Unmarshal(e.Args[0], &c) != nil {
		return c, false
	}
	return c, c.OnlineUsers != nil && c.OnlineConnections != nil
}

// sioDriver is one running node driver.mjs process.
type sioDriver struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *syncBuffer
	done   chan struct{} // closed once the process has exited

	mu      sync.Mutex
	events  []sioEvent
	changed chan struct{} // closed (and replaced) on every new line
}

// startSIO starts the driver with sc. A missing node binary or a missing
// node_modules fails the test: these tests are part of the suite, not
// optional extras.
func startSIO(t testing.TB, sc sioScenario) *sioDriver {
	t.Helper()
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("the Socket.IO e2e tests need Node.js: no node in PATH (%v); install Node 20 and run scripts/test.sh", err)
	}
	if _, err := os.Stat(filepath.Join(sioDir, "node_modules", "socket.io-client", "package.json")); err != nil {
		t.Fatalf("e2e/sioclient/node_modules is missing socket.io-client (%v): run `npm ci --no-audit --no-fund --prefix e2e/sioclient` (scripts/test.sh does)", err)
	}
	if sc.TimeoutMs == 0 {
		sc.TimeoutMs = sioDriverLimit.Milliseconds()
	}
	scenario, err := json.Marshal(sc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(sc.TimeoutMs)*time.Millisecond+15*time.Second)
	cmd := exec.CommandContext(ctx, nodeBin, "driver.mjs")
	cmd.Dir = sioDir
	cmd.WaitDelay = 5 * time.Second
	d := &sioDriver{t: t, cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{}), changed: make(chan struct{})}
	cmd.Stderr = d.stderr
	if d.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s driver.mjs: %v", nodeBin, err)
	}
	go func() {
		defer cancel()
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			d.add(sc.Text())
		}
		_ = cmd.Wait()
		close(d.done)
		d.mu.Lock()
		close(d.changed)
		d.changed = nil
		d.mu.Unlock()
	}()
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			t.Logf("Socket.IO driver output:\n%s\nstderr:\n%s", tail(d.output(), 80), tail(d.stderr.String(), 30))
		}
	})
	d.send(json.RawMessage(scenario))
	return d
}

func (d *sioDriver) add(line string) {
	e := sioEvent{Client: -1, raw: line}
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		e = sioEvent{Client: -1, Event: "unparsed", Message: err.Error(), raw: line}
	}
	d.mu.Lock()
	d.events = append(d.events, e)
	close(d.changed)
	d.changed = make(chan struct{})
	d.mu.Unlock()
}

// output returns every line the driver printed so far.
func (d *sioDriver) output() string {
	var b strings.Builder
	for _, e := range d.snapshot() {
		b.WriteString(e.raw)
		b.WriteByte('\n')
	}
	return b.String()
}

func (d *sioDriver) snapshot() []sioEvent {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]sioEvent(nil), d.events...)
}

// send writes one command line to the driver's stdin.
func (d *sioDriver) send(cmd any) {
	d.t.Helper()
	b, err := json.Marshal(cmd)
	if err != nil {
		d.t.Fatal(err)
	}
	if _, err := d.stdin.Write(append(b, '\n')); err != nil {
		d.t.Fatalf("Socket.IO driver: send %s: %v (exited: %v)\n%s", b, err, d.exited(), d.stderr.String())
	}
}

func (d *sioDriver) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// stop ends the driver: exit command, end of stdin, then SIGKILL if it is
// still running 5 s later.
func (d *sioDriver) stop() {
	if d.exited() {
		return
	}
	_, _ = d.stdin.Write([]byte(`{"cmd":"exit"}` + "\n"))
	_ = d.stdin.Close()
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// kill ends the driver with SIGKILL, as a crashed client would end, and
// waits until it has exited.
func (d *sioDriver) kill() {
	d.t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		d.t.Fatalf("kill the Socket.IO driver: %v", err)
	}
	<-d.done
}

// waitExit waits for the driver to exit by itself and returns its exit
// code.
func (d *sioDriver) waitExit(timeout time.Duration) int {
	d.t.Helper()
	select {
	case <-d.done:
	case <-time.After(timeout):
		d.t.Fatalf("Socket.IO driver still running %v later", timeout)
	}
	return d.cmd.ProcessState.ExitCode()
}

// waitN waits until at least n lines match match and returns the matching
// lines. It fails the test at once if the driver reports an error or exits
// first.
func (d *sioDriver) waitN(what string, timeout time.Duration, n int, match func(sioEvent) bool) []sioEvent {
	d.t.Helper()
	deadline := time.After(timeout)
	for {
		d.mu.Lock()
		var got []sioEvent
		var bad *sioEvent
		for i, e := range d.events {
			if match(e) {
				got = append(got, e)
			}
			if (e.Event == "error" || e.Event == "unparsed") && bad == nil {
				bad = &d.events[i]
			}
		}
		changed := d.changed
		d.mu.Unlock()
		switch {
		case bad != nil:
			d.t.Fatalf("%s: the Socket.IO driver reports %s", what, bad.raw)
		case len(got) >= n:
			return got
		case changed == nil:
			d.t.Fatalf("%s: the Socket.IO driver exited (%v) with %d of %d matching lines", what, d.cmd.ProcessState, len(got), n)
		}
		select {
		case <-changed:
		case <-deadline:
			d.t.Fatalf("%s: %d of %d matching lines within %v", what, len(got), n, timeout)
		}
	}
}

// wait waits for the first line that matches match.
func (d *sioDriver) wait(what string, timeout time.Duration, match func(sioEvent) bool) sioEvent {
	d.t.Helper()
	return d.waitN(what, timeout, 1, match)[0]
}

// count returns how many lines so far match match.
func (d *sioDriver) count(match func(sioEvent) bool) int {
	n := 0
	for _, e := range d.snapshot() {
		if match(e) {
			n++
		}
	}
	return n
}

// waitConnected waits until clients [0, n) have each connected once; any
// connect_error fails the test at once.
func (d *sioDriver) waitConnected(n int, timeout time.Duration) []sioEvent {
	d.t.Helper()
	return d.waitConnectedFrom(0, n, timeout)
}

// waitConnectedFrom is waitConnected for clients [from, from+n).
func (d *sioDriver) waitConnectedFrom(from, n int, timeout time.Duration) []sioEvent {
	d.t.Helper()
	in := func(e sioEvent) bool { return e.Client >= from && e.Client < from+n }
	deadline := time.Now().Add(timeout)
	for {
		for _, e := range d.snapshot() {
			if in(e) && e.Event == "connect_error" {
				d.t.Fatalf("client %d: connect_error %q (data %s), want connect", e.Client, e.Message, e.Data)
			}
		}
		connected := make([]*sioEvent, n)
		got := 0
		for _, e := range d.snapshot() {
			if in(e) && e.Event == "connect" && connected[e.Client-from] == nil {
				connected[e.Client-from] = &e
				got++
			}
		}
		if got == n {
			out := make([]sioEvent, n)
			for i, e := range connected {
				out[i] = *e
			}
			return out
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("%d of %d Socket.IO clients connected within %v", got, n, timeout)
		}
		if d.exited() {
			d.t.Fatalf("the Socket.IO driver exited (%v) with %d of %d clients connected", d.cmd.ProcessState, got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sioClientState is one entry of a "state" line.
type sioClientState struct {
	Client    int    `json:"client"`
	Connected bool   `json:"connected"`
	Active    bool   `json:"active"`
	ID        string `json:"id"`
	Transport string `json:"transport"`
}

// state asks the driver for every client's state.
func (d *sioDriver) state() []sioClientState {
	d.t.Helper()
	before := d.count(is(-1, "state"))
	d.send(map[string]any{"cmd": "state"})
	e := d.waitN("state", 5*time.Second, before+1, is(-1, "state"))[before]
	var out []sioClientState
	if err := json.Unmarshal(e.Clients, &out); err != nil {
		d.t.Fatalf("state %s: %v", e.raw, err)
	}
	return out
}

// emit sends event from client with args; with ack it waits for the
// acknowledgement and returns its line.
func (d *sioDriver) emit(client int, event string, ack bool, args ...any) sioEvent {
	d.t.Helper()
	if args == nil {
		args = []any{}
	}
	id := fmt.Sprintf("%s-%d-%d", event, client, d.count(func(sioEvent) bool { return true }))
	d.send(map[string]any{"cmd": "emit", "client": client, "event": event, "args": args, "ack": ack, "ackTimeoutMs": 5000, "id": id})
	if !ack {
		return sioEvent{}
	}
	return d.wait("ack of "+event, 10*time.Second, func(e sioEvent) bool { return e.Event == "ack" && e.ID == id })
}

// closeClient disconnects one client (client < 0: all of them).
func (d *sioDriver) closeClient(client int) {
	d.t.Helper()
	if client < 0 {
		d.send(map[string]any{"cmd": "close"})
		return
	}
	d.send(map[string]any{"cmd": "close", "client": client})
}

// is matches lines of event about client, or of event alone when client
// is -1.
func is(client int, event string) func(sioEvent) bool {
	return func(e sioEvent) bool {
		return e.Event == event && (client == -1 || e.Client == client)
	}
}

// message matches a server event name received by client.
func message(client int, name string) func(sioEvent) bool {
	return func(e sioEvent) bool { return e.Event == "message" && e.Client == client && e.Name == name }
}

// wantCounts polls n's overview until it shows users, conns and guests,
// and fails the test if it does not within timeout; it returns how long
// that took.
func wantCounts(t testing.TB, n *Node, timeout time.Duration, users, conns, guests int64, when string) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for {
		var o Overview
		if err := fetchJSON(n, "/api/admin/dashboard/overview", &o); err != nil {
			last = err.Error()
		} else {
			if o.OnlineUsers == users && o.OnlineConnections == conns && o.OnlineGuests == guests {
				return time.Since(start)
			}
			last = fmt.Sprintf("%+v", o)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: overview never showed %d users, %d connections, %d guests within %v; last: %s", when, users, conns, guests, timeout, last)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// sioShortPings makes a node ping every 300ms and drop a session that has
// not answered 300ms later.
func sioShortPings() map[string]string {
	return map[string]string{"SOCKETIO_PING_INTERVAL": "300ms", "SOCKETIO_PING_TIMEOUT": "300ms"}
}

func boolp(b bool) *bool { return &b }
