package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/auth"
)

// benchFreshMaxSamples bounds `presenced bench freshness`.
const benchFreshMaxSamples = 2000

// runBenchFreshness is `presenced bench freshness`: how long a connect or
// a disconnect takes to show. It watches the online count in Redis (GET
// --key, polled every millisecond) and, with --sse-url, on the admin SSE
// stream, then --samples times opens one connection as a new user, waits
// until both show the count one higher, closes it and waits until both
// show it back. A connect is timed from the start of its dial, a
// disconnect from its close frame, to the moment the new value was first
// seen. Between steps it waits a random 200-500 ms (--gap), so the steps
// fall at every phase of the server's timers and stay under the stream's
// cap of 4 events a second. It prints one "freshness" line per source and
// event: p50, p99 and max in milliseconds.
func runBenchFreshness(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench freshness", flag.ContinueOnError)
	var o benchOptions
	fs.StringVar(&o.url, "url", "ws://127.0.0.1:8080/ws", "WebSocket URL of the gateway (/ws, or /socket.io/ with --transport socketio)")
	fs.StringVar(&o.transport, "transport", "ws", `"ws" for /ws, "socketio" for Socket.IO on its WebSocket transport`)
	fs.StringVar(&o.secret, "secret", getenv("JWT_SECRET"), "HS256 secret the tokens are signed with (default JWT_SECRET, else DATA_DIR/jwt_secret, as the server finds it)")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "limit for one dial, and for a change to show")
	redisURL := fs.String("redis-url", getenv("REDIS_URL"), "Redis holding the online count (default $REDIS_URL)")
	key := fs.String("key", "online_users", "the Redis key of the online count")
	sseURL := fs.String("sse-url", "", "the admin SSE stream (http://host:port/api/admin/dashboard/stream); empty watches Redis only")
	token := fs.String("token", getenv("ADMIN_TOKEN"), "admin token for --sse-url (default $ADMIN_TOKEN)")
	samples := fs.Int("samples", 50, fmt.Sprintf("connects (and as many disconnects) to time; at most %d", benchFreshMaxSamples))
	gapMin := fs.Duration("gap-min", 200*time.Millisecond, "shortest random wait between two steps")
	gapMax := fs.Duration("gap", 500*time.Millisecond, "longest random wait between two steps")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	target, err := url.Parse(o.url)
	switch {
	case err != nil || target.Scheme != "ws" || target.Host == "":
		return usageError{fmt.Sprintf("bench freshness: --url %q is not a ws:// URL", o.url)}
	case o.transport != "ws" && o.transport != "socketio":
		return usageError{fmt.Sprintf("bench freshness: --transport %q: want ws or socketio", o.transport)}
	case *redisURL == "":
		return usageError{"bench freshness: no Redis: set REDIS_URL or pass --redis-url"}
	case *samples < 1 || *samples > benchFreshMaxSamples:
		return usageError{fmt.Sprintf("bench freshness: --samples must be 1 to %d", benchFreshMaxSamples)}
	case o.timeout <= 0 || *gapMin < 0 || *gapMax < *gapMin:
		return usageError{"bench freshness: --timeout must be positive and 0 <= --gap-min <= --gap"}
	}
	if err := checkLoopback("--url", target.Hostname()); err != nil {
		return err
	}
	if o.secret == "" {
		if o.secret, err = benchSecret(getenv, stderr); err != nil {
			return err
		}
	}
	ropts, err := redis.ParseURL(*redisURL)
	if err != nil {
		return usageError{fmt.Sprintf("bench freshness: --redis-url: %v", err)}
	}
	if err := checkLoopback("--redis-url", hostOf(ropts.Addr)); err != nil {
		return err
	}
	var sse *url.URL
	if *sseURL != "" {
		if sse, err = url.Parse(*sseURL); err != nil || sse.Scheme != "http" || sse.Host == "" {
			return usageError{fmt.Sprintf("bench freshness: --sse-url %q is not an http:// URL", *sseURL)}
		}
		if err := checkLoopback("--sse-url", sse.Hostname()); err != nil {
			return err
		}
	}
	o.concurrency, o.conns = 1, 1

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rdb := redis.NewClient(ropts)
	defer rdb.Close()
	inRedis := newWatched()
	go pollCount(ctx, rdb, *key, inRedis)
	var onSSE *watched
	if sse != nil {
		onSSE = newWatched()
		go watchSSE(ctx, sse.String(), *token, onSSE)
	}

	// Start from a settled count that both sources agree on.
	base, err := inRedis.settled(ctx, o.timeout)
	if err != nil {
		return fmt.Errorf("bench freshness: Redis: %w", err)
	}
	if onSSE != nil {
		if _, err := onSSE.waitFor(ctx, base, time.Now().Add(o.timeout)); err != nil {
			return fmt.Errorf("bench freshness: the SSE stream never showed %d (Redis holds it): %w", base, err)
		}
	}
	gap := func() {
		d := *gapMin
		if *gapMax > *gapMin {
			d += rand.N(*gapMax - *gapMin)
		}
		pace(ctx, time.Now().Add(d))
	}
	var lat [2][2][]time.Duration // [redis, sse][connect, disconnect]
	record := func(ev int, from time.Time, want int64) error {
		at, err := inRedis.waitFor(ctx, want, from.Add(o.timeout))
		if err != nil {
			return fmt.Errorf("online_users never showed %d: %w", want, err)
		}
		lat[0][ev] = append(lat[0][ev], at.Sub(from))
		if onSSE != nil {
			at, err := onSSE.waitFor(ctx, want, from.Add(o.timeout))
			if err != nil {
				return fmt.Errorf("the SSE stream never showed %d: %w", want, err)
			}
			lat[1][ev] = append(lat[1][ev], at.Sub(from))
		}
		return nil
	}
	st := newBenchStats()
	run := fmt.Sprintf("fresh%d.%d", os.Getpid(), time.Now().UnixNano()%1e6)
	var runErr error
	for i := range *samples {
		gap()
		if ctx.Err() != nil {
			break
		}
		tok, err := auth.Mint([]byte(o.secret), fmt.Sprintf("%s.%d", run, i), false, time.Hour, time.Now())
		if err != nil {
			return fmt.Errorf("bench freshness: %w", err)
		}
		t0 := time.Now()
		bc, err := benchDial(ctx, o, target, tok, nil, 0, st)
		if err != nil {
			runErr = fmt.Errorf("connect %d: %w", i, err)
			break
		}
		go benchRead(bc, st, o.transport == "socketio")
		if runErr = record(0, t0, base+1); runErr != nil {
			bc.close(time.Now().Add(time.Second))
			break
		}
		gap()
		t1 := time.Now()
		bc.close(t1.Add(time.Second))
		if runErr = record(1, t1, base); runErr != nil {
			break
		}
	}

	fmt.Fprintf(stdout, "freshness: %s (%s), %d samples; a connect is timed from its dial, a disconnect from its close frame\n", o.url, o.transport, len(lat[0][0]))
	for s, source := range []string{"online_users", "sse"} {
		if s == 1 && onSSE == nil {
			continue
		}
		for e, event := range []string{"connect", "disconnect"} {
			d := lat[s][e]
			slices.Sort(d)
			fmt.Fprintf(stdout, "freshness %s %s n %d p50 %s p99 %s max %s\n", source, event, len(d), msPct(d, 0.5), msPct(d, 0.99), msPct(d, 1))
		}
	}
	if runErr != nil {
		return fmt.Errorf("bench freshness: %w", runErr)
	}
	return ctx.Err()
}

// msPct is the p-th percentile of sorted d, in milliseconds ("-" when empty).
func msPct(d []time.Duration, p float64) string {
	if len(d) == 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(d[min(len(d)-1, int(p*float64(len(d))))].Microseconds())/1000, 'f', 1, 64)
}

func hostOf(addr string) string {
	if i := strings.LastIndex(addr, ":"); i >= 0 {
		return strings.Trim(addr[:i], "[]")
	}
	return addr
}

// watched is a value seen from outside, with the time each new value was
// first seen.
type watched struct {
	mu      sync.Mutex
	val     int64
	have    bool
	at      time.Time
	changed chan struct{}
}

func newWatched() *watched { return &watched{changed: make(chan struct{})} }

func (w *watched) set(v int64, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.have && v == w.val {
		return
	}
	w.val, w.have, w.at = v, true, at
	close(w.changed)
	w.changed = make(chan struct{})
}

// waitFor waits until the value is want and returns when it was first seen.
func (w *watched) waitFor(ctx context.Context, want int64, deadline time.Time) (time.Time, error) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for {
		w.mu.Lock()
		v, have, at, ch := w.val, w.have, w.at, w.changed
		w.mu.Unlock()
		if have && v == want {
			return at, nil
		}
		select {
		case <-ch:
		case <-t.C:
			if !have {
				return time.Time{}, errors.New("no value seen")
			}
			return time.Time{}, fmt.Errorf("still %d", v)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

// settled waits for a value that has not changed for 300 ms.
func (w *watched) settled(ctx context.Context, timeout time.Duration) (int64, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		v, have, at := w.val, w.have, w.at
		w.mu.Unlock()
		if have && time.Since(at) >= 300*time.Millisecond {
			return v, nil
		}
		pace(ctx, time.Now().Add(20*time.Millisecond))
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
	return 0, errors.New("the online count did not settle")
}

// pollCount reads key every millisecond into w (a missing key is 0).
func pollCount(ctx context.Context, rdb *redis.Client, key string, w *watched) {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		n, err := rdb.Get(ctx, key).Int64()
		if errors.Is(err, redis.Nil) {
			n, err = 0, nil
		}
		if err == nil {
			w.set(n, time.Now())
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// watchSSE reads the overview stream into w (onlineUsers of each event),
// reconnecting after an error.
func watchSSE(ctx context.Context, u, token string, w *watched) {
	for ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 4096), 1<<20)
			for sc.Scan() {
				data, ok := strings.CutPrefix(sc.Text(), "data: ")
				if !ok {
					continue
				}
				var ov struct {
					OnlineUsers *int64 `json:"onlineUsers"`
				}
				if json.Unmarshal([]byte(data), &ov) == nil && ov.OnlineUsers != nil {
					w.set(*ov.OnlineUsers, time.Now())
				}
			}
			resp.Body.Close()
		}
		pace(ctx, time.Now().Add(100*time.Millisecond))
	}
}
