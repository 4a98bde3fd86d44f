package dashboard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/store"
)

// Claimer elects one node per minute to write the history point, so the
// history is written once per cluster, not once per node.
type Claimer interface {
	// ClaimMinute reports whether this node won minute t.
	ClaimMinute(ctx context.Context, t time.Time) (bool, error)
}

// HistoryRecorder writes the online count to the data store once a minute.
type HistoryRecorder struct {
	Presence presence.Reader
	Store    store.Store
	Claimer  Claimer // nil: this node always writes (one node, or no Redis)
	Logger   *slog.Logger
}

// Run records a point at the start of every minute until ctx is done.
func (h *HistoryRecorder) Run(ctx context.Context) {
	log := h.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for {
		now := time.Now()
		next := now.Truncate(time.Minute).Add(time.Minute)
		select {
		case <-ctx.Done():
			return
		case <-time.After(next.Sub(now)):
		}
		if err := h.record(ctx, next); err != nil && ctx.Err() == nil {
			log.Warn("history: point not written", "minute", next.UTC().Format(time.RFC3339), "err", err)
		}
	}
}

func (h *HistoryRecorder) record(ctx context.Context, minute time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	c, err := h.Presence.Counts(ctx)
	if err != nil {
		if errors.Is(err, presence.ErrNoData) {
			return nil
		}
		return err
	}
	if c.Partial {
		return nil // a count being rebuilt is not history
	}
	if h.Claimer != nil {
		won, err := h.Claimer.ClaimMinute(ctx, minute)
		if err != nil || !won {
			return err
		}
	}
	return h.Store.AddHistory(ctx, store.HistoryPoint{T: minute.UTC(), OnlineUsers: c.Users, OnlineConnections: c.Connections})
}

// Point is one point of GET /api/admin/dashboard/history.
type Point struct {
	T                 time.Time `json:"t"`
	OnlineUsers       int64     `json:"onlineUsers"`
	OnlineConnections int64     `json:"onlineConnections"`
}

// History is GET /api/admin/dashboard/history.
type History struct {
	Range       string    `json:"range"`
	StepSeconds int       `json:"stepSeconds"`
	Points      []Point   `json:"points"`
	GeneratedAt time.Time `json:"generatedAt"`
}

// ranges maps each accepted range to its length and bucket step; a bucket
// keeps its highest point, so peaks survive the downsampling.
var ranges = map[string]struct{ length, step time.Duration }{
	"1h":  {time.Hour, time.Minute},
	"24h": {24 * time.Hour, 5 * time.Minute},
	"7d":  {7 * 24 * time.Hour, 30 * time.Minute},
}

// ErrBadRange is returned by History for a range other than 1h, 24h, 7d.
var ErrBadRange = errors.New("range must be 1h, 24h or 7d")

// History returns the online count over rng ("1h", "24h" or "7d").
func (s *Service) History(ctx context.Context, rng string) (History, error) {
	r, ok := ranges[rng]
	if !ok {
		return History{}, ErrBadRange
	}
	now := s.o.Now().UTC()
	pts, err := s.o.Store.History(ctx, now.Add(-r.length), now.Add(time.Minute))
	if err != nil {
		return History{}, fmt.Errorf("dashboard: history: %w", err)
	}
	out := History{Range: rng, StepSeconds: int(r.step.Seconds()), Points: []Point{}, GeneratedAt: now}
	for _, p := range pts {
		t := p.T.UTC().Truncate(r.step)
		if n := len(out.Points); n > 0 && out.Points[n-1].T.Equal(t) {
			last := &out.Points[n-1]
			last.OnlineUsers = max(last.OnlineUsers, p.OnlineUsers)
			last.OnlineConnections = max(last.OnlineConnections, p.OnlineConnections)
			continue
		}
		out.Points = append(out.Points, Point{T: t, OnlineUsers: p.OnlineUsers, OnlineConnections: p.OnlineConnections})
	}
	return out, nil
}
