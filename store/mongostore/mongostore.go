// Package mongostore implements store.Store on MongoDB: the app's users
// collection (read only) and presenced's own collections presence_last_seen
// and presence_history.
//
// It runs on MongoDB and on FerretDB v1 (the tests' server), so it keeps to
// plain CRUD, counts and bounded bulk writes: FerretDB v1 hangs on one
// update command of more than ~50-100 statements and has no transactions.
package mongostore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/presenced/presenced/store"
)

// Collection names of presenced's own data.
const (
	LastSeenCollection = "presence_last_seen"
	HistoryCollection  = "presence_history"
)

// Defaults for the zero values of Options.
const (
	DefaultDatabase        = "presenced"
	DefaultUsersCollection = "users"
	DefaultBatchSize       = 500
)

// connectTimeout bounds dialing and server selection, so that a down
// MongoDB fails a request in seconds instead of hanging it.
const connectTimeout = 3 * time.Second

// Options configure Open.
type Options struct {
	// URI is the MongoDB connection string; required.
	URI string
	// Database holds all collections; empty means the database in the
	// URI's path, else "presenced".
	Database string
	// UsersCollection is the app's users collection (fields _id, an
	// ObjectId or a string, and createdAt, a date); presenced only reads
	// it. Empty means "users".
	UsersCollection string
	// BatchSize bounds the statements of one bulk write; zero means 500.
	// FerretDB v1 needs 50 or fewer.
	BatchSize int
	// Logger receives index-creation warnings; nil means slog.Default().
	Logger *slog.Logger
	// StartUnavailable lets Open succeed when the server cannot be reached:
	// calls fail with store.ErrUnavailable until it can, and the index is
	// ensured in the background. Without it, Open fails.
	StartUnavailable bool
	// Monitor, when set, sees every command the driver sends (tests use
	// it to check which queries reach the server).
	Monitor *event.CommandMonitor
}

// Store is a store.Store on MongoDB. It is safe for concurrent use.
type Store struct {
	client   *mongo.Client
	users    *mongo.Collection
	lastSeen *mongo.Collection
	history  *mongo.Collection
	batch    int
	log      *slog.Logger
	stop     chan struct{} // set when the index is ensured in the background
	stopOnce sync.Once
}

var _ store.Store = (*Store)(nil)

// Open connects to o.URI, pings, and ensures the indexes of presenced's own
// collections (never of the users collection). An unreachable server fails
// within a few seconds with an error wrapping store.ErrUnavailable.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.URI == "" {
		return nil, errors.New("mongostore: open: empty URI")
	}
	if o.BatchSize < 0 {
		return nil, fmt.Errorf("mongostore: open: negative batch size %d", o.BatchSize)
	}
	if o.BatchSize == 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.UsersCollection == "" {
		o.UsersCollection = DefaultUsersCollection
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Database == "" {
		cs, err := connstring.Parse(o.URI)
		if err != nil {
			return nil, fmt.Errorf("mongostore: open: parse URI: %w", err)
		}
		o.Database = cs.Database
	}
	if o.Database == "" {
		o.Database = DefaultDatabase
	}

	copts := options.Client().
		ApplyURI(o.URI).
		SetConnectTimeout(connectTimeout).
		SetServerSelectionTimeout(connectTimeout)
	if o.Monitor != nil {
		copts.SetMonitor(o.Monitor)
	}
	client, err := mongo.Connect(copts)
	if err != nil {
		return nil, fmt.Errorf("mongostore: open: %w", wrapErr(err))
	}
	db := client.Database(o.Database)
	s := &Store{
		client:   client,
		users:    db.Collection(o.UsersCollection),
		lastSeen: db.Collection(LastSeenCollection),
		history:  db.Collection(HistoryCollection),
		batch:    o.BatchSize,
		log:      o.Logger,
	}
	if err := s.Ping(ctx); err != nil {
		if o.StartUnavailable && errors.Is(err, store.ErrUnavailable) {
			s.log.Warn("mongostore: server unreachable at start; retrying in the background", "database", o.Database, "err", err)
			s.stop = make(chan struct{})
			go s.ensureIndexLater()
			return s, nil
		}
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("mongostore: open %s: %w", o.Database, err)
	}
	if err := s.ensureIndex(ctx); err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, err
	}
	s.log.Debug("mongostore: open", "database", o.Database, "users", o.UsersCollection, "batch", o.BatchSize)
	return s, nil
}

// ensureIndexLater retries ensureIndex with capped backoff until it works
// or the store is closed.
func (s *Store) ensureIndexLater() {
	backoff := time.Second
	for {
		select {
		case <-s.stop:
			return
		case <-time.After(backoff):
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*connectTimeout)
		err := s.ensureIndex(ctx)
		cancel()
		if err == nil {
			s.log.Info("mongostore: server reachable; index ensured")
			return
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// ensureIndex creates the index on lastSeenAt that SeenSince and the
// active-user count use, and the users collection's index on createdAt.
func (s *Store) ensureIndex(ctx context.Context) error {
	// presence_history needs no index: its _id is the minute.
	_, err := s.lastSeen.Indexes().CreateOne(ctx, mongo.IndexModel{
		Keys:    bson.D{{Key: "lastSeenAt", Value: 1}},
		Options: options.Index().SetName("lastSeenAt_1"),
	})
	var ce mongo.CommandError
	if errors.As(err, &ce) && (ce.Code == 85 || ce.Code == 86) {
		// IndexOptionsConflict / IndexKeySpecsConflict: an operator made an
		// index on lastSeenAt under another name, which serves as well.
		s.log.Warn("mongostore: keeping an existing index on lastSeenAt", "collection", LastSeenCollection, "err", err)
		err = nil
	}
	if err != nil {
		return fmt.Errorf("mongostore: open: create index on %s.lastSeenAt: %w", LastSeenCollection, wrapErr(err))
	}
	s.ensureUsersIndex(ctx)
	return nil
}

// ensureUsersIndex creates the index on createdAt that the count of new
// users today needs. The users collection is the app's: an index that
// cannot be made (no createIndex right, say) is a warning, not a failure,
// and an index on createdAt under another name serves as well.
func (s *Store) ensureUsersIndex(ctx context.Context) {
	_, err := s.users.Indexes().CreateOne(ctx, mongo.IndexModel{
		Keys:    bson.D{{Key: "createdAt", Value: 1}},
		Options: options.Index().SetName("createdAt_1"),
	})
	var ce mongo.CommandError
	if errors.As(err, &ce) && (ce.Code == 85 || ce.Code == 86) {
		return
	}
	if err != nil {
		s.log.Warn("mongostore: no index on createdAt in the users collection; counting today's new users scans it", "collection", s.users.Name(), "err", err)
	}
}

// Kind returns "mongodb".
func (s *Store) Kind() string { return "mongodb" }

// Ping checks that the server answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx, nil); err != nil {
		return fmt.Errorf("mongostore: ping: %w", wrapErr(err))
	}
	return nil
}

// UserStats counts the users collection, today's new users and the users
// seen within 24 h before now.
func (s *Store) UserStats(ctx context.Context, now time.Time) (store.UserStats, error) {
	var st store.UserStats
	var err error
	// The estimated count is read from the collection's metadata; an exact
	// CountDocuments would scan every document.
	if st.TotalUsers, err = s.users.EstimatedDocumentCount(ctx); err != nil {
		return store.UserStats{}, fmt.Errorf("mongostore: user stats: count users: %w", wrapErr(err))
	}
	today := bson.D{{Key: "createdAt", Value: bson.D{{Key: "$gte", Value: store.StartOfDay(now)}}}}
	if st.NewUsersToday, err = s.users.CountDocuments(ctx, today); err != nil {
		return store.UserStats{}, fmt.Errorf("mongostore: user stats: count new users: %w", wrapErr(err))
	}
	if st.ActiveUsers24h, err = s.SeenSince(ctx, now.Add(-24*time.Hour)); err != nil {
		return store.UserStats{}, err
	}
	return st, nil
}

// SeenSince counts users whose last-seen time is at or after since.
func (s *Store) SeenSince(ctx context.Context, since time.Time) (int64, error) {
	n, err := s.lastSeen.CountDocuments(ctx, bson.D{{Key: "lastSeenAt", Value: bson.D{{Key: "$gte", Value: since}}}})
	if err != nil {
		return 0, fmt.Errorf("mongostore: seen since: %w", wrapErr(err))
	}
	return n, nil
}

// TouchLastSeen upserts {_id: userID, lastSeenAt} with the $max update
// operator, which keeps a stored time from moving backwards, in unordered
// bulk writes of at most BatchSize statements. Entries for the same user
// are merged first, so one bulk never upserts an _id twice.
func (s *Store) TouchLastSeen(ctx context.Context, seen []store.LastSeen) error {
	if len(seen) == 0 {
		return nil
	}
	latest := make(map[string]time.Time, len(seen))
	order := make([]string, 0, len(seen))
	for _, ls := range seen {
		t, ok := latest[ls.UserID]
		if !ok {
			order = append(order, ls.UserID)
		}
		if !ok || ls.At.After(t) {
			latest[ls.UserID] = ls.At
		}
	}
	for chunk := range slices.Chunk(order, s.batch) {
		models := make([]mongo.WriteModel, len(chunk))
		for i, id := range chunk {
			models[i] = mongo.NewUpdateOneModel().
				SetFilter(bson.D{{Key: "_id", Value: id}}).
				SetUpdate(bson.D{{Key: "$max", Value: bson.D{{Key: "lastSeenAt", Value: latest[id]}}}}).
				SetUpsert(true)
		}
		if _, err := s.lastSeen.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false)); err != nil {
			return fmt.Errorf("mongostore: touch last seen (%d): %w", len(order), wrapErr(err))
		}
	}
	return nil
}

// historyDoc is one document of presence_history.
type historyDoc struct {
	ID                time.Time `bson:"_id"` // the minute
	T                 time.Time `bson:"t"`   // the same minute, for readers who query by a named field
	OnlineUsers       int64     `bson:"onlineUsers"`
	OnlineConnections int64     `bson:"onlineConnections"`
}

// RefreshLastSeen writes at for the users with no stored time or one
// before stale, per chunk of BatchSize users: one $in update of the stale
// documents, one $in query for the ids that exist, and upserts for the
// missing ones (rare: users are written when they connect). Upserts
// filtered on the stored time would need one statement per user and
// duplicate-key errors for fresh ones, at which FerretDB v1 stops the
// whole unordered bulk write.
func (s *Store) RefreshLastSeen(ctx context.Context, users []string, at, stale time.Time) (int, error) {
	written := 0
	for chunk := range slices.Chunk(users, s.batch) {
		in := bson.D{{Key: "$in", Value: chunk}}
		res, err := s.lastSeen.UpdateMany(ctx,
			bson.D{{Key: "_id", Value: in}, {Key: "lastSeenAt", Value: bson.D{{Key: "$lt", Value: stale}}}},
			bson.D{{Key: "$max", Value: bson.D{{Key: "lastSeenAt", Value: at}}}})
		if err != nil {
			return written, fmt.Errorf("mongostore: refresh last seen (%d): %w", len(users), wrapErr(err))
		}
		written += int(res.ModifiedCount)
		missing, err := s.missingLastSeen(ctx, chunk)
		if err != nil {
			return written, fmt.Errorf("mongostore: refresh last seen (%d): %w", len(users), err)
		}
		if len(missing) == 0 {
			continue
		}
		seen := make([]store.LastSeen, len(missing))
		for i, id := range missing {
			seen[i] = store.LastSeen{UserID: id, At: at}
		}
		if err := s.TouchLastSeen(ctx, seen); err != nil {
			return written, err
		}
		written += len(missing)
	}
	return written, nil
}

// missingLastSeen returns the ids of ids that have no last-seen document.
func (s *Store) missingLastSeen(ctx context.Context, ids []string) ([]string, error) {
	cur, err := s.lastSeen.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}},
		options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}).SetBatchSize(int32(s.batch)))
	if err != nil {
		return nil, wrapErr(err)
	}
	var docs []struct {
		ID string `bson:"_id"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, wrapErr(err)
	}
	have := make(map[string]bool, len(docs))
	for _, d := range docs {
		have[d.ID] = true
	}
	var missing []string
	for _, id := range ids {
		if !have[id] {
			missing = append(missing, id)
			have[id] = true // once, if ids repeats it
		}
	}
	return missing, nil
}

// AddHistory replaces the document of p's minute (upsert), so a second
// write for the same minute is harmless.
func (s *Store) AddHistory(ctx context.Context, p store.HistoryPoint) error {
	m := store.Minute(p.T)
	doc := historyDoc{ID: m, T: m, OnlineUsers: p.OnlineUsers, OnlineConnections: p.OnlineConnections}
	_, err := s.history.ReplaceOne(ctx, bson.D{{Key: "_id", Value: m}}, doc, options.Replace().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("mongostore: add history: %w", wrapErr(err))
	}
	return nil
}

// History returns the points with from <= T < to, oldest first. It filters
// on _id, the only field FerretDB v1 does not answer by a full scan.
func (s *Store) History(ctx context.Context, from, to time.Time) ([]store.HistoryPoint, error) {
	filter := bson.D{{Key: "_id", Value: bson.D{{Key: "$gte", Value: from}, {Key: "$lt", Value: to}}}}
	cur, err := s.history.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("mongostore: history: %w", wrapErr(err))
	}
	var docs []historyDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("mongostore: history: %w", wrapErr(err))
	}
	points := make([]store.HistoryPoint, len(docs))
	for i, d := range docs {
		points[i] = store.HistoryPoint{T: d.ID.UTC(), OnlineUsers: d.OnlineUsers, OnlineConnections: d.OnlineConnections}
	}
	return points, nil
}

// InsertUsers inserts {_id, createdAt} documents in unordered batches of at
// most BatchSize; _id is an ObjectId when the ID is 24 hex digits, else the
// string. Duplicate _id errors are ignored: an existing user is left as it
// is.
func (s *Store) InsertUsers(ctx context.Context, users []store.User) error {
	_, err := s.InsertUsersCount(ctx, users)
	return err
}

// InsertUsersCount is InsertUsers that returns how many documents it
// inserted: each batch's size less its duplicate _id errors.
func (s *Store) InsertUsersCount(ctx context.Context, users []store.User) (int, error) {
	inserted := 0
	for chunk := range slices.Chunk(users, s.batch) {
		docs := make([]any, len(chunk))
		for i, u := range chunk {
			docs[i] = bson.D{{Key: "_id", Value: UserID(u.ID)}, {Key: "createdAt", Value: u.CreatedAt}}
		}
		_, err := s.users.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
		if err != nil && !onlyDuplicateKeys(err) {
			return inserted, fmt.Errorf("mongostore: insert users (%d): %w", len(users), wrapErr(err))
		}
		inserted += len(chunk)
		var bwe mongo.BulkWriteException
		if errors.As(err, &bwe) {
			inserted -= len(bwe.WriteErrors) // one per duplicate, unordered
		}
	}
	return inserted, nil
}

// Close disconnects from the server.
func (s *Store) Close(ctx context.Context) error {
	if s.stop != nil {
		s.stopOnce.Do(func() { close(s.stop) })
	}
	if err := s.client.Disconnect(ctx); err != nil && !errors.Is(err, mongo.ErrClientDisconnected) {
		return fmt.Errorf("mongostore: close: %w", err)
	}
	return nil
}

// UserID returns the _id value of the app's user id: an ObjectId when id is
// 24 hex digits, as the app's own users are, else id itself.
func UserID(id string) any {
	if len(id) == 24 {
		if oid, err := bson.ObjectIDFromHex(id); err == nil {
			return oid
		}
	}
	return id
}

// onlyDuplicateKeys reports whether err is a bulk write error whose every
// write error is a duplicate key (code 11000).
func onlyDuplicateKeys(err error) bool {
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 {
		return false
	}
	for _, we := range bwe.WriteErrors {
		if we.Code != 11000 {
			return false
		}
	}
	return true
}

// wrapErr marks the errors of an unreachable server (no server selected,
// network failure, timeout, disconnected client) with store.ErrUnavailable.
func wrapErr(err error) error {
	if err == nil {
		return nil
	}
	var sse topology.ServerSelectionError
	if errors.As(err, &sse) || mongo.IsNetworkError(err) || mongo.IsTimeout(err) ||
		errors.Is(err, mongo.ErrClientDisconnected) {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}
