// Package deploy_test checks the files under deploy/ against the tools
// that read them: systemd-analyze for the unit, nginx for the proxy
// example (which also proxies a WebSocket to a real presenced), and the
// container recipe against `make build`.
package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/presenced/presenced/auth"
	"github.com/presenced/presenced/internal/testenv"
)

// buildBinary builds presenced as `make build` does (static) into a temp
// dir and returns its path.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "presenced")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/presenced")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// unitKeys parses a systemd unit: section -> key -> values in order.
func unitKeys(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			keys[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", path, n, line)
			}
			keys[section][k] = append(keys[section][k], v)
		}
	}
	return keys
}

func TestSystemdUnit(t *testing.T) {
	keys := unitKeys(t, "presenced.service")
	svc := keys["Service"]
	for _, want := range []struct{ key, value string }{
		{"ExecStart", "/usr/local/bin/presenced serve"},
		{"DynamicUser", "yes"},
		{"StateDirectory", "presenced"},
		{"Environment", "DATA_DIR=%S/presenced"},
		{"Restart", "on-failure"},
		{"RestartPreventExitStatus", "2"},
		{"KillSignal", "SIGTERM"},
		{"LimitNOFILE", "1048576"},
		{"NoNewPrivileges", "yes"},
		{"ProtectSystem", "strict"},
	} {
		found := false
		for _, v := range svc[want.key] {
			found = found || v == want.value
		}
		if !found {
			t.Errorf("[Service] %s=%s missing (have %q)", want.key, want.value, svc[want.key])
		}
	}
	if keys["Install"]["WantedBy"] == nil || keys["Unit"]["After"] == nil {
		t.Errorf("[Unit] After= or [Install] WantedBy= missing: %v", keys)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (Debian: apt-get install systemd); the unit's keys were checked, not verified by systemd")
	}
	// verify refuses an ExecStart that does not exist, so the unit is
	// checked with the path of a freshly built binary, all else as is.
	unit, err := os.ReadFile("presenced.service")
	if err != nil {
		t.Fatal(err)
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "presenced.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(unit, []byte("/usr/local/bin/presenced"), []byte(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
	// verify exits 0 on unknown keys and bad values, only warning: any
	// output is a defect.
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestContainerfile(t *testing.T) {
	raw, err := os.ReadFile("Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	var stages [][]string // instructions per stage
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			t.Fatalf("instruction before FROM: %q", line)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], line)
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a multi-stage build", len(stages))
	}
	build, final := strings.Join(stages[0], "\n"), strings.Join(stages[len(stages)-1], "\n")
	if !strings.Contains(build, "make build") {
		t.Errorf("the build stage does not run make build:\n%s", build)
	}
	// The builder's Go is the one go.mod asks for.
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVer := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goVer == nil || !strings.Contains(stages[0][0], "golang:"+string(goVer[1])) {
		t.Errorf("builder %q does not match go.mod's go %s", stages[0][0], goVer[1])
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^USER [1-9][0-9]*(:[1-9][0-9]*)?$`), // numeric, not root
		regexp.MustCompile(`(?m)^VOLUME \["/data"\]$`),
		regexp.MustCompile(`(?m)^ENV DATA_DIR=/data\b`),
		regexp.MustCompile(`(?m)^EXPOSE 8080$`),
		regexp.MustCompile(`(?m)^COPY --from=build `),
	} {
		if !want.MatchString(final) {
			t.Errorf("final stage lacks %s:\n%s", want, final)
		}
	}

	// make build is static, so the distroless/static base (no C
	// library) can run it.
	dry, err := exec.Command("make", "-C", "..", "-n", "build").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n build: %v\n%s", err, dry)
	}
	if !strings.Contains(string(dry), "CGO_ENABLED=0") {
		t.Fatalf("make build is not CGO_ENABLED=0:\n%s", dry)
	}
	f, err := elf.Open(buildBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the binary has an ELF interpreter: it is dynamically linked")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Fatalf("the binary needs %v", libs)
	}
}

// TestNginxExample: nginx accepts deploy/nginx.conf, and with its
// upstreams pointed at a real presenced it carries a /ws WebSocket (the
// upgrade and the hello), a Socket.IO polling handshake and the admin API.
func TestNginxExample(t *testing.T) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		if nginx, err = exec.LookPath("/usr/sbin/nginx"); err != nil {
			t.Fatal("nginx not installed (scripts/test.sh installs it with apt)")
		}
	}
	conf, err := os.ReadFile("nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// Run as the current user with every file under dir.
	local := func(conf []byte, upstream string, port int) []byte {
		s := string(conf)
		s = strings.ReplaceAll(s, "pid /run/nginx.pid;", "pid "+dir+"/nginx.pid;")
		s = strings.ReplaceAll(s, "/var/log/nginx/", dir+"/")
		s = regexp.MustCompile(`server 10\.0\.0\.\d+:8080`).ReplaceAllString(s, "server "+upstream)
		s = strings.Replace(s, "listen 80;", fmt.Sprintf("listen 127.0.0.1:%d;", port), 1)
		s = strings.Replace(s, "http {", "http {\n    client_body_temp_path "+dir+"/body;\n    proxy_temp_path "+dir+"/proxy;", 1)
		return []byte(s)
	}
	check := filepath.Join(dir, "check.conf")
	if err := os.WriteFile(check, local(conf, "10.0.0.11:8080", 8080), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(nginx, "-t", "-c", check).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t rejects the example: %v\n%s", err, out)
	}

	// A real presenced behind it.
	const secret = "deploy-test-secret-0123456789abcdef"
	appPort, proxyPort := testenv.FreePort(t), testenv.FreePort(t)
	app := exec.Command(buildBinary(t), "serve")
	app.Env = []string{"PATH=" + os.Getenv("PATH"), fmt.Sprintf("PORT=%d", appPort), "DATA_DIR=" + t.TempDir(),
		"JWT_SECRET=" + secret, "ADMIN_TOKEN=deploy-admin", "TRUSTED_PROXIES=127.0.0.1"}
	var appLog bytes.Buffer
	app.Stdout, app.Stderr = &appLog, &appLog
	app.WaitDelay = 5 * time.Second
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Process.Kill(); _ = app.Wait() })

	run := filepath.Join(dir, "run.conf")
	if err := os.WriteFile(run, local(conf, fmt.Sprintf("127.0.0.1:%d", appPort), proxyPort), 0o644); err != nil {
		t.Fatal(err)
	}
	ng := exec.Command(nginx, "-c", run, "-g", "daemon off;")
	var ngLog bytes.Buffer
	ng.Stdout, ng.Stderr = &ngLog, &ngLog
	ng.WaitDelay = 5 * time.Second
	if err := ng.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// SIGTERM: the master stops its workers (SIGKILL would orphan
		// them); SIGKILL only if it has not exited within 5 s.
		_ = ng.Process.Signal(syscall.SIGTERM)
		exited := make(chan struct{})
		go func() { _ = ng.Wait(); close(exited) }()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = ng.Process.Kill()
			<-exited
		}
		if t.Failed() {
			errLog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx:\n%s%s\npresenced:\n%s", ngLog.String(), errLog, appLog.String())
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", proxyPort)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz through nginx: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	token, err := auth.Mint([]byte(secret), "through-nginx", false, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	conn, resp, err := websocket.DefaultDialer.Dial(fmt.Sprintf("ws://127.0.0.1:%d/ws?token=%s", proxyPort, token), nil)
	if err != nil {
		t.Fatalf("WebSocket through nginx: %v (%v)", err, resp)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hello struct {
		Type        string `json:"type"`
		UserID      string `json:"userId"`
		OnlineUsers int64  `json:"onlineUsers"`
	}
	if err := conn.ReadJSON(&hello); err != nil || hello.Type != "hello" || hello.UserID != "through-nginx" || hello.OnlineUsers != 1 {
		t.Fatalf("hello through nginx = %+v, %v", hello, err)
	}
	// Application-level ping and pong pass both ways.
	if err := conn.WriteJSON(map[string]string{"type": "ping"}); err != nil {
		t.Fatal(err)
	}
	var pong map[string]any
	if err := conn.ReadJSON(&pong); err != nil || pong["type"] != "pong" {
		t.Fatalf("pong through nginx = %v, %v", pong, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	get := func(path, authz string) (int, []byte) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s through nginx: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	status, body := get("/socket.io/?EIO=4&transport=polling", "")
	if status != http.StatusOK || !bytes.HasPrefix(body, []byte(`0{"sid":`)) {
		t.Fatalf("Socket.IO polling handshake through nginx = %d %s", status, body)
	}
	status, body = get("/api/admin/dashboard/overview", "Bearer deploy-admin")
	var o struct {
		OnlineUsers int64 `json:"onlineUsers"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &o) != nil || o.OnlineUsers != 1 {
		t.Fatalf("overview through nginx = %d %s", status, body)
	}
}
