package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/presenced/presenced/config"
)

// usageError is a bad command line: exit code 2, like a bad setting.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// helpShown is returned when -h or --help asked for a command's usage: run
// prints text to stdout and exits 0.
type helpShown struct{ text string }

func (h helpShown) Error() string { return "help requested" }

// exitCode is 2 for a bad command line, setting or dotenv file, 1 for
// anything else.
func exitCode(err error) int {
	var ce *config.Error
	var fe *config.FileError
	var ue usageError
	if errors.As(err, &ce) || errors.As(err, &fe) || errors.As(err, &ue) {
		return 2
	}
	return 1
}

// synopses are the first lines of each command's usage, keyed by the name
// of its FlagSet. A FlagSet named otherwise gets "presenced NAME [flags]".
var synopses = map[string]string{
	"serve":           "presenced [serve] [flags]\n\nRun the server (the default command). Configuration comes from the environment and the dotenv file; see the README.",
	"token":           "presenced token --user ID [--admin] [--ttl 1h] [flags]\n\nPrint a JWT for user ID signed with JWT_SECRET, else with the secret kept in DATA_DIR/jwt_secret (created if missing, which is said on stderr).",
	"seed":            "presenced seed [--users N] [flags]\n\nAdd N demo users, last-seen times and 3 h of history to the data store. Safe to run again: existing users are kept.",
	"bench":           "presenced bench [flags]\n\nThe WebSocket / Socket.IO load generator used by the benchmarks (see bench/ and BENCHMARKS.md).",
	"bench conn":      "presenced bench [conn] [flags]\n\nOpen --conns connections (/ws, Socket.IO or long-polling), print READY, hold them (paced with --rate, churned with --churn-rate), close them and print a table ending in a summary line.",
	"bench http":      "presenced bench http [flags]\n\nClosed-loop keep-alive load on one admin endpoint: req/s and latency p50/p99/max.",
	"bench freshness": "presenced bench freshness [flags]\n\nTime from a connect or disconnect to the change in online_users (Redis) and on the admin SSE stream: p50/p99/max.",
	"version":         "presenced version\n\nPrint the version, VCS revision and build details.",
	"admin-token":     "presenced admin-token [--rotate] [flags]\n\nPrint the admin token: ADMIN_TOKEN when set, else the one kept in DATA_DIR/admin_token (created if missing). --rotate replaces the kept one; a running server keeps accepting the old one until it is restarted.",
	"status":          "presenced status [--url http://127.0.0.1:PORT] [flags]\n\nPrint the overview and server load of a running node. Authenticates with ADMIN_TOKEN, else the kept admin token, else an admin JWT signed with the JWT secret.",
	"connect":         "presenced connect [--url ws://127.0.0.1:PORT/ws] [--user ID | --token JWT] [flags]\n\nOpen a WebSocket to /ws and print every message received, until Ctrl-C or the server closes it (the close code is shown). --user mints a token with the JWT secret; with neither, connects as a guest.",
}

// usage is the top-level help: `presenced help`, `presenced --help`.
const usage = `presenced counts online users exactly across many nodes and serves admin dashboard stats.

usage:
  presenced [serve] [--env-file .env]     run the server (the default)
  presenced token --user ID [--admin]     print a JWT signed with the JWT secret
  presenced admin-token [--rotate]        print (or replace) the kept admin token
  presenced status [--url URL]            overview and server load of a running node
  presenced connect [--user ID]           a WebSocket client for /ws that prints what it receives
  presenced seed [--users N]              add demo users and history to the data store
  presenced bench [flags]                 the load generator used by the benchmarks
  presenced version                       version, VCS revision, build time
  presenced help [COMMAND]                this text, or a command's flags

"presenced COMMAND --help" lists a command's flags. Configuration is read from the
environment and the dotenv file (.env); see the README.
`

// parseFlags parses args into fs. On -h or --help it returns a helpShown
// with the command's usage; on a bad flag a usageError with what was wrong
// and the usage. Every command parses its flags with it, so help and
// mistakes behave the same everywhere. It does not check for arguments
// left over; see noArgs.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard) // the messages go into the returned error
	err := fs.Parse(args)
	if err == nil {
		return nil
	}
	if errors.Is(err, flag.ErrHelp) {
		return helpShown{commandUsage(fs)}
	}
	return usageError{fmt.Sprintf("%s: %v\n\n%s", fs.Name(), err, commandUsage(fs))}
}

// noArgs refuses arguments left after the flags.
func noArgs(fs *flag.FlagSet) error {
	if fs.NArg() == 0 {
		return nil
	}
	return usageError{fmt.Sprintf("%s: unexpected argument %q\n\n%s", fs.Name(), fs.Arg(0), commandUsage(fs))}
}

// commandUsage is the usage text of the command fs parses.
func commandUsage(fs *flag.FlagSet) string {
	syn, ok := synopses[fs.Name()]
	if !ok {
		syn = "presenced " + fs.Name() + " [flags]"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "usage: %s\n", syn)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		b.WriteString("\nflags:\n")
		out := fs.Output()
		fs.SetOutput(&b)
		fs.PrintDefaults()
		fs.SetOutput(out)
	}
	return b.String()
}

// envFileFlag is --env-file: the dotenv file read before the environment.
// The default .env may be missing; a file named on the command line must
// exist.
type envFileFlag struct {
	path string
	set  bool
}

func (e *envFileFlag) String() string { return e.path }
func (e *envFileFlag) Set(s string) error {
	e.path, e.set = s, true
	return nil
}

// addEnvFile registers --env-file on fs.
func addEnvFile(fs *flag.FlagSet) *envFileFlag {
	e := &envFileFlag{path: ".env"}
	fs.Var(e, "env-file", "dotenv `file` read before the environment; must exist when given")
	return e
}

// load reads the configuration, warning on stderr about keys of the
// dotenv file that are not presenced's.
func (e *envFileFlag) load(getenv func(string) string, stderr io.Writer) (config.Config, error) {
	return config.LoadDotenv(getenv, config.Dotenv{
		Path: e.path, Required: e.set,
		Warn: func(msg string) { fmt.Fprintf(stderr, "presenced: warning: %s\n", msg) },
	})
}
