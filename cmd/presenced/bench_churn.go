package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"sync/atomic"
	"time"

	"github.com/presenced/presenced/auth"
)

// churnStats are what the churn of `presenced bench conn` reports.
type churnStats struct {
	st      *benchStats // the reopened connections: up, failed, dial-to-hello latency, drops
	closed  int64       // connections closed by the churn
	skipped int64       // slots passed over: their previous reopening had not ended
	ticks   int64
	late    int64 // ticks that could not start their dials within --churn-interval
	elapsed time.Duration
}

// churn drops o.churnRate of the connections every o.churnInterval,
// round-robin so that every connection takes its turn, and reopens each
// slot as a new user (the slot's user with a generation suffix), so that
// every churned connection is a real leave and a real join for the
// server. The reopenings overlap (up to --concurrency dials in flight, as
// clients would): a tick does not wait for the last one's answers, only
// for room to dial. A slot whose reopening has not ended when its turn
// comes again is skipped. reopen dials slot i with a token and calls
// placed once the slot holds its new connection (or none); wait returns
// when every dial started has ended. It runs for o.churnFor (or until ctx
// is done).
func churn(ctx context.Context, o benchOptions, conns []*benchConn, ch *churnStats, reopen func(i int, token string, placed func()), wait func()) {
	per := max(1, int(math.Round(o.churnRate*float64(len(conns)))))
	if o.churnFor > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.churnFor)
		defer cancel()
	}
	gens := make([]int, len(conns))
	busy := make([]atomic.Bool, len(conns)) // a reopening of the slot is in flight
	tick := time.NewTicker(o.churnInterval)
	defer tick.Stop()
	next := 0
	start := time.Now()
	defer func() {
		wait()
		ch.elapsed = time.Since(start)
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		t0 := time.Now()
		deadline := t0.Add(time.Second)
		for range per {
			i := next
			next = (next + 1) % len(conns)
			if busy[i].Load() {
				ch.skipped++
				continue
			}
			if bc := conns[i]; bc != nil {
				bc.close(deadline)
				ch.closed++
			}
			gens[i]++
			tok, err := auth.Mint([]byte(o.secret), fmt.Sprintf("%s.%d", userID(o, i), gens[i]), false, 24*time.Hour, t0)
			if err != nil {
				ch.st.fail(err, 1)
				continue
			}
			busy[i].Store(true)
			reopen(i, tok, func() { busy[i].Store(false) })
		}
		ch.ticks++
		if time.Since(t0) > o.churnInterval {
			ch.late++
		}
	}
}

// printChurn prints the churn's outcome on one "churn done" line, which
// scripts wait for and parse, and the reopened connections' latency.
func printChurn(w io.Writer, o benchOptions, ch *churnStats) {
	secs := ch.elapsed.Seconds()
	if secs <= 0 {
		secs = 1e-9
	}
	up := ch.st.up.Load()
	fmt.Fprintf(w, "churn done: disconnects %d connects %d failed %d seconds %.1f disconnects/s %.0f connects/s %.0f ticks %d late %d skipped %d\n",
		ch.closed, up, ch.st.failed.Load(), secs, float64(ch.closed)/secs, float64(up)/secs, ch.ticks, ch.late, ch.skipped)
	p50, p99, pmax := ch.st.percentiles()
	fmt.Fprintf(w, "churn dial to hello p50 %s  p99 %s  max %s\n", p50, p99, pmax)
}
