package e2e_test

import "testing"

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
