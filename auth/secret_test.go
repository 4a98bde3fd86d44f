package auth

import (
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestLoadOrCreateSecret(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data", "nested")
	s1, err := LoadOrCreateSecret(dir)
	if err != nil {
		t.Fatal(err)
	}
	if raw, err := hex.DecodeString(string(s1)); err != nil || len(raw) != 32 {
		t.Errorf("secret %q is not 32 hex-encoded bytes", s1)
	}
	fi, err := os.Stat(filepath.Join(dir, "jwt_secret"))
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Errorf("secret file mode = %o, want 600", m)
	}
	if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("dir mode = %v (err %v), want 700", di.Mode().Perm(), err)
	}
	s2, err := LoadOrCreateSecret(dir)
	if err != nil {
		t.Fatal(err)
	}
	if string(s1) != string(s2) {
		t.Errorf("second call returned %q, first %q", s2, s1)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("dir holds %d entries, want only jwt_secret", len(entries))
	}
}

func TestLoadOrCreateSecretExisting(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "jwt_secret"), []byte("  my-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := LoadOrCreateSecret(dir)
	if err != nil || string(s) != "my-secret" {
		t.Errorf("LoadOrCreateSecret = %q, %v; want the trimmed file contents", s, err)
	}

	empty := t.TempDir()
	if err := os.WriteFile(filepath.Join(empty, "jwt_secret"), []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateSecret(empty); err == nil {
		t.Error("LoadOrCreateSecret accepted an empty secret file")
	}
}

func TestLoadOrCreateSecretConcurrent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var (
		wg      sync.WaitGroup
		secrets [8]string
	)
	for i := range secrets {
		wg.Go(func() {
			s, err := LoadOrCreateSecret(dir)
			if err != nil {
				t.Error(err)
			}
			secrets[i] = string(s)
		})
	}
	wg.Wait()
	for _, s := range secrets[1:] {
		if s != secrets[0] {
			t.Fatalf("concurrent callers got different secrets: %q", secrets)
		}
	}
}

func TestRandomToken(t *testing.T) {
	t.Parallel()
	a, b := RandomToken(), RandomToken()
	if a == b {
		t.Error("two random tokens are equal")
	}
	raw, err := base64.RawURLEncoding.DecodeString(a)
	if err != nil || len(raw) != 32 {
		t.Errorf("RandomToken() = %q: want 32 bytes, base64url without padding (err %v)", a, err)
	}
}
