package main

import (
	"context"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// runCmd runs the program with args and the variables vars only, in
// process, and returns its outputs and exit code (0 when run returns nil).
func runCmd(t *testing.T, vars map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut syncBuffer
	err := run(context.Background(), append([]string{"presenced"}, args...), env(vars), &out, &errOut)
	if err != nil {
		code = exitCode(err)
		// main prints the error on stderr.
		errOut.Write([]byte("presenced: " + err.Error() + "\n"))
	}
	return out.String(), errOut.String(), code
}

// commands are every command with the first line of its usage.
var commands = map[string]string{
	"serve":       "usage: presenced [serve]",
	"token":       "usage: presenced token --user ID",
	"admin-token": "usage: presenced admin-token [--rotate]",
	"status":      "usage: presenced status",
	"connect":     "usage: presenced connect",
	"seed":        "usage: presenced seed",
	"bench":       "usage: presenced bench",
	"version":     "usage: presenced version",
}

// TestHelpEverywhere: -h, --help and `help CMD` print the command's usage
// on stdout, nothing on stderr, and exit 0; `presenced help`, -h and
// --help print the list of commands.
func TestHelpEverywhere(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"DATA_DIR": t.TempDir()}
	for cmd, first := range commands {
		for _, args := range [][]string{{cmd, "-h"}, {cmd, "--help"}, {"help", cmd}} {
			stdout, stderr, code := runCmd(t, vars, args...)
			if code != 0 || !strings.HasPrefix(stdout, first) || stderr != "" {
				t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 0 and %q on stdout only", args, code, stdout, stderr, first)
			}
			if cmd != "version" && !strings.Contains(stdout, "flags:\n  -") {
				t.Errorf("%v: usage lacks the flags:\n%s", args, stdout)
			}
		}
	}
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}, {"-help"}, {"help", "-h"}, {"help", "--help"}, {"help", "help"}} {
		stdout, stderr, code := runCmd(t, vars, args...)
		if code != 0 || stderr != "" {
			t.Errorf("%v: exit %d, stderr %q; want 0 and nothing", args, code, stderr)
		}
		for cmd := range commands {
			if !strings.Contains(stdout, "presenced "+cmd) && !strings.Contains(stdout, "presenced ["+cmd+"]") {
				t.Errorf("%v: the command list lacks %s:\n%s", args, cmd, stdout)
			}
		}
	}
	if entries, _ := os.ReadDir(vars["DATA_DIR"]); len(entries) != 0 {
		t.Errorf("help created files in DATA_DIR: %v", entries)
	}
}

// TestUsageErrorsExit2: unknown commands, stray arguments and bad flags
// are exit code 2 with what was wrong and the usage on stderr, nothing on
// stdout.
func TestUsageErrorsExit2(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		want string // on stderr besides "usage:"
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"serve", "extra-arg"}, `serve: unexpected argument "extra-arg"`},
		{[]string{"--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"serve", "--env-file"}, "flag needs an argument: -env-file"},
		{[]string{"token", "--bogus"}, "-bogus"},
		{[]string{"token"}, "--user is required"},
		{[]string{"token", "--user", "a", "more"}, `unexpected argument "more"`},
		{[]string{"token", "--user", "a", "--ttl", "soon"}, "invalid value"},
		{[]string{"admin-token", "now"}, `unexpected argument "now"`},
		{[]string{"status", "--url"}, "flag needs an argument"},
		{[]string{"status", "x"}, `unexpected argument "x"`},
		{[]string{"connect", "--user", "a", "--token", "b"}, "not both"},
		{[]string{"connect", "--nope"}, "-nope"},
		{[]string{"seed", "50"}, `unexpected argument "50"`},
		{[]string{"version", "--short"}, "-short"},
		{[]string{"version", "now"}, `unexpected argument "now"`},
		{[]string{"bench", "--conns", "x"}, "invalid value"},
		{[]string{"help", "token", "seed"}, "at most one command"},
		{[]string{"help", "frob"}, `unknown command "frob"`},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := runCmd(t, map[string]string{"DATA_DIR": t.TempDir(), "JWT_SECRET": "s"}, tc.args...)
			if code != 2 || stdout != "" {
				t.Fatalf("exit %d, stdout %q; want 2 and nothing", code, stdout)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, stderr)
			}
			if !strings.Contains(stderr, "usage:") && tc.args[0] != "token" && tc.args[0] != "connect" && tc.args[0] != "bench" {
				t.Errorf("stderr lacks the usage:\n%s", stderr)
			}
		})
	}
}

// TestEnvFile: a missing --env-file and a malformed .env are exit code 2
// naming the file (and line); the default .env may be missing; unknown
// keys are warned about once, with a suggestion for a near miss.
func TestEnvFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	vars := map[string]string{"DATA_DIR": dir, "JWT_SECRET": "s"}
	missing := filepath.Join(dir, "nope.env")
	for _, args := range [][]string{{"serve"}, {"token", "--user", "a"}, {"seed"}, {"admin-token"}, {"status"}, {"connect"}} {
		_, stderr, code := runCmd(t, vars, append(args, "--env-file", missing)...)
		if code != 2 || !strings.Contains(stderr, missing) || !strings.Contains(stderr, "no such file") {
			t.Errorf("%v --env-file %s: exit %d, stderr %q; want 2 naming the file", args, missing, code, stderr)
		}
	}
	// The default .env is relative to the working directory, which this
	// test does not change: name a file instead.
	bad := filepath.Join(dir, "bad.env")
	if err := os.WriteFile(bad, []byte("PORT=1\n\nthis is junk\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runCmd(t, vars, "token", "--user", "a", "--env-file", bad)
	if code != 2 || !strings.Contains(stderr, `dotenv file "`+bad+`" line 3`) {
		t.Errorf("malformed: exit %d, stderr %q; want 2 naming %s line 3", code, stderr, bad)
	}
	typo := filepath.Join(dir, "typo.env")
	if err := os.WriteFile(typo, []byte("POTR=8080\nPOTR=8081\nSOMETHING_ELSE=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runCmd(t, vars, "token", "--user", "a", "--env-file", typo)
	want := "presenced: warning: " + typo + " line 1: POTR is not a presenced variable; ignored (did you mean PORT?)\n" +
		"presenced: warning: " + typo + " line 3: SOMETHING_ELSE is not a presenced variable; ignored\n"
	if code != 0 || stdout == "" || stderr != want {
		t.Errorf("unknown keys: exit %d, stderr %q; want 0, a token and\n%s", code, stderr, want)
	}
}

// TestVersionLine: the module version, revision, modified flag, commit and
// build times as the build info and -ldflags give them.
func TestVersionLine(t *testing.T) {
	t.Parallel()
	bi := &debug.BuildInfo{GoVersion: "go1.99", Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "2cc14006315f14fa942a15b878f6b6b14d691647"},
		{Key: "vcs.time", Value: "2026-12-01T11:56:30Z"},
		{Key: "vcs.modified", Value: "true"},
	}}
	got := versionLine(bi, "v0.0.0-20261201115630-2cc14006315f", "", "2026-12-01T12:00:00Z")
	want := "presenced v0.0.0-20261201115630-2cc14006315f (rev 2cc14006315f, modified, committed 2026-12-01T11:56:30Z, built 2026-12-01T12:00:00Z, go1.99 "
	if !strings.HasPrefix(got, want) {
		t.Errorf("versionLine = %q, want prefix %q", got, want)
	}
	// No VCS in the build info (a worktree, -buildvcs=false): make build's
	// -X main.revision is used.
	got = versionLine(&debug.BuildInfo{GoVersion: "go1.99"}, "dev", "abcdef0123456789-modified", "")
	if want := "presenced dev (rev abcdef012345, modified, go1.99 "; !strings.HasPrefix(got, want) {
		t.Errorf("versionLine = %q, want prefix %q", got, want)
	}
	stdout, _, code := runCmd(t, nil, "version")
	if code != 0 || !strings.HasPrefix(stdout, "presenced "+version+" (") {
		t.Errorf("presenced version: exit %d, %q", code, stdout)
	}
}
