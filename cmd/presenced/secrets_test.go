package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/presenced/presenced/auth"
	"github.com/presenced/presenced/internal/testenv"
)

// fileMode returns path's permission bits, failing the test if it is missing.
func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return fi.Mode().Perm()
}

// TestTokenCreatesSecretSaysSo: token with no JWT_SECRET and nothing kept
// creates DATA_DIR/jwt_secret (0600) and says so with the path, once;
// with JWT_SECRET set it creates nothing.
func TestTokenCreatesSecretSaysSo(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	// Nothing listens on PORT, so token may create a secret.
	vars := map[string]string{"DATA_DIR": dir, "PORT": fmt.Sprint(testenv.FreePort(t))}
	stdout, stderr, code := runCmd(t, vars, "token", "--user", "alice")
	path := filepath.Join(dir, "jwt_secret")
	if code != 0 || strings.Count(stdout, ".") != 2 {
		t.Fatalf("token: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "created a new JWT secret at "+path) {
		t.Errorf("stderr %q does not say the secret was created at %s", stderr, path)
	}
	if m := fileMode(t, path); m != 0o600 {
		t.Errorf("jwt_secret mode %o, want 600", m)
	}
	if _, stderr, code := runCmd(t, vars, "token", "--user", "alice"); code != 0 || stderr != "" {
		t.Errorf("second token: exit %d, stderr %q; want 0 and no message", code, stderr)
	}

	other := t.TempDir()
	if _, stderr, code := runCmd(t, map[string]string{"DATA_DIR": other, "JWT_SECRET": "s"}, "token", "--user", "a"); code != 0 || stderr != "" {
		t.Errorf("token with JWT_SECRET: exit %d, stderr %q", code, stderr)
	}
	if entries, _ := os.ReadDir(other); len(entries) != 0 {
		t.Errorf("token with JWT_SECRET created %v", entries)
	}
}

// TestAdminTokenCommand: admin-token creates the kept token (0600) and
// says so, prints the same one again, --rotate replaces it, and
// ADMIN_TOKEN wins over the file (and cannot be rotated).
func TestAdminTokenCommand(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	vars := map[string]string{"DATA_DIR": dir}
	path := filepath.Join(dir, "admin_token")

	first, stderr, code := runCmd(t, vars, "admin-token")
	if code != 0 || len(strings.TrimSpace(first)) < 32 || !strings.Contains(stderr, "created a new admin token at "+path) {
		t.Fatalf("admin-token: exit %d, stdout %q, stderr %q", code, first, stderr)
	}
	if m := fileMode(t, path); m != 0o600 {
		t.Errorf("admin_token mode %o, want 600", m)
	}
	if b, _ := os.ReadFile(path); strings.TrimSpace(string(b)) != strings.TrimSpace(first) {
		t.Errorf("file holds %q, printed %q", b, first)
	}
	again, stderr, code := runCmd(t, vars, "admin-token")
	if code != 0 || again != first || stderr != "" {
		t.Errorf("second admin-token: exit %d, %q (stderr %q), want %q silently", code, again, stderr, first)
	}

	rotated, stderr, code := runCmd(t, vars, "admin-token", "--rotate")
	if code != 0 || rotated == first || len(strings.TrimSpace(rotated)) < 32 || !strings.Contains(stderr, "restarted") {
		t.Fatalf("--rotate: exit %d, %q (stderr %q); want a new token and the restart note", code, rotated, stderr)
	}
	if m := fileMode(t, path); m != 0o600 {
		t.Errorf("admin_token mode after rotation %o, want 600", m)
	}
	if now, _, _ := runCmd(t, vars, "admin-token"); now != rotated {
		t.Errorf("after rotation admin-token prints %q, want %q", now, rotated)
	}

	withEnv := map[string]string{"DATA_DIR": dir, "ADMIN_TOKEN": "chosen"}
	if out, stderr, code := runCmd(t, withEnv, "admin-token"); code != 0 || out != "chosen\n" || !strings.Contains(stderr, "ADMIN_TOKEN") {
		t.Errorf("with ADMIN_TOKEN: exit %d, %q (stderr %q); want chosen", code, out, stderr)
	}
	if _, stderr, code := runCmd(t, withEnv, "admin-token", "--rotate"); code != 2 || !strings.Contains(stderr, "ADMIN_TOKEN is set") {
		t.Errorf("--rotate with ADMIN_TOKEN: exit %d, stderr %q; want 2", code, stderr)
	}
	if now, _, _ := runCmd(t, vars, "admin-token"); now != rotated {
		t.Errorf("a refused rotation changed the kept token")
	}
}

// TestBenchFindsTheKeptSecret: bench without --secret or JWT_SECRET signs
// with DATA_DIR/jwt_secret, as token and serve do, and never creates one.
func TestBenchFindsTheKeptSecret(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var stderr syncBuffer
	_, err := parseBenchFlags(nil, env(map[string]string{"DATA_DIR": dir}), &stderr)
	if exitCode(err) != 2 || !strings.Contains(err.Error(), filepath.Join(dir, "jwt_secret")) {
		t.Fatalf("bench with no secret anywhere: %v, want exit 2 naming %s", err, filepath.Join(dir, "jwt_secret"))
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("bench created %v", entries)
	}
	if _, _, code := runCmd(t, map[string]string{"DATA_DIR": dir, "PORT": fmt.Sprint(testenv.FreePort(t))}, "token", "--user", "a"); code != 0 {
		t.Fatal("token failed")
	}
	kept, err := os.ReadFile(filepath.Join(dir, "jwt_secret"))
	if err != nil {
		t.Fatal(err)
	}
	o, err := parseBenchFlags(nil, env(map[string]string{"DATA_DIR": dir}), &stderr)
	if err != nil || o.secret != strings.TrimSpace(string(kept)) {
		t.Fatalf("bench secret %q (err %v), want the kept %q", o.secret, err, kept)
	}
	o, err = parseBenchFlags(nil, env(map[string]string{"DATA_DIR": dir, "JWT_SECRET": "env-wins"}), &stderr)
	if err != nil || o.secret != "env-wins" {
		t.Fatalf("bench secret %q (err %v), want JWT_SECRET", o.secret, err)
	}
}

// TestKeptFilesOpenToOthers: a kept secret that group or others may read
// (copied with the wrong umask, chmod'ed by hand) is used as it is — the
// server must keep its tokens valid — but every command that uses it warns
// with the path, the mode and the fix; a trailing newline or blank lines
// around the value are not part of it.
func TestKeptFilesOpenToOthers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "admin_token"), []byte("kept-admin-token-123\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "jwt_secret"), []byte("kept-jwt-secret-0123456789abcdef\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "admin_token"), 0o666); err != nil { // past the umask
		t.Fatal(err)
	}
	vars := map[string]string{"DATA_DIR": dir}
	out, stderr, code := runCmd(t, vars, "admin-token")
	want := filepath.Join(dir, "admin_token") + " is open to other users (mode 0666); chmod 600 it"
	if code != 0 || out != "kept-admin-token-123\n" || !strings.Contains(stderr, want) {
		t.Errorf("admin-token: exit %d, stdout %q, stderr %q; want the token and %q", code, out, stderr, want)
	}
	tok, stderr, code := runCmd(t, vars, "token", "--user", "alice")
	want = filepath.Join(dir, "jwt_secret") + " is open to other users (mode 0640); chmod 600 it"
	if code != 0 || !strings.Contains(stderr, want) {
		t.Errorf("token: exit %d, stderr %q; want %q", code, stderr, want)
	}
	v, err := auth.NewVerifier(auth.VerifierOptions{Secret: []byte("kept-jwt-secret-0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), strings.TrimSpace(tok)); err != nil {
		t.Errorf("token not signed with the kept secret (newline trimmed): %v", err)
	}
	// Once fixed, nothing is said.
	_ = os.Chmod(filepath.Join(dir, "admin_token"), 0o600)
	if _, stderr, _ := runCmd(t, vars, "admin-token"); stderr != "" {
		t.Errorf("admin-token with mode 0600: stderr %q, want nothing", stderr)
	}
}
