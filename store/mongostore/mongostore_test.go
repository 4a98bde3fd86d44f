package mongostore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/store"
	"github.com/presenced/presenced/store/mongostore"
	"github.com/presenced/presenced/store/storetest"
)

// testBatchSize is small enough for FerretDB v1 and makes the suite's 130
// last-seen entries span four bulk writes.
const testBatchSize = 40

// serverURI returns $MONGODB_TEST_URI, else the URI of a FerretDB started
// for tb (which fails tb if FerretDB cannot run: the suite is never skipped).
func serverURI(tb testing.TB) string {
	tb.Helper()
	if uri := os.Getenv("MONGODB_TEST_URI"); uri != "" {
		return uri
	}
	return testenv.StartFerretDB(tb)
}

// MustOpen opens a store on uri in a database of its own, which is dropped
// and the store closed in tb.Cleanup.
func MustOpen(tb testing.TB, uri string) *mongostore.Store {
	tb.Helper()
	db := uniqueDatabase(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := mongostore.Open(ctx, mongostore.Options{URI: uri, Database: db, UsersCollection: "users", BatchSize: testBatchSize})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		dropDatabase(tb, uri, db)
		if err := s.Close(ctx); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	return s
}

func uniqueDatabase(tb testing.TB) string {
	tb.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return "presenced_test_" + hex.EncodeToString(b)
}

func dropDatabase(tb testing.TB, uri, db string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := mustClient(tb, uri)
	if err := client.Database(db).Drop(ctx); err != nil {
		tb.Errorf("drop database %s: %v", db, err)
	}
}

func mustClient(tb testing.TB, uri string) *mongo.Client {
	tb.Helper()
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetServerSelectionTimeout(5 * time.Second))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	return client
}

func TestContract(t *testing.T) {
	t.Parallel()
	uri := serverURI(t)
	storetest.Run(t, func(t *testing.T) store.Store { return MustOpen(t, uri) })
}

// TestDocumentShapes checks what other readers of the database see: user
// _ids as ObjectIds when they are 24 hex digits, last-seen and history
// documents as DESIGN.md describes them.
func TestDocumentShapes(t *testing.T) {
	t.Parallel()
	uri := serverURI(t)
	db := uniqueDatabase(t)
	ctx := t.Context()
	s, err := mongostore.Open(ctx, mongostore.Options{URI: uri, Database: db, BatchSize: testBatchSize})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dropDatabase(t, uri, db)
		_ = s.Close(context.Background())
	})
	at := time.Date(2025, 3, 10, 12, 30, 15, 0, time.UTC)
	if err := s.InsertUsers(ctx, []store.User{{ID: "65f1a2b3c4d5e6f708192a3b", CreatedAt: at}, {ID: "user-1", CreatedAt: at}}); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchLastSeen(ctx, []store.LastSeen{{UserID: "user-1", At: at}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddHistory(ctx, store.HistoryPoint{T: at, OnlineUsers: 3, OnlineConnections: 4}); err != nil {
		t.Fatal(err)
	}

	d := mustClient(t, uri).Database(db)
	oid, _ := bson.ObjectIDFromHex("65f1a2b3c4d5e6f708192a3b")
	for _, id := range []any{oid, "user-1"} {
		if n, err := d.Collection(mongostore.DefaultUsersCollection).CountDocuments(ctx, bson.D{{Key: "_id", Value: id}}); err != nil || n != 1 {
			t.Errorf("users with _id %#v: %d, %v; want 1", id, n, err)
		}
	}
	var ls struct {
		ID         string    `bson:"_id"`
		LastSeenAt time.Time `bson:"lastSeenAt"`
	}
	if err := d.Collection(mongostore.LastSeenCollection).FindOne(ctx, bson.D{{Key: "_id", Value: "user-1"}}).Decode(&ls); err != nil {
		t.Fatal(err)
	}
	if !ls.LastSeenAt.Equal(at) {
		t.Errorf("lastSeenAt = %v, want %v", ls.LastSeenAt, at)
	}
	var h bson.M
	if err := d.Collection(mongostore.HistoryCollection).FindOne(ctx, bson.D{}).Decode(&h); err != nil {
		t.Fatal(err)
	}
	minute := bson.NewDateTimeFromTime(at.Truncate(time.Minute))
	if h["_id"] != minute || h["t"] != minute || h["onlineUsers"] != int64(3) || h["onlineConnections"] != int64(4) {
		t.Errorf("history document = %v", h)
	}
}

func TestDatabaseFromURI(t *testing.T) {
	t.Parallel()
	uri := serverURI(t)
	db := uniqueDatabase(t)
	ctx := t.Context()
	s, err := mongostore.Open(ctx, mongostore.Options{URI: uri + db, BatchSize: testBatchSize})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dropDatabase(t, uri, db)
		_ = s.Close(context.Background())
	})
	if err := s.TouchLastSeen(ctx, []store.LastSeen{{UserID: "u", At: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	n, err := mustClient(t, uri).Database(db).Collection(mongostore.LastSeenCollection).CountDocuments(ctx, bson.D{})
	if err != nil || n != 1 {
		t.Fatalf("documents in %s.%s = %d, %v; want 1", db, mongostore.LastSeenCollection, n, err)
	}
}

// TestUnreachableIsUnavailable opens a store on a port nobody listens on.
func TestUnreachableIsUnavailable(t *testing.T) {
	t.Parallel()
	addr := closedAddr(t)

	_, err := mongostore.Open(t.Context(), mongostore.Options{URI: "mongodb://" + addr + "/"})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Open on a closed port = %v, want store.ErrUnavailable", err)
	}
}

// TestClosedIsUnavailable checks that calls after Close report the store
// unavailable, as when the server goes away.
func TestClosedIsUnavailable(t *testing.T) {
	t.Parallel()
	uri := serverURI(t)
	db := uniqueDatabase(t)
	s, err := mongostore.Open(t.Context(), mongostore.Options{URI: uri, Database: db, BatchSize: testBatchSize})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dropDatabase(t, uri, db) })
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SeenSince(t.Context(), time.Now()); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("SeenSince after Close = %v, want store.ErrUnavailable", err)
	}
}

// TestStartUnavailable: with StartUnavailable, a server that is down at
// start gives a store whose calls report it unavailable, not an error.
func TestStartUnavailable(t *testing.T) {
	t.Parallel()
	addr := closedAddr(t)
	s, err := mongostore.Open(t.Context(), mongostore.Options{URI: "mongodb://" + addr + "/", StartUnavailable: true})
	if err != nil {
		t.Fatalf("Open with StartUnavailable: %v", err)
	}
	if err := s.Ping(t.Context()); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Ping = %v, want store.ErrUnavailable", err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// closedAddr returns a loopback address nobody listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}
