package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/presenced/presenced/dashboard"
	"github.com/presenced/presenced/httpapi"
	"github.com/presenced/presenced/internal/clientip"
	"github.com/presenced/presenced/presence/memstore"
	"github.com/presenced/presenced/store/sqlitestore"
)

const adminToken = "test-admin-token"

type tokenChecker struct{}

func (tokenChecker) Check(r *http.Request) bool {
	return r.Header.Get("Authorization") == "Bearer "+adminToken
}

// serve starts the real handler on net/http with limits l and returns its
// address.
func serve(tb testing.TB, d httpapi.Deps, l httpapi.Limits) string {
	addr, _ := serveSvc(tb, d, l)
	return addr
}

func serveSvc(tb testing.TB, d httpapi.Deps, l httpapi.Limits) (string, *dashboard.Service) {
	tb.Helper()
	ds, err := sqlitestore.Open(context.Background(), tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	svc := dashboard.New(dashboard.Options{Presence: memstore.New(time.Minute, nil), Source: "memory", Store: ds})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); svc.Run(ctx) }()
	d.Dashboard = svc
	if d.Admin == nil {
		d.Admin = tokenChecker{}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := httpapi.Listen(ln, httpapi.NewServer(d), l, nil)
	tb.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := srv.Shutdown(sctx); err != nil {
			tb.Errorf("shutdown: %v", err)
		}
		cancel()
		wg.Wait()
		_ = ds.Close(context.Background())
	})
	return ln.Addr().String(), svc
}

func do(tb testing.TB, method, url string, header http.Header, body io.Reader) (*http.Response, []byte) {
	tb.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func admin() http.Header { return http.Header{"Authorization": {"Bearer " + adminToken}} }

func TestRoutingErrors(t *testing.T) {
	t.Parallel()
	base := "http://" + serve(t, httpapi.Deps{}, httpapi.Limits{})
	cases := []struct {
		method, path string
		header       http.Header
		status       int
		allow        string
	}{
		{"GET", "/nope", nil, 404, ""},
		{"POST", "/healthz", nil, 405, "GET, HEAD"},
		{"DELETE", "/api/admin/dashboard/overview", admin(), 405, "GET, HEAD"},
		{"POST", "/api/admin/dashboard/overview", nil, 405, "GET, HEAD"},
		{"GET", "/api/admin/nope", nil, 401, ""},
		{"GET", "/api/admin/nope", admin(), 404, ""},
		{"GET", "/api/admin/dashboard/overview", nil, 401, ""},
		{"GET", "/api/admin/dashboard/overview", admin(), 200, ""},
	}
	for _, tc := range cases {
		resp, body := do(t, tc.method, base+tc.path, tc.header, nil)
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, resp.StatusCode, body, tc.status)
			continue
		}
		if got := resp.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q", tc.method, tc.path, ct)
		}
		if tc.status >= 400 {
			var e struct{ Error string }
			if json.Unmarshal(body, &e) != nil || e.Error == "" {
				t.Errorf("%s %s: body %q is not {\"error\":...}", tc.method, tc.path, body)
			}
		}
		for k, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Content-Security-Policy": httpapi.ContentSecurityPolicy} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("%s %s: %s %q", tc.method, tc.path, k, got)
			}
		}
		if strings.HasPrefix(tc.path, "/api/admin/") && resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s %s: Cache-Control %q", tc.method, tc.path, resp.Header.Get("Cache-Control"))
		}
	}
}

func TestHeadHasNoBody(t *testing.T) {
	t.Parallel()
	addr := serve(t, httpapi.Deps{}, httpapi.Limits{})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	head, err := http.ReadResponse(br, &http.Request{Method: "HEAD"})
	if err != nil || head.StatusCode != 200 {
		t.Fatalf("HEAD: %v %v", head, err)
	}
	get, err := http.ReadResponse(br, nil)
	if err != nil || get.StatusCode != 200 {
		t.Fatalf("GET after HEAD (a body after HEAD would break this): %v %v", get, err)
	}
	b, _ := io.ReadAll(get.Body)
	if !strings.Contains(string(b), `"ok"`) {
		t.Fatalf("GET body %q", b)
	}
}

func TestBodyLimit(t *testing.T) {
	t.Parallel()
	base := "http://" + serve(t, httpapi.Deps{MaxBodyBytes: 1024}, httpapi.Limits{})
	resp, body := do(t, "POST", base+"/api/admin/dashboard/overview", admin(), strings.NewReader(strings.Repeat("x", 2048)))
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("%d %s, want 413", resp.StatusCode, body)
	}
}

func TestCORS(t *testing.T) {
	t.Parallel()
	listed := "http://" + serve(t, httpapi.Deps{CORSOrigins: []string{"https://app.example"}}, httpapi.Limits{})
	any := "http://" + serve(t, httpapi.Deps{CORSOrigins: []string{"*"}}, httpapi.Limits{})
	cases := []struct {
		base, origin, allow, creds string
	}{
		{listed, "https://app.example", "https://app.example", "true"},
		{listed, "https://evil.example", "", ""},
		{listed, "null", "", ""},
		{any, "https://evil.example", "*", ""},
		{any, "null", "", ""},
	}
	for _, tc := range cases {
		resp, _ := do(t, "GET", tc.base+"/healthz", http.Header{"Origin": {tc.origin}}, nil)
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tc.allow {
			t.Errorf("origin %q: Allow-Origin %q, want %q", tc.origin, got, tc.allow)
		}
		if got := resp.Header.Get("Access-Control-Allow-Credentials"); got != tc.creds {
			t.Errorf("origin %q: Allow-Credentials %q, want %q", tc.origin, got, tc.creds)
		}
	}
}

func TestAdminThrottle(t *testing.T) {
	t.Parallel()
	base := "http://" + serve(t, httpapi.Deps{
		AdminFailures: 5,
		ClientIP:      clientip.New([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}),
	}, httpapi.Limits{})
	from := func(ip string, h http.Header) http.Header {
		if h == nil {
			h = http.Header{}
		}
		h.Set("X-Forwarded-For", ip)
		return h
	}
	url := base + "/api/admin/dashboard/overview"
	for i := range 5 {
		resp, _ := do(t, "GET", url, from("198.51.100.1", http.Header{"Authorization": {"Bearer wrong"}}), nil)
		if resp.StatusCode != 401 {
			t.Fatalf("failure %d: %d, want 401", i+1, resp.StatusCode)
		}
	}
	resp, _ := do(t, "GET", url, from("198.51.100.1", admin()), nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("after 5 failures: %d Retry-After %q, want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if resp, _ := do(t, "GET", url, from("198.51.100.2", admin()), nil); resp.StatusCode != 200 {
		t.Fatalf("another client address: %d, want 200", resp.StatusCode)
	}
}

// TestStreamEndsWhenClientLeaves: an SSE stream's handler returns when its
// client goes, and the shared poller stops with the last stream.
func TestStreamEndsWhenClientLeaves(t *testing.T) {
	t.Parallel()
	addr, svc := serveSvc(t, httpapi.Deps{}, httpapi.Limits{})
	var conns []net.Conn
	for range 20 {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET /api/admin/dashboard/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", adminToken)
		br := bufio.NewReader(conn)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("stream: %v", err)
			}
			if strings.HasPrefix(line, "data: ") {
				break
			}
		}
		conns = append(conns, conn)
	}
	if n := svc.Stream().Subscribers(); n != 20 {
		t.Fatalf("%d subscribers with 20 streams open", n)
	}
	for _, c := range conns {
		_ = c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for svc.Stream().Subscribers() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams still subscribed 5 s after their clients left", svc.Stream().Subscribers())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
