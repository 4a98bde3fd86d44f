package main

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/testenv"
)

const benchTestSecret = "bench-test-secret-0123456789abcdef"

// startServe runs the whole program in process with Redis and returns its
// port; it stops when the test ends.
func startServe(t *testing.T, redisURL string) string {
	t.Helper()
	getenv := env(map[string]string{
		"PORT": "0", "DATA_DIR": t.TempDir(), "JWT_SECRET": benchTestSecret,
		"ADMIN_TOKEN": "bench-test-admin", "REDIS_URL": redisURL, "LOG_LEVEL": "info",
	})
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, []string{"presenced"}, getenv, &stdout, &stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-errc:
		case <-time.After(15 * time.Second):
			t.Errorf("serve still running 15 s after cancel")
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := listenAddr.FindStringSubmatch(stderr.String()); m != nil {
			port := m[1]
			for {
				resp, err := http.Get("http://127.0.0.1:" + port + "/healthz")
				if err == nil {
					resp.Body.Close()
					return port
				}
				if time.Now().After(deadline) {
					t.Fatalf("/healthz: %v", err)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		select {
		case err := <-errc:
			t.Fatalf("serve returned: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no listening line within 10s:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// benchRun runs `presenced bench ARGS...` in process and returns its stdout.
func benchRun(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, append([]string{"presenced", "bench"}, args...), env(nil), &stdout, &stderr); err != nil {
		t.Fatalf("bench %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// numbers returns the numbers after each name in the first line matching
// re, failing the test when the line or a number is missing.
func numbers(t *testing.T, out, re string, names ...string) map[string]float64 {
	t.Helper()
	line := regexp.MustCompile(`(?m)^` + re + `.*$`).FindString(out)
	if line == "" {
		t.Fatalf("no line matching %q in:\n%s", re, out)
	}
	f := strings.Fields(line)
	got := make(map[string]float64)
	for _, name := range names {
		for i := 0; i+1 < len(f); i++ {
			if f[i] == name {
				v, err := strconv.ParseFloat(f[i+1], 64)
				if err != nil {
					t.Fatalf("%s: %q is not a number in %q", name, f[i+1], line)
				}
				got[name] = v
			}
		}
		if _, ok := got[name]; !ok {
			t.Fatalf("no %s in %q", name, line)
		}
	}
	return got
}

// TestBenchSmoke runs each bench subcommand with a few hundred connections
// against a real node with a real Redis and checks that what they print
// parses and adds up. It measures nothing: the numbers are bench/'s job.
func TestBenchSmoke(t *testing.T) {
	// Not parallel: serve routes nbio's package-level logger.
	rs := testenv.StartRedis(t)
	port := startServe(t, rs.URL())
	ws := "ws://127.0.0.1:" + port + "/ws"
	common := []string{"--secret", benchTestSecret, "--timeout", "20s"}

	out := benchRun(t, append([]string{"--url", ws, "--conns", "300", "--hold", "200ms"}, common...)...)
	s := numbers(t, out, "summary", "up", "failed", "held", "conns/s", "p50ms", "p99ms", "maxms")
	if s["up"] != 300 || s["failed"] != 0 || s["held"] != 300 || s["conns/s"] <= 0 || s["p50ms"] > s["p99ms"] || s["p99ms"] > s["maxms"] {
		t.Fatalf("bench (conn, by default) summary %v:\n%s", s, out)
	}

	out = benchRun(t, append([]string{"conn", "--url", "ws://127.0.0.1:" + port + "/socket.io/", "--transport", "socketio",
		"--conns", "200", "--rate", "2000", "--churn-rate", "0.1", "--churn-interval", "50ms", "--churn-for", "600ms", "--hold", "1s"}, common...)...)
	s = numbers(t, out, "summary", "up", "failed", "held")
	if s["up"] != 200 || s["failed"] != 0 || s["held"] != 200 {
		t.Fatalf("bench conn --transport socketio summary %v:\n%s", s, out)
	}
	c := numbers(t, out, "churn done:", "disconnects", "connects", "failed", "ticks", "skipped")
	if c["ticks"] < 1 || c["disconnects"]+c["skipped"] != 20*c["ticks"] || c["connects"] != c["disconnects"] || c["failed"] != 0 {
		t.Fatalf("churn %v: want 20 slots a tick, each closed and reopened (or skipped), no failures:\n%s", c, out)
	}
	if !strings.Contains(out, "paced at") {
		t.Fatalf("no pacing line:\n%s", out)
	}

	out = benchRun(t, "http", "--url", "http://127.0.0.1:"+port+"/api/admin/dashboard/overview",
		"--token", "bench-test-admin", "--conns", "8", "--duration", "500ms", "--warmup", "100ms")
	h := numbers(t, out, "requests", "requests")
	l := numbers(t, out, "latency ms", "p50", "p99", "max")
	if h["requests"] < 1 || l["p50"] > l["p99"] || l["p99"] > l["max"] || !strings.Contains(out, "(errors 0, non-2xx 0)") {
		t.Fatalf("bench http: requests %v latency %v:\n%s", h, l, out)
	}

	out = benchRun(t, append([]string{"freshness", "--url", ws, "--redis-url", rs.URL(), "--samples", "5",
		"--sse-url", "http://127.0.0.1:" + port + "/api/admin/dashboard/stream", "--token", "bench-test-admin",
		"--gap-min", "0s", "--gap", "50ms"}, common...)...)
	for _, src := range []string{"online_users", "sse"} {
		for _, ev := range []string{"connect", "disconnect"} {
			f := numbers(t, out, "freshness "+src+" "+ev, "n", "p50", "p99", "max")
			if f["n"] != 5 || f["p50"] > f["p99"] || f["p99"] > f["max"] {
				t.Fatalf("freshness %s %s %v:\n%s", src, ev, f, out)
			}
		}
	}
	if got := rs.Do("GET", "online_users"); got != "0" {
		t.Fatalf("online_users after every bench ended = %s, want 0", got)
	}
}

// TestBenchCommandLine: --help prints the usage on stdout and succeeds;
// bad flags and targets that are not on this machine are exit code 2.
func TestBenchCommandLine(t *testing.T) {
	t.Parallel()
	for _, sub := range [][]string{{"--help"}, {"conn", "--help"}, {"http", "-h"}, {"freshness", "--help"}, {"help"}} {
		var stdout, stderr syncBuffer
		if err := run(context.Background(), append([]string{"presenced", "bench"}, sub...), env(nil), &stdout, &stderr); err != nil {
			t.Fatalf("bench %v: %v", sub, err)
		}
		if !strings.Contains(stdout.String(), "usage: presenced bench") {
			t.Fatalf("bench %v printed no usage on stdout:\n%s", sub, stdout.String())
		}
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "bogus"},
		{[]string{"conn", "--conns", "x"}, "conns"},
		{[]string{"frobnicate"}, "frobnicate"},
		{[]string{"conn", "--secret", "s", "--url", "ws://10.1.2.3/ws"}, "loopback"},
		{[]string{"conn", "--secret", "s", "--source-ips", "10.0.0.1"}, "loopback"},
		{[]string{"conn", "--secret", "s", "--churn-rate", "2"}, "churn-rate"},
		{[]string{"http", "--url", "http://example.com/"}, "loopback"},
		{[]string{"http", "--conns", "100000"}, "conns"},
		{[]string{"freshness", "--secret", "s", "--redis-url", "redis://192.0.2.1:6379"}, "loopback"},
		{[]string{"freshness", "--secret", "s", "--redis-url", "redis://127.0.0.1:6379", "--samples", "0"}, "samples"},
	}
	for _, tc := range cases {
		var stdout, stderr syncBuffer
		err := run(context.Background(), append([]string{"presenced", "bench"}, tc.args...), env(nil), &stdout, &stderr)
		var ue usageError
		if !errors.As(err, &ue) || exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bench %v: %v (exit code %d), want exit code 2 mentioning %q", tc.args, err, exitCode(err), tc.want)
		}
	}
}
