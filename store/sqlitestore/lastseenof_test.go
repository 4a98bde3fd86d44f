package sqlitestore_test

import (
	"context"
	"testing"
	"time"

	"github.com/presenced/presenced/store"
)

func TestLastSeenOf(t *testing.T) {
	s := MustOpen(t, t.TempDir())
	ctx := context.Background()
	if _, ok, err := s.LastSeenOf(ctx, "alice"); err != nil || ok {
		t.Fatalf("LastSeenOf(unknown) = %v, %v; want not found", ok, err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	if err := s.TouchLastSeen(ctx, []store.LastSeen{{UserID: "alice", At: at}, {UserID: "bob", At: at.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.LastSeenOf(ctx, "alice")
	if err != nil || !ok || !got.Equal(at) {
		t.Fatalf("LastSeenOf(alice) = %v, %v, %v; want %v", got, ok, err, at)
	}
}
