package main

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/auth"
	"github.com/presenced/presenced/internal/testenv"
)

// syncBuffer is testenv.Buffer under the name these tests use.
type syncBuffer = testenv.Buffer

// env returns a getenv over vars only: nothing leaks in from the real
// environment.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// listenAddr matches the serve log line's address, e.g. addr=[::]:41234.
var listenAddr = regexp.MustCompile(`msg="presenced listening".* addr=\S*:(\d+)`)

// TestRunServe starts the whole program in process on a free port, waits
// for /healthz, and stops it by cancelling the context.
func TestRunServe(t *testing.T) {
	// Not parallel: serve routes nbio's package-level logger.
	getenv := env(map[string]string{
		"PORT":        "0",
		"DATA_DIR":    t.TempDir(),
		"JWT_SECRET":  "run-test-secret-0123456789abcdef",
		"ADMIN_TOKEN": "run-test-admin",
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, []string{"presenced"}, getenv, &stdout, &stderr) }()

	var port string
	deadline := time.Now().Add(10 * time.Second)
	for port == "" {
		if m := listenAddr.FindStringSubmatch(stderr.String()); m != nil {
			port = m[1]
			break
		}
		select {
		case err := <-errc:
			t.Fatalf("run returned before listening: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no listening line within 10s:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get("http://127.0.0.1:" + port + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz did not answer 200 within 10s (last error %v):\n%s", err, stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if strings.Contains(stdout.String(), "Admin token (generated") {
		t.Errorf("an admin token was generated although ADMIN_TOKEN is set:\n%s", stdout.String())
	}

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("run still running 15s after cancel:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "shutdown complete") {
		t.Errorf("log lacks the end of the shutdown:\n%s", stderr.String())
	}
}

func TestRunToken(t *testing.T) {
	t.Parallel()
	secret := "run-test-secret-0123456789abcdef"
	getenv := env(map[string]string{"JWT_SECRET": secret, "DATA_DIR": t.TempDir()})
	var stdout, stderr syncBuffer
	if err := run(context.Background(), []string{"presenced", "token", "--user", "x"}, getenv, &stdout, &stderr); err != nil {
		t.Fatalf("token --user x: %v\n%s", err, stderr.String())
	}
	tok := strings.TrimSpace(stdout.String())
	v, err := auth.NewVerifier(auth.VerifierOptions{Secret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatalf("token %q does not verify with JWT_SECRET: %v", tok, err)
	}
	if c.UserID != "x" || c.IsAdmin() {
		t.Fatalf("claims = %+v, want user x, not admin", c)
	}
}

// TestRunUsageErrors: a bad command line is exit code 2, like a bad setting.
func TestRunUsageErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		want string // in the error
	}{
		{"token without --user", []string{"presenced", "token"}, "--user"},
		{"token with an unknown flag", []string{"presenced", "token", "--bogus"}, "bogus"},
		{"unknown command", []string{"presenced", "frobnicate"}, "frobnicate"},
		{"serve with an unknown flag", []string{"presenced", "--bogus"}, "bogus"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			getenv := env(map[string]string{"JWT_SECRET": "run-test-secret-0123456789abcdef", "DATA_DIR": t.TempDir()})
			var stdout, stderr syncBuffer
			err := run(context.Background(), tc.args, getenv, &stdout, &stderr)
			if err == nil {
				t.Fatalf("run %v succeeded; stdout:\n%s", tc.args, stdout.String())
			}
			if code := exitCode(err); code != 2 {
				t.Fatalf("exit code %d for %v, want 2", code, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// TestRunConfigError: an invalid setting is exit code 2 and names the variable.
func TestRunConfigError(t *testing.T) {
	t.Parallel()
	var stdout, stderr syncBuffer
	err := run(context.Background(), []string{"presenced"}, env(map[string]string{"PORT": "abc"}), &stdout, &stderr)
	if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "PORT") {
		t.Fatalf("run with PORT=abc: %v (exit code %d), want exit code 2 naming PORT", err, exitCode(err))
	}
}
