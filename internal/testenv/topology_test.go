package testenv

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"os"
	"strings"
	"testing"
	"time"
)

func TestRedisCluster(t *testing.T) {
	t.Parallel()
	c := StartRedisCluster(t)
	if len(c.Nodes) != 3 || strings.Count(c.Seeds(), ",") != 2 {
		t.Fatalf("nodes %d, seeds %q", len(c.Nodes), c.Seeds())
	}
	if got := c.KeySlot("online_users"); got != 4329 {
		t.Errorf("CLUSTER KEYSLOT online_users = %d, want 4329", got)
	}
	m := c.MasterOf("online_users")
	if got := m.Do("SET", "online_users", "1"); got != "OK" {
		t.Fatalf("SET on the slot's master = %q", got)
	}
	for _, n := range c.Nodes {
		if n != m {
			if got := n.Do("GET", "online_users"); !strings.HasPrefix(got, "(error) MOVED 4329 ") {
				t.Errorf("GET on another master = %q, want MOVED", got)
			}
		}
	}
	c.Restart(m, 200*time.Millisecond)
	if got := m.Do("GET", "online_users"); got != "(nil)" {
		t.Errorf("GET after restart = %q, want (nil): no persistence", got)
	}
	if c.MasterOf("online_users") != m {
		t.Error("the restarted master lost its slots")
	}
}

func TestRedisSentinel(t *testing.T) {
	t.Parallel()
	s := StartRedisSentinel(t)
	m := s.Master()
	if m != s.Data[0] {
		t.Fatalf("master %s, want the first data node", m.Addr())
	}
	m.Do("SET", "k", "v")
	next := s.Failover()
	if next == m || s.Master() != next {
		t.Fatalf("failover: master still %s", s.Master().Addr())
	}
	if got := next.Do("GET", "k"); got != "v" {
		t.Errorf("GET k on the new master = %q, want the replicated v", got)
	}
}

func TestRedisTLS(t *testing.T) {
	t.Parallel()
	r := StartRedisTLS(t)
	pool := func(file string) *x509.CertPool {
		p := x509.NewCertPool()
		b, err := os.ReadFile(file)
		if err != nil || !p.AppendCertsFromPEM(b) {
			t.Fatalf("CA file %s: %v", file, err)
		}
		return p
	}
	addr := strings.TrimPrefix(r.TLSURL(), "rediss://")
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool(r.CAFile), ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS with the right CA: %v", err)
	}
	c.Write(encodeRESP([]string{"PING"}))
	if reply, err := readRESP(bufio.NewReader(c)); err != nil || reply != "PONG" {
		t.Errorf("PING over TLS = %q, %v", reply, err)
	}
	c.Close()
	if c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool(r.WrongCAFile), ServerName: "127.0.0.1"}); err == nil {
		c.Close()
		t.Error("TLS with the wrong CA succeeded")
	}
}
