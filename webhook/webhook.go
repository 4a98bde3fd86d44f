// Package webhook delivers the online/offline events of the presence
// store's log to WEBHOOK_URL: batches of events, signed with HMAC-SHA256,
// delivered by one node at a time (a lease in the store), retried with
// backoff, and the position in the log kept in the store so that another
// node carries on where a dead one stopped. It runs on its own goroutine
// and never blocks the gateway.
//
// Each POST carries a JSON body
//
//	{"node": "<delivering node>", "sentAt": "<RFC 3339>", "events": [
//	  {"id": "1733050000000-0", "type": "online", "userId": "alice", "at": "<RFC 3339>"}, ...]}
//
// with the header X-Presenced-Signature: sha256=<hex HMAC-SHA256 of the
// body with WEBHOOK_SECRET>. Any 2xx answer acknowledges the batch. Ids
// are unique and increase ("<ms>-<seq>" or "<ms>-<seq>.<k>", ordered by
// ms, seq, then k; see presence/redisstore/who.go); a batch may be
// delivered twice (a node dies after the POST, before it saves its
// position), so receivers deduplicate by id. When no position is stored yet (the first node ever
// to deliver), delivery starts at the oldest event the log keeps.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/presenced/presenced/presence"
)

// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the body.
const SignatureHeader = "X-Presenced-Signature"

// Coordinator is the store's share of the work: the lease that elects one
// delivering node and the position in the event log.
type Coordinator interface {
	// Lease takes or renews the lease for holder; it reports whether
	// holder has it.
	Lease(ctx context.Context, holder string, ttl time.Duration) (bool, error)
	// Release gives the lease up if holder has it.
	Release(ctx context.Context, holder string) error
	// Position returns the id of the last event handled, "" if none.
	Position(ctx context.Context) (string, error)
	// SavePosition stores id if holder has the lease; it reports whether.
	SavePosition(ctx context.Context, holder, id string) (bool, error)
}

// Options configures a Sender. The zero value of each field means the
// documented default.
type Options struct {
	URL    string // required
	Secret string // required
	Node   string // this node's id, the lease holder; required
	Log    presence.EventLog
	Coord  Coordinator
	// Client sends the POSTs; nil means one with a 5s timeout.
	Client *http.Client
	// BatchMax caps the events per POST; zero means 100.
	BatchMax int
	// Attempts is how many times a batch is tried before its events are
	// dropped; zero means 6.
	Attempts int
	// Backoff is the wait after the first failed attempt, doubling after
	// each next one up to MaxBackoff; zero means 500ms and 8s.
	Backoff, MaxBackoff time.Duration
	// LeaseTTL is the lease a delivering node holds, renewed a third of it
	// at a time; zero means 10s.
	LeaseTTL time.Duration
	Logger   *slog.Logger
}

// Sender delivers the event log to the webhook.
type Sender struct {
	o         Options
	log       *slog.Logger
	delivered atomic.Int64
	dropped   atomic.Int64
	failures  atomic.Int64
}

// New returns a Sender; call Run.
func New(o Options) (*Sender, error) {
	if o.URL == "" || o.Secret == "" || o.Node == "" || o.Log == nil || o.Coord == nil {
		return nil, errors.New("webhook: URL, Secret, Node, Log and Coord are required")
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 5 * time.Second}
	}
	if o.BatchMax <= 0 {
		o.BatchMax = 100
	}
	if o.Attempts <= 0 {
		o.Attempts = 6
	}
	if o.Backoff <= 0 {
		o.Backoff = 500 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 8 * time.Second
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Sender{o: o, log: o.Logger}, nil
}

// Delivered returns the events acknowledged by the webhook.
func (s *Sender) Delivered() int64 { return s.delivered.Load() }

// Dropped returns the events given up after every attempt failed.
func (s *Sender) Dropped() int64 { return s.dropped.Load() }

// Failures returns the failed POST attempts.
func (s *Sender) Failures() int64 { return s.failures.Load() }

// Run delivers until ctx is done, then gives the lease up.
func (s *Sender) Run(ctx context.Context) {
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_ = s.o.Coord.Release(rctx, s.o.Node)
		cancel()
	}()
	leader := false
	for ctx.Err() == nil {
		ok, err := s.o.Coord.Lease(ctx, s.o.Node, s.o.LeaseTTL)
		if err != nil && ctx.Err() == nil {
			s.log.Debug("webhook: lease", "err", err)
		}
		if ok != leader {
			leader = ok
			if ok {
				s.log.Info("webhook: this node delivers events now", "url_host", hostOf(s.o.URL))
			}
		}
		if !ok {
			sleep(ctx, s.o.LeaseTTL/3)
			continue
		}
		s.lead(ctx)
		leader = false
	}
}

// lead delivers while this node holds the lease.
func (s *Sender) lead(ctx context.Context) {
	pos, err := s.o.Coord.Position(ctx)
	if err != nil {
		s.log.Debug("webhook: read position", "err", err)
		sleep(ctx, time.Second)
		return
	}
	if pos == "" {
		// No node has delivered yet: start at the oldest event the log
		// keeps, so that nothing since the cluster began is missed.
		pos = "0-0"
	}
	renewed := time.Now()
	for ctx.Err() == nil {
		if time.Since(renewed) > s.o.LeaseTTL/3 {
			ok, err := s.o.Coord.Lease(ctx, s.o.Node, s.o.LeaseTTL)
			if err != nil || !ok {
				return
			}
			renewed = time.Now()
		}
		evs, err := s.o.Log.ReadEvents(ctx, pos, s.o.BatchMax, min(time.Second, s.o.LeaseTTL/4))
		if err != nil {
			sleep(ctx, time.Second)
			continue
		}
		// The log may return more than asked (the Redis store returns
		// whole stream entries, one per script call): BatchMax per POST,
		// the position saved after each, as any event id is a position.
		for len(evs) > 0 {
			batch := evs[:min(len(evs), s.o.BatchMax)]
			evs = evs[len(batch):]
			if !s.deliver(ctx, batch, &renewed) {
				return // lease lost or shutting down: the position stays
			}
			last := batch[len(batch)-1].ID
			ok, err := s.o.Coord.SavePosition(ctx, s.o.Node, last)
			if err != nil || !ok {
				return
			}
			pos = last
		}
	}
}

type payload struct {
	Node   string           `json:"node"`
	SentAt time.Time        `json:"sentAt"`
	Events []presence.Event `json:"events"`
}

// deliver POSTs one batch until it is acknowledged or every attempt
// failed (then the events are dropped, counted and logged). It returns
// false, leaving the batch to the next holder, if the lease is lost or
// ctx is done.
func (s *Sender) deliver(ctx context.Context, evs []presence.Event, renewed *time.Time) bool {
	wait := s.o.Backoff
	var lastErr error
	for attempt := 1; attempt <= s.o.Attempts; attempt++ {
		if attempt > 1 {
			if !sleep(ctx, wait) {
				return false
			}
			wait = min(2*wait, s.o.MaxBackoff)
		}
		if time.Since(*renewed) > s.o.LeaseTTL/3 {
			ok, err := s.o.Coord.Lease(ctx, s.o.Node, s.o.LeaseTTL)
			if err != nil || !ok {
				return false
			}
			*renewed = time.Now()
		}
		lastErr = s.post(ctx, evs)
		if lastErr == nil {
			s.delivered.Add(int64(len(evs)))
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		s.failures.Add(1)
		s.log.Debug("webhook: delivery failed", "attempt", attempt, "events", len(evs), "err", lastErr)
	}
	s.dropped.Add(int64(len(evs)))
	s.log.Error("webhook: events dropped after every attempt failed",
		"events", len(evs), "attempts", s.o.Attempts, "first_id", evs[0].ID, "last_id", evs[len(evs)-1].ID, "err", lastErr)
	return true
}

func (s *Sender) post(ctx context.Context, evs []presence.Event) error {
	body, err := json.Marshal(payload{Node: s.o.Node, SentAt: time.Now().UTC(), Events: evs})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.o.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "presenced-webhook")
	req.Header.Set(SignatureHeader, Sign(s.o.Secret, body))
	resp, err := s.o.Client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}

// Sign returns the signature header value of body: "sha256=" and the hex
// HMAC-SHA256 of body with secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether header is body's signature with secret, in
// constant time: what a receiver does.
func Verify(secret string, body []byte, header string) bool {
	return hmac.Equal([]byte(header), []byte(Sign(secret, body)))
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func hostOf(u string) string {
	req, err := http.NewRequest(http.MethodPost, u, nil)
	if err != nil {
		return ""
	}
	return req.URL.Host
}
