package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

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

	rate          float64       // connects a second during the ramp; 0 is unpaced
	churnRate     float64       // fraction of the connections dropped and reopened every churnInterval
	churnInterval time.Duration // how often the churn drops churnRate of them
	churnFor      time.Duration // how long the churn lasts; 0 is the whole hold
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

// benchMaxHold bounds how long a bench run holds its connections when
// --hold is 0 (until SIGINT or SIGTERM), so a forgotten run ends.
const benchMaxHold = time.Hour

// benchUsage lists the bench subcommands; each one's flags follow it in
// its --help.
const benchUsage = `usage: presenced bench [conn|http|freshness] [flags]
  conn       open --conns connections (/ws, Socket.IO or long-polling), hold
             them, optionally paced (--rate) and churned (--churn-rate);
             the default when no subcommand is given
  http       closed-loop keep-alive load on an admin endpoint: req/s, p50/p99/max
  freshness  time from a connect or disconnect to the change in online_users
             (Redis) and on the SSE stream: p50/p99
Targets must be loopback addresses. See BENCHMARKS.md and bench/.
`

// runBench is the load generator used by the benchmarks under bench/. Its
// first argument picks the subcommand; without one it is conn, the
// original command line, which the scripts under bench/ use.
func runBench(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	sub := "conn"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "conn":
		err := runBenchConn(ctx, args, getenv, stdout, stderr)
		var h helpShown
		if errors.As(err, &h) { // conn's help opens with the list of subcommands
			return helpShown{benchUsage + "\n" + h.text}
		}
		return err
	case "http":
		return runBenchHTTP(ctx, args, getenv, stdout, stderr)
	case "freshness":
		return runBenchFreshness(ctx, args, getenv, stdout, stderr)
	case "help":
		return helpShown{benchUsage}
	}
	return usageError{fmt.Sprintf("bench: unknown subcommand %q\n\n%s", sub, benchUsage)}
}

// checkLoopback refuses a target that is not on this machine: the bench
// commands are load generators and must not be pointed at someone
// else's server.
func checkLoopback(flagName, host string) error {
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return usageError{fmt.Sprintf("bench: %s host %q is not a loopback address (127.0.0.0/8, ::1 or localhost)", flagName, host)}
}

// runBenchConn is `presenced bench conn`: it opens --conns authenticated
// WebSocket connections to --url (paced at --rate a second, or as fast as
// --concurrency allows), waits for each one's hello, then prints "READY"
// on a line of its own (or "NOT READY" if over 1% failed, and exits
// non-zero). It holds the connections, reading and discarding messages
// and answering pings, for --hold or until ctx is done, churning them
// meanwhile if asked (--churn-rate), then closes them and prints a table.
//
// The client side is kept cheap (a goroutine and a 512-byte read buffer
// per connection, see bench_ws.go) so that it does not starve the server
// it measures of the machine's two cores.
func runBenchConn(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseBenchFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	target, err := url.Parse(o.url)
	if o.transport == "polling" {
		if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
			return usageError{fmt.Sprintf("bench: --url %q is not an http:// or https:// URL", o.url)}
		}
		if err := checkLoopback("--url", target.Hostname()); err != nil {
			return err
		}
		return runPollingBench(ctx, o, target, stdout)
	}
	if err != nil || target.Scheme != "ws" || target.Host == "" {
		return usageError{fmt.Sprintf("bench: --url %q is not a ws:// URL (the bench client speaks no TLS)", o.url)}
	}
	if err := checkLoopback("--url", target.Hostname()); err != nil {
		return err
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

	st := newBenchStats()
	var (
		conns   = make([]*benchConn, o.conns)
		sem     = make(chan struct{}, o.concurrency)
		dialing sync.WaitGroup // connections not yet up or failed
		reading sync.WaitGroup // reader goroutines
	)
	// open dials connection i into its slot; the churn reopens slots,
	// and learns through placed that slot i holds its new connection.
	open := func(i int, token string, st *benchStats, placed func()) {
		defer reading.Done()
		bc, _ := benchDial(ctx, o, target, token, o.sourceIPs, i, st)
		conns[i] = bc
		if placed != nil {
			placed()
		}
		<-sem
		dialing.Done()
		if bc != nil {
			benchRead(bc, st, o.transport == "socketio")
		}
	}
	start := time.Now()
	for i := range o.conns {
		if o.rate > 0 {
			pace(ctx, start.Add(time.Duration(float64(i)*float64(time.Second)/o.rate)))
		}
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
		go open(i, tokens[i%len(tokens)], st, nil)
	}
	dialing.Wait()
	elapsed := time.Since(start)
	var ch *churnStats
	if o.churnRate > 0 {
		ch = &churnStats{st: newBenchStats()}
	}
	tooMany := readyAndHold(ctx, o, st, elapsed, "conns", stdout, func(ctx context.Context) {
		if ch == nil {
			return
		}
		churn(ctx, o, conns, ch, func(i int, token string, placed func()) {
			sem <- struct{}{}
			dialing.Add(1)
			reading.Add(1)
			go open(i, token, ch.st, placed)
		}, dialing.Wait)
		printChurn(stdout, o, ch)
	})

	// Close cleanly: a close frame then the socket, so the server sees a
	// normal close rather than a reset.
	st.closing.Store(true)
	held := int64(0)
	deadline := time.Now().Add(time.Second)
	for _, bc := range conns {
		if bc == nil {
			continue
		}
		held++
		bc.close(deadline)
	}
	reading.Wait()
	held -= st.dropped.Load()
	if ch != nil {
		held -= ch.st.dropped.Load()
	}

	printBenchTable(stdout, o, st, elapsed, held)
	if tooMany {
		return fmt.Errorf("bench: %d of %d connections failed (over 1%%)", st.failed.Load(), o.conns)
	}
	return nil
}

// pace sleeps until t (or ctx is done).
func pace(ctx context.Context, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-ctx.Done():
	}
}

func newBenchStats() *benchStats {
	return &benchStats{errs: make(map[string]int), drops: make(map[string]int)}
}

// readyAndHold prints how many connections (of what, e.g. "conns") came
// up and READY, or NOT READY when over 1% failed, then holds them for
// --hold or until ctx is done. It reports whether too many failed.
//
// during, when not nil, runs at the start of the hold with a context that
// ends with it.
func readyAndHold(ctx context.Context, o benchOptions, st *benchStats, elapsed time.Duration, what string, stdout io.Writer, during func(context.Context)) (tooMany bool) {
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
	hold := o.hold
	if hold <= 0 {
		hold = benchMaxHold
	}
	hctx, cancel := context.WithTimeout(ctx, hold)
	defer cancel()
	if during != nil {
		during(hctx)
	}
	<-hctx.Done()
	return false
}

func parseBenchFlags(args []string, getenv func(string) string, stderr io.Writer) (benchOptions, error) {
	fs := flag.NewFlagSet("bench conn", flag.ContinueOnError)
	var o benchOptions
	fs.StringVar(&o.url, "url", "ws://127.0.0.1:8080/ws", "WebSocket URL of the gateway")
	fs.IntVar(&o.conns, "conns", 1000, fmt.Sprintf("connections to open, at most %d", benchMaxConns))
	fs.IntVar(&o.users, "users", 0, "distinct users u0..u{N-1}; connection i is user (offset+i) % users; 0 means one user per connection")
	fs.IntVar(&o.offset, "offset", 0, "index of the first connection, so that several processes share one user space")
	fs.StringVar(&o.secret, "secret", getenv("JWT_SECRET"), "HS256 secret the tokens are signed with (default JWT_SECRET, else DATA_DIR/jwt_secret, as the server finds it)")
	ips := fs.String("source-ips", "", "comma-separated local addresses to dial from, round-robin (e.g. 127.0.0.2,127.0.0.3); empty lets the kernel choose")
	fs.IntVar(&o.concurrency, "concurrency", 200, "dials in flight at once")
	fs.DurationVar(&o.hold, "hold", 0, "how long to hold the connections once all are up; 0 holds them until SIGINT or SIGTERM (at most 1 h)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "limit for one dial, handshake and hello")
	fs.StringVar(&o.transport, "transport", "ws", `"ws" for /ws, "socketio" for Socket.IO clients on the WebSocket transport (--url ws://host:port/socket.io/), "polling" for Socket.IO on HTTP long-polling (--url http://host:port/socket.io/)`)
	fs.BoolVar(&o.poll, "poll", true, "with --transport polling: keep a GET pending once connected (false: stop polling, the server holds the session only)")
	fs.Float64Var(&o.rate, "rate", 0, "connects a second while opening the connections; 0 dials as fast as --concurrency allows")
	fs.Float64Var(&o.churnRate, "churn-rate", 0, "churn: every --churn-interval, close this fraction of the connections (round-robin) and reopen them as new users; 0 is no churn")
	fs.DurationVar(&o.churnInterval, "churn-interval", 100*time.Millisecond, "churn: how often --churn-rate of the connections are dropped and reopened")
	fs.DurationVar(&o.churnFor, "churn-for", 0, "churn: how long to churn once all are up, then print \"churn done\" and hold; 0 churns for the whole --hold")
	if err := parseFlags(fs, args); err != nil {
		return o, err
	}
	if err := noArgs(fs); err != nil {
		return o, err
	}
	switch {
	case o.rate < 0:
		return o, usageError{"bench: --rate must not be negative"}
	case o.churnRate < 0 || o.churnRate > 1:
		return o, usageError{"bench: --churn-rate is a fraction between 0 and 1"}
	case o.churnRate > 0 && o.churnInterval < time.Millisecond:
		return o, usageError{"bench: --churn-interval must be at least 1ms"}
	case o.churnRate > 0 && o.transport == "polling":
		return o, usageError{"bench: --churn-rate works with --transport ws or socketio"}
	case o.churnFor < 0:
		return o, usageError{"bench: --churn-for must not be negative"}
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
		if !ip.IsLoopback() {
			return o, usageError{fmt.Sprintf("bench: --source-ips: %q is not a loopback address", s)}
		}
		o.sourceIPs = append(o.sourceIPs, ip)
	}
	return o, nil
}

// userID is the user of connection i of this process.
func userID(o benchOptions, i int) string {
	return fmt.Sprintf("u%d", (o.offset+i)%o.users)
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

// percentiles returns the dial-to-hello p50, p99 and max.
func (st *benchStats) percentiles() (p50, p99, pmax string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	slices.Sort(st.latency)
	pct := func(p float64) string {
		if len(st.latency) == 0 {
			return "-"
		}
		return st.latency[min(len(st.latency)-1, int(p*float64(len(st.latency))))].Round(100 * time.Microsecond).String()
	}
	return pct(0.50), pct(0.99), pct(1)
}

func printBenchTable(w io.Writer, o benchOptions, st *benchStats, elapsed time.Duration, held int64) {
	p50, p99, pmax := st.percentiles()
	st.mu.Lock()
	defer st.mu.Unlock()
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
	if o.rate > 0 {
		fmt.Fprintf(w, "%-28s %.0f conns/s\n", "paced at", o.rate)
	}
	fmt.Fprintf(w, "%-28s p50 %s  p99 %s  max %s\n", "dial to hello", p50, p99, pmax)
	fmt.Fprintf(w, "%-28s %d messages, %d pings answered\n", "after hello", st.msgs.Load(), st.pings.Load())
	// One line for scripts: the figures above in plain numbers.
	fmt.Fprintf(w, "summary up %d failed %d dropped %d held %d seconds %.3f conns/s %.0f p50ms %s p99ms %s maxms %s\n",
		st.up.Load(), st.failed.Load(), st.dropped.Load(), held, elapsed.Seconds(), rate,
		msPct(st.latency, 0.5), msPct(st.latency, 0.99), msPct(st.latency, 1))
	for _, m := range []struct {
		label   string
		reasons map[string]int
	}{{"failure", st.errs}, {"dropped", st.drops}} {
		for _, r := range slices.Sorted(maps.Keys(m.reasons)) {
			fmt.Fprintf(w, "%-28s %d× %s\n", m.label, m.reasons[r], r)
		}
	}
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
