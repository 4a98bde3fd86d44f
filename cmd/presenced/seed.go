package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/presenced/presenced/config"
	"github.com/presenced/presenced/store"
)

// runSeed adds demo users to the data store's users collection.
func runSeed(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("seed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("users", 100, "how many users to add")
	prefix := fs.String("prefix", "demo-", "user id prefix")
	envFile := fs.String("env-file", ".env", "dotenv file read before the environment")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *n < 1 {
		return usageError{"seed: --users must be at least 1"}
	}
	cfg, err := config.Load(getenv, *envFile)
	if err != nil {
		return err
	}
	ds, err := openStore(ctx, cfg, slog.New(slog.NewTextHandler(stderr, nil)), false)
	if err != nil {
		return err
	}
	defer ds.Close(context.Background())
	now := time.Now().UTC()
	users := make([]store.User, 0, *n)
	for i := range *n {
		// Spread sign-ups over the last 30 days; every tenth user today.
		created := now.Add(-time.Duration(i%30) * 24 * time.Hour)
		if i%10 == 0 {
			created = now
		}
		users = append(users, store.User{ID: fmt.Sprintf("%s%d", *prefix, i), CreatedAt: created})
	}
	if err := ds.InsertUsers(ctx, users); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	fmt.Fprintf(stdout, "added %d users to %s\n", *n, ds.Kind())
	return nil
}
