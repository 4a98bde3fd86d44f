package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/presenced/presenced/auth"
	"github.com/presenced/presenced/config"
)

// The files kept under DATA_DIR, next to the SQLite database.
const (
	jwtSecretFile  = "jwt_secret"
	adminTokenFile = "admin_token"
)

// keptPath is the absolute path of a file kept under DATA_DIR, for
// messages: a relative DATA_DIR means another file in another directory.
func keptPath(cfg config.Config, name string) string {
	p := filepath.Join(cfg.DataDir, name)
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

// jwtSecret is the one rule every command follows for the HS256 secret:
// JWT_SECRET when set, else DATA_DIR/jwt_secret, created when missing, in
// which case created (if not nil) is told its path. It returns nil when only
// JWT_JWKS_URL is configured.
func jwtSecret(cfg config.Config, created func(path string)) ([]byte, error) {
	if cfg.JWTSecret != "" {
		return []byte(cfg.JWTSecret), nil
	}
	if cfg.JWKSURL != "" {
		return nil, nil
	}
	s, isNew, err := auth.LoadOrCreateFile(cfg.DataDir, jwtSecretFile, auth.NewSecret)
	if err != nil {
		return nil, fmt.Errorf("jwt secret under DATA_DIR: %w", err)
	}
	if isNew && created != nil {
		created(keptPath(cfg, jwtSecretFile))
	}
	return s, nil
}

// existingJWTSecret is jwtSecret without creating anything: for commands
// that talk to a running server, which a new secret could not convince.
func existingJWTSecret(cfg config.Config) ([]byte, error) {
	if cfg.JWTSecret != "" {
		return []byte(cfg.JWTSecret), nil
	}
	if cfg.JWKSURL != "" {
		return nil, errors.New("JWT_JWKS_URL is set: tokens come from your identity provider")
	}
	b, err := os.ReadFile(filepath.Join(cfg.DataDir, jwtSecretFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no JWT secret: JWT_SECRET is not set and %s does not exist (the server creates it at its first start; run this where the server runs, or set DATA_DIR or JWT_SECRET)", keptPath(cfg, jwtSecretFile))
	}
	if err != nil {
		return nil, fmt.Errorf("jwt secret under DATA_DIR: %w", err)
	}
	return bytes.TrimSpace(b), nil
}

// saidCreated reports on stderr that a command created a JWT secret: a
// token it signs is refused by any server that uses another one.
func saidCreated(stderr io.Writer) func(string) {
	return func(path string) {
		fmt.Fprintf(stderr, "presenced: created a new JWT secret at %s (JWT_SECRET is not set and none was kept there); a server that uses another DATA_DIR or JWT_SECRET refuses tokens signed with it\n", path)
	}
}

// adminTokenSource says where an admin token came from.
type adminTokenSource int

const (
	adminTokenNone adminTokenSource = iota // admin JWTs only
	adminTokenEnv                          // ADMIN_TOKEN
	adminTokenKept                         // DATA_DIR/admin_token, there before
	adminTokenNew                          // DATA_DIR/admin_token, created now
)

// adminToken is the rule for the admin token: ADMIN_TOKEN when set, else
// the one kept in DATA_DIR/admin_token. When none is kept, create says
// whether to create one; serve creates one when no JWT_SECRET is set either
// (the embedded default), `presenced admin-token` always does.
func adminToken(cfg config.Config, create bool) (string, adminTokenSource, error) {
	if cfg.AdminToken != "" {
		return cfg.AdminToken, adminTokenEnv, nil
	}
	path := filepath.Join(cfg.DataDir, adminTokenFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if b = bytes.TrimSpace(b); len(b) == 0 {
			return "", adminTokenNone, fmt.Errorf("admin token: %s is empty; delete it or run presenced admin-token --rotate", keptPath(cfg, adminTokenFile))
		}
		return string(b), adminTokenKept, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", adminTokenNone, fmt.Errorf("admin token: %w", err)
	case !create:
		return "", adminTokenNone, nil
	}
	b, created, err := auth.LoadOrCreateFile(cfg.DataDir, adminTokenFile, auth.RandomToken)
	if err != nil {
		return "", adminTokenNone, fmt.Errorf("admin token under DATA_DIR: %w", err)
	}
	if created {
		return string(b), adminTokenNew, nil
	}
	return string(b), adminTokenKept, nil
}

// serveAdminToken is serve's admin token. A token created now is printed on
// stdout (never to the log); a kept one is only pointed to in the log.
func serveAdminToken(cfg config.Config, stdout io.Writer, kept func(path string)) (string, error) {
	tok, src, err := adminToken(cfg, cfg.JWTSecret == "")
	switch {
	case err != nil:
		return "", err
	case src == adminTokenNew:
		fmt.Fprintf(stdout, "Admin token (generated, kept in %s; set ADMIN_TOKEN to choose one): %s\n", keptPath(cfg, adminTokenFile), tok)
	case src == adminTokenKept:
		kept(keptPath(cfg, adminTokenFile))
	}
	return tok, nil
}

// adminCredential is what `presenced status` authenticates with: the admin
// token (ADMIN_TOKEN or the kept one), else a short-lived admin JWT signed
// with the JWT secret (JWT_SECRET or the kept one).
func adminCredential(cfg config.Config) (string, error) {
	tok, src, err := adminToken(cfg, false)
	if err != nil {
		return "", err
	}
	if src != adminTokenNone {
		return tok, nil
	}
	secret, err := existingJWTSecret(cfg)
	if err != nil {
		return "", fmt.Errorf("no admin credential: ADMIN_TOKEN is not set, %s does not exist, and %w", keptPath(cfg, adminTokenFile), err)
	}
	return auth.MintFor(secret, "presenced-cli", true, 5*time.Minute, time.Now(), cfg.JWTIssuer, cfg.JWTAudience)
}

// benchSecret is the secret bench signs with when --secret is not given:
// the server's, found by the same rule (JWT_SECRET from the environment or
// .env, else DATA_DIR/jwt_secret). Bench never creates one: a server would
// refuse tokens signed with it.
func benchSecret(getenv func(string) string, stderr io.Writer) (string, error) {
	cfg, err := (&envFileFlag{path: ".env"}).load(getenv, stderr)
	if err != nil {
		return "", err
	}
	s, err := existingJWTSecret(cfg)
	if err != nil {
		return "", usageError{"bench: " + err.Error() + "; or pass --secret"}
	}
	return string(s), nil
}

// refuseStrangerSecret stops `presenced token` from creating a JWT secret
// while a presenced answers on this machine's PORT: that server cannot be
// using the new secret (it would have created the file), so it would
// refuse every token signed with it. The usual cause is running token in
// another directory than the server, whose ./data is another DATA_DIR.
func refuseStrangerSecret(cfg config.Config) error {
	if cfg.JWTSecret != "" || cfg.JWKSURL != "" || cfg.Port == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, jwtSecretFile)); !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	addr := "127.0.0.1:" + strconv.Itoa(cfg.Port)
	client := &http.Client{Timeout: 500 * time.Millisecond}
	resp, err := client.Get("http://" + addr + "/healthz")
	if err != nil {
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"status"`)) {
		return nil // not a presenced
	}
	return fmt.Errorf("token: JWT_SECRET is not set and %s does not exist, but a presenced answers on %s: it uses another secret and would refuse a token signed with a new one. Run token with that server's DATA_DIR (or its JWT_SECRET)", keptPath(cfg, jwtSecretFile), addr)
}

// warnOpenKept tells warn when the kept file name under DATA_DIR exists and
// group or others may read or write it (copied with a loose umask, chmod'ed
// by hand): it is still used, as refusing it would lock the admins out or
// invalidate every token, but it should be 0600 as presenced creates it.
func warnOpenKept(cfg config.Config, name string, warn func(msg string)) {
	path := filepath.Join(cfg.DataDir, name)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return
	}
	warn(fmt.Sprintf("%s is open to other users (mode %04o); chmod 600 it", keptPath(cfg, name), fi.Mode().Perm()))
}

// warnOnStderr is warnOpenKept's warn for the commands.
func warnOnStderr(stderr io.Writer) func(string) {
	return func(msg string) { fmt.Fprintf(stderr, "presenced: warning: %s\n", msg) }
}
