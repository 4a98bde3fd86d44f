// Package store defines presenced's data store: the app's users (read
// only), per-user last-seen times, and the per-minute history of the online
// count. Two implementations exist: store/mongostore (production) and
// store/sqlitestore (the embedded default). Both pass store/storetest.
//
// Times are stored with millisecond precision, as MongoDB dates are: a
// time's sub-millisecond part is dropped on write.
//
// The package imports no driver.
package store

import (
	"context"
	"errors"
	"time"
)

// ErrUnavailable is wrapped by implementations when the database cannot be
// reached; callers treat it as "try again later", never as data.
var ErrUnavailable = errors.New("store: unavailable")

// User is one document (row) of the app's users collection.
type User struct {
	ID        string
	CreatedAt time.Time
}

// UserStats are the totals the dashboard shows beside the online count.
type UserStats struct {
	TotalUsers     int64 // documents in the app's users collection
	NewUsersToday  int64 // users whose createdAt is on or after midnight of now's day in now's location
	ActiveUsers24h int64 // users whose last-seen time is within 24 h before now
}

// LastSeen records that a user was connected at a moment.
type LastSeen struct {
	UserID string
	At     time.Time
}

// HistoryPoint is the online count at one minute.
type HistoryPoint struct {
	T                 time.Time // truncated to the minute, UTC
	OnlineUsers       int64
	OnlineConnections int64
}

// Store is presenced's data store. All methods are safe for concurrent use.
type Store interface {
	// Kind names the implementation as the dashboard reports it as a
	// source: "mongodb" or "sqlite".
	Kind() string

	// Ping checks that the database answers.
	Ping(ctx context.Context) error

	// UserStats counts the app's users, today's new users (createdAt at or
	// after StartOfDay(now): midnight in now's location, STATS_TIMEZONE) and the users seen within 24 h before now
	// (last-seen time at or after now-24h).
	UserStats(ctx context.Context, now time.Time) (UserStats, error)

	// SeenSince counts users whose last-seen time is at or after since. It
	// is the fallback online count when Redis is unavailable.
	SeenSince(ctx context.Context, since time.Time) (int64, error)

	// TouchLastSeen upserts last-seen times; a stored time never moves
	// backwards. Implementations split large slices into bounded batches.
	TouchLastSeen(ctx context.Context, seen []LastSeen) error

	// RefreshLastSeen sets the last-seen time of each of users to at where
	// none is stored or the stored one is before stale, and leaves fresher
	// times alone; it returns how many users it wrote. The periodic
	// refresh of connected users calls it: most of them were written
	// moments ago, and rewriting them would only cost writes.
	// Implementations split large slices into bounded batches.
	RefreshLastSeen(ctx context.Context, users []string, at, stale time.Time) (written int, err error)

	// AddHistory stores one point at Minute(p.T); a second point for the
	// same minute replaces the first, so writing it twice is harmless.
	AddHistory(ctx context.Context, p HistoryPoint) error

	// History returns the points with from <= T < to, oldest first, with
	// T in UTC.
	History(ctx context.Context, from, to time.Time) ([]HistoryPoint, error)

	// InsertUsers adds users to the app's users collection; a user whose ID
	// exists already is left as it is. The seed command calls it, and so
	// does the last-seen writer for the embedded SQLite store, whose users
	// table is presenced's own (LastSeenOptions.RecordUsers): presenced
	// never writes the app's MongoDB users.
	InsertUsers(ctx context.Context, users []User) error

	// InsertUsersCount is InsertUsers that also returns how many users it
	// inserted: those whose ID was neither stored already nor earlier in
	// users. The seed command calls it to say how many users were new. On
	// error, inserted counts the batches written before the failing one.
	InsertUsersCount(ctx context.Context, users []User) (inserted int, err error)

	// Close releases the database connection.
	Close(ctx context.Context) error
}

// StartOfDay returns midnight of t's day in t's location, where "new
// users today" starts (on a day that begins with a DST jump, the first
// moment of that day).
func StartOfDay(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, t.Location())
}

// StartOfDayUTC returns 00:00 UTC of t's day in UTC, where "new users
// today" starts.
func StartOfDayUTC(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// Minute returns t truncated to its minute, in UTC: the key of a
// HistoryPoint.
func Minute(t time.Time) time.Time {
	return t.UTC().Truncate(time.Minute)
}
