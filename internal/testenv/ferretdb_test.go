package testenv_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/presenced/presenced/internal/testenv"
)

func TestStartFerretDB(t *testing.T) {
	t.Parallel()
	uri := testenv.StartFerretDB(t)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetServerSelectionTimeout(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = client.Disconnect(context.Background()) }()

	coll := client.Database("testenv").Collection("c")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "n", Value: 1}}); err != nil {
		t.Fatalf("insert: %v", err)
	}
	var got struct {
		N int `bson:"n"`
	}
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "a"}}).Decode(&got); err != nil {
		t.Fatalf("find: %v", err)
	}
	if got.N != 1 {
		t.Fatalf("n = %d, want 1", got.N)
	}
}

// TestStartFerretDBTwice checks that two servers run side by side, as
// parallel tests need: each has its own port and data directory.
func TestStartFerretDBTwice(t *testing.T) {
	t.Parallel()
	a, b := testenv.StartFerretDB(t), testenv.StartFerretDB(t)
	if a == b {
		t.Fatalf("both servers at %s", a)
	}
}

// TestBuildFerretDB builds FerretDB the way StartFerretDB does on a cold
// cache and checks that the binary starts (a build without
// build/version/version.txt panics here).
func TestBuildFerretDB(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "ferretdb")
	if err := testenv.BuildFerretDB(out); err != nil {
		t.Fatal(err)
	}
	b, err := exec.Command(out, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v: %s", out, err, b)
	}
	if !strings.Contains(string(b), "version: "+testenv.FerretDBVersion) {
		t.Fatalf("%s --version = %q, want version %s", out, b, testenv.FerretDBVersion)
	}
}
