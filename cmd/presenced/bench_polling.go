package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presenced/presenced/auth"
)

// runPollingBench is `presenced bench --transport polling`: --conns
// Socket.IO sessions on HTTP long-polling. Each opens a session, connects
// to the main namespace with its token and then, with --poll (the
// default), keeps a GET pending and answers pings, as socket.io-client
// does; with --poll=false it stops polling once connected, so the server
// holds only the session between polls (it times out after the ping
// interval and timeout). It prints READY like the WebSocket modes.
func runPollingBench(ctx context.Context, o benchOptions, target *url.URL, stdout io.Writer) error {
	var next atomic.Int64
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nd := &net.Dialer{Timeout: o.timeout}
			if len(o.sourceIPs) > 0 {
				nd.LocalAddr = &net.TCPAddr{IP: o.sourceIPs[int(next.Add(1))%len(o.sourceIPs)]}
				nd.Control = bindNoPort
			}
			return nd.DialContext(ctx, network, addr)
		},
		MaxIdleConnsPerHost: 2 * o.conns,
		DisableCompression:  true,
		ReadBufferSize:      1024,
		WriteBufferSize:     1024,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	base := *target
	q := base.Query()
	q.Set("EIO", "4")
	q.Set("transport", "polling")
	base.RawQuery = q.Encode()

	now := time.Now()
	st := newBenchStats()
	sids := make([]string, o.conns)
	sem := make(chan struct{}, o.concurrency)
	var dialing, polling sync.WaitGroup
	pollCtx, stopPolling := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPolling()
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
		go func() {
			defer dialing.Done()
			defer func() { <-sem }()
			tok, err := auth.Mint([]byte(o.secret), userID(o, i), false, 24*time.Hour, now)
			if err != nil {
				st.fail(err, 1)
				return
			}
			t0 := time.Now()
			sid, err := pollingConnect(ctx, client, base.String(), tok, o.timeout)
			if err != nil {
				st.fail(err, 1)
				return
			}
			st.ok(time.Since(t0))
			sids[i] = sid
			if o.poll {
				polling.Add(1)
				go func() { defer polling.Done(); pollLoop(pollCtx, client, base.String(), sid, st) }()
			}
		}()
	}
	dialing.Wait()
	elapsed := time.Since(start)
	tooMany := readyAndHold(ctx, o, st, elapsed, "sessions", stdout, nil)
	st.closing.Store(true)
	held := int64(0)
	var closing sync.WaitGroup
	for _, sid := range sids {
		if sid == "" {
			continue
		}
		held++
		sem <- struct{}{}
		closing.Add(1)
		go func() {
			defer closing.Done()
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, _ = pollingPost(cctx, client, base.String(), sid, "1")
		}()
	}
	closing.Wait()
	stopPolling()
	polling.Wait()
	held -= st.dropped.Load()
	printBenchTable(stdout, o, st, elapsed, held)
	if tooMany {
		return fmt.Errorf("bench: %d of %d sessions failed (over 1%%)", st.failed.Load(), o.conns)
	}
	return nil
}

// pollingConnect opens a polling session and connects it to the main
// namespace with tok; it returns the session id.
func pollingConnect(ctx context.Context, client *http.Client, base, tok string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	open, err := pollingGet(ctx, client, base, "")
	if err != nil {
		return "", fmt.Errorf("open: %w", err)
	}
	var o struct {
		SID string `json:"sid"`
	}
	if len(open) < 2 || open[0] != '0' || json.Unmarshal(open[1:], &o) != nil || o.SID == "" {
		return "", fmt.Errorf("open: not an open packet: %.40q", open)
	}
	b, _ := json.Marshal(map[string]string{"token": tok})
	if _, err := pollingPost(ctx, client, base, o.SID, "40"+string(b)); err != nil {
		return "", fmt.Errorf("CONNECT: %w", err)
	}
	for {
		payload, err := pollingGet(ctx, client, base, o.SID)
		if err != nil {
			return "", fmt.Errorf("CONNECT answer: %w", err)
		}
		for p := range bytes.SplitSeq(payload, []byte{0x1e}) {
			switch {
			case string(p) == "2":
				if _, err := pollingPost(ctx, client, base, o.SID, "3"); err != nil {
					return "", err
				}
			case bytes.HasPrefix(p, []byte("40")):
				return o.SID, nil
			case bytes.HasPrefix(p, []byte("44")):
				return "", fmt.Errorf("CONNECT_ERROR %s", p[2:])
			}
		}
	}
}

// pollLoop keeps a GET pending and answers pings until ctx is done or the
// server ends the session.
func pollLoop(ctx context.Context, client *http.Client, base, sid string, st *benchStats) {
	for ctx.Err() == nil {
		payload, err := pollingGet(ctx, client, base, sid)
		if err != nil {
			if ctx.Err() == nil && !st.closing.Load() {
				st.dropped.Add(1)
				st.mu.Lock()
				st.drops[err.Error()]++
				st.mu.Unlock()
			}
			return
		}
		st.msgs.Add(1)
		for p := range bytes.SplitSeq(payload, []byte{0x1e}) {
			switch string(p) {
			case "2":
				st.pings.Add(1)
				_, _ = pollingPost(ctx, client, base, sid, "3")
			case "1":
				if !st.closing.Load() {
					st.dropped.Add(1)
					st.mu.Lock()
					st.drops["server closed the session"]++
					st.mu.Unlock()
				}
				return
			}
		}
	}
}

func pollingGet(ctx context.Context, client *http.Client, base, sid string) ([]byte, error) {
	u := base
	if sid != "" {
		u += "&sid=" + url.QueryEscape(sid)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	return pollingDo(client, req)
}

func pollingPost(ctx context.Context, client *http.Client, base, sid, body string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"&sid="+url.QueryEscape(sid), strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	return pollingDo(client, req)
}

func pollingDo(client *http.Client, req *http.Request) ([]byte, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return b, nil
}
