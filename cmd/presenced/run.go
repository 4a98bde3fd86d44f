package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/presenced/presenced/auth"
	"github.com/presenced/presenced/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// usageError is a bad command line: exit code 2, like a bad setting.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func exitCode(err error) int {
	var ce *config.Error
	var ue usageError
	if errors.As(err, &ce) || errors.As(err, &ue) {
		return 2
	}
	return 1
}

// run is the whole program: main only calls it, so tests can too, with
// their own args, environment and output.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	cmd, rest := "serve", args[1:]
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		cmd, rest = rest[0], rest[1:]
	}
	switch cmd {
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(stderr)
		envFile := fs.String("env-file", ".env", "dotenv file read before the environment")
		if err := fs.Parse(rest); err != nil {
			return usageError{err.Error()}
		}
		cfg, err := config.Load(getenv, *envFile)
		if err != nil {
			return err
		}
		if getenv("GOGC") == "" {
			// Idle connections make garbage (pongs, last-seen refreshes)
			// that fills whatever headroom the GC allows, so RSS settles
			// near the GC's heap goal: 2x the live heap by default. 1.5x
			// keeps an idle connection under 3 KiB (BENCHMARKS.md) for a
			// few more short GC cycles. GOGC set by the user wins.
			debug.SetGCPercent(50)
		}
		return serve(ctx, cfg, newLogger(cfg, stderr), stdout)
	case "token":
		return runToken(rest, getenv, stdout, stderr)
	case "seed":
		return runSeed(ctx, rest, getenv, stdout, stderr)
	case "bench":
		return runBench(ctx, rest, getenv, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "presenced", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return usageError{fmt.Sprintf("unknown command %q\n%s", cmd, usage)}
}

const usage = `usage:
  presenced [serve] [--env-file .env]    run the server (the default)
  presenced token --user ID [--admin] [--ttl 1h]
                                         print a JWT signed with JWT_SECRET
  presenced seed --users N               add N demo users to the data store
  presenced bench [flags]                WebSocket load generator (see bench/)
  presenced version
Configuration is read from the environment and .env; see the README.
`

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func runToken(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	user := fs.String("user", "", "user id (the sub claim); required")
	admin := fs.Bool("admin", false, "add role=admin")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	envFile := fs.String("env-file", ".env", "dotenv file read before the environment")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *user == "" {
		return usageError{"token: --user is required"}
	}
	cfg, err := config.Load(getenv, *envFile)
	if err != nil {
		return err
	}
	secret, err := jwtSecret(cfg)
	if err != nil {
		return err
	}
	if secret == nil {
		return usageError{"token: JWT_SECRET is not set and JWT_JWKS_URL is: tokens come from your identity provider"}
	}
	tok, err := auth.MintFor(secret, *user, *admin, *ttl, time.Now(), cfg.JWTIssuer, cfg.JWTAudience)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// jwtSecret returns JWT_SECRET, or the secret kept under DATA_DIR (created
// on first use) when neither JWT_SECRET nor JWT_JWKS_URL is set. It
// returns nil when only a JWKS is configured.
func jwtSecret(cfg config.Config) ([]byte, error) {
	if cfg.JWTSecret != "" {
		return []byte(cfg.JWTSecret), nil
	}
	if cfg.JWKSURL != "" {
		return nil, nil
	}
	s, err := auth.LoadOrCreateSecret(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("jwt secret under DATA_DIR: %w", err)
	}
	return s, nil
}
