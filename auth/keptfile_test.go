package auth

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestLoadOrCreateFileOnce: of concurrent callers exactly one creates the
// file and all read its value; ReplaceFile swaps it for a 0600 file.
func TestLoadOrCreateFileOnce(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "d")
	const n = 16
	values := make([]string, n)
	created := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, c, err := LoadOrCreateFile(dir, "admin_token", RandomToken)
			if err != nil {
				t.Error(err)
			}
			values[i], created[i] = string(v), c
		}()
	}
	wg.Wait()
	nCreated := 0
	for i := range n {
		if created[i] {
			nCreated++
		}
		if values[i] != values[0] || values[i] == "" {
			t.Fatalf("caller %d got %q, caller 0 %q", i, values[i], values[0])
		}
	}
	if nCreated != 1 {
		t.Errorf("%d callers say they created the file, want 1", nCreated)
	}
	if err := ReplaceFile(dir, "admin_token", "new-value"); err != nil {
		t.Fatal(err)
	}
	v, c, err := LoadOrCreateFile(dir, "admin_token", RandomToken)
	if err != nil || c || string(v) != "new-value" {
		t.Fatalf("after ReplaceFile: %q created=%v err=%v", v, c, err)
	}
	fi, err := os.Stat(filepath.Join(dir, "admin_token"))
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Fatalf("replaced file mode %o, want 600", m)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}
