package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/store"
	"github.com/presenced/presenced/store/sqlitestore"
)

// TestRunSeedTwice seeds an SQLite store twice through run: the second run
// adds no user, and the store then has what every dashboard card and the
// history chart need.
func TestRunSeedTwice(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	getenv := env(map[string]string{"DATA_DIR": dir})
	seed := func() string {
		t.Helper()
		var stdout, stderr syncBuffer
		if err := run(context.Background(), []string{"presenced", "seed", "--users", "50"}, getenv, &stdout, &stderr); err != nil {
			t.Fatalf("seed --users 50: %v\n%s", err, stderr.String())
		}
		return stdout.String()
	}
	before := time.Now()
	if out := seed(); !strings.Contains(out, "seed: 50 users (demo-0001..demo-0050): added 50 new, 0 already present;") || !strings.Contains(out, "180 history points: added 180 new, 0 already present;") {
		t.Errorf("first seed said %q, want 50 users added and 180 history points added", out)
	}
	if out := seed(); !strings.Contains(out, "added 0 new, 50 already present;") || !strings.Contains(out, "180 history points: added 0 new, 180 already present;") {
		t.Errorf("second seed said %q, want 0 new and 50 already present", out)
	}

	ctx := t.Context()
	ds, err := sqlitestore.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close(ctx)
	// Seen from before the first run, every seeded time is "now" or
	// later, so these hold even across a midnight.
	st, err := ds.UserStats(ctx, before)
	if err != nil {
		t.Fatal(err)
	}
	if st.TotalUsers != 50 || st.NewUsersToday <= 0 || st.NewUsersToday >= 50 || st.ActiveUsers24h <= 0 || st.ActiveUsers24h >= 50 {
		t.Errorf("UserStats = %+v, want 50 users, some (not all) new today and some (not all) active in 24 h", st)
	}
	if n, err := ds.SeenSince(ctx, before.Add(-time.Minute)); err != nil || n <= 0 {
		t.Errorf("SeenSince(a minute before seeding) = %d, %v; want some users (the fallback online count)", n, err)
	}

	points, err := ds.History(ctx, before.Add(-4*time.Hour), time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	// 180 minutes; one more if the second run began in a later minute.
	if len(points) < 180 || len(points) > 181 {
		t.Fatalf("History over the last 4 h has %d points, want 180 (or 181)", len(points))
	}
	lo, hi := points[0].OnlineUsers, points[0].OnlineUsers
	for _, p := range points {
		if p.OnlineUsers < 1 || p.OnlineUsers > 50 || p.OnlineConnections < p.OnlineUsers {
			t.Fatalf("history point %+v: want 1..50 users and at least as many connections", p)
		}
		lo, hi = min(lo, p.OnlineUsers), max(hi, p.OnlineUsers)
	}
	if lo == hi {
		t.Errorf("every history point has %d online users: the chart would be a flat line", lo)
	}
}

// TestRunSeedKeepsRecordedHistory: a minute the server recorded already is
// not overwritten by a made-up point.
func TestRunSeedKeepsRecordedHistory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := t.Context()
	ds, err := sqlitestore.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	recorded := store.HistoryPoint{T: store.Minute(time.Now()).Add(-time.Hour), OnlineUsers: 999, OnlineConnections: 1234}
	if err := ds.AddHistory(ctx, recorded); err != nil {
		t.Fatal(err)
	}
	ds.Close(ctx)

	var stdout, stderr syncBuffer
	if err := run(ctx, []string{"presenced", "seed", "--users", "5"}, env(map[string]string{"DATA_DIR": dir}), &stdout, &stderr); err != nil {
		t.Fatalf("seed: %v\n%s", err, stderr.String())
	}
	if want := "180 history points: added 179 new, 1 already present"; !strings.Contains(stdout.String(), want) {
		t.Errorf("seed said %q, want %q", stdout.String(), want)
	}
	ds, err = sqlitestore.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close(ctx)
	points, err := ds.History(ctx, recorded.T, recorded.T.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(points) != 1 || points[0] != recorded {
		t.Errorf("History at the recorded minute = %+v, want %+v", points, recorded)
	}
}

// TestRunSeedUsageErrors: a bad seed command line is exit code 2 with a
// message naming the problem, and nothing is written.
func TestRunSeedUsageErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		want string // in the error
	}{
		{"zero users", []string{"--users", "0"}, "--users must be at least 1"},
		{"negative users", []string{"--users", "-3"}, "--users must be at least 1"},
		{"not a number", []string{"--users", "fifty"}, `invalid value "fifty" for flag -users`},
		{"extra argument", []string{"--users", "5", "extra"}, `unexpected argument "extra"`},
		{"bare count", []string{"50"}, `unexpected argument "50"`},
		{"unknown flag", []string{"--user", "5"}, "-user"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr syncBuffer
			args := append([]string{"presenced", "seed"}, tc.args...)
			err := run(context.Background(), args, env(map[string]string{"DATA_DIR": t.TempDir()}), &stdout, &stderr)
			if err == nil {
				t.Fatalf("run %v succeeded; stdout:\n%s", args, stdout.String())
			}
			if code := exitCode(err); code != 2 {
				t.Fatalf("exit code %d for %v, want 2", code, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// TestRunSeedHelp: seed --help prints the seed flags on stdout and is not
// an error (exit code 0).
func TestRunSeedHelp(t *testing.T) {
	t.Parallel()
	getenv := env(map[string]string{"DATA_DIR": t.TempDir()})
	var stdout, stderr syncBuffer
	if err := run(context.Background(), []string{"presenced", "seed", "--help"}, getenv, &stdout, &stderr); err != nil {
		t.Fatalf("seed --help: %v", err)
	}
	if !strings.Contains(stdout.String(), "-users") || !strings.Contains(stdout.String(), "-prefix") || stderr.String() != "" {
		t.Errorf("seed --help printed %q on stdout and %q on stderr, want the -users and -prefix flags on stdout only", stdout.String(), stderr.String())
	}
}

// TestDemoData checks the made-up data for any number of users: unique
// IDs, sign-ups within 30 days with one today at least, last-seen times
// within 24 h and never before a sign-up, online counts within 1..users.
func TestDemoData(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 10, 0, 20, 0, 0, time.UTC) // 20 minutes into the day
	for _, n := range []int{1, 2, 3, 10, 50, 1000, 12345} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			users := demoUsers(n, "demo-", now)
			if len(users) != n || users[0].ID != "demo-0001" {
				t.Fatalf("demoUsers(%d): %d users, first %q; want %d, first demo-0001", n, len(users), users[0].ID, n)
			}
			created := map[string]time.Time{}
			today := 0
			for _, u := range users {
				if _, dup := created[u.ID]; dup {
					t.Fatalf("user ID %q twice", u.ID)
				}
				created[u.ID] = u.CreatedAt
				if u.CreatedAt.After(now) || !u.CreatedAt.After(now.Add(-30*24*time.Hour)) {
					t.Errorf("%s created %v, want within the 30 days before %v", u.ID, u.CreatedAt, now)
				}
				if !u.CreatedAt.Before(store.StartOfDayUTC(now)) {
					today++
				}
			}
			if today == 0 {
				t.Errorf("no user created today")
			}
			seen := demoLastSeen(users, now)
			recent := 0
			for _, ls := range seen {
				c, ok := created[ls.UserID]
				if !ok || ls.At.Before(c) || ls.At.After(now) || ls.At.Before(now.Add(-24*time.Hour)) {
					t.Errorf("last seen %+v (created %v): want a seeded user, seen after sign-up, within 24 h", ls, c)
				}
				if !ls.At.Before(now.Add(-time.Minute)) {
					recent++
				}
			}
			if len(seen) != (n+2)/3 || recent == 0 {
				t.Errorf("%d seen, %d within a minute; want %d (a third) and some", len(seen), recent, (n+2)/3)
			}
			for m := range 24 * 60 {
				if o := demoOnline(n, now.Add(time.Duration(m)*time.Minute)); o < 1 || o > int64(n) {
					t.Fatalf("demoOnline(%d) = %d, want 1..%d", n, o, n)
				}
			}
		})
	}
}
