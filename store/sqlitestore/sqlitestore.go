// Package sqlitestore implements store.Store on an embedded SQLite database
// (modernc.org/sqlite, pure Go): presenced's data store when no MongoDB is
// configured.
package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/presenced/presenced/store"
)

// FileName is the database file Open creates inside its directory.
const FileName = "presenced.db"

// batchSize bounds the rows written by one transaction, so a large write
// never holds SQLite's single write lock for long.
const batchSize = 500

// schema is applied at every Open; every statement is idempotent. Times are
// INTEGER unix milliseconds (UTC), the precision MongoDB dates have too.
const schema = `
CREATE TABLE IF NOT EXISTS users (
	id         TEXT PRIMARY KEY,
	created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS users_created_at ON users (created_at);
CREATE TABLE IF NOT EXISTS last_seen (
	user_id      TEXT PRIMARY KEY,
	last_seen_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS last_seen_last_seen_at ON last_seen (last_seen_at);
CREATE TABLE IF NOT EXISTS history (
	t                  INTEGER PRIMARY KEY,
	online_users       INTEGER NOT NULL,
	online_connections INTEGER NOT NULL
);
`

// Store is a store.Store on SQLite. It is safe for concurrent use.
type Store struct {
	db     *sql.DB
	closed atomic.Bool
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) dir/presenced.db in WAL mode and applies
// the schema. dir is created if it does not exist.
func Open(ctx context.Context, dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("sqlitestore: open: empty directory")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("sqlitestore: open: %w", err)
	}
	path := filepath.Join(dir, FileName)
	// busy_timeout makes a writer wait for the lock instead of failing;
	// _txlock=immediate takes the write lock at BEGIN, so two transactions
	// never deadlock upgrading a read lock. WAL lets readers run beside the
	// writer; synchronous=NORMAL is durable enough for presence data.
	dsn := "file:" + path +
		"?_pragma=busy_timeout(5000)" +
		"&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(NORMAL)" +
		"&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	if _, err := db.ExecContext(ctx, schema); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("sqlitestore: open %s: schema: %w", path, wrapErr(err))
	}
	return &Store{db: db}, nil
}

// Kind returns "sqlite".
func (s *Store) Kind() string { return "sqlite" }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.check(); err != nil {
		return err
	}
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlitestore: ping: %w", wrapErr(err))
	}
	return nil
}

// UserStats counts users, today's new users and users seen within 24 h
// before now, in one statement so the three numbers agree.
func (s *Store) UserStats(ctx context.Context, now time.Time) (store.UserStats, error) {
	if err := s.check(); err != nil {
		return store.UserStats{}, err
	}
	var st store.UserStats
	err := s.db.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM users),
		(SELECT count(*) FROM users WHERE created_at >= ?),
		(SELECT count(*) FROM last_seen WHERE last_seen_at >= ?)`,
		store.StartOfDay(now).UnixMilli(), now.Add(-24*time.Hour).UnixMilli(),
	).Scan(&st.TotalUsers, &st.NewUsersToday, &st.ActiveUsers24h)
	if err != nil {
		return store.UserStats{}, fmt.Errorf("sqlitestore: user stats: %w", wrapErr(err))
	}
	return st, nil
}

// SeenSince counts users whose last-seen time is at or after since.
func (s *Store) SeenSince(ctx context.Context, since time.Time) (int64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	var n int64
	err := s.db.QueryRowContext(ctx,
		`SELECT count(*) FROM last_seen WHERE last_seen_at >= ?`, since.UnixMilli(),
	).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("sqlitestore: seen since: %w", wrapErr(err))
	}
	return n, nil
}

// TouchLastSeen upserts last-seen times in transactions of at most 500
// rows; max() keeps a stored time from moving backwards.
func (s *Store) TouchLastSeen(ctx context.Context, seen []store.LastSeen) error {
	if err := s.check(); err != nil {
		return err
	}
	for chunk := range slices.Chunk(seen, batchSize) {
		err := s.inTx(ctx, `INSERT INTO last_seen (user_id, last_seen_at) VALUES (?, ?)
			ON CONFLICT (user_id) DO UPDATE SET last_seen_at = max(last_seen_at, excluded.last_seen_at)`,
			func(stmt *sql.Stmt) error {
				for _, ls := range chunk {
					if _, err := stmt.ExecContext(ctx, ls.UserID, ls.At.UnixMilli()); err != nil {
						return err
					}
				}
				return nil
			})
		if err != nil {
			return fmt.Errorf("sqlitestore: touch last seen (%d): %w", len(seen), err)
		}
	}
	return nil
}

// RefreshLastSeen writes at for the users with no stored time or one
// before stale, in transactions of at most 500 rows. The upsert's WHERE
// leaves fresh rows unchanged, and SQLite writes no page for them.
func (s *Store) RefreshLastSeen(ctx context.Context, users []string, at, stale time.Time) (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	written, err := execRows(ctx, s, `INSERT INTO last_seen (user_id, last_seen_at) VALUES (?, ?)
			ON CONFLICT (user_id) DO UPDATE SET last_seen_at = excluded.last_seen_at
			WHERE last_seen_at < ? AND last_seen_at < excluded.last_seen_at`,
		users, func(u string) []any { return []any{u, at.UnixMilli(), stale.UnixMilli()} })
	if err != nil {
		return written, fmt.Errorf("sqlitestore: refresh last seen (%d): %w", len(users), err)
	}
	return written, nil
}

// AddHistory stores p at its minute, replacing a point already there.
func (s *Store) AddHistory(ctx context.Context, p store.HistoryPoint) error {
	if err := s.check(); err != nil {
		return err
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO history (t, online_users, online_connections) VALUES (?, ?, ?)
		ON CONFLICT (t) DO UPDATE SET online_users = excluded.online_users, online_connections = excluded.online_connections`,
		store.Minute(p.T).UnixMilli(), p.OnlineUsers, p.OnlineConnections)
	if err != nil {
		return fmt.Errorf("sqlitestore: add history: %w", wrapErr(err))
	}
	return nil
}

// History returns the points with from <= T < to, oldest first.
func (s *Store) History(ctx context.Context, from, to time.Time) ([]store.HistoryPoint, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT t, online_users, online_connections FROM history
		WHERE t >= ? AND t < ? ORDER BY t`, from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: history: %w", wrapErr(err))
	}
	defer rows.Close()
	var points []store.HistoryPoint
	for rows.Next() {
		var (
			ms int64
			p  store.HistoryPoint
		)
		if err := rows.Scan(&ms, &p.OnlineUsers, &p.OnlineConnections); err != nil {
			return nil, fmt.Errorf("sqlitestore: history: %w", wrapErr(err))
		}
		p.T = time.UnixMilli(ms).UTC()
		points = append(points, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlitestore: history: %w", wrapErr(err))
	}
	return points, nil
}

// InsertUsers adds users in transactions of at most 500 rows; a user whose
// ID exists already is left as it is.
func (s *Store) InsertUsers(ctx context.Context, users []store.User) error {
	_, err := s.InsertUsersCount(ctx, users)
	return err
}

// InsertUsersCount is InsertUsers that returns how many rows it inserted.
func (s *Store) InsertUsersCount(ctx context.Context, users []store.User) (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	// DO NOTHING affects no row when the ID exists: only new users count.
	inserted, err := execRows(ctx, s, `INSERT INTO users (id, created_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING`,
		users, func(u store.User) []any { return []any{u.ID, u.CreatedAt.UnixMilli()} })
	if err != nil {
		return inserted, fmt.Errorf("sqlitestore: insert users (%d): %w", len(users), err)
	}
	return inserted, nil
}

// Close closes the database. Later calls return an error wrapping
// store.ErrUnavailable.
func (s *Store) Close(ctx context.Context) error {
	if s.closed.Swap(true) {
		return nil
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("sqlitestore: close: %w", err)
	}
	return nil
}

// inTx runs fn with query prepared inside one transaction and commits.
// execRows runs query once for each item, with args(item) as its
// arguments, in transactions of at most batchSize items, and returns the
// rows the committed transactions affected.
func execRows[T any](ctx context.Context, s *Store, query string, items []T, args func(T) []any) (int, error) {
	total := 0
	for chunk := range slices.Chunk(items, batchSize) {
		n := 0
		err := s.inTx(ctx, query, func(stmt *sql.Stmt) error {
			for _, it := range chunk {
				res, err := stmt.ExecContext(ctx, args(it)...)
				if err != nil {
					return err
				}
				rows, err := res.RowsAffected()
				if err != nil {
					return err
				}
				n += int(rows)
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

func (s *Store) inTx(ctx context.Context, query string, fn func(*sql.Stmt) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return wrapErr(err)
	}
	defer func() { _ = tx.Rollback() }()
	stmt, err := tx.PrepareContext(ctx, query)
	if err != nil {
		return wrapErr(err)
	}
	defer stmt.Close()
	if err := fn(stmt); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			// database/sql rolls back a transaction whose context ends,
			// and the next Exec then fails with "statement is closed".
			return fmt.Errorf("%w: %w", ctxErr, err)
		}
		return wrapErr(err)
	}
	return wrapErr(tx.Commit())
}

// check reports a closed store as unavailable: database/sql's own error
// for it is unexported, so callers could not tell it from bad data.
func (s *Store) check() error {
	if s.closed.Load() {
		return fmt.Errorf("sqlitestore: closed: %w", store.ErrUnavailable)
	}
	return nil
}

// wrapErr marks errors that mean "the database cannot serve now" (locked
// beyond busy_timeout, I/O failure, disk full, file gone) with
// store.ErrUnavailable.
func wrapErr(err error) error {
	if err == nil {
		return nil
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff { // primary result code; extended codes add high bits
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR,
			sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY:
			return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
		}
	}
	if errors.Is(err, sql.ErrConnDone) {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}
