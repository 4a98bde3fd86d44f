package httpapi_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/presenced/presenced/auth"
	"github.com/presenced/presenced/httpapi"
	"github.com/presenced/presenced/internal/clientip"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// panelEnv serves the real auth.Admin behind the panel routes.
func panelEnv(t *testing.T, token string, clk *clock) string {
	t.Helper()
	o := auth.AdminOptions{SessionTTL: time.Hour}
	if clk != nil {
		o.Now = clk.now
	}
	admin := auth.NewAdmin(token, nil, o)
	static := fstest.MapFS{"index.html": {Data: []byte("<!doctype html><title>panel</title>")}, "app.js": {Data: []byte("//js")}}
	return "http://" + serve(t, httpapi.Deps{
		Admin: admin, Sessions: admin, Panel: static,
		ClientIP: clientip.New([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}),
	}, httpapi.Limits{})
}

func noRedirect() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func login(t *testing.T, base, token string, header http.Header) (*http.Response, *http.Cookie) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/admin/login", strings.NewReader(`{"token":"`+token+`"}`))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := noRedirect().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.ReadAll(resp.Body)
	for _, c := range resp.Cookies() {
		if c.Name == auth.SessionCookie {
			return resp, c
		}
	}
	return resp, nil
}

func withCookie(c *http.Cookie, h http.Header) http.Header {
	if h == nil {
		h = http.Header{}
	}
	h.Set("Cookie", c.Name+"="+c.Value)
	return h
}

func TestPanelLoginLogout(t *testing.T) {
	t.Parallel()
	base := panelEnv(t, "panel-token", nil)
	overview := base + "/api/admin/dashboard/overview"

	resp, body := do(t, "GET", base+"/admin/", nil, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "panel") || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Fatalf("GET /admin/: %d %q CSP %q", resp.StatusCode, body, resp.Header.Get("Content-Security-Policy"))
	}
	if csp := resp.Header.Get("Content-Security-Policy"); strings.Contains(csp, "unsafe-inline") {
		t.Fatalf("CSP allows inline: %q", csp)
	}
	if resp, _ := do(t, "GET", base+"/admin/assets/app.js", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("asset: %d", resp.StatusCode)
	}

	if resp, c := login(t, base, "wrong", nil); resp.StatusCode != 401 || c != nil {
		t.Fatalf("wrong token: %d, cookie %v", resp.StatusCode, c)
	}
	resp, c := login(t, base, "panel-token", nil)
	if resp.StatusCode != 200 || c == nil {
		t.Fatalf("login: %d, cookie %v", resp.StatusCode, c)
	}
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure || c.Path != "/" || c.MaxAge <= 0 {
		t.Fatalf("cookie flags: %+v", c)
	}
	if resp, b := do(t, "GET", overview, withCookie(c, nil), nil); resp.StatusCode != 200 {
		t.Fatalf("overview with cookie: %d %s", resp.StatusCode, b)
	}
	// A forged or altered cookie is not a session.
	bad := *c
	bad.Value = c.Value[:len(c.Value)-2] + "AA"
	if resp, _ := do(t, "GET", overview, withCookie(&bad, nil), nil); resp.StatusCode != 401 {
		t.Fatalf("altered cookie: %d", resp.StatusCode)
	}

	// The stream accepts the cookie (EventSource cannot send headers).
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /api/admin/dashboard/stream HTTP/1.1\r\nHost: x\r\nCookie: %s=%s\r\n\r\n", c.Name, c.Value)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	status, _ := br.ReadString('\n')
	if !strings.Contains(status, " 200 ") {
		t.Fatalf("stream with cookie: %q", status)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		if strings.HasPrefix(line, "data: ") {
			break
		}
	}
	conn.Close()

	// Logout from another origin is refused; from ours it ends the session.
	if resp, _ := do(t, "POST", base+"/admin/logout", withCookie(c, http.Header{"Origin": {"https://evil.example"}}), nil); resp.StatusCode != 403 {
		t.Fatalf("cross-origin logout: %d", resp.StatusCode)
	}
	resp, _ = do(t, "POST", base+"/admin/logout", withCookie(c, http.Header{"Origin": {base}}), nil)
	if resp.StatusCode != 204 {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if resp, _ := do(t, "GET", overview, withCookie(c, nil), nil); resp.StatusCode != 401 {
		t.Fatalf("old cookie after logout: %d, want 401", resp.StatusCode)
	}
}

func TestPanelFormLogin(t *testing.T) {
	t.Parallel()
	base := panelEnv(t, "form-token", nil)
	for _, tc := range []struct{ token, location string }{{"form-token", "/admin/"}, {"nope", "/admin/?error="}} {
		resp, err := noRedirect().PostForm(base+"/admin/login", url.Values{"token": {tc.token}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), tc.location) {
			t.Errorf("form login %q: %d Location %q", tc.token, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}

func TestPanelSessionExpiresAndRotates(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Now()}
	base := panelEnv(t, "rotate-token", clk)
	_, c := login(t, base, "rotate-token", nil)
	if c == nil {
		t.Fatal("no cookie")
	}
	overview := base + "/api/admin/dashboard/overview"
	clk.add(59 * time.Minute)
	if resp, _ := do(t, "GET", overview, withCookie(c, nil), nil); resp.StatusCode != 200 {
		t.Fatalf("before expiry: %d", resp.StatusCode)
	}
	clk.add(2 * time.Minute)
	if resp, _ := do(t, "GET", overview, withCookie(c, nil), nil); resp.StatusCode != 401 {
		t.Fatalf("after expiry: %d, want 401", resp.StatusCode)
	}
	// A node started with another ADMIN_TOKEN refuses the old cookie.
	_, fresh := login(t, base, "rotate-token", nil)
	rotated := panelEnv(t, "new-token", clk)
	if resp, _ := do(t, "GET", rotated+"/api/admin/dashboard/overview", withCookie(fresh, nil), nil); resp.StatusCode != 401 {
		t.Fatalf("cookie after ADMIN_TOKEN rotation: %d, want 401", resp.StatusCode)
	}
}

func TestPanelCSRF(t *testing.T) {
	t.Parallel()
	base := panelEnv(t, "csrf-token", nil)
	_, c := login(t, base, "csrf-token", nil)
	// A state-changing request authenticated only by the cookie needs our
	// own Origin; a bearer token does not.
	cases := []struct {
		name   string
		header http.Header
		want   int
	}{
		{"cookie, no origin", withCookie(c, nil), 403},
		{"cookie, other origin", withCookie(c, http.Header{"Origin": {"https://evil.example"}}), 403},
		{"cookie, null origin", withCookie(c, http.Header{"Origin": {"null"}}), 403},
		{"cookie, cross-site fetch", withCookie(c, http.Header{"Sec-Fetch-Site": {"cross-site"}}), 403},
	}
	for _, tc := range cases {
		resp, _ := do(t, "DELETE", base+"/api/admin/nope", tc.header, nil)
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
	if resp, _ := do(t, "DELETE", base+"/api/admin/nope", withCookie(c, http.Header{"Origin": {base}}), nil); resp.StatusCode != 404 {
		t.Errorf("cookie, same origin: %d, want 404", resp.StatusCode)
	}
	// Login from another origin is refused too (login CSRF).
	if resp, _ := login(t, base, "csrf-token", http.Header{"Origin": {"https://evil.example"}}); resp.StatusCode != 403 {
		t.Errorf("cross-origin login: %d, want 403", resp.StatusCode)
	}
}

func TestPanelSecureCookieBehindTLSProxy(t *testing.T) {
	t.Parallel()
	base := panelEnv(t, "tls-token", nil)
	_, c := login(t, base, "tls-token", http.Header{"X-Forwarded-Proto": {"https"}})
	if c == nil || !c.Secure {
		t.Fatalf("cookie behind a TLS proxy: %+v, want Secure", c)
	}
}
