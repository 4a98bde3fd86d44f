package e2e_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestSmokeEmbedded(t *testing.T) {
	n := StartNode(t, nil)
	c := Dial(t, n, Token(t, "alice"))
	defer c.Conn.Close()
	if c.Hello.UserID == nil || *c.Hello.UserID != "alice" || c.Hello.OnlineUsers != 1 {
		t.Fatalf("hello = %+v", c.Hello)
	}
	o := n.Overview()
	if o.OnlineUsers != 1 || o.OnlineConnections != 1 || o.Source != "memory" {
		t.Fatalf("overview = %+v", o)
	}
	if code, _ := n.Term(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

func TestMetrics(t *testing.T) {
	n := StartNode(t, nil)
	c := Dial(t, n, Token(t, "bob"))
	defer c.Conn.Close()
	status, body := n.GetToken("/metrics", "", 5*time.Second)
	if status != 200 || !strings.Contains(string(body), "presenced_node_connections 1") || !strings.Contains(string(body), "presenced_online_users 1") {
		t.Fatalf("/metrics = %d:\n%s", status, body)
	}
}

// TestStream reads the overview event stream: one event at once, another
// when a user connects.
func TestStream(t *testing.T) {
	n := StartNode(t, nil)
	req, _ := http.NewRequest(http.MethodGet, n.URL+"/api/admin/dashboard/stream", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := make(chan Overview, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var o Overview
				if json.Unmarshal([]byte(data), &o) == nil {
					events <- o
				}
			}
		}
		close(events)
	}()
	next := func() Overview {
		t.Helper()
		select {
		case o, ok := <-events:
			if !ok {
				t.Fatal("stream ended")
			}
			return o
		case <-time.After(5 * time.Second):
			t.Fatal("no event within 5s")
		}
		return Overview{}
	}
	if o := next(); o.OnlineUsers != 0 {
		t.Fatalf("first event = %+v, want 0 online", o)
	}
	c := Dial(t, n, Token(t, "carol"))
	defer c.Conn.Close()
	for o := next(); o.OnlineUsers != 1; o = next() {
	}
	if status := n.Get("/api/admin/dashboard/stream", false, nil); status != http.StatusUnauthorized {
		t.Fatalf("stream without a token: %d, want 401", status)
	}
}
