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

// run is the whole program: main only calls it, so tests can too, with
// their own args, environment and output. A command's --help is printed on
// stdout and is not an error; a bad command line is a usageError (exit 2).
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	err := dispatch(ctx, args[1:], getenv, stdout, stderr)
	var h helpShown
	if errors.As(err, &h) {
		fmt.Fprint(stdout, h.text)
		return nil
	}
	return err
}

// dispatch runs the command named by args[0]; serve when there is none.
func dispatch(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd, rest := "serve", args
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, rest = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			// `presenced --help` is the program's help, not serve's.
			return helpShown{usage}
		}
		return runServe(ctx, rest, getenv, stdout, stderr)
	case "token":
		return runToken(rest, getenv, stdout, stderr)
	case "admin-token":
		return runAdminToken(rest, getenv, stdout, stderr)
	case "status":
		return runStatus(ctx, rest, getenv, stdout, stderr)
	case "connect":
		return runConnect(ctx, rest, getenv, stdout, stderr)
	case "seed":
		return runSeed(ctx, rest, getenv, stdout, stderr)
	case "bench":
		return runBench(ctx, rest, getenv, stdout, stderr)
	case "version":
		fs := flag.NewFlagSet("version", flag.ContinueOnError)
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		if err := noArgs(fs); err != nil {
			return err
		}
		fmt.Fprintln(stdout, versionLine(buildInfo(), version, revision, buildTime))
		return nil
	case "help":
		switch {
		case len(rest) == 0 || len(rest) == 1 && (rest[0] == "help" || rest[0] == "-h" || rest[0] == "-help" || rest[0] == "--help"):
			// `presenced help --help` and `help help` are help too.
			return helpShown{usage}
		case len(rest) > 1 || strings.HasPrefix(rest[0], "-"):
			return usageError{fmt.Sprintf("help: want at most one command name, got %q\n\n%s", rest, usage)}
		}
		// `presenced help token` is `presenced token --help`.
		return dispatch(ctx, []string{rest[0], "--help"}, getenv, stdout, stderr)
	}
	return usageError{fmt.Sprintf("unknown command %q\n\n%s", cmd, usage)}
}

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	envFile := addEnvFile(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	cfg, err := envFile.load(getenv, stderr)
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
}

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
	user := fs.String("user", "", "user id (the sub claim); required")
	admin := fs.Bool("admin", false, "add role=admin")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	envFile := addEnvFile(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *user == "" {
		return usageError{"token: --user is required\n\n" + commandUsage(fs)}
	}
	cfg, err := envFile.load(getenv, stderr)
	if err != nil {
		return err
	}
	if err := refuseStrangerSecret(cfg); err != nil {
		return err
	}
	secret, err := jwtSecret(cfg, saidCreated(stderr))
	if err != nil {
		return err
	}
	if secret == nil {
		return usageError{"token: JWT_SECRET is not set and JWT_JWKS_URL is: tokens come from your identity provider"}
	}
	if cfg.JWTSecret == "" {
		warnOpenKept(cfg, jwtSecretFile, warnOnStderr(stderr))
	}
	tok, err := auth.MintFor(secret, *user, *admin, *ttl, time.Now(), cfg.JWTIssuer, cfg.JWTAudience)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
