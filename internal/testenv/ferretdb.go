// Package testenv starts real servers as child processes for tests: no test
// in presenced talks to a hand-written fake of a database.
package testenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// FerretDBVersion is the FerretDB release StartFerretDB runs. v1 is the last
// line with an embedded SQLite backend, so the tests need no PostgreSQL.
const FerretDBVersion = "v1.24.2"

const ferretDBModule = "github.com/FerretDB/FerretDB"

// StartFerretDB starts a FerretDB process with its SQLite backend under
// tb.TempDir(), listening on a free 127.0.0.1 port, waits until it accepts
// connections and returns its MongoDB URI (no database in the path). The
// process is killed in tb.Cleanup.
//
// The binary is $FERRETDB_BIN when set, else FerretDBBinaryPath(), built
// there on first use (scripts/build-ferretdb.sh builds it ahead of time).
// StartFerretDB fails the test, never skips it, when FerretDB cannot be
// built or started.
func StartFerretDB(tb testing.TB) (uri string) {
	tb.Helper()
	bin, err := ferretDBBinary()
	if err != nil {
		tb.Fatalf("testenv: FerretDB %s unavailable: %v (run scripts/build-ferretdb.sh or set FERRETDB_BIN)", FerretDBVersion, err)
	}

	// A free port can be taken by another process between our probe and
	// FerretDB's listen, so a failed start is retried on a new port.
	var lastErr error
	for range 3 {
		uri, err := startFerretDB(tb, bin)
		if err == nil {
			return uri
		}
		lastErr = err
	}
	tb.Fatalf("testenv: start FerretDB: %v", lastErr)
	return ""
}

func startFerretDB(tb testing.TB, bin string) (string, error) {
	tb.Helper()
	addr, err := freeAddr()
	if err != nil {
		return "", err
	}
	dir := tb.TempDir()
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return "", fmt.Errorf("testenv: %w", err)
	}

	cmd := exec.Command(bin,
		"--handler=sqlite",
		"--sqlite-url=file:"+dataDir+"/",
		"--listen-addr="+addr,
		"--state-dir="+dir,
		"--debug-addr=-", // its default 127.0.0.1:8088 would collide between parallel tests
		"--telemetry=disable",
		"--log-level=error",
	)
	// FERRETDB_* variables of the environment would override nothing given
	// as a flag, but keep them out anyway so a developer's setup cannot
	// change the test server.
	cmd.Env = filterEnv(os.Environ(), "FERRETDB_")
	logs := &Buffer{}
	cmd.Stdout = logs
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("testenv: start %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			return "", fmt.Errorf("testenv: FerretDB exited at start: %s", logs.String())
		default:
		}
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = conn.Close()
			break
		}
		if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("testenv: FerretDB not listening on %s after 30s: %s", addr, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	tb.Cleanup(func() {
		stop()
		if tb.Failed() && logs.Len() > 0 {
			tb.Logf("testenv: FerretDB output:\n%s", logs.String())
		}
	})
	return "mongodb://" + addr + "/", nil
}

// FerretDBBinaryPath is where StartFerretDB caches its FerretDB build:
// presenced-testbin/ferretdb-<version> under os.UserCacheDir().
func FerretDBBinaryPath() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("testenv: user cache dir: %w", err)
	}
	return filepath.Join(cache, "presenced-testbin", "ferretdb-"+FerretDBVersion), nil
}

// buildMu keeps parallel tests of one package from building twice; tests
// of other packages (other processes) may race us, which the rename into
// place makes harmless.
var buildMu sync.Mutex

func ferretDBBinary() (string, error) {
	if bin := os.Getenv("FERRETDB_BIN"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("FERRETDB_BIN: %w", err)
		}
		return bin, nil
	}
	path, err := FerretDBBinaryPath()
	if err != nil {
		return "", err
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if err := BuildFerretDB(path); err != nil {
		return "", err
	}
	return path, nil
}

// BuildFerretDB builds FerretDB FerretDBVersion into out with the go command
// on PATH, as scripts/build-ferretdb.sh does. The module zip lacks
// build/version/version.txt, without which the binary panics at start, so
// the build runs in a writable copy of the module with that file written.
// The binary is built under a temporary name and renamed into place, so a
// concurrent build never leaves a half-written file at out.
func BuildFerretDB(out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("testenv: build FerretDB: %w", err)
	}
	env := append(filterEnv(os.Environ(), "GOWORK=", "GOFLAGS="), "GOWORK=off", "GOFLAGS=-mod=mod")

	work, err := os.MkdirTemp("", "presenced-ferretdb-build-")
	if err != nil {
		return fmt.Errorf("testenv: build FerretDB: %w", err)
	}
	defer os.RemoveAll(work)

	dl := exec.Command(goBin, "mod", "download", "-json", ferretDBModule+"@"+FerretDBVersion)
	dl.Env = env
	dl.Dir = work
	var stderr bytes.Buffer
	dl.Stderr = &stderr
	js, err := dl.Output()
	if err != nil {
		return fmt.Errorf("testenv: go mod download %s: %w: %s", ferretDBModule, err, stderr.String())
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(js, &mod); err != nil {
		return fmt.Errorf("testenv: go mod download: %w", err)
	}
	if mod.Dir == "" {
		return fmt.Errorf("testenv: go mod download %s: no Dir: %s", ferretDBModule, mod.Error)
	}

	src := filepath.Join(work, "src")
	if err := copyTree(mod.Dir, src); err != nil {
		return fmt.Errorf("testenv: copy FerretDB source: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(src, "build", "version"), 0o755); err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	if err := os.WriteFile(filepath.Join(src, "build", "version", "version.txt"), []byte(FerretDBVersion), 0o644); err != nil {
		return fmt.Errorf("testenv: %w", err)
	}

	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	tmp := out + ".tmp." + strconv.Itoa(os.Getpid())
	build := exec.Command(goBin, "build", "-o", tmp, "./cmd/ferretdb")
	build.Env = env
	build.Dir = src
	if b, err := build.CombinedOutput(); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("testenv: go build FerretDB: %w: %s", err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("testenv: %w", err)
	}
	return nil
}

// copyTree copies the regular files of src into dst with writable modes:
// files in the module cache are read-only.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

// freeAddr returns a 127.0.0.1 address whose port was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("testenv: free port: %w", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return "", fmt.Errorf("testenv: free port: %w", err)
	}
	return addr, nil
}

// filterEnv returns env without the variables whose "NAME=value" starts
// with one of prefixes.
func filterEnv(env []string, prefixes ...string) []string {
	out := make([]string, 0, len(env))
next:
	for _, kv := range env {
		for _, p := range prefixes {
			if strings.HasPrefix(kv, p) {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}
