package e2e_test

import (
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
