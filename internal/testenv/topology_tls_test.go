package testenv

import (
	"strings"
	"testing"
	"time"
)

// TestRedisClusterSecured: a cluster with a password and TLS only, with
// client certificates, forms; Do reaches its nodes, and a plain,
// password-less or certificate-less client is refused.
func TestRedisClusterSecured(t *testing.T) {
	t.Parallel()
	c := StartRedisClusterWith(t, ClusterOptions{Password: "cluster-pw", TLS: true, TLSClientAuth: true})
	m := c.MasterOf("online_users")
	if got := m.Do("SET", "online_users", "1"); got != "OK" {
		t.Fatalf("SET on the slot's master = %q", got)
	}
	if got := m.Do("CONFIG", "GET", "port"); got != "[port 0]" {
		t.Errorf("CONFIG GET port = %q, want 0: TLS only", got)
	}
	if got := m.Do("CONFIG", "GET", "tls-cluster"); got != "[tls-cluster yes]" {
		t.Errorf("CONFIG GET tls-cluster = %q", got)
	}
	if _, err := redisDo(m.Addr(), redisDoTimeout, "PING"); err == nil {
		t.Error("a plain PING on the TLS port got a reply")
	}
	if got, err := redisDoWith(m.Addr(), redisDoTimeout, c.TLS.config, "", "GET", "online_users"); err != nil || !strings.HasPrefix(got, "(error) NOAUTH") {
		t.Errorf("GET without a password = %q, %v; want NOAUTH", got, err)
	}
	noCert := c.TLS.config.Clone()
	noCert.Certificates = nil
	if got, err := redisDoWith(m.Addr(), redisDoTimeout, noCert, c.Password, "PING"); err == nil {
		t.Errorf("PING without a client certificate = %q, want an error", got)
	}
	// A restart keeps the security (and, as on a plain cluster, the slots).
	c.Restart(m, 200*time.Millisecond)
	if got := m.Do("GET", "online_users"); got != "(nil)" {
		t.Errorf("GET after restart = %q, want (nil)", got)
	}
	if c.MasterOf("online_users") != m {
		t.Error("the restarted master lost its slots")
	}
}

// TestRedisSentinelSecured: a TLS-only set with client certificates and
// passwords on the data nodes and the Sentinels forms and fails over.
func TestRedisSentinelSecured(t *testing.T) {
	t.Parallel()
	s := StartRedisSentinelWith(t, SentinelOptions{Password: "data-pw", SentinelPassword: "sentinel-pw", TLS: true, TLSClientAuth: true})
	m := s.Master()
	m.Do("SET", "k", "v")
	if got, err := redisDoWith(s.Sentinels[0].Addr(), redisDoTimeout, s.TLS.config, "", "SENTINEL", "MASTERS"); err != nil || !strings.HasPrefix(got, "(error) NOAUTH") {
		t.Errorf("SENTINEL MASTERS without a password = %q, %v; want NOAUTH", got, err)
	}
	next := s.Failover()
	if got := next.Do("GET", "k"); got != "v" {
		t.Errorf("GET k on the new master = %q, want the replicated v", got)
	}
}

// TestRedisClusterHostnames: a TLS cluster whose certificate names only
// localhost forms, and with AnnounceHost its slots name localhost.
func TestRedisClusterHostnames(t *testing.T) {
	t.Parallel()
	c := StartRedisClusterWith(t, ClusterOptions{TLS: true, CertHost: "localhost", AnnounceHost: "localhost"})
	slots := c.Nodes[0].Do("CLUSTER", "SLOTS")
	if strings.Count(slots, "localhost") != 3 {
		t.Errorf("CLUSTER SLOTS = %s, want the 3 masters named localhost", slots)
	}
}
