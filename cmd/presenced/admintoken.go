package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/presenced/presenced/auth"
)

// runAdminToken prints the admin token serve uses: ADMIN_TOKEN when set,
// else the one kept in DATA_DIR/admin_token, created when missing. With
// --rotate it replaces the kept token. The server reads the token once, at
// start: after a rotation a running server accepts the old token (and
// panel sessions made with it) until it is restarted, which is said on
// stderr.
func runAdminToken(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("admin-token", flag.ContinueOnError)
	rotate := fs.Bool("rotate", false, "replace the kept admin token with a new one and print it")
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
	path := keptPath(cfg, adminTokenFile)
	if *rotate {
		if cfg.AdminToken != "" {
			return usageError{fmt.Sprintf("admin-token: ADMIN_TOKEN is set, and it wins over %s: change ADMIN_TOKEN instead", path)}
		}
		if _, _, err := auth.LoadOrCreateFile(cfg.DataDir, adminTokenFile, auth.RandomToken); err != nil {
			return fmt.Errorf("admin-token: %w", err) // creates DATA_DIR as serve would
		}
		tok := auth.RandomToken()
		if err := auth.ReplaceFile(cfg.DataDir, adminTokenFile, tok); err != nil {
			return fmt.Errorf("admin-token: %w", err)
		}
		fmt.Fprintf(stderr, "presenced: replaced the admin token in %s; a running server keeps accepting the old one until it is restarted\n", path)
		fmt.Fprintln(stdout, tok)
		return nil
	}
	tok, src, err := adminToken(cfg, true)
	if err != nil {
		return err
	}
	switch src {
	case adminTokenEnv:
		fmt.Fprintf(stderr, "presenced: the admin token is ADMIN_TOKEN (it wins over %s)\n", path)
	case adminTokenKept:
		warnOpenKept(cfg, adminTokenFile, warnOnStderr(stderr))
	case adminTokenNew:
		fmt.Fprintf(stderr, "presenced: created a new admin token at %s; a server already running reads it at its next start\n", path)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
