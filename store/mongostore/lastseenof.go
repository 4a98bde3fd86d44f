package mongostore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// LastSeenOf returns a user's last-seen time; false when none is stored.
func (s *Store) LastSeenOf(ctx context.Context, user string) (time.Time, bool, error) {
	var doc struct {
		LastSeenAt time.Time `bson:"lastSeenAt"`
	}
	err := s.lastSeen.FindOne(ctx, bson.D{{Key: "_id", Value: user}}).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("mongostore: last seen of a user: %w", wrapErr(err))
	}
	return doc.LastSeenAt.UTC(), true, nil
}
