package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/presence/redisstore"
	"github.com/presenced/presenced/presence/storetest"
)

func universal(t testing.TB, o redisstore.ClientOptions) redis.UniversalClient {
	t.Helper()
	rdb, err := redisstore.NewUniversalClient(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// TestOnCluster runs the store contract and the default key layout on a
// 3-master Redis Cluster through the client presenced builds.
func TestOnCluster(t *testing.T) {
	c := testenv.StartRedisCluster(t)
	rdb := universal(t, redisstore.ClientOptions{ClusterAddrs: c.Addrs()})
	if _, ok := rdb.(*redis.ClusterClient); !ok {
		t.Fatalf("client is %T, want *redis.ClusterClient", rdb)
	}

	t.Run("contract", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) presence.Store {
			id := prefixes.Add(1)
			s, err := redisstore.New(rdb, redisstore.Options{
				OnlineKey: fmt.Sprintf("{t%d}online_users", id), NodeTTL: storetest.TTL, RecoveryWindow: time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
	})

	// The default layout, unchanged: online_users is the key, and every
	// other key hashes to its slot.
	t.Run("default layout", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		s, err := redisstore.New(rdb, redisstore.Options{NodeTTL: 300 * time.Millisecond, RecoveryWindow: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Sync(ctx, presence.Share{Node: "n1", Seq: 1, Users: map[string]int64{"alice": 2, "bob": 1}, Guests: 1}); err != nil {
			t.Fatalf("sync on a cluster: %v", err)
		}
		if _, err := s.Sync(ctx, presence.Share{Node: "dead", Seq: 1, Users: map[string]int64{"carol": 1}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Apply(ctx, presence.Batch{Node: "n1", Seq: 2, Deltas: []presence.Delta{{User: "dave", N: 1}}}); err != nil {
			t.Fatalf("apply on a cluster: %v", err)
		}
		if _, err := s.Heartbeat(ctx, 2, presence.NodeInfo{ID: "n1", Host: "h"}); err != nil {
			t.Fatalf("heartbeat on a cluster: %v", err)
		}
		if got := rdb.Get(ctx, "online_users").Val(); got != "4" {
			t.Errorf("GET online_users = %q, want 4", got)
		}
		if _, err := s.ClaimMinute(ctx, time.Now()); err != nil {
			t.Fatalf("claim minute on a cluster: %v", err)
		}
		// The peak key and the nodeinfo key are written now; then the dead
		// node's lease ends and n1's heartbeat reaps it: the script touches
		// that node's keys, named at run time.
		time.Sleep(400 * time.Millisecond)
		if _, err := s.Sync(ctx, presence.Share{Node: "n1", Seq: 3, Users: map[string]int64{"alice": 2, "bob": 1, "dave": 1}, Guests: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Heartbeat(ctx, 3, presence.NodeInfo{ID: "n1", Host: "h"}); err != nil {
			t.Fatalf("heartbeat reaping on a cluster: %v", err)
		}
		cnt, err := s.Counts(ctx)
		if err != nil || cnt.Users != 3 || cnt.Connections != 5 || cnt.PeakToday != 4 {
			t.Errorf("counts after reaping = %+v, %v; want 3 users, 5 connections, peak 4", cnt, err)
		}
		if nodes, err := s.Nodes(ctx); err != nil || len(nodes) != 1 || nodes[0].ID != "n1" {
			t.Errorf("nodes = %+v, %v; want n1 alone", nodes, err)
		}

		master := c.MasterOf("online_users")
		keys := respList(master.Do("KEYS", "*"))
		want := c.KeySlot("online_users")
		var prefixed int
		for _, k := range keys {
			if strings.HasPrefix(k, "{t") {
				continue // the contract's keys
			}
			if got := c.KeySlot(k); got != want {
				t.Errorf("CLUSTER KEYSLOT %s = %d, want %d (the slot of online_users)", k, got, want)
			}
			if strings.HasPrefix(k, "{online_users}:") {
				prefixed++
			}
		}
		if prefixed < 6 {
			t.Errorf("keys on the master of online_users: %v; want the {online_users}: keys", keys)
		}
		if err := s.Leave(ctx, "n1"); err != nil {
			t.Fatalf("leave on a cluster: %v", err)
		}
		if got := rdb.Get(ctx, "online_users").Val(); got != "0" {
			t.Errorf("GET online_users after leave = %q, want 0", got)
		}
	})

	t.Run("eviction policies of every master", func(t *testing.T) {
		c.Nodes[1].Do("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
		pol, err := redisstore.NewProbe(rdb).EvictionPolicies(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(pol) != 3 || pol[c.Nodes[1].Addr()] != "allkeys-lru" || pol[c.Nodes[0].Addr()] != "noeviction" {
			t.Errorf("policies = %v, want 3 masters with %s on allkeys-lru", pol, c.Nodes[1].Addr())
		}
	})
}

// TestClusterProbe: the probe measures every master of a Cluster, so a
// master down shows as Redis down even when another node answers.
func TestClusterProbe(t *testing.T) {
	c := testenv.StartRedisCluster(t)
	rdb := universal(t, redisstore.ClientOptions{ClusterAddrs: c.Addrs()})
	p := redisstore.NewProbe(rdb)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	var one int64
	for _, n := range c.Nodes {
		info := n.Do("INFO", "memory")
		_, v, _ := strings.Cut(info, "used_memory:")
		v, _, _ = strings.Cut(v, "\r\n")
		x, _ := strconv.ParseInt(v, 10, 64)
		one = max(one, x)
	}
	if used, err := p.UsedMemory(ctx); err != nil || used <= one {
		t.Errorf("used memory %d, %v; want the sum over 3 masters (one alone uses up to %d)", used, err, one)
	}
	c.Nodes[2].Kill()
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	defer pcancel()
	if _, err := p.Ping(pctx); redisstore.Classify(err) != redisstore.StateUnreachable {
		t.Errorf("ping with a master down: %v (%s), want unreachable", err, redisstore.Classify(err))
	}
}

// respList splits an array reply as testenv renders it ("[a b c]").
func respList(reply string) []string {
	return strings.Fields(strings.TrimSuffix(strings.TrimPrefix(reply, "["), "]"))
}

// TestDefaultPrefix: the default prefix hashes like the online key.
func TestDefaultPrefix(t *testing.T) {
	srv := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	for key, prefix := range map[string]string{"online_users": "{online_users}", "{app}count": "{app}"} {
		s, err := redisstore.New(rdb, redisstore.Options{OnlineKey: key})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Sync(context.Background(), presence.Share{Node: "n", Seq: 1, Users: map[string]int64{"u": 1}}); err != nil {
			t.Fatal(err)
		}
		if got := srv.Do("HLEN", prefix+":users"); got != "1" {
			t.Errorf("online key %q: HLEN %s:users = %s, want 1", key, prefix, got)
		}
	}
	if _, err := redisstore.New(rdb, redisstore.Options{Prefix: "{}x"}); err == nil {
		t.Error("an empty hash tag was accepted")
	}
}

// TestClassify checks the states against real servers.
func TestClassify(t *testing.T) {
	plain := testenv.StartRedis(t)
	locked := testenv.StartRedisWith(t, "--requirepass", "right-password")
	tlsSrv := testenv.StartRedisTLS(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	for _, tt := range []struct {
		name string
		o    redisstore.ClientOptions
		want redisstore.State
	}{
		{"ok", redisstore.ClientOptions{URL: plain.URL()}, redisstore.StateOK},
		{"wrong password", redisstore.ClientOptions{URL: "redis://:wrong-password@" + locked.Addr()}, redisstore.StateAuthRefused},
		{"no password", redisstore.ClientOptions{URL: locked.URL()}, redisstore.StateAuthRefused},
		{"password apart", redisstore.ClientOptions{URL: locked.URL(), Password: "right-password"}, redisstore.StateOK},
		{"database 99", redisstore.ClientOptions{URL: plain.URL() + "/99"}, redisstore.StateWrongDatabase},
		{"closed port", redisstore.ClientOptions{URL: "redis://" + closed}, redisstore.StateUnreachable},
		{"tls with the CA", redisstore.ClientOptions{URL: tlsSrv.TLSURL(), TLSCAFile: tlsSrv.CAFile}, redisstore.StateOK},
		{"tls with the wrong CA", redisstore.ClientOptions{URL: tlsSrv.TLSURL(), TLSCAFile: tlsSrv.WrongCAFile}, redisstore.StateTLSFailed},
		{"tls against the system pool", redisstore.ClientOptions{URL: tlsSrv.TLSURL()}, redisstore.StateTLSFailed},
		// A plain server waits for the rest of a "command" that is a TLS
		// hello: no answer in time.
		{"tls to a plain port", redisstore.ClientOptions{URL: "rediss://" + plain.Addr(), TLSCAFile: tlsSrv.CAFile}, redisstore.StateUnreachable},
	} {
		rdb := universal(t, tt.o)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := redisstore.NewProbe(rdb).Ping(ctx)
		cancel()
		if got := redisstore.Classify(err); got != tt.want {
			t.Errorf("%s: state %q (%v), want %q", tt.name, got, err, tt.want)
		}
		var se interface{ RedisState() string }
		if err != nil && (!errors.As(err, &se) || se.RedisState() != string(tt.want)) {
			t.Errorf("%s: Ping's error %v does not carry its state", tt.name, err)
		}
		if err != nil && strings.Contains(err.Error(), "password") && strings.Contains(err.Error(), "right-password") {
			t.Errorf("%s: error %q leaks the password", tt.name, err)
		}
	}
	if got := redisstore.Classify(errors.New("ERR something new")); got != redisstore.StateUnreachable {
		t.Errorf("an unknown error classifies as %q", got)
	}
	if got := redisstore.Classify(context.DeadlineExceeded); got != redisstore.StateUnreachable {
		t.Errorf("a timeout classifies as %q", got)
	}
}

func TestEvictionPolicies(t *testing.T) {
	for _, tt := range []struct {
		args   []string
		policy string
		err    error
	}{
		{nil, "noeviction", nil},
		{[]string{"--maxmemory-policy", "allkeys-lru"}, "allkeys-lru", nil},
		{[]string{"--maxmemory-policy", "volatile-ttl"}, "volatile-ttl", nil},
		{[]string{"--rename-command", "CONFIG", ""}, "", redisstore.ErrConfigUnavailable},
	} {
		srv := testenv.StartRedisWith(t, tt.args...)
		rdb := universal(t, redisstore.ClientOptions{URL: srv.URL()})
		pol, err := redisstore.NewProbe(rdb).EvictionPolicies(context.Background())
		if !errors.Is(err, tt.err) || (tt.err == nil && pol[""] != tt.policy) {
			t.Errorf("%q: policies %v, %v; want %q, %v", tt.args, pol, err, tt.policy, tt.err)
		}
	}
	for policy, refuse := range map[string]bool{
		"noeviction": false, "allkeys-lru": true, "allkeys-lfu": true, "allkeys-random": true,
		"volatile-lru": false, "volatile-ttl": false,
	} {
		got, warning := redisstore.EvictionRisk(policy)
		if got != refuse || (strings.HasPrefix(policy, "volatile") && warning == "") {
			t.Errorf("EvictionRisk(%q) = %v, %q", policy, got, warning)
		}
	}
}

// TestSentinelClient: the failover client follows the master across
// SENTINEL FAILOVER.
func TestSentinelClient(t *testing.T) {
	s := testenv.StartRedisSentinel(t)
	addrs := strings.Split(s.Addrs(), ",")
	rdb := universal(t, redisstore.ClientOptions{SentinelAddrs: addrs, SentinelMaster: s.Name})
	ctx := context.Background()
	if err := rdb.Set(ctx, "k", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	next := s.Failover()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := rdb.Set(ctx, "k", "2", 0).Err()
		if err == nil && next.Do("GET", "k") == "2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes do not reach the new master %s: %v", next.Addr(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
