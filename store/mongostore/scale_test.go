package mongostore_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/presenced/presenced/store"
	"github.com/presenced/presenced/store/mongostore"
)

// commandLog records the commands the driver sends, as the server sees
// them.
type commandLog struct {
	mu   sync.Mutex
	cmds []bson.Raw
}

func (l *commandLog) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.cmds = append(l.cmds, append(bson.Raw(nil), e.Command...))
	}}
}

// on returns the commands named name sent to collection coll.
func (l *commandLog) on(name, coll string) []bson.Raw {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []bson.Raw
	for _, c := range l.cmds {
		if v, err := c.LookupErr(name); err == nil && v.StringValue() == coll {
			out = append(out, c)
		}
	}
	return out
}

func (l *commandLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cmds = nil
}

// TestUserStatsScale: the total of the app's users is the collection's
// estimated count (the count command without a filter, answered from
// metadata), not a counting scan of every document, and the indexes the
// stats' queries filter on exist once the store is open.
func TestUserStatsScale(t *testing.T) {
	t.Parallel()
	uri := serverURI(t)
	db := uniqueDatabase(t)
	ctx := t.Context()
	var log commandLog
	s, err := mongostore.Open(ctx, mongostore.Options{URI: uri, Database: db, BatchSize: testBatchSize, Monitor: log.monitor()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dropDatabase(t, uri, db)
		_ = s.Close(context.Background())
	})

	// Indexes, created by Open: createdAt for new users today, lastSeenAt
	// for active users and the fallback count. History is read by _id.
	d := mustClient(t, uri).Database(db)
	for coll, key := range map[string]string{mongostore.DefaultUsersCollection: "createdAt", mongostore.LastSeenCollection: "lastSeenAt"} {
		specs, err := d.Collection(coll).Indexes().ListSpecifications(ctx)
		if err != nil {
			t.Fatalf("list indexes of %s: %v", coll, err)
		}
		found := false
		for _, sp := range specs {
			found = found || strings.Contains(sp.KeysDocument.String(), `"`+key+`"`)
		}
		if !found {
			t.Errorf("%s has no index on %s: %v", coll, key, specs)
		}
	}

	now := time.Now().UTC()
	users := make([]store.User, 60)
	for i := range users {
		users[i] = store.User{ID: "scale-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26), CreatedAt: now.Add(-time.Duration(i) * time.Hour)}
	}
	if err := s.InsertUsers(ctx, users); err != nil {
		t.Fatal(err)
	}
	log.reset()
	st, err := s.UserStats(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if st.TotalUsers != 60 {
		t.Fatalf("TotalUsers = %d, want 60", st.TotalUsers)
	}
	counts := log.on("count", mongostore.DefaultUsersCollection)
	if len(counts) != 1 {
		t.Fatalf("count commands on users = %d, want 1 (the estimated total)", len(counts))
	}
	if _, err := counts[0].LookupErr("query"); err == nil {
		t.Errorf("the total's count command has a query: %v", counts[0])
	}
	for _, a := range log.on("aggregate", mongostore.DefaultUsersCollection) {
		if !strings.Contains(a.String(), "createdAt") {
			t.Errorf("a counting scan of the users collection without a filter: %v", a)
		}
	}
}
