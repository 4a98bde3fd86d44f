package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/presenced/presenced/config"
	"github.com/presenced/presenced/internal/testenv"
)

func TestLoadRedisTopologies(t *testing.T) {
	cert, key := testenv.WriteCertPair(t, "test")
	for _, tt := range []struct {
		name string
		env  map[string]string
		want func(c config.Config) bool
	}{
		{"single", map[string]string{"REDIS_URL": "redis://h:6379/3"}, func(c config.Config) bool {
			return c.RedisTopology() == "single" && c.RedisConfigured()
		}},
		{"cluster", map[string]string{"REDIS_CLUSTER_ADDRS": "10.0.0.1:7000, 10.0.0.2:7000,,[::1]:7002"}, func(c config.Config) bool {
			return c.RedisTopology() == "cluster" && reflect.DeepEqual(c.RedisClusterAddrs, []string{"10.0.0.1:7000", "10.0.0.2:7000", "[::1]:7002"})
		}},
		{"cluster with credentials in REDIS_URL, database 0", map[string]string{"REDIS_CLUSTER_ADDRS": "a:1", "REDIS_URL": "rediss://u:p@a:1/0"}, func(c config.Config) bool {
			return c.RedisTopology() == "cluster"
		}},
		{"sentinel", map[string]string{"REDIS_SENTINEL_ADDRS": "s1:26379,s2:26379", "REDIS_SENTINEL_MASTER": "mymaster", "REDIS_SENTINEL_PASSWORD": "sp"}, func(c config.Config) bool {
			return c.RedisTopology() == "sentinel" && c.RedisSentinelMaster == "mymaster" && c.RedisSentinelPassword == "sp" && len(c.RedisSentinelAddrs) == 2
		}},
		{"credentials apart", map[string]string{"REDIS_CLUSTER_ADDRS": "a:1", "REDIS_USERNAME": "app", "REDIS_PASSWORD": "pw"}, func(c config.Config) bool {
			return c.RedisUsername == "app" && c.RedisPassword == "pw"
		}},
		{"user in URL, password apart", map[string]string{"REDIS_URL": "redis://app@h:1", "REDIS_PASSWORD": "pw"}, func(c config.Config) bool {
			return c.RedisPassword == "pw"
		}},
		{"TLS files", map[string]string{"REDIS_CLUSTER_ADDRS": "a:1", "REDIS_TLS_CA_FILE": cert, "REDIS_TLS_CERT_FILE": cert, "REDIS_TLS_KEY_FILE": key}, func(c config.Config) bool {
			return c.RedisTLSCAFile == cert && c.RedisTLSCertFile == cert && c.RedisTLSKeyFile == key
		}},
		{"TLS with rediss", map[string]string{"REDIS_URL": "rediss://h:1", "REDIS_TLS_CA_FILE": cert}, func(c config.Config) bool {
			return c.RedisTLSCAFile == cert
		}},
		{"allow eviction", map[string]string{"REDIS_URL": "redis://h:1", "REDIS_ALLOW_EVICTION": "yes"}, func(c config.Config) bool {
			return c.RedisAllowEviction
		}},
		{"external on a cluster", map[string]string{"REDIS_CLUSTER_ADDRS": "a:1", "PRESENCE_MODE": "external"}, func(c config.Config) bool {
			return c.PresenceMode == "external"
		}},
		{"default prefix follows ONLINE_USERS_KEY", map[string]string{"ONLINE_USERS_KEY": "app_online"}, func(c config.Config) bool {
			return c.KeyPrefix == "{app_online}"
		}},
		{"default prefix takes ONLINE_USERS_KEY's tag", map[string]string{"ONLINE_USERS_KEY": "{t1}online_users"}, func(c config.Config) bool {
			return c.KeyPrefix == "{t1}"
		}},
		{"prefix in the online key's slot on a cluster", map[string]string{"REDIS_CLUSTER_ADDRS": "a:1", "REDIS_KEY_PREFIX": "app:{online_users}:"}, func(c config.Config) bool {
			return c.KeyPrefix == "app:{online_users}:"
		}},
		{"no redis", nil, func(c config.Config) bool { return c.RedisTopology() == "" && !c.RedisConfigured() }},
	} {
		c, err := config.Load(env(tt.env), "")
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !tt.want(c) {
			t.Errorf("%s: got %+v", tt.name, c)
		}
	}
}

func TestLoadRedisTopologiesInvalid(t *testing.T) {
	cert, key := testenv.WriteCertPair(t, "test")
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tt := range []struct {
		env    map[string]string
		var_   string
		reason []string // substrings of the reason
		secret string
	}{
		{map[string]string{"REDIS_CLUSTER_ADDRS": "a:1", "REDIS_SENTINEL_ADDRS": "s:1", "REDIS_SENTINEL_MASTER": "m"},
			"REDIS_SENTINEL_ADDRS", []string{"REDIS_CLUSTER_ADDRS", "two Redis topologies"}, ""},
		{map[string]string{"REDIS_CLUSTER_ADDRS": "a:1", "REDIS_URL": "redis://u:hunter2@a:1/5"},
			"REDIS_CLUSTER_ADDRS", []string{"REDIS_URL", "database 5", "only database 0"}, "hunter2"},
		{map[string]string{"REDIS_CLUSTER_ADDRS": "a"}, "REDIS_CLUSTER_ADDRS", []string{"host:port"}, ""},
		{map[string]string{"REDIS_CLUSTER_ADDRS": "a:0"}, "REDIS_CLUSTER_ADDRS", []string{"1-65535"}, ""},
		{map[string]string{"REDIS_SENTINEL_ADDRS": ":26379", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINEL_ADDRS", []string{"host:port"}, ""},
		{map[string]string{"REDIS_SENTINEL_ADDRS": "s:26379"}, "REDIS_SENTINEL_MASTER", []string{"required when REDIS_SENTINEL_ADDRS"}, ""},
		{map[string]string{"REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINEL_MASTER", []string{"REDIS_SENTINEL_ADDRS", "unset"}, ""},
		{map[string]string{"REDIS_URL": "redis://h:1", "REDIS_SENTINEL_PASSWORD": "hunter2"}, "REDIS_SENTINEL_PASSWORD", []string{"REDIS_SENTINEL_ADDRS"}, "hunter2"},
		{map[string]string{"REDIS_PASSWORD": "hunter2"}, "REDIS_PASSWORD", []string{"needs REDIS_URL"}, "hunter2"},
		{map[string]string{"REDIS_URL": "redis://:hunter2@h:1", "REDIS_PASSWORD": "hunter3"}, "REDIS_PASSWORD", []string{"REDIS_URL already carries it"}, "hunter"},
		{map[string]string{"REDIS_URL": "redis://app@h:1", "REDIS_USERNAME": "app2"}, "REDIS_USERNAME", []string{"REDIS_URL already carries it"}, ""},
		{map[string]string{"REDIS_TLS_CA_FILE": cert}, "REDIS_TLS_CA_FILE", []string{"needs REDIS_URL"}, ""},
		{map[string]string{"REDIS_URL": "redis://h:1", "REDIS_TLS_CA_FILE": cert}, "REDIS_TLS_CA_FILE", []string{"rediss://"}, ""},
		{map[string]string{"REDIS_URL": "rediss://h:1", "REDIS_TLS_CA_FILE": missing}, "REDIS_TLS_CA_FILE", []string{"cannot read", "no such file"}, ""},
		{map[string]string{"REDIS_URL": "rediss://h:1", "REDIS_TLS_CA_FILE": garbage}, "REDIS_TLS_CA_FILE", []string{"no PEM certificate"}, ""},
		{map[string]string{"REDIS_URL": "rediss://h:1", "REDIS_TLS_CERT_FILE": cert}, "REDIS_TLS_KEY_FILE", []string{"required when REDIS_TLS_CERT_FILE"}, ""},
		{map[string]string{"REDIS_URL": "rediss://h:1", "REDIS_TLS_KEY_FILE": key}, "REDIS_TLS_KEY_FILE", []string{"REDIS_TLS_CERT_FILE is unset"}, ""},
		{map[string]string{"REDIS_URL": "rediss://h:1", "REDIS_TLS_CERT_FILE": cert, "REDIS_TLS_KEY_FILE": garbage}, "REDIS_TLS_KEY_FILE", []string{"key pair"}, ""},
		{map[string]string{"REDIS_URL": "rediss://h:1", "REDIS_ALLOW_EVICTION": "sometimes"}, "REDIS_ALLOW_EVICTION", []string{"true/false"}, ""},
		{map[string]string{"REDIS_CLUSTER_ADDRS": "a:1", "REDIS_KEY_PREFIX": "{presence}"}, "REDIS_KEY_PREFIX", []string{"CROSSSLOT", "slot 15428", "slot 4329"}, ""},
	} {
		_, err := config.Load(env(tt.env), "")
		var cerr *config.Error
		if !errors.As(err, &cerr) {
			t.Errorf("%q: got %v, want *config.Error", tt.env, err)
			continue
		}
		if cerr.Var != tt.var_ {
			t.Errorf("%q: error names %s, want %s (%v)", tt.env, cerr.Var, tt.var_, err)
		}
		for _, r := range tt.reason {
			if !strings.Contains(err.Error(), r) {
				t.Errorf("%q: %q does not say %q", tt.env, err, r)
			}
		}
		if tt.secret != "" && strings.Contains(err.Error(), tt.secret) {
			t.Errorf("%q: %q leaks a secret", tt.env, err)
		}
	}
}

// TestKeySlot checks the slot function against values Redis itself gives
// (CLUSTER KEYSLOT, quoted in issue 8 and the Redis Cluster spec).
func TestKeySlot(t *testing.T) {
	for key, want := range map[string]int{
		"online_users": 4329, "{presence}:users": 15428, "123456789": 12739,
		"{online_users}:nodes": 4329, "foo{bar}": config.KeySlot("bar"), "{}x": config.KeySlot("{}x"),
	} {
		if got := config.KeySlot(key); got != want {
			t.Errorf("KeySlot(%q) = %d, want %d", key, got, want)
		}
	}
}
