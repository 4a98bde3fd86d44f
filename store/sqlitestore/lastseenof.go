package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// LastSeenOf returns a user's last-seen time; false when none is stored.
func (s *Store) LastSeenOf(ctx context.Context, user string) (time.Time, bool, error) {
	if err := s.check(); err != nil {
		return time.Time{}, false, err
	}
	var ms int64
	err := s.db.QueryRowContext(ctx, `SELECT last_seen_at FROM last_seen WHERE user_id = ?`, user).Scan(&ms)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("sqlitestore: last seen of a user: %w", wrapErr(err))
	}
	return time.UnixMilli(ms).UTC(), true, nil
}
