package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/testenv"
)

// runCLI runs the presenced binary with args in dir, with only PATH, HOME
// and env in its environment, and returns its stdout, stderr and exit code.
func runCLI(t *testing.T, dir string, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("presenced %v: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// TestCLIHelpAndUsageErrors: the binary's help is on stdout with exit 0;
// unknown commands, stray arguments and bad flags are exit 2 with the
// usage on stderr, and nothing is served.
func TestCLIHelpAndUsageErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}, {"serve", "--help"}, {"token", "-h"}, {"bench", "--help"}, {"status", "-h"}, {"connect", "-h"}, {"admin-token", "-h"}, {"seed", "-h"}, {"version", "-h"}, {"help", "connect"}} {
		stdout, stderr, code := runCLI(t, dir, nil, args...)
		if code != 0 || !strings.HasPrefix(stdout, "usage:") && !strings.Contains(stdout, "\nusage:\n") || stderr != "" {
			t.Errorf("presenced %v: exit %d, stdout %q, stderr %q; want exit 0, usage on stdout", args, code, stdout, stderr)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"serve", "extra-arg"}, `unexpected argument "extra-arg"`},
		{[]string{"--port", "80"}, "flag provided but not defined: -port"},
		{[]string{"status", "--url", "ftp://x"}, "not an http:// or https:// URL"},
	} {
		stdout, stderr, code := runCLI(t, dir, map[string]string{"PORT": "0"}, tc.args...)
		if code != 2 || stdout != "" || !strings.Contains(stderr, tc.want) {
			t.Errorf("presenced %v: exit %d, stdout %q, stderr %q; want exit 2 and %q", tc.args, code, stdout, stderr, tc.want)
		}
		if strings.Contains(stderr, "listening") {
			t.Errorf("presenced %v served", tc.args)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("help and usage errors left files: %v", entries)
	}
}

// TestCLIEnvFile: a missing --env-file and a malformed .env stop serve
// with exit 2 naming the file (and line); an unknown key in .env is a
// warning with a suggestion, and serve goes on.
func TestCLIEnvFile(t *testing.T) {
	t.Parallel()
	t.Run("missing", func(t *testing.T) {
		t.Parallel()
		_, stderr, code := runCLI(t, t.TempDir(), map[string]string{"PORT": "0"}, "--env-file", "nope.env")
		if code != 2 || !strings.Contains(stderr, `dotenv file "nope.env": cannot read: no such file`) {
			t.Fatalf("exit %d, stderr %q; want 2 naming nope.env", code, stderr)
		}
	})
	t.Run("malformed", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ".env"), []byte("PORT=0\nthis is junk\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, stderr, code := runCLI(t, dir, nil)
		if code != 2 || !strings.Contains(stderr, `dotenv file ".env" line 2:`) || strings.Contains(stderr, "junk") {
			t.Fatalf("exit %d, stderr %q; want 2 naming .env line 2 without quoting it", code, stderr)
		}
	})
	t.Run("unknown key", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ".env"), []byte("POTR=8080\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		p := StartServing(t, dir, nil)
		want := "presenced: warning: .env line 1: POTR is not a presenced variable; ignored (did you mean PORT?)"
		if got := p.Stderr.String(); strings.Count(got, want) != 1 {
			t.Fatalf("stderr should warn once with %q:\n%s", want, got)
		}
	})
}

// TestCLIKeptAdminToken: with nothing configured, the admin token is
// created at the first start (printed once, kept 0600 in DATA_DIR), the
// same after a restart, printed by `presenced admin-token`, used by
// `presenced status`; `presenced admin-token --rotate` replaces it at the
// next start. `presenced connect --user` shows up in the overview and
// closes with 1000 on SIGINT.
func TestCLIKeptAdminToken(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	cwd := t.TempDir() // another directory than the server's: DATA_DIR is what they share
	vars := map[string]string{"DATA_DIR": dataDir, "ADMIN_TOKEN": "", "JWT_SECRET": ""}
	p := StartServing(t, t.TempDir(), vars)

	m := regexp.MustCompile(`(?m)^Admin token \(generated, kept in (\S+); set ADMIN_TOKEN to choose one\): (\S+)$`).FindStringSubmatch(p.Stdout.String())
	if m == nil || m[1] != filepath.Join(dataDir, "admin_token") {
		t.Fatalf("first start should print the generated token and where it is kept:\n%s", p.Stdout)
	}
	token := m[2]
	fi, err := os.Stat(filepath.Join(dataDir, "admin_token"))
	if err != nil {
		t.Fatalf("admin_token: %v", err)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Fatalf("admin_token mode %o, want 600", m)
	}
	cli := map[string]string{"DATA_DIR": dataDir, "PORT": fmt.Sprint(p.Port), "ADMIN_TOKEN": "", "JWT_SECRET": ""}
	if out, stderr, code := runCLI(t, cwd, cli, "admin-token"); code != 0 || strings.TrimSpace(out) != token || stderr != "" {
		t.Fatalf("admin-token: exit %d, %q, stderr %q; want the printed token", code, out, stderr)
	}

	// token in another directory, without DATA_DIR, would sign with a new
	// ./data/jwt_secret that the server does not use: refused, nothing created.
	_, stderr, code := runCLI(t, cwd, map[string]string{"PORT": fmt.Sprint(p.Port)}, "token", "--user", "alice")
	if code != 1 || !strings.Contains(stderr, "but a presenced answers on 127.0.0.1:"+fmt.Sprint(p.Port)) || !strings.Contains(stderr, filepath.Join(cwd, "data", "jwt_secret")) {
		t.Errorf("token with another DATA_DIR while a server runs: exit %d, stderr %q; want 1 and the reason", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(cwd, "data")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused token created %s (%v)", filepath.Join(cwd, "data"), err)
	}
	// With the server's DATA_DIR it signs with the server's secret.
	userToken, _, code := runCLI(t, cwd, cli, "token", "--user", "alice")
	if c := Dial(t, p.Node, strings.TrimSpace(userToken)); code != 0 || c.Hello.UserID == nil || *c.Hello.UserID != "alice" {
		t.Fatalf("token with the server's DATA_DIR: exit %d, hello %+v", code, c.Hello)
	} else {
		c.Conn.Close()
	}

	// connect --user alice mints with the kept secret and prints the hello.
	conn := StartProc(t, cwd, []string{"connect", "--user", "alice"}, cli)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(conn.Stdout.String(), `"type":"hello"`) {
		if time.Now().After(deadline) {
			t.Fatalf("connect printed no hello:\n%s", conn.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	var hello Hello
	if err := json.Unmarshal([]byte(strings.SplitN(conn.Stdout.String(), "\n", 2)[0]), &hello); err != nil || hello.UserID == nil || *hello.UserID != "alice" {
		t.Fatalf("connect's first line %q is not alice's hello (%v)", conn.Stdout, err)
	}

	// status reads the kept token and prints the tables. The node's own
	// figures come with its heartbeat: wait for one after the connect.
	wants := []*regexp.Regexp{
		regexp.MustCompile(`(?m)^presenced at http://127\.0\.0\.1:\d+, source memory, as of `),
		regexp.MustCompile(`(?m)^online users +1$`),
		regexp.MustCompile(`(?m)^online connections +1$`),
		regexp.MustCompile(`(?m)^nodes: 1$`),
		regexp.MustCompile(`(?m)^ *NODE +HOST +PID +VERSION +USERS +CONNS`),
		regexp.MustCompile(fmt.Sprintf(`(?m) %d +\S+ +1 +1 +`, p.cmd.Process.Pid)),
		regexp.MustCompile(`(?m)^data store \(sqlite\) +up `),
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		out, stderr, code := runCLI(t, cwd, cli, "status")
		if code != 0 {
			t.Fatalf("status: exit %d, stderr %q", code, stderr)
		}
		var missing []string
		for _, re := range wants {
			if !re.MatchString(out) {
				missing = append(missing, re.String())
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status output lacks %q:\n%s", missing, out)
		}
		time.Sleep(100 * time.Millisecond)
	}

	_ = conn.cmd.Process.Signal(syscall.SIGINT)
	if code := conn.Wait(10 * time.Second); code != 0 || !strings.Contains(conn.Stderr.String(), "closed with 1000") {
		t.Errorf("connect after SIGINT: exit %d, stderr %q; want 0 and the close code", code, conn.Stderr)
	}

	// Restart: the same token, not printed again.
	if code, _ := p.Term(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	p = StartServing(t, t.TempDir(), vars)
	if strings.Contains(p.Stdout.String(), "Admin token") || strings.Contains(p.Log(), token) {
		t.Errorf("the kept token was printed again at restart:\n%s", p.Log())
	}
	if status, body := p.GetToken(overviewPath, token, 5*time.Second); status != http.StatusOK {
		t.Fatalf("overview with the kept token after restart: %d %s", status, body)
	}

	// Rotation takes effect at the next start.
	cli["PORT"] = fmt.Sprint(p.Port)
	rotated, stderr, code := runCLI(t, cwd, cli, "admin-token", "--rotate")
	rotated = strings.TrimSpace(rotated)
	if code != 0 || rotated == token || !strings.Contains(stderr, "until it is restarted") {
		t.Fatalf("admin-token --rotate: exit %d, %q, stderr %q", code, rotated, stderr)
	}
	if status, _ := p.GetToken(overviewPath, token, 5*time.Second); status != http.StatusOK {
		t.Errorf("the running server refused the old token before a restart: %d", status)
	}
	// status reads the new token, which the running server does not know yet: it says why.
	if _, stderr, code := runCLI(t, cwd, cli, "status"); code != 1 || !strings.Contains(stderr, "admin-token --rotate") {
		t.Errorf("status after a rotation, before the restart: exit %d, stderr %q; want 1 and the restart hint", code, stderr)
	}
	if code, _ := p.Term(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	// A kept token others may read is used, and the log says so.
	if err := os.Chmod(filepath.Join(dataDir, "admin_token"), 0o644); err != nil {
		t.Fatal(err)
	}
	p = StartServing(t, t.TempDir(), vars)
	if want := filepath.Join(dataDir, "admin_token") + " is open to other users (mode 0644); chmod 600 it"; !strings.Contains(p.Stderr.String(), want) {
		t.Errorf("serve with a 0644 admin_token: the log lacks %q:\n%s", want, p.Stderr)
	}
	if status, _ := p.GetToken(overviewPath, token, 5*time.Second); status != http.StatusUnauthorized {
		t.Errorf("old token after rotation and restart: %d, want 401", status)
	}
	if status, body := p.GetToken(overviewPath, rotated, 5*time.Second); status != http.StatusOK {
		t.Errorf("rotated token after restart: %d %s", status, body)
	}
}

// TestCLIStatusAndConnectErrors: status against a port where nothing
// runs, or with a token the node refuses, and connect refused by the
// node, are exit code 1 with what went wrong.
func TestCLIStatusAndConnectErrors(t *testing.T) {
	t.Parallel()
	free := testenv.FreePort(t)
	_, stderr, code := runCLI(t, t.TempDir(), map[string]string{"ADMIN_TOKEN": "x", "PORT": fmt.Sprint(free)}, "status")
	if code != 1 || !strings.Contains(stderr, fmt.Sprintf("no presenced answering at http://127.0.0.1:%d", free)) || !strings.Contains(stderr, "is it running?") {
		t.Errorf("status with nothing running: exit %d, stderr %q", code, stderr)
	}
	_, stderr, code = runCLI(t, t.TempDir(), map[string]string{"DATA_DIR": t.TempDir(), "PORT": fmt.Sprint(free)}, "status")
	if code != 1 || !strings.Contains(stderr, "no admin credential") {
		t.Errorf("status with no credential: exit %d, stderr %q", code, stderr)
	}

	n := StartNode(t, nil) // JWT_SECRET and ADMIN_TOKEN set
	_, stderr, code = runCLI(t, t.TempDir(), map[string]string{"ADMIN_TOKEN": "wrong"}, "status", "--url", n.URL)
	if code != 1 || !strings.Contains(stderr, "refused the admin credential (401)") {
		t.Errorf("status with a wrong token: exit %d, stderr %q", code, stderr)
	}
	// JWT_SECRET only: status signs an admin JWT.
	out, stderr, code := runCLI(t, t.TempDir(), map[string]string{"JWT_SECRET": testSecret, "DATA_DIR": t.TempDir()}, "status", "--url", n.URL+"/")
	if code != 0 || !strings.Contains(out, "online users") {
		t.Errorf("status with JWT_SECRET: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	ws := strings.Replace(n.URL, "http://", "ws://", 1) + "/ws"
	_, stderr, code = runCLI(t, t.TempDir(), map[string]string{"JWT_SECRET": "another-secret-0123456789abcdef"}, "connect", "--url", ws, "--user", "bob")
	if code != 1 || !strings.Contains(stderr, "refused the WebSocket: 401") {
		t.Errorf("connect with a token of another secret: exit %d, stderr %q", code, stderr)
	}
	// As a guest on a node without ALLOW_ANONYMOUS, the refusal says what to do.
	_, stderr, code = runCLI(t, t.TempDir(), map[string]string{"DATA_DIR": t.TempDir()}, "connect", "--url", ws)
	if code != 1 || !strings.Contains(stderr, "refused the WebSocket: 401") || !strings.Contains(stderr, "ALLOW_ANONYMOUS=true") {
		t.Errorf("connect as a guest: exit %d, stderr %q; want the 401 and the ALLOW_ANONYMOUS hint", code, stderr)
	}
	// A user token is minted with the node's secret; the server closes it
	// at SIGTERM with 1001, which connect shows and ends on with 0.
	c := StartProc(t, t.TempDir(), []string{"connect", "--url", ws, "--token", Token(t, "carol")}, nil)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(c.Stdout.String(), `"userId":"carol"`) {
		if time.Now().After(deadline) {
			t.Fatalf("connect --token printed no hello:\n%s", c.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.Term()
	if code := c.Wait(10 * time.Second); code != 0 || !strings.Contains(c.Stderr.String(), "the server closed the connection: 1001 (going away)") {
		t.Errorf("connect when the server stops: exit %d, stderr %q", code, c.Stderr)
	}
}

// TestCLIVersionMakeBuild: make build gives a binary whose version names
// the checked-out revision and the build time.
func TestCLIVersionMakeBuild(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make is needed for this test (apt-get install make)")
	}
	rev, err := exec.Command("git", "-C", "..", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD: %v (the test runs in a git checkout)", err)
	}
	bin := filepath.Join(t.TempDir(), "presenced")
	build := exec.Command("make", "--no-print-directory", "-C", "..", "build", "OUT="+bin)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("presenced version: %v", err)
	}
	re := regexp.MustCompile(`^presenced \S+ \(rev ` + string(rev[:12]) + `(, modified)?(, committed \S+)?, built (\S+), go1\.\S+ \S+/\S+\)\n$`)
	m := re.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("version %q does not match %v", out, re)
	}
	if built, err := time.Parse(time.RFC3339, m[3]); err != nil || time.Since(built) > 10*time.Minute || time.Until(built) > time.Minute {
		t.Errorf("build time %q is not now (%v)", m[3], err)
	}
	// The e2e binary has no -ldflags: the version line still has the Go
	// version and platform.
	out, err = exec.Command(binPath, "version").Output()
	if err != nil || !regexp.MustCompile(`^presenced \S+ \(.*go1\.\S+ \S+/\S+\)\n$`).Match(out) {
		t.Errorf("presenced version: %q, %v", out, err)
	}
}
