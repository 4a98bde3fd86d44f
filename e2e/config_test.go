package e2e_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigErrors: an invalid setting stops presenced before it serves,
// with exit code 2 and a message on stderr naming the variable.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		env     map[string]string
		wantVar string
	}{
		{"port not a number", map[string]string{"PORT": "abc"}, "PORT"},
		{"redis url not redis", map[string]string{"REDIS_URL": "http://x"}, "REDIS_URL"},
		{"heartbeat without unit", map[string]string{"HEARTBEAT_INTERVAL": "5"}, "HEARTBEAT_INTERVAL"},
		{"unknown presence mode", map[string]string{"PRESENCE_MODE": "bogus"}, "PRESENCE_MODE"},
		{"node ttl below heartbeat", map[string]string{"NODE_TTL": "1s", "HEARTBEAT_INTERVAL": "2s"}, "NODE_TTL"},
		{"external without redis", map[string]string{"PRESENCE_MODE": "external"}, "PRESENCE_MODE"},
		{"jwks url not http", map[string]string{"JWT_JWKS_URL": "ftp://x"}, "JWT_JWKS_URL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := StartProc(t, t.TempDir(), nil, tc.env)
			if code := p.Wait(10 * time.Second); code != 2 {
				t.Fatalf("exit code %d, want 2; stderr:\n%s", code, p.Stderr)
			}
			stderr := p.Stderr.String()
			if !strings.Contains(stderr, tc.wantVar+"=") {
				t.Fatalf("stderr does not name %s:\n%s", tc.wantVar, stderr)
			}
			if strings.Contains(stderr, "presenced listening") {
				t.Fatalf("presenced listened despite the bad setting:\n%s", stderr)
			}
		})
	}
}

// TestConfigDotenv: a .env file in the working directory is read, and a
// real environment variable wins over it.
func TestConfigDotenv(t *testing.T) {
	t.Parallel()
	writeDotenv := func(t *testing.T, content string) string {
		t.Helper()
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}

	t.Run("read", func(t *testing.T) {
		t.Parallel()
		dir := writeDotenv(t, "PORT=abc\n")
		p := StartProc(t, dir, nil, map[string]string{"PORT": ""})
		if code := p.Wait(10 * time.Second); code != 2 {
			t.Fatalf("exit code %d, want 2 for PORT=abc in .env; stderr:\n%s", code, p.Stderr)
		}
		if !strings.Contains(p.Stderr.String(), `PORT="abc"`) {
			t.Fatalf("stderr does not name PORT from .env:\n%s", p.Stderr)
		}
	})

	t.Run("environment wins", func(t *testing.T) {
		t.Parallel()
		// .env holds an unusable PORT and the admin token; the environment
		// sets a good PORT (StartProc's) and no ADMIN_TOKEN.
		dir := writeDotenv(t, "PORT=abc\nADMIN_TOKEN=dotenv-admin-token\n")
		p := StartServing(t, dir, map[string]string{"ADMIN_TOKEN": ""})
		if status, body := p.GetToken("/api/admin/dashboard/overview", "dotenv-admin-token", 5*time.Second); status != http.StatusOK {
			t.Fatalf("overview with the .env admin token: %d %s", status, body)
		}
		if status, _ := p.GetToken("/api/admin/dashboard/overview", adminToken, 5*time.Second); status != http.StatusUnauthorized {
			t.Fatalf("overview with the harness token (not configured here): %d, want 401", status)
		}
		if code, _ := p.Term(); code != 0 {
			t.Fatalf("exit code %d after SIGTERM", code)
		}
	})
}
