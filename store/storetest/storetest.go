// Package storetest is the contract suite every store.Store implementation
// passes: one set of tests, run against SQLite and against a real
// MongoDB-wire server.
package storetest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/presenced/presenced/store"
)

// Run runs the contract suite as parallel subtests of t. open must return
// a new, empty store for each call and close it in t.Cleanup; the suite
// writes at most a few hundred documents per store, as FerretDB is slow.
//
// Implementations that bound their write batches should be opened with a
// batch size below 130 so that TouchLastSeen crosses batch boundaries.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Kind", testKind},
		{"Ping", testPing},
		{"Empty", testEmpty},
		{"UserStats", testUserStats},
		{"NewUsersTodayBoundary", testNewUsersTodayBoundary},
		{"ObjectIDAndStringIDs", testObjectIDAndStringIDs},
		{"InsertUsersKeepsExisting", testInsertUsersKeepsExisting},
		{"InsertUsersCount", testInsertUsersCount},
		{"InsertUsersCountManyBatches", testInsertUsersCountManyBatches},
		{"ActiveUsers24hBoundary", testActiveUsers24hBoundary},
		{"LastSeenUpsert", testLastSeenUpsert},
		{"LastSeenMonotonic", testLastSeenMonotonic},
		{"SeenSinceBoundaries", testSeenSinceBoundaries},
		{"TouchLastSeenManyBatches", testTouchLastSeenManyBatches},
		{"RefreshLastSeenOnlyStale", testRefreshLastSeenOnlyStale},
		{"RefreshLastSeenManyBatches", testRefreshLastSeenManyBatches},
		{"HistoryIdempotent", testHistoryIdempotent},
		{"HistoryRangeAndOrder", testHistoryRangeAndOrder},
		{"EmptyWrites", testEmptyWrites},
		{"LastSeenOf", testLastSeenOf},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

// base is a fixed moment, whole milliseconds, so stored times compare
// exactly; it is mid-afternoon UTC.
var base = time.Date(2025, 3, 10, 15, 4, 5, 6_000_000, time.UTC)

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func testKind(t *testing.T, s store.Store) {
	if s.Kind() == "" {
		t.Fatal("Kind() is empty")
	}
}

func testPing(t *testing.T, s store.Store) {
	if err := s.Ping(ctx(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testEmpty(t *testing.T, s store.Store) {
	c := ctx(t)
	if got := mustUserStats(t, s, base); got != (store.UserStats{}) {
		t.Errorf("UserStats on an empty store = %+v, want zeros", got)
	}
	if n := mustSeenSince(t, s, time.Time{}); n != 0 {
		t.Errorf("SeenSince(zero) on an empty store = %d, want 0", n)
	}
	points, err := s.History(c, base.Add(-24*time.Hour), base)
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if len(points) != 0 {
		t.Errorf("History on an empty store = %v, want none", points)
	}
}

func testUserStats(t *testing.T, s store.Store) {
	day := store.StartOfDayUTC(base)
	var users []store.User
	for i := range 30 { // 30 created before today
		users = append(users, store.User{ID: fmt.Sprintf("old-%d", i), CreatedAt: day.Add(-time.Duration(i+1) * time.Hour)})
	}
	for i := range 12 { // 12 created today
		users = append(users, store.User{ID: fmt.Sprintf("new-%d", i), CreatedAt: day.Add(time.Duration(i) * time.Minute)})
	}
	mustInsertUsers(t, s, users)

	var seen []store.LastSeen
	for i := range 7 { // 7 within 24 h
		seen = append(seen, store.LastSeen{UserID: fmt.Sprintf("old-%d", i), At: base.Add(-time.Duration(i) * time.Hour)})
	}
	for i := range 5 { // 5 seen long ago
		seen = append(seen, store.LastSeen{UserID: fmt.Sprintf("new-%d", i), At: base.Add(-48 * time.Hour)})
	}
	mustTouch(t, s, seen)

	want := store.UserStats{TotalUsers: 42, NewUsersToday: 12, ActiveUsers24h: 7}
	if got := mustUserStats(t, s, base); got != want {
		t.Errorf("UserStats = %+v, want %+v", got, want)
	}
}

// testNewUsersTodayBoundary checks that "today" starts at midnight of
// now's location (STATS_TIMEZONE): 00:00 UTC for a time in UTC, 05:00 UTC
// for one at -05:00.
func testNewUsersTodayBoundary(t *testing.T, s store.Store) {
	midnight := time.Date(2025, 3, 10, 0, 0, 0, 0, time.UTC)
	est := time.FixedZone("EST", -5*3600)
	estMidnight := time.Date(2025, 3, 9, 0, 0, 0, 0, est) // 2025-03-09 05:00 UTC
	mustInsertUsers(t, s, []store.User{
		{ID: "before", CreatedAt: midnight.Add(-time.Millisecond)},
		{ID: "at", CreatedAt: midnight},
		{ID: "after", CreatedAt: midnight.Add(time.Millisecond)},
		{ID: "est-before", CreatedAt: estMidnight.Add(-time.Millisecond)},
		{ID: "est-at", CreatedAt: estMidnight},
	})
	if got := mustUserStats(t, s, midnight); got.NewUsersToday != 2 || got.TotalUsers != 5 {
		t.Errorf("UserStats(00:00 UTC) = %+v, want TotalUsers 5, NewUsersToday 2 (at, after)", got)
	}
	// 02:00 UTC is 2025-03-09 21:00 at -05:00: today there began at
	// 05:00 UTC the day before.
	now := midnight.Add(2 * time.Hour).In(est)
	if got := mustUserStats(t, s, now); got.NewUsersToday != 4 {
		t.Errorf("UserStats(%v) NewUsersToday = %d, want 4 (all but est-before)", now, got.NewUsersToday)
	}
	// A minute before midnight UTC, "today" in UTC is 2025-03-09, which
	// all five were created on or after (est-before at 04:59 UTC).
	if got := mustUserStats(t, s, midnight.Add(-time.Minute)); got.NewUsersToday != 5 {
		t.Errorf("UserStats(23:59 UTC) NewUsersToday = %d, want 5", got.NewUsersToday)
	}
}

// testObjectIDAndStringIDs inserts IDs that are 24-hex ObjectId strings and
// IDs that are not; both kinds count, and last-seen takes either.
func testObjectIDAndStringIDs(t *testing.T, s store.Store) {
	ids := []string{
		"65f1a2b3c4d5e6f708192a3b", // ObjectId hex
		"65f1a2b3c4d5e6f708192a3c",
		"user-42",                  // plain string
		"zzzzzzzzzzzzzzzzzzzzzzzz", // 24 characters, not hex
		"auth0|65f1a2b3c4d5e6f708192a3b",
	}
	users := make([]store.User, len(ids))
	seen := make([]store.LastSeen, len(ids))
	for i, id := range ids {
		users[i] = store.User{ID: id, CreatedAt: base.Add(-time.Minute)}
		seen[i] = store.LastSeen{UserID: id, At: base}
	}
	mustInsertUsers(t, s, users)
	mustTouch(t, s, seen)
	want := store.UserStats{TotalUsers: 5, NewUsersToday: 5, ActiveUsers24h: 5}
	if got := mustUserStats(t, s, base); got != want {
		t.Errorf("UserStats = %+v, want %+v", got, want)
	}
}

func testInsertUsersKeepsExisting(t *testing.T, s store.Store) {
	day := store.StartOfDayUTC(base)
	mustInsertUsers(t, s, []store.User{
		{ID: "65f1a2b3c4d5e6f708192a3b", CreatedAt: day.Add(-time.Hour)},
		{ID: "u1", CreatedAt: day.Add(-time.Hour)},
	})
	// Inserting the same IDs again, now dated today, changes nothing; the
	// new one is added.
	mustInsertUsers(t, s, []store.User{
		{ID: "65f1a2b3c4d5e6f708192a3b", CreatedAt: day.Add(time.Hour)},
		{ID: "u1", CreatedAt: day.Add(time.Hour)},
		{ID: "u2", CreatedAt: day.Add(time.Hour)},
	})
	if got := mustUserStats(t, s, base); got.TotalUsers != 3 || got.NewUsersToday != 1 {
		t.Errorf("UserStats = %+v, want TotalUsers 3, NewUsersToday 1", got)
	}
}

func testInsertUsersCount(t *testing.T, s store.Store) {
	const oid = "65f1a2b3c4d5e6f708192a3b"
	if n := mustInsertUsersCount(t, s, []store.User{
		{ID: oid, CreatedAt: base},
		{ID: "u0", CreatedAt: base},
		{ID: "u1", CreatedAt: base},
	}); n != 3 {
		t.Errorf("InsertUsersCount into an empty store = %d, want 3", n)
	}
	// Two stored already, two new, and one new twice in the same call:
	// only its first copy is inserted.
	if n := mustInsertUsersCount(t, s, []store.User{
		{ID: oid, CreatedAt: base},
		{ID: "u1", CreatedAt: base},
		{ID: "u2", CreatedAt: base},
		{ID: "u3", CreatedAt: base},
		{ID: "u2", CreatedAt: base},
	}); n != 2 {
		t.Errorf("InsertUsersCount with 2 new of 5 = %d, want 2", n)
	}
	if n := mustInsertUsersCount(t, s, []store.User{{ID: "u0", CreatedAt: base}, {ID: oid, CreatedAt: base}}); n != 0 {
		t.Errorf("InsertUsersCount of stored users = %d, want 0", n)
	}
	if got := mustUserStats(t, s, base); got.TotalUsers != 5 {
		t.Errorf("TotalUsers = %d, want 5", got.TotalUsers)
	}
}

// testInsertUsersCountManyBatches inserts more users than one batch holds,
// some stored already, so the count adds up over batches with and without
// duplicates.
func testInsertUsersCountManyBatches(t *testing.T, s store.Store) {
	users := make([]store.User, 130)
	for i := range users {
		users[i] = store.User{ID: fmt.Sprintf("user-%03d", i), CreatedAt: base}
	}
	if n := mustInsertUsersCount(t, s, users[:50]); n != 50 {
		t.Errorf("InsertUsersCount(50 new) = %d, want 50", n)
	}
	if n := mustInsertUsersCount(t, s, users); n != 80 {
		t.Errorf("InsertUsersCount(130, 50 stored) = %d, want 80", n)
	}
	if got := mustUserStats(t, s, base); got.TotalUsers != 130 {
		t.Errorf("TotalUsers = %d, want 130", got.TotalUsers)
	}
}

func testActiveUsers24hBoundary(t *testing.T, s store.Store) {
	mustTouch(t, s, []store.LastSeen{
		{UserID: "out", At: base.Add(-24*time.Hour - time.Millisecond)},
		{UserID: "edge", At: base.Add(-24 * time.Hour)},
		{UserID: "in", At: base.Add(-time.Minute)},
	})
	if got := mustUserStats(t, s, base); got.ActiveUsers24h != 2 {
		t.Errorf("ActiveUsers24h = %d, want 2 (edge, in)", got.ActiveUsers24h)
	}
	// Last-seen rows need no user in the users collection.
	if got := mustUserStats(t, s, base); got.TotalUsers != 0 {
		t.Errorf("TotalUsers = %d, want 0", got.TotalUsers)
	}
}

func testLastSeenUpsert(t *testing.T, s store.Store) {
	mustTouch(t, s, []store.LastSeen{{UserID: "a", At: base}})
	if n := mustSeenSince(t, s, base); n != 1 {
		t.Fatalf("SeenSince after first touch = %d, want 1", n)
	}
	mustTouch(t, s, []store.LastSeen{{UserID: "a", At: base.Add(time.Minute)}, {UserID: "b", At: base}})
	if n := mustSeenSince(t, s, base); n != 2 {
		t.Errorf("SeenSince(base) = %d, want 2", n)
	}
	if n := mustSeenSince(t, s, base.Add(time.Minute)); n != 1 {
		t.Errorf("SeenSince(base+1m) = %d, want 1 (a moved forward)", n)
	}
}

func testLastSeenMonotonic(t *testing.T, s store.Store) {
	mustTouch(t, s, []store.LastSeen{{UserID: "a", At: base}})
	// An older time, alone or beside a newer one for the same user in one
	// call, never moves the stored time back.
	mustTouch(t, s, []store.LastSeen{{UserID: "a", At: base.Add(-time.Hour)}})
	if n := mustSeenSince(t, s, base); n != 1 {
		t.Errorf("after an older touch SeenSince(base) = %d, want 1", n)
	}
	mustTouch(t, s, []store.LastSeen{
		{UserID: "b", At: base.Add(5 * time.Second)},
		{UserID: "b", At: base.Add(-5 * time.Second)},
		{UserID: "a", At: base.Add(time.Second)},
		{UserID: "a", At: base.Add(-time.Second)},
	})
	if n := mustSeenSince(t, s, base.Add(time.Second)); n != 2 {
		t.Errorf("SeenSince(base+1s) = %d, want 2 (a at +1s, b at +5s)", n)
	}
	if n := mustSeenSince(t, s, base.Add(5*time.Second)); n != 1 {
		t.Errorf("SeenSince(base+5s) = %d, want 1 (b)", n)
	}
	if n := mustSeenSince(t, s, base.Add(5*time.Second+time.Millisecond)); n != 0 {
		t.Errorf("SeenSince(base+5.001s) = %d, want 0", n)
	}
}

func testSeenSinceBoundaries(t *testing.T, s store.Store) {
	mustTouch(t, s, []store.LastSeen{
		{UserID: "before", At: base.Add(-time.Millisecond)},
		{UserID: "at", At: base},
		{UserID: "after", At: base.Add(time.Millisecond)},
	})
	for _, tc := range []struct {
		since time.Time
		want  int64
	}{
		{base.Add(-time.Hour), 3},
		{base.Add(-time.Millisecond), 3},
		{base, 2},
		{base.Add(time.Millisecond), 1},
		{base.Add(2 * time.Millisecond), 0},
		{base.In(time.FixedZone("X", 3*3600)), 2}, // the location does not matter
	} {
		if n := mustSeenSince(t, s, tc.since); n != tc.want {
			t.Errorf("SeenSince(%v) = %d, want %d", tc.since, n, tc.want)
		}
	}
}

// testTouchLastSeenManyBatches writes more entries than one batch holds
// (implementations are opened with small batches in tests).
func testTouchLastSeenManyBatches(t *testing.T, s store.Store) {
	const n = 130
	seen := make([]store.LastSeen, n)
	for i := range seen {
		seen[i] = store.LastSeen{UserID: fmt.Sprintf("user-%03d", i), At: base.Add(time.Duration(i) * time.Millisecond)}
	}
	mustTouch(t, s, seen)
	if got := mustSeenSince(t, s, base); got != n {
		t.Fatalf("SeenSince(base) = %d, want %d", got, n)
	}
	if got := mustSeenSince(t, s, base.Add(100*time.Millisecond)); got != n-100 {
		t.Errorf("SeenSince(base+100ms) = %d, want %d", got, n-100)
	}
	// Touch them all again an hour later, in reverse order.
	later := base.Add(time.Hour)
	for i := range seen {
		seen[i].At = later
	}
	slices.Reverse(seen)
	mustTouch(t, s, seen)
	if got := mustSeenSince(t, s, later); got != n {
		t.Errorf("SeenSince(base+1h) = %d, want %d", got, n)
	}
}

// testRefreshLastSeenOnlyStale: a missing user and one whose time is
// before stale are written, a fresh one and one stored in the future are
// left alone.
func testRefreshLastSeenOnlyStale(t *testing.T, s store.Store) {
	mustTouch(t, s, []store.LastSeen{
		{UserID: "old", At: base.Add(-time.Hour)},
		{UserID: "fresh", At: base},
		{UserID: "ahead", At: base.Add(time.Hour)},
	})
	at, stale := base.Add(30*time.Second), base.Add(-time.Second)
	n, err := s.RefreshLastSeen(ctx(t), []string{"old", "fresh", "ahead", "new"}, at, stale)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("RefreshLastSeen wrote %d, want 2 (old, new)", n)
	}
	if got := mustSeenSince(t, s, at); got != 3 {
		t.Errorf("SeenSince(at) = %d, want 3 (old, new, ahead)", got)
	}
	if got := mustSeenSince(t, s, base.Add(time.Millisecond)); got != 3 {
		t.Errorf("SeenSince(base+1ms) = %d, want 3 (fresh kept at base)", got)
	}
	if got := mustSeenSince(t, s, base.Add(time.Hour)); got != 1 {
		t.Errorf("SeenSince(base+1h) = %d, want 1 (ahead not moved back)", got)
	}
	// Again at once: everything is fresh now.
	if n, err := s.RefreshLastSeen(ctx(t), []string{"old", "new"}, at.Add(time.Second), stale); err != nil || n != 0 {
		t.Errorf("second RefreshLastSeen = %d, %v; want 0, nil", n, err)
	}
	if n, err := s.RefreshLastSeen(ctx(t), nil, at, stale); err != nil || n != 0 {
		t.Errorf("RefreshLastSeen(nil) = %d, %v; want 0, nil", n, err)
	}
}

// testRefreshLastSeenManyBatches crosses batch boundaries with half of the
// users fresh.
func testRefreshLastSeenManyBatches(t *testing.T, s store.Store) {
	const n = 130
	users := make([]string, n)
	var fresh []store.LastSeen
	for i := range users {
		users[i] = fmt.Sprintf("user-%03d", i)
		if i%2 == 0 {
			fresh = append(fresh, store.LastSeen{UserID: users[i], At: base})
		}
	}
	mustTouch(t, s, fresh)
	at := base.Add(time.Minute)
	got, err := s.RefreshLastSeen(ctx(t), users, at, base.Add(-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if got != n/2 {
		t.Errorf("RefreshLastSeen wrote %d, want %d", got, n/2)
	}
	if c := mustSeenSince(t, s, base); c != n {
		t.Errorf("SeenSince(base) = %d, want %d", c, n)
	}
	if c := mustSeenSince(t, s, at); c != n/2 {
		t.Errorf("SeenSince(at) = %d, want %d", c, n/2)
	}
}

func testHistoryIdempotent(t *testing.T, s store.Store) {
	c := ctx(t)
	minute := base.Truncate(time.Minute)
	for _, p := range []store.HistoryPoint{
		{T: minute.Add(5 * time.Second), OnlineUsers: 10, OnlineConnections: 12},
		{T: minute.Add(5 * time.Second), OnlineUsers: 10, OnlineConnections: 12},
		{T: minute.Add(59 * time.Second), OnlineUsers: 11, OnlineConnections: 14},
	} {
		if err := s.AddHistory(c, p); err != nil {
			t.Fatalf("AddHistory(%+v): %v", p, err)
		}
	}
	points, err := s.History(c, minute.Add(-time.Hour), minute.Add(time.Hour))
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	want := []store.HistoryPoint{{T: minute, OnlineUsers: 11, OnlineConnections: 14}}
	checkPoints(t, points, want)
}

func testHistoryRangeAndOrder(t *testing.T, s store.Store) {
	c := ctx(t)
	start := base.Truncate(time.Minute)
	// Written out of order, one point a minute for ten minutes.
	for _, i := range []int{3, 0, 9, 5, 1, 7, 2, 8, 4, 6} {
		p := store.HistoryPoint{T: start.Add(time.Duration(i) * time.Minute), OnlineUsers: int64(i), OnlineConnections: int64(2 * i)}
		if err := s.AddHistory(c, p); err != nil {
			t.Fatalf("AddHistory(%+v): %v", p, err)
		}
	}
	var want []store.HistoryPoint
	for i := 2; i < 7; i++ {
		want = append(want, store.HistoryPoint{T: start.Add(time.Duration(i) * time.Minute), OnlineUsers: int64(i), OnlineConnections: int64(2 * i)})
	}
	points, err := s.History(c, start.Add(2*time.Minute), start.Add(7*time.Minute))
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	checkPoints(t, points, want)

	// from inside a minute excludes that minute's point, which is keyed at
	// its start; the location of from and to does not matter.
	zone := time.FixedZone("X", -7*3600)
	points, err = s.History(c, start.Add(8*time.Minute+time.Second).In(zone), start.Add(time.Hour).In(zone))
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	checkPoints(t, points, []store.HistoryPoint{{T: start.Add(9 * time.Minute), OnlineUsers: 9, OnlineConnections: 18}})

	points, err = s.History(c, start.Add(-time.Hour), start)
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	checkPoints(t, points, nil)
}

func testEmptyWrites(t *testing.T, s store.Store) {
	c := ctx(t)
	if err := s.TouchLastSeen(c, nil); err != nil {
		t.Errorf("TouchLastSeen(nil): %v", err)
	}
	if err := s.InsertUsers(c, nil); err != nil {
		t.Errorf("InsertUsers(nil): %v", err)
	}
	if n, err := s.InsertUsersCount(c, nil); n != 0 || err != nil {
		t.Errorf("InsertUsersCount(nil) = %d, %v; want 0, nil", n, err)
	}
}

func checkPoints(t *testing.T, got, want []store.HistoryPoint) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("History = %v, want %v", got, want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if !g.T.Equal(w.T) || g.T.Location() != time.UTC || g.OnlineUsers != w.OnlineUsers || g.OnlineConnections != w.OnlineConnections {
			t.Errorf("History[%d] = %+v (location %v), want %+v in UTC", i, g, g.T.Location(), w)
		}
	}
}

func mustInsertUsers(t *testing.T, s store.Store, users []store.User) {
	t.Helper()
	if err := s.InsertUsers(ctx(t), users); err != nil {
		t.Fatalf("InsertUsers(%d): %v", len(users), err)
	}
}

func mustInsertUsersCount(t *testing.T, s store.Store, users []store.User) int {
	t.Helper()
	n, err := s.InsertUsersCount(ctx(t), users)
	if err != nil {
		t.Fatalf("InsertUsersCount(%d): %v", len(users), err)
	}
	return n
}

func mustTouch(t *testing.T, s store.Store, seen []store.LastSeen) {
	t.Helper()
	if err := s.TouchLastSeen(ctx(t), seen); err != nil {
		t.Fatalf("TouchLastSeen(%d): %v", len(seen), err)
	}
}

func mustUserStats(t *testing.T, s store.Store, now time.Time) store.UserStats {
	t.Helper()
	st, err := s.UserStats(ctx(t), now)
	if err != nil {
		t.Fatalf("UserStats(%v): %v", now, err)
	}
	return st
}

func mustSeenSince(t *testing.T, s store.Store, since time.Time) int64 {
	t.Helper()
	n, err := s.SeenSince(ctx(t), since)
	if err != nil {
		t.Fatalf("SeenSince(%v): %v", since, err)
	}
	return n
}

// testLastSeenOf: one user's last-seen time (GET /api/admin/presence/users/{id}
// shows it), none for a user never seen.
func testLastSeenOf(t *testing.T, s store.Store) {
	l, ok := s.(interface {
		LastSeenOf(ctx context.Context, user string) (time.Time, bool, error)
	})
	if !ok {
		t.Fatalf("%T has no LastSeenOf", s)
	}
	if _, ok, err := l.LastSeenOf(ctx(t), "alice"); err != nil || ok {
		t.Fatalf("LastSeenOf(unknown) = %v, %v; want not found", ok, err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	if err := s.TouchLastSeen(ctx(t), []store.LastSeen{{UserID: "alice", At: at}, {UserID: "bob", At: at.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := l.LastSeenOf(ctx(t), "alice")
	if err != nil || !ok || !got.Equal(at) {
		t.Fatalf("LastSeenOf(alice) = %v, %v, %v; want %v", got, ok, err, at)
	}
}
