package redisstore_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/presence/redisstore"
)

// The secured topologies: a Cluster with a password, a Cluster with TLS
// only, and a Sentinel set with TLS only on the data nodes and the
// Sentinels and passwords on both, each reached through the client
// presenced builds (NewUniversalClient) with the right and the wrong
// secrets.

// presenceStore is a Store on rdb with the default key layout.
func presenceStore(t *testing.T, o redisstore.ClientOptions) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(universal(t, o), redisstore.Options{NodeTTL: 5 * time.Second, RecoveryWindow: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkPresence writes a share and a batch for node and checks the exact
// counts they give: 3 users (alice 2, bob 1, then carol 1 and bob gone,
// dave 1), 5 connections with one guest.
func checkPresence(t *testing.T, s *redisstore.Store, node string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if n, err := s.Sync(ctx, presence.Share{Node: node, Seq: 1, Users: map[string]int64{"alice": 2, "bob": 1}, Guests: 1}); err != nil || n != 2 {
		t.Fatalf("sync: %d, %v; want 2 users", n, err)
	}
	b := presence.Batch{Node: node, Seq: 2, Deltas: []presence.Delta{{User: "carol", N: 1}, {User: "bob", N: -1}, {User: "dave", N: 1}}}
	if n, err := s.Apply(ctx, b); err != nil || n != 3 {
		t.Fatalf("apply: %d, %v; want 3 users", n, err)
	}
	checkCounts(t, s, presence.Counts{Users: 3, Connections: 5, Guests: 1, PeakToday: 3})
}

// checkCounts compares Counts with want, once the recovery window the
// first write opened (1 ms here) is over.
func checkCounts(t *testing.T, s *redisstore.Store, want presence.Counts) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := s.Counts(ctx)
	for i := 0; err == nil && got.Partial && i < 100; i++ {
		time.Sleep(5 * time.Millisecond)
		got, err = s.Counts(ctx)
	}
	if err != nil || got != want {
		t.Errorf("counts = %+v, %v; want %+v", got, err, want)
	}
}

// checkRefused checks that the client o describes cannot write, with an
// error Classify gives want, that names no secret.
func checkRefused(t *testing.T, o redisstore.ClientOptions, want redisstore.State, secrets ...string) {
	t.Helper()
	rdb := universal(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, perr := redisstore.NewProbe(rdb).Ping(ctx)
	pingTook := time.Since(start)
	var se interface{ RedisState() string }
	if !errors.As(perr, &se) || se.RedisState() != string(want) {
		t.Errorf("ping: %v, want a %q error", perr, want)
	}
	// A call timeout well above the time go-redis takes to give up on
	// Sentinels that refuse the client (it retries each one's command):
	// the state is the point here.
	s, err := redisstore.New(rdb, redisstore.Options{RecoveryWindow: time.Millisecond, CallTimeout: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Sync(ctx, presence.Share{Node: "refused", Seq: 1, Users: map[string]int64{"u": 1}})
	if got := redisstore.Classify(err); got != want {
		t.Errorf("sync: %v (%q), want %q", err, got, want)
	}
	t.Logf("ping (%v): %v\nsync: %v", pingTook.Round(time.Millisecond), perr, err)
	for _, e := range []error{perr, err} {
		for _, secret := range secrets {
			if e != nil && strings.Contains(e.Error(), secret) {
				t.Errorf("error %q names the secret %q", e, secret)
			}
		}
	}
}

// TestClusterPassword: a Cluster whose nodes require a password runs the
// presence scripts with REDIS_PASSWORD (or the password in REDIS_URL),
// and a missing or wrong one is "auth refused".
func TestClusterPassword(t *testing.T) {
	t.Parallel()
	c := testenv.StartRedisClusterWith(t, testenv.ClusterOptions{Password: "cluster-secret"})
	t.Run("right", func(t *testing.T) {
		checkPresence(t, presenceStore(t, redisstore.ClientOptions{ClusterAddrs: c.Addrs(), Password: c.Password}), "n1")
		if got := c.MasterOf("online_users").Do("GET", "online_users"); got != "3" {
			t.Errorf("GET online_users on its master = %q, want 3", got)
		}
	})
	t.Run("in the URL", func(t *testing.T) {
		// The URL's host is not used with cluster seeds.
		s := presenceStore(t, redisstore.ClientOptions{URL: "redis://:cluster-secret@unused.invalid:1", ClusterAddrs: c.Addrs()})
		checkCounts(t, s, presence.Counts{Users: 3, Connections: 5, Guests: 1, PeakToday: 3})
	})
	t.Run("wrong", func(t *testing.T) {
		checkRefused(t, redisstore.ClientOptions{ClusterAddrs: c.Addrs(), Password: "wrong-secret"}, redisstore.StateAuthRefused, "wrong-secret")
	})
	t.Run("none", func(t *testing.T) {
		checkRefused(t, redisstore.ClientOptions{ClusterAddrs: c.Addrs()}, redisstore.StateAuthRefused)
	})
}

// TestClusterTLS: a TLS-only Cluster (tls-cluster yes, no plain port)
// runs the presence scripts with REDIS_TLS_CA_FILE, following MOVED
// redirections to nodes it was not given as seeds; the wrong CA, or none,
// is "tls failed", and a plain client gets no answer.
func TestClusterTLS(t *testing.T) {
	t.Parallel()
	c := testenv.StartRedisClusterWith(t, testenv.ClusterOptions{TLS: true})
	holder := c.MasterOf("online_users")
	var other []string // seeds without the master of online_users
	for _, n := range c.Nodes {
		if n != holder {
			other = append(other, n.Addr())
		}
	}
	t.Run("right CA", func(t *testing.T) {
		checkPresence(t, presenceStore(t, redisstore.ClientOptions{ClusterAddrs: other, TLSCAFile: c.TLS.CAFile}), "n1")
		if got := holder.Do("GET", "online_users"); got != "3" {
			t.Errorf("GET online_users on its master = %q, want 3", got)
		}
	})
	t.Run("rediss URL", func(t *testing.T) {
		s := presenceStore(t, redisstore.ClientOptions{URL: "rediss://unused.invalid:1", ClusterAddrs: other, TLSCAFile: c.TLS.CAFile})
		checkCounts(t, s, presence.Counts{Users: 3, Connections: 5, Guests: 1, PeakToday: 3})
	})
	t.Run("wrong CA", func(t *testing.T) {
		checkRefused(t, redisstore.ClientOptions{ClusterAddrs: c.Addrs(), TLSCAFile: c.TLS.WrongCAFile}, redisstore.StateTLSFailed)
	})
	t.Run("system pool", func(t *testing.T) {
		checkRefused(t, redisstore.ClientOptions{URL: "rediss://unused.invalid:1", ClusterAddrs: c.Addrs()}, redisstore.StateTLSFailed)
	})
	t.Run("plain", func(t *testing.T) {
		checkRefused(t, redisstore.ClientOptions{ClusterAddrs: c.Addrs()}, redisstore.StateUnreachable)
	})
}

// TestSentinelTLS: Sentinels and data nodes on TLS only, requiring client
// certificates, with passwords on both (REDIS_SENTINEL_PASSWORD for the
// Sentinels, REDIS_PASSWORD for the data nodes): the presence scripts
// run, and the counts stay exact across SENTINEL FAILOVER. The wrong CA
// or client certificate, or none, is "tls failed"; a wrong Sentinel or
// data password is "auth refused".
func TestSentinelTLS(t *testing.T) {
	t.Parallel()
	sn := testenv.StartRedisSentinelWith(t, testenv.SentinelOptions{
		Password: "data-secret", SentinelPassword: "sentinel-secret", TLS: true, TLSClientAuth: true,
	})
	addrs := strings.Split(sn.Addrs(), ",")
	right := redisstore.ClientOptions{
		SentinelAddrs: addrs, SentinelMaster: sn.Name, SentinelPassword: sn.SentinelPassword,
		Password: sn.Password, TLSCAFile: sn.TLS.CAFile, TLSCertFile: sn.TLS.ClientCertFile, TLSKeyFile: sn.TLS.ClientKeyFile,
	}
	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			change func(o *redisstore.ClientOptions)
			want   redisstore.State
		}{
			{"wrong CA", func(o *redisstore.ClientOptions) { o.TLSCAFile = sn.TLS.WrongCAFile }, redisstore.StateTLSFailed},
			{"no client certificate", func(o *redisstore.ClientOptions) { o.TLSCertFile, o.TLSKeyFile = "", "" }, redisstore.StateTLSFailed},
			{"client certificate of another CA", func(o *redisstore.ClientOptions) {
				o.TLSCertFile, o.TLSKeyFile = sn.TLS.WrongClientCertFile, sn.TLS.WrongClientKeyFile
			}, redisstore.StateTLSFailed},
			{"wrong sentinel password", func(o *redisstore.ClientOptions) { o.SentinelPassword = "wrong-secret" }, redisstore.StateAuthRefused},
			{"no sentinel password", func(o *redisstore.ClientOptions) { o.SentinelPassword = "" }, redisstore.StateAuthRefused},
			{"wrong data password", func(o *redisstore.ClientOptions) { o.Password = "wrong-secret" }, redisstore.StateAuthRefused},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				o := right
				tc.change(&o)
				checkRefused(t, o, tc.want, "wrong-secret", "data-secret", "sentinel-secret")
			})
		}
	})
	t.Run("failover", func(t *testing.T) {
		s := presenceStore(t, right)
		checkPresence(t, s, "n1")
		next := sn.Failover()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		// The client may still hold a connection to the old master, now
		// refusing writes; the batch is retried until the new master
		// takes it (a refused batch was not applied).
		b := presence.Batch{Node: "n1", Seq: 3, Deltas: []presence.Delta{{User: "erin", N: 1}}, Guests: 1}
		for attempt := 1; ; attempt++ {
			n, err := s.Apply(ctx, b)
			if err == nil {
				t.Logf("apply after failover: taken at attempt %d", attempt)
				if n != 4 {
					t.Errorf("apply after failover: %d users, want 4", n)
				}
				break
			}
			t.Logf("apply after failover, attempt %d: %v", attempt, err)
			if ctx.Err() != nil {
				t.Fatalf("apply after failover: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		checkCounts(t, s, presence.Counts{Users: 4, Connections: 7, Guests: 2, PeakToday: 4})
		if got := next.Do("GET", "online_users"); got != "4" {
			t.Errorf("GET online_users on the new master %s = %q, want 4", next.Addr(), got)
		}
	})
}

// TestClusterTLSNames: each connection checks the certificate against
// the address it dials, and a Cluster's other nodes are dialed at the
// addresses CLUSTER SLOTS gives. With certificates that name a host but
// no IP address, seeds given by that name work only if the nodes announce
// it (cluster-announce-hostname, cluster-preferred-endpoint-type
// hostname); announcing their IPs, they fail as "tls failed".
func TestClusterTLSNames(t *testing.T) {
	t.Parallel()
	seeds := func(c *testenv.RedisCluster) []string {
		var out []string
		for _, n := range c.Nodes {
			out = append(out, net.JoinHostPort("localhost", strconv.Itoa(n.Port())))
		}
		return out
	}
	t.Run("announced by name", func(t *testing.T) {
		t.Parallel()
		c := testenv.StartRedisClusterWith(t, testenv.ClusterOptions{TLS: true, CertHost: "localhost", AnnounceHost: "localhost"})
		checkPresence(t, presenceStore(t, redisstore.ClientOptions{ClusterAddrs: seeds(c), TLSCAFile: c.TLS.CAFile}), "n1")
	})
	t.Run("announced by IP", func(t *testing.T) {
		t.Parallel()
		c := testenv.StartRedisClusterWith(t, testenv.ClusterOptions{TLS: true, CertHost: "localhost"})
		checkRefused(t, redisstore.ClientOptions{ClusterAddrs: seeds(c), TLSCAFile: c.TLS.CAFile}, redisstore.StateTLSFailed)
	})
}

// TestClusterTLSClientCert: a TLS Cluster that requires client
// certificates (tls-auth-clients yes) runs the presence scripts with
// REDIS_TLS_CERT_FILE/REDIS_TLS_KEY_FILE; without one, or with one of
// another CA, it is "tls failed".
func TestClusterTLSClientCert(t *testing.T) {
	t.Parallel()
	c := testenv.StartRedisClusterWith(t, testenv.ClusterOptions{TLS: true, TLSClientAuth: true})
	o := redisstore.ClientOptions{ClusterAddrs: c.Addrs(), TLSCAFile: c.TLS.CAFile, TLSCertFile: c.TLS.ClientCertFile, TLSKeyFile: c.TLS.ClientKeyFile}
	t.Run("right", func(t *testing.T) {
		checkPresence(t, presenceStore(t, o), "n1")
	})
	t.Run("none", func(t *testing.T) {
		o := o
		o.TLSCertFile, o.TLSKeyFile = "", ""
		checkRefused(t, o, redisstore.StateTLSFailed)
	})
	t.Run("another CA's", func(t *testing.T) {
		o := o
		o.TLSCertFile, o.TLSKeyFile = c.TLS.WrongClientCertFile, c.TLS.WrongClientKeyFile
		checkRefused(t, o, redisstore.StateTLSFailed)
	})
}
