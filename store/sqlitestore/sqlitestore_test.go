package sqlitestore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/presenced/presenced/store"
	"github.com/presenced/presenced/store/sqlitestore"
	"github.com/presenced/presenced/store/storetest"
)

func TestContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store { return MustOpen(t, t.TempDir()) })
}

// MustOpen opens a store in dir and closes it in tb.Cleanup.
func MustOpen(tb testing.TB, dir string) *sqlitestore.Store {
	tb.Helper()
	s, err := sqlitestore.Open(context.Background(), dir)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	return s
}

func TestOpenCreatesDirAndReopens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "a", "b")
	s, err := sqlitestore.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	at := time.UnixMilli(1_700_000_000_000)
	if err := s.TouchLastSeen(ctx, []store.LastSeen{{UserID: "u", At: at}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, sqlitestore.FileName)); err != nil {
		t.Fatalf("database file: %v", err)
	}

	// Reopening keeps the data: the schema statements are idempotent.
	s = MustOpen(t, dir)
	if n, err := s.SeenSince(ctx, at); err != nil || n != 1 {
		t.Fatalf("SeenSince after reopen = %d, %v; want 1", n, err)
	}
}

func TestWALMode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := MustOpen(t, dir)
	if err := s.AddHistory(context.Background(), store.HistoryPoint{T: time.Now(), OnlineUsers: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, sqlitestore.FileName+"-wal")); err != nil {
		t.Fatalf("no WAL file beside the database: %v", err)
	}
}

func TestClosedIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := sqlitestore.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	err = s.TouchLastSeen(ctx, []store.LastSeen{{UserID: "u", At: time.Now()}})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("TouchLastSeen after Close = %v, want store.ErrUnavailable", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Ping after Close = %v, want store.ErrUnavailable", err)
	}
}

func TestOpenFailsOnFile(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlitestore.Open(context.Background(), file); err == nil {
		t.Fatal("Open on a regular file succeeded")
	}
}
