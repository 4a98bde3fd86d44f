package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"
)

// liveUpdate is how soon after a change on the server the panel's cards
// must show it without a reload: the stream polls the overview every
// 50 ms (dashboard.StreamEvery), so 1 s leaves room for a slow browser.
// The presenced binary is built without the race detector; only this test
// process runs under it, and it does not sit on the update's path.
const liveUpdate = time.Second

// TestAdminPanelBrowser drives the admin panel in a real headless chromium
// against a real node: login refused and accepted, cards equal to the
// overview API, live updates from /ws clients, the nodes table, a phone
// width layout, a screenshot, logout ending the session, and a console
// free of errors and CSP violations.
func TestAdminPanelBrowser(t *testing.T) {
	t.Parallel()
	node := StartNode(t, map[string]string{"JWT_SECRET": testSecret, "ADMIN_TOKEN": adminToken})
	b := StartBrowser(t)

	// The page first asks the overview whether a session exists, and a
	// wrong token is answered 401 by /admin/login: chromium logs both
	// responses as "Failed to load resource" (source network). These two
	// are the API's contract; every other console error fails the test.
	expected401 := []string{node.URL + "/admin/login", node.URL + overviewPath}

	b.Do("open /admin/", chromedp.Navigate(node.URL+"/admin/"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="token"]`)))
	if visible := MustEval[bool](b, "cards before login", cardsVisible); visible {
		t.Fatalf("the cards show before login")
	}

	// A wrong token: the form stays and says why.
	login(b, "wrong-"+adminToken)
	PollDOM(b, "#login-error shows the refusal",
		`(() => { const e = document.getElementById("login-error"); return e && e.checkVisibility() ? e.textContent.trim() : ""; })()`,
		time.Now(), 5*time.Second, func(s string) bool { return s != "" })
	msg := MustEval[string](b, "login error", `document.getElementById("login-error").textContent.trim()`)
	t.Logf("wrong token: #login-error says %q", msg)
	if visible := MustEval[bool](b, "cards after a refused login", cardsVisible); visible {
		t.Fatalf("the cards show after a refused login")
	}

	// The right token: the cards appear and show the overview.
	login(b, adminToken)
	PollDOM(b, "cards appear after login", cardsVisible, time.Now(), 5*time.Second, func(v bool) bool { return v })
	waitCardsMatch(t, b, node, 5*time.Second)
	PollDOM(b, `#conn-status data-state="live"`, `document.getElementById("conn-status").getAttribute("data-state")`,
		time.Now(), 5*time.Second, func(s string) bool { return s == "live" })
	o := node.Overview()
	fallback := o.Source == "mongodb" || o.Source == "sqlite"
	badge := MustEval[map[string]any](b, "#source-badge",
		`(() => { const e = document.getElementById("source-badge"); return e ? {hidden: e.hidden, fallback: e.getAttribute("data-fallback"), text: e.textContent} : {missing: true}; })()`)
	if badge["missing"] == true || badge["hidden"] != !(fallback || o.Stale) || badge["fallback"] != strconv.FormatBool(fallback) {
		t.Errorf("#source-badge = %v for overview source %q stale %v", badge, o.Source, o.Stale)
	}

	// The session cookie, read before logout to try it afterwards.
	cookie := sessionCookie(t, b, node)
	if !cookie.HTTPOnly || cookie.SameSite != network.CookieSameSiteStrict {
		t.Errorf("session cookie HttpOnly=%v SameSite=%q, want HttpOnly and Strict", cookie.HTTPOnly, cookie.SameSite)
	}
	if status := getWithCookie(t, node, overviewPath, cookie); status != http.StatusOK {
		t.Fatalf("overview with the browser's session cookie: %d, want 200", status)
	}

	// Five users connect: the card follows without a reload.
	var clients []*Client
	for i := range 5 {
		clients = append(clients, Dial(t, node, Token(t, fmt.Sprintf("panel-user-%d", i))))
	}
	took := PollDOM(b, "onlineUsers card shows 5", metricText("onlineUsers"), time.Now(), liveUpdate,
		func(s string) bool { return s == "5" })
	t.Logf("onlineUsers card showed 5 after %v (poll every 50 ms)", took.Round(time.Millisecond))
	waitCardsMatch(t, b, node, 2*time.Second)

	// The nodes table lists this node.
	var sl serverLoad
	if err := fetchJSON(node, "/api/admin/dashboard/server-load", &sl); err != nil {
		t.Fatal(err)
	}
	if len(sl.Nodes) != 1 {
		t.Fatalf("server-load lists %d nodes, want 1: %+v", len(sl.Nodes), sl.Nodes)
	}
	PollDOM(b, "#nodes has a row for node "+sl.Nodes[0].ID,
		`Array.from(document.querySelectorAll("#nodes tr[data-node]"), tr => tr.getAttribute("data-node"))`,
		time.Now(), 6*time.Second, func(ids []string) bool { return slices.Contains(ids, sl.Nodes[0].ID) })
	// The row catches up with the clients at the next heartbeat (2 s) and
	// the page's next server-load poll (5 s); waiting for it also keeps the
	// screenshot below from showing a node with 0 connections.
	PollDOM(b, "the node's row shows 5 connections",
		fmt.Sprintf(`(() => { const td = document.querySelector('#nodes tr[data-node=%q] td[data-col="connections"]'); return td ? td.textContent.trim() : ""; })()`, sl.Nodes[0].ID),
		time.Now(), 10*time.Second, func(s string) bool { return s == "5" })

	// At phone width only the table's scrolling container may be wider
	// than the screen.
	b.Do("resize to 375x800", chromedp.EmulateViewport(375, 800))
	var layout narrowLayout
	PollDOM(b, "nothing overflows the body at 375 px", narrowLayoutJS, time.Now(), 3*time.Second, func(l narrowLayout) bool {
		layout = l
		return l.InnerWidth == 375 && l.BodyScrollWidth <= l.InnerWidth && l.DocScrollWidth <= l.InnerWidth &&
			len(l.Overflowing) == 0 && l.TableContainer != ""
	})
	t.Logf("at 375 px: body.scrollWidth %d, table container %s", layout.BodyScrollWidth, layout.TableContainer)

	// A screenshot at desktop width, with the clients still connected so
	// that the cards and the chart have something to show.
	b.Do("resize to 1280x900", chromedp.EmulateViewport(1280, 900), nextFrames())
	PollDOM(b, "chart fills the desktop width", `document.getElementById("chart").getBoundingClientRect().width`,
		time.Now(), 3*time.Second, func(w float64) bool { return w > 600 })
	b.Do("settle", nextFrames())
	png := RunAction(b, "full-page screenshot", chromedp.FullScreenshot(100))
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("screenshot is not a PNG (%d bytes)", len(png))
	}
	shot := filepath.Join(t.TempDir(), "screenshot-admin.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	if dst := os.Getenv("PRESENCED_SCREENSHOT"); dst != "" {
		if err := os.WriteFile(dst, png, 0o644); err != nil {
			t.Fatalf("PRESENCED_SCREENSHOT: %v", err)
		}
		t.Logf("screenshot (%d bytes) written to %s", len(png), dst)
	}

	// They leave: back to 0.
	for _, c := range clients {
		_ = c.Conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		c.Conn.Close()
	}
	took = PollDOM(b, "onlineUsers card back to 0", metricText("onlineUsers"), time.Now(), liveUpdate,
		func(s string) bool { return s == "0" })
	t.Logf("onlineUsers card showed 0 after %v", took.Round(time.Millisecond))

	// Logout: the form is back and the old cookie is refused.
	b.Do("click #logout", chromedp.Click(chromedp.ID("logout")))
	PollDOM(b, "login form back after logout",
		`document.querySelector('input[name="token"]').checkVisibility() && !document.getElementById("logout").checkVisibility()`,
		time.Now(), 5*time.Second, func(v bool) bool { return v })
	if visible := MustEval[bool](b, "cards after logout", cardsVisible); visible {
		t.Errorf("the cards still show after logout")
	}
	if status := getWithCookie(t, node, overviewPath, cookie); status != http.StatusUnauthorized {
		t.Errorf("overview with the cookie of a logged-out session: %d, want 401", status)
	}

	var bad []string
	for _, m := range b.Console() {
		t.Logf("console: %s", consoleLine(m))
		if slices.Contains(expected401, m.URL) && m.Source == "network" && strings.Contains(m.Text, "status of 401") {
			continue
		}
		// Chromium reports a CSP violation as an error from the source
		// "security" ("... violates the following Content Security Policy
		// directive ..."; older versions say "Refused to ...").
		if m.Type == chromedp.ConsoleError || m.IsException() || m.Source == "security" ||
			strings.Contains(m.Text, "Refused to") || strings.Contains(m.Text, "Content Security Policy") {
			bad = append(bad, consoleLine(m))
		}
	}
	if len(bad) > 0 {
		t.Errorf("the page wrote %d console errors or CSP violations:\n%s", len(bad), strings.Join(bad, "\n"))
	}
}

// cardsVisible is true when the onlineUsers card is on screen.
const cardsVisible = `(() => { const e = document.querySelector('[data-metric="onlineUsers"]'); return !!e && e.checkVisibility(); })()`

// metricText is the expression for the text of the card of field.
func metricText(field string) string {
	return fmt.Sprintf(`document.querySelector('[data-metric=%q]').textContent.trim()`, field)
}

// login types token into the login form and submits it as a user does.
func login(b *Browser, token string) {
	b.t.Helper()
	b.Do("log in", chromedp.Clear(chromedp.CSS(`input[name="token"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="token"]`), token),
		chromedp.Click(chromedp.CSS(`form:has(input[name="token"]) [type="submit"]`)))
}

// waitCardsMatch waits until every [data-metric] card shows the overview's
// field as its text, reading the overview from the API each time.
func waitCardsMatch(t *testing.T, b *Browser, node *Node, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		cards, err := Eval[map[string]string](b,
			`Object.fromEntries(Array.from(document.querySelectorAll("[data-metric]"), e => [e.getAttribute("data-metric"), e.textContent.trim()]))`)
		o := node.Overview()
		want := map[string]string{
			"onlineUsers":       strconv.FormatInt(o.OnlineUsers, 10),
			"onlineConnections": strconv.FormatInt(o.OnlineConnections, 10),
			"onlineGuests":      strconv.FormatInt(o.OnlineGuests, 10),
			"peakOnlineToday":   strconv.FormatInt(o.PeakOnlineToday, 10),
			"totalUsers":        strconv.FormatInt(o.TotalUsers, 10),
			"newUsersToday":     strconv.FormatInt(o.NewUsersToday, 10),
			"activeUsers24h":    strconv.FormatInt(o.ActiveUsers24h, 10),
		}
		if err == nil && fmt.Sprint(cards) == fmt.Sprint(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cards never matched the overview within %v:\ncards    %v (error %v)\noverview %v", timeout, cards, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sessionCookie returns the browser's panel session cookie for node.
func sessionCookie(t *testing.T, b *Browser, node *Node) *network.Cookie {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{node.URL + "/admin/"}})
	if err != nil {
		t.Fatalf("browser: read cookies: %v", err)
	}
	for _, c := range res.Cookies {
		if c.Name == "presenced_admin" {
			return c
		}
	}
	t.Fatalf("browser holds no presenced_admin cookie after login; cookies: %+v", res.Cookies)
	return nil
}

// getWithCookie GETs path from Go with only cookie as credentials and
// returns the status.
func getWithCookie(t *testing.T, node *Node, path string, cookie *network.Cookie) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, node.URL+path, nil)
	req.AddCookie(&http.Cookie{Name: cookie.Name, Value: cookie.Value})
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s with the session cookie: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// nextFrames waits for two animation frames, so that resize handlers that
// defer to requestAnimationFrame have drawn.
func nextFrames() chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](`new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r())))`,
		chromedp.EvalAwaitPromise)
}

// narrowLayout is what narrowLayoutJS reports.
type narrowLayout struct {
	InnerWidth      int      `json:"innerWidth"`
	BodyScrollWidth int      `json:"bodyScrollWidth"`
	DocScrollWidth  int      `json:"docScrollWidth"`
	TableContainer  string   `json:"tableContainer"` // "" when #nodes has no scrolling container
	Overflowing     []string `json:"overflowing"`    // elements outside it that reach past the screen
}

// narrowLayoutJS measures the page at its current width: the scroll widths,
// the nearest ancestor of #nodes that scrolls horizontally, and every
// visible element outside that container whose box ends past the screen.
const narrowLayoutJS = `(() => {
  const w = window.innerWidth;
  const name = e => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") +
    (typeof e.className === "string" && e.className ? "." + e.className.trim().split(/\s+/).join(".") : "");
  let box = document.getElementById("nodes");
  box = box && box.parentElement;
  while (box && box !== document.body && !/^(auto|scroll)$/.test(getComputedStyle(box).overflowX)) box = box.parentElement;
  if (box === document.body) box = null;
  const over = [];
  for (const e of document.body.querySelectorAll("*")) {
    if (box && box !== e && box.contains(e)) continue;
    if (!e.checkVisibility()) continue;
    const r = e.getBoundingClientRect();
    if (r.width > 0 && r.right > w + 0.5) over.push(name(e) + " right=" + Math.round(r.right));
  }
  return {innerWidth: w, bodyScrollWidth: document.body.scrollWidth,
    docScrollWidth: document.documentElement.scrollWidth, tableContainer: box ? name(box) : "",
    overflowing: over.slice(0, 20)};
})()`
