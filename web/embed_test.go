package web

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"
)

// TestAssetsReferenced checks that every /admin/assets/ URL in index.html
// names an embedded file, and that the page's own files need nothing the
// server's Content-Security-Policy forbids.
func TestAssetsReferenced(t *testing.T) {
	static, err := fs.Sub(Static, "static")
	if err != nil {
		t.Fatal(err)
	}
	page, err := fs.ReadFile(static, "index.html")
	if err != nil {
		t.Fatal(err)
	}
	html := string(page)
	refs := regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(html, -1)
	want := []string{"app.js", "app.css", "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css"}
	seen := map[string]bool{}
	for _, m := range refs {
		u := m[1]
		switch {
		case strings.HasPrefix(u, "/admin/assets/"):
			name := strings.TrimPrefix(u, "/admin/assets/")
			if _, err := fs.Stat(static, name); err != nil {
				t.Errorf("index.html references %s, which is not embedded: %v", u, err)
			}
			seen[name] = true
		case u == "data:,": // the empty favicon (img-src data:)
		default:
			t.Errorf("index.html references %q: only /admin/assets/ URLs are allowed (no CDN)", u)
		}
	}
	for _, name := range want {
		if !seen[name] {
			t.Errorf("index.html does not load /admin/assets/%s", name)
		}
	}
	for _, name := range []string{"vendor/LICENSE", "vendor/README"} {
		if _, err := fs.Stat(static, name); err != nil {
			t.Errorf("%s missing: %v", name, err)
		}
	}
}

// TestNoInlineCode enforces script-src 'self' and style-src 'self' on the
// page: no inline <script>, <style>, style="" or on*="" attributes.
func TestNoInlineCode(t *testing.T) {
	page, err := fs.ReadFile(Static, "static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	html := string(page)
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`(?i)<style`),
		regexp.MustCompile(`(?i)\sstyle\s*=`),
		regexp.MustCompile(`(?i)\son[a-z]+\s*=`),
		regexp.MustCompile(`(?i)javascript:`),
	} {
		if loc := re.FindStringIndex(html); loc != nil {
			t.Errorf("index.html has %q, which the CSP blocks", html[loc[0]:min(len(html), loc[1]+20)])
		}
	}
	for _, m := range regexp.MustCompile(`(?is)<script([^>]*)>(.*?)</script>`).FindAllStringSubmatch(html, -1) {
		if !strings.Contains(m[1], `src="`) || strings.TrimSpace(m[2]) != "" {
			t.Errorf("inline script in index.html: %q", m[0])
		}
	}
	js, err := fs.ReadFile(Static, "static/app.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"eval(", "new Function", "innerHTML", "setAttribute(\"style\"", ".cssText", "document.write"} {
		if strings.Contains(string(js), bad) {
			t.Errorf("app.js uses %s", bad)
		}
	}
}

// TestMetricsMarked checks the overview cards a browser test reads.
func TestMetricsMarked(t *testing.T) {
	page, err := fs.ReadFile(Static, "static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	html := string(page)
	for _, f := range []string{"onlineUsers", "onlineConnections", "onlineGuests", "peakOnlineToday",
		"totalUsers", "newUsersToday", "activeUsers24h"} {
		if n := strings.Count(html, `data-metric="`+f+`"`); n != 1 {
			t.Errorf(`data-metric="%s" appears %d times, want 1`, f, n)
		}
	}
	for _, id := range []string{"login-form", "token", "login-error", "source-badge", "conn-status",
		"nodes", "logout", "chart", "source", "generated-at"} {
		if n := strings.Count(html, ` id="`+id+`"`); n != 1 {
			t.Errorf(`id="%s" appears %d times, want 1`, id, n)
		}
	}
	if !strings.Contains(html, `<form id="login-form" method="post" action="/admin/login">`) ||
		!strings.Contains(html, `name="token"`) {
		t.Error("the login form must post field token to /admin/login without JavaScript")
	}
}
