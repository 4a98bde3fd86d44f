package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"time"

	"github.com/presenced/presenced/store"
)

// seedHistory is how far back seed writes per-minute history points: enough
// for the 1h chart to be full and the 24h chart to show a curve.
const seedHistory = 3 * time.Hour

// runSeed fills the data store with demo data, so every dashboard card and
// the history chart show something on a first start: users created over the
// last 30 days (some today), last-seen times within 24 h for a third of
// them (a few within the last minute), and per-minute history points for
// the last 3 hours. User IDs are prefix+0001... so a second run inserts no
// user twice, and it says how many were new.
func runSeed(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("seed", flag.ContinueOnError)
	n := fs.Int("users", 100, "how many demo users (IDs <prefix>0001...)")
	prefix := fs.String("prefix", "demo-", "user id prefix")
	envFile := addEnvFile(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("seed: unexpected argument %q (the count is --users N)\n\n%s", fs.Arg(0), commandUsage(fs))}
	}
	if *n < 1 {
		return usageError{fmt.Sprintf("seed: --users must be at least 1, not %d", *n)}
	}
	cfg, err := envFile.load(getenv, stderr)
	if err != nil {
		return err
	}
	ds, err := openStore(ctx, cfg, slog.New(slog.NewTextHandler(stderr, nil)), false)
	if err != nil {
		return err
	}
	defer ds.Close(context.Background())

	now := time.Now().UTC()
	users := demoUsers(*n, *prefix, now)
	added, err := ds.InsertUsersCount(ctx, users)
	if err != nil {
		return fmt.Errorf("seed: users: %w", err)
	}
	seen := demoLastSeen(users, now)
	// TouchLastSeen never moves a time back, so a second run only
	// refreshes the demo users' times.
	if err := ds.TouchLastSeen(ctx, seen); err != nil {
		return fmt.Errorf("seed: last seen: %w", err)
	}
	points, written, err := seedHistoryPoints(ctx, ds, *n, now)
	if err != nil {
		return fmt.Errorf("seed: history: %w", err)
	}
	fmt.Fprintf(stdout, "seed: %d users (%s..%s): added %d new, %d already present; %d seen in the last 24 h; %d history points: added %d new, %d already present; in %s\n",
		len(users), users[0].ID, users[len(users)-1].ID, added, len(users)-added, len(seen), points, written, points-written, ds.Kind())
	return nil
}

// demoUsers returns n users prefix0001... Every tenth was created today
// (after 00:00 UTC, so "new today" counts it), the others 1 to 29 days
// before now.
func demoUsers(n int, prefix string, now time.Time) []store.User {
	today := store.StartOfDayUTC(now)
	users := make([]store.User, n)
	for k := range users {
		created := now.Add(-time.Duration(1+k%29)*24*time.Hour - time.Duration(k%24)*time.Hour)
		if k%10 == 0 {
			created = later(now.Add(-time.Duration(k)*time.Minute), today)
		}
		users[k] = store.User{ID: fmt.Sprintf("%s%04d", prefix, k+1), CreatedAt: created}
	}
	return users
}

// demoLastSeen returns last-seen times for every third user, spread over
// the last 23 hours; the first five are within the last minute, so the
// data store's fallback online count is not zero either. No user is seen
// before it was created.
func demoLastSeen(users []store.User, now time.Time) []store.LastSeen {
	active := (len(users) + 2) / 3
	seen := make([]store.LastSeen, 0, active)
	for k := 0; k < len(users); k += 3 {
		j := len(seen)
		at := now.Add(-time.Duration(j) * 23 * time.Hour / time.Duration(active))
		if j < 5 {
			at = now.Add(-time.Duration(j) * 10 * time.Second)
		}
		seen = append(seen, store.LastSeen{UserID: users[k].ID, At: later(at, users[k].CreatedAt)})
	}
	return seen
}

// seedHistoryPoints writes a point for each minute of the last seedHistory
// (the current minute included) that has none, so a point the server
// recorded is never replaced by a made-up one, and a second run only fills
// the minutes since the first. It returns the points now in that window and
// how many it wrote. AddHistory writes one point per call, within
// FerretDB's limits whatever MONGODB_BATCH_SIZE is.
func seedHistoryPoints(ctx context.Context, ds store.Store, users int, now time.Time) (points, written int, err error) {
	last := store.Minute(now)
	first := last.Add(-seedHistory + time.Minute)
	existing, err := ds.History(ctx, first, last.Add(time.Minute))
	if err != nil {
		return 0, 0, err
	}
	have := make(map[int64]bool, len(existing))
	for _, p := range existing {
		have[p.T.Unix()] = true
	}
	for t := first; !t.After(last); t = t.Add(time.Minute) {
		if have[t.Unix()] {
			continue
		}
		online := demoOnline(users, t)
		p := store.HistoryPoint{T: t, OnlineUsers: online, OnlineConnections: online + online/4}
		if err := ds.AddHistory(ctx, p); err != nil {
			return 0, written, err
		}
		written++
	}
	return len(existing) + written, written, nil
}

// demoOnline is the made-up online count at minute t: about a fifth of the
// users, on a two-hour wave with a little jitter, between 1 and users. It
// depends only on t, so points written by different runs join up.
func demoOnline(users int, t time.Time) int64 {
	m := t.Unix() / 60
	wave := math.Sin(2 * math.Pi * float64(m%120) / 120)
	jitter := float64(uint32(m*2654435761)%7)/6 - 0.5 // -0.5..0.5
	online := int64(math.Round(float64(users) * (0.2 + 0.08*wave + 0.04*jitter)))
	return min(max(online, 1), int64(users))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
