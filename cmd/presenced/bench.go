package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/presenced/presenced/auth"
)

// benchMaxConns keeps one bench process under the 20 000 open-files cap of
// the machines the benchmarks run on, with room for the process's own files.
const benchMaxConns = 19000

// benchOptions is the command line of `presenced bench`.
type benchOptions struct {
	url         string
	conns       int
	users       int
	offset      int
	secret      string
	sourceIPs   []net.IP
	concurrency int
	hold        time.Duration
	timeout     time.Duration
	transport   string // "ws" (/ws), "socketio" (Socket.IO over its WebSocket transport) or "polling"
	poll        bool   // polling: keep a GET pending once connected
}

// benchStats are the counters a bench run reports.
type benchStats struct {
	up      atomic.Int64 // connections that got their hello
	failed  atomic.Int64 // dial or hello failures
	dropped atomic.Int64 // connections the server closed after the hello
	msgs    atomic.Int64 // messages read after the hello
	pings   atomic.Int64 // server pings answered
	closing atomic.Bool  // we are closing the connections ourselves

	mu      sync.Mutex
	latency []time.Duration // dial to hello, per successful connection
	errs    map[string]int  // failure reasons, for the final table
	drops   map[string]int  // why the server closed connections
}

// runBench is the load generator used by the benchmarks under bench/: it
// opens --conns authenticated WebSocket connections to --url, waits for
// each one's hello, then prints "READY" on a line of its own (or "NOT
// READY" if over 1% failed, and exits non-zero). It holds the connections,
// reading and discarding messages and answering pings, for --hold or until
// ctx is done, then closes them and prints a table.
//
// The client side is kept cheap (a goroutine, a 256-byte read buffer and
// pooled write buffers per connection) so that it does not starve the
// server it measures of the machine's two cores.
func runBench(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseBenchFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	target, err := url.Parse(o.url)
	if o.transport == "polling" {
		if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
			return usageError{fmt.Sprintf("bench: --url %q is not an http:// or https:// URL", o.url)}
		}
		return runPollingBench(ctx, o, target, stdout)
	}
	if err != nil || (target.Scheme != "ws" && target.Scheme != "wss") || target.Host == "" {
		return usageError{fmt.Sprintf("bench: --url %q is not a ws:// or wss:// URL", o.url)}
	}

	// Tokens are minted up front so that minting does not slow the dials.
	tokens := make([]string, min(o.users, o.conns))
	now := time.Now()
	for i := range tokens {
		// Connection i uses user (offset+i) % users; with conns < users the
		// tokens needed are those of users offset..offset+conns-1.
		if tokens[i], err = auth.Mint([]byte(o.secret), userID(o, i), false, 24*time.Hour, now); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}

	st := &benchStats{errs: make(map[string]int), drops: make(map[string]int)}
	var (
		conns   = make([]*websocket.Conn, o.conns)
		sem     = make(chan struct{}, o.concurrency)
		dialing sync.WaitGroup // connections not yet up or failed
		reading sync.WaitGroup // reader goroutines
	)
	start := time.Now()
	for i := range o.conns {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			st.fail(errors.New("interrupted before dialing"), int64(o.conns-i))
			break
		}
		dialing.Add(1)
		reading.Add(1)
		go func() {
			defer reading.Done()
			c, err := benchDial(ctx, o, target, tokens[i%len(tokens)], o.sourceIPs, i, st)
			if err == nil {
				conns[i] = c
			}
			<-sem
			dialing.Done()
			if err == nil {
				benchRead(c, st, o.transport == "socketio")
			}
		}()
	}
	dialing.Wait()
	elapsed := time.Since(start)
	tooMany := readyAndHold(ctx, o, st, elapsed, "conns", stdout)

	// Close cleanly: a close frame then the socket, so the server sees a
	// normal close rather than a reset.
	st.closing.Store(true)
	held := int64(0)
	deadline := time.Now().Add(time.Second)
	for _, c := range conns {
		if c == nil {
			continue
		}
		held++
		_ = c.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bench done"), deadline)
		_ = c.Close()
	}
	reading.Wait()
	held -= st.dropped.Load()

	printBenchTable(stdout, o, st, elapsed, held)
	if tooMany {
		return fmt.Errorf("bench: %d of %d connections failed (over 1%%)", st.failed.Load(), o.conns)
	}
	return nil
}

// readyAndHold prints how many connections (of what, e.g. "conns") came
// up and READY, or NOT READY when over 1% failed, then holds them for
// --hold or until ctx is done. It reports whether too many failed.
func readyAndHold(ctx context.Context, o benchOptions, st *benchStats, elapsed time.Duration, what string, stdout io.Writer) (tooMany bool) {
	up, failed := st.up.Load(), st.failed.Load()
	fmt.Fprintf(stdout, "up %d %s in %.1f s, failures %d\n", up, what, elapsed.Seconds(), failed)
	tooMany = failed*100 > int64(o.conns)
	if tooMany {
		// Scripts wait for READY: they must not take this run for a good one.
		fmt.Fprintln(stdout, "NOT READY: over 1% failed")
		return true
	}
	fmt.Fprintln(stdout, "READY")
	if ctx.Err() != nil {
		return false
	}
	if o.hold <= 0 {
		<-ctx.Done()
		return false
	}
	t := time.NewTimer(o.hold)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	return false
}

func parseBenchFlags(args []string, getenv func(string) string, stderr io.Writer) (benchOptions, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o benchOptions
	fs.StringVar(&o.url, "url", "ws://127.0.0.1:8080/ws", "WebSocket URL of the gateway")
	fs.IntVar(&o.conns, "conns", 1000, fmt.Sprintf("connections to open, at most %d", benchMaxConns))
	fs.IntVar(&o.users, "users", 0, "distinct users u0..u{N-1}; connection i is user (offset+i) % users; 0 means one user per connection")
	fs.IntVar(&o.offset, "offset", 0, "index of the first connection, so that several processes share one user space")
	fs.StringVar(&o.secret, "secret", getenv("JWT_SECRET"), "HS256 secret the tokens are signed with (default JWT_SECRET, else DATA_DIR/jwt_secret, as the server finds it)")
	ips := fs.String("source-ips", "", "comma-separated local addresses to dial from, round-robin (e.g. 127.0.0.2,127.0.0.3); empty lets the kernel choose")
	fs.IntVar(&o.concurrency, "concurrency", 200, "dials in flight at once")
	fs.DurationVar(&o.hold, "hold", 0, "how long to hold the connections once all are up; 0 holds them until SIGINT or SIGTERM")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "limit for one dial, handshake and hello")
	fs.StringVar(&o.transport, "transport", "ws", `"ws" for /ws, "socketio" for Socket.IO clients on the WebSocket transport (--url ws://host:port/socket.io/), "polling" for Socket.IO on HTTP long-polling (--url http://host:port/socket.io/)`)
	fs.BoolVar(&o.poll, "poll", true, "with --transport polling: keep a GET pending once connected (false: stop polling, the server holds the session only)")
	if err := parseFlags(fs, args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, usageError{fmt.Sprintf("bench: unexpected argument %q", fs.Arg(0))}
	}
	switch {
	case o.conns < 1:
		return o, usageError{"bench: --conns must be at least 1"}
	case o.conns > benchMaxConns:
		return o, usageError{fmt.Sprintf("bench: --conns %d is over %d: one process may hold 20 000 open files here; run several bench processes (with --offset and --source-ips) instead", o.conns, benchMaxConns)}
	case o.users < 0 || o.offset < 0:
		return o, usageError{"bench: --users and --offset must not be negative"}
	case o.concurrency < 1:
		return o, usageError{"bench: --concurrency must be at least 1"}
	case o.hold < 0 || o.timeout <= 0:
		return o, usageError{"bench: --hold must not be negative and --timeout must be positive"}
	case o.transport != "ws" && o.transport != "socketio" && o.transport != "polling":
		return o, usageError{fmt.Sprintf("bench: --transport %q: want ws, socketio or polling", o.transport)}
	}
	if o.secret == "" {
		s, err := benchSecret(getenv, stderr)
		if err != nil {
			return o, err
		}
		o.secret = s
	}
	if o.users == 0 {
		o.users = o.offset + o.conns
	}
	for s := range strings.SplitSeq(*ips, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		ip := net.ParseIP(s)
		if ip == nil {
			return o, usageError{fmt.Sprintf("bench: --source-ips: %q is not an IP address", s)}
		}
		o.sourceIPs = append(o.sourceIPs, ip)
	}
	return o, nil
}

// userID is the user of connection i of this process.
func userID(o benchOptions, i int) string {
	return fmt.Sprintf("u%d", (o.offset+i)%o.users)
}

// benchDial opens connection i and waits for its hello. It records the
// outcome in st.
func benchDial(ctx context.Context, o benchOptions, target *url.URL, token string, ips []net.IP, i int, st *benchStats) (*websocket.Conn, error) {
	nd := &net.Dialer{Timeout: o.timeout}
	if len(ips) > 0 {
		nd.LocalAddr = &net.TCPAddr{IP: ips[i%len(ips)]}
		nd.Control = bindNoPort
	}
	d := websocket.Dialer{
		NetDialContext:   nd.DialContext,
		HandshakeTimeout: o.timeout,
		ReadBufferSize:   256,
		WriteBufferSize:  256,
		WriteBufferPool:  benchWritePool,
	}
	t0 := time.Now()
	dctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	h := http.Header{"Authorization": {"Bearer " + token}}
	u := target.String()
	if o.transport == "socketio" {
		h = nil // Socket.IO authenticates in its CONNECT packet
		q := target.Query()
		q.Set("EIO", "4")
		q.Set("transport", "websocket")
		t := *target
		t.RawQuery = q.Encode()
		u = t.String()
	}
	c, resp, err := d.DialContext(dctx, u, h)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		if resp != nil {
			err = fmt.Errorf("handshake: HTTP %d", resp.StatusCode)
		}
		st.fail(err, 1)
		return nil, err
	}
	_ = c.SetReadDeadline(t0.Add(o.timeout))
	if o.transport == "socketio" {
		if err := sioConnect(c, token); err != nil {
			c.Close()
			st.fail(err, 1)
			return nil, err
		}
	} else if _, _, err := c.NextReader(); err != nil {
		c.Close()
		st.fail(fmt.Errorf("no hello: %w", err), 1)
		return nil, err
	}
	_ = c.SetReadDeadline(time.Time{})
	st.ok(time.Since(t0))
	return c, nil
}

// benchWritePool shares write buffers between connections: they write
// only pongs and the final close.
var benchWritePool = &sync.Pool{}

// sioConnect reads the Engine.IO open packet, sends a Socket.IO CONNECT
// with the token and waits for the CONNECT answer (answering pings).
func sioConnect(c *websocket.Conn, token string) error {
	_, open, err := c.ReadMessage()
	if err != nil || len(open) == 0 || open[0] != '0' {
		return fmt.Errorf("no Engine.IO open packet: %v", err)
	}
	b, _ := json.Marshal(map[string]string{"token": token})
	if err := c.WriteMessage(websocket.TextMessage, append([]byte("40"), b...)); err != nil {
		return fmt.Errorf("send CONNECT: %w", err)
	}
	for {
		_, m, err := c.ReadMessage()
		switch {
		case err != nil:
			return fmt.Errorf("no CONNECT answer: %w", err)
		case string(m) == "2":
			_ = c.WriteMessage(websocket.TextMessage, []byte("3"))
		case strings.HasPrefix(string(m), "40"):
			return nil
		case strings.HasPrefix(string(m), "44"):
			return fmt.Errorf("CONNECT_ERROR %s", m[2:])
		}
	}
}

// benchRead reads and discards messages until the connection closes;
// gorilla answers the server's pings from inside NextReader, and with sio
// the Engine.IO pings ("2") are answered ("3").
func benchRead(c *websocket.Conn, st *benchStats, sio bool) {
	c.SetPingHandler(func(data string) error {
		st.pings.Add(1)
		return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(5*time.Second))
	})
	for {
		_, r, err := c.NextReader()
		if err != nil {
			// A close we did not start (the server's, or a reset) is a drop.
			if !st.closing.Load() {
				st.dropped.Add(1)
				st.mu.Lock()
				st.drops[dropReason(err)]++
				st.mu.Unlock()
			}
			return
		}
		st.msgs.Add(1)
		var first [2]byte
		n, _ := io.ReadFull(r, first[:])
		_, _ = io.Copy(io.Discard, r)
		if sio && n == 1 && first[0] == '2' {
			st.pings.Add(1)
			if err := c.WriteMessage(websocket.TextMessage, []byte("3")); err != nil {
				return
			}
		}
	}
}

func (st *benchStats) ok(d time.Duration) {
	st.up.Add(1)
	st.mu.Lock()
	st.latency = append(st.latency, d)
	st.mu.Unlock()
}

func (st *benchStats) fail(err error, n int64) {
	st.failed.Add(n)
	reason := err.Error()
	// Keep reasons few: drop the addresses that make every error unique.
	if i := strings.LastIndex(reason, ": "); i >= 0 && strings.Contains(reason[:i], "dial tcp") {
		reason = "dial: " + reason[i+2:]
	}
	st.mu.Lock()
	st.errs[reason] += int(n)
	st.mu.Unlock()
}

func printBenchTable(w io.Writer, o benchOptions, st *benchStats, elapsed time.Duration, held int64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	slices.Sort(st.latency)
	pct := func(p float64) string {
		if len(st.latency) == 0 {
			return "-"
		}
		return st.latency[min(len(st.latency)-1, int(p*float64(len(st.latency))))].Round(100 * time.Microsecond).String()
	}
	rate := 0.0
	if elapsed > 0 {
		rate = float64(st.up.Load()) / elapsed.Seconds()
	}
	fmt.Fprintf(w, "%-28s %s\n", "url", o.url)
	fmt.Fprintf(w, "%-28s %d (users %d, offset %d)\n", "connections requested", o.conns, o.users, o.offset)
	fmt.Fprintf(w, "%-28s %d\n", "up (hello received)", st.up.Load())
	fmt.Fprintf(w, "%-28s %d\n", "failed", st.failed.Load())
	fmt.Fprintf(w, "%-28s %d\n", "dropped by server", st.dropped.Load())
	fmt.Fprintf(w, "%-28s %d\n", "held to the end", held)
	fmt.Fprintf(w, "%-28s %.2f s (%.0f conns/s)\n", "ramp-up", elapsed.Seconds(), rate)
	fmt.Fprintf(w, "%-28s p50 %s  p99 %s  max %s\n", "dial to hello", pct(0.50), pct(0.99), pct(1))
	fmt.Fprintf(w, "%-28s %d messages, %d pings answered\n", "after hello", st.msgs.Load(), st.pings.Load())
	for _, m := range []struct {
		label   string
		reasons map[string]int
	}{{"failure", st.errs}, {"dropped", st.drops}} {
		for _, r := range slices.Sorted(maps.Keys(m.reasons)) {
			fmt.Fprintf(w, "%-28s %d× %s\n", m.label, m.reasons[r], r)
		}
	}
}

// dropReason names why a connection the server closed ended: its close
// code and reason, or the network error.
func dropReason(err error) string {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return fmt.Sprintf("close %d %s", ce.Code, ce.Text)
	}
	// Drop the addresses that make every network error unique.
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg
}

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT (not in package
// syscall).
const ipBindAddressNoPort = 24

// bindNoPort lets Linux pick the source port at connect time, by the whole
// address quadruple, instead of at bind time, where the search for an
// unused port slows down as thousands are taken: 19 000 connections from
// one address went up in 4 s with it and 17 s without. Elsewhere it does
// nothing.
func bindNoPort(_, _ string, c syscall.RawConn) error {
	if runtime.GOOS != "linux" {
		return nil
	}
	return c.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1) // best effort
	})
}
