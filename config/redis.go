package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/presenced/presenced/internal/keyslot"
)

// RedisConfigured reports whether any Redis topology is set: REDIS_URL,
// REDIS_CLUSTER_ADDRS or REDIS_SENTINEL_ADDRS.
func (c Config) RedisConfigured() bool {
	return c.RedisURL != "" || len(c.RedisClusterAddrs) > 0 || len(c.RedisSentinelAddrs) > 0
}

// RedisTopology names the configured Redis topology: "single", "cluster",
// "sentinel", or "" when Redis is not configured.
func (c Config) RedisTopology() string {
	switch {
	case len(c.RedisClusterAddrs) > 0:
		return "cluster"
	case len(c.RedisSentinelAddrs) > 0:
		return "sentinel"
	case c.RedisURL != "":
		return "single"
	}
	return ""
}

// redisSpecs are the variables that choose the Redis topology beyond one
// server and the credentials and TLS of the data nodes. They follow
// REDIS_URL, whose credentials, database and scheme they are checked
// against.
func redisSpecs() []spec {
	return []spec{
		{
			name: "REDIS_CLUSTER_ADDRS", def: "",
			desc: "comma-separated host:port seeds of a Redis Cluster; credentials and TLS from REDIS_URL (its host is then not used) or REDIS_USERNAME/REDIS_PASSWORD and REDIS_TLS_*",
			parse: func(c *Config, v string) string {
				addrs, reason := parseAddrs(v)
				if reason != "" {
					return reason
				}
				if len(addrs) > 0 {
					if db := redisURLDB(c.RedisURL); db != "" && db != "0" {
						return fmt.Sprintf("a Redis Cluster has only database 0, but REDIS_URL selects database %s: remove /%s from REDIS_URL or unset REDIS_CLUSTER_ADDRS", db, db)
					}
				}
				c.RedisClusterAddrs = addrs
				return ""
			},
			format: func(c Config) string { return strings.Join(c.RedisClusterAddrs, ",") },
		},
		{
			name: "REDIS_SENTINEL_ADDRS", def: "",
			desc: "comma-separated host:port of Redis Sentinels watching REDIS_SENTINEL_MASTER; credentials, database and TLS of the master as for REDIS_CLUSTER_ADDRS",
			parse: func(c *Config, v string) string {
				addrs, reason := parseAddrs(v)
				if reason != "" {
					return reason
				}
				if len(addrs) > 0 && len(c.RedisClusterAddrs) > 0 {
					return "REDIS_CLUSTER_ADDRS and REDIS_SENTINEL_ADDRS are both set: they are two Redis topologies, set only one"
				}
				c.RedisSentinelAddrs = addrs
				return ""
			},
			format: func(c Config) string { return strings.Join(c.RedisSentinelAddrs, ",") },
		},
		{
			name: "REDIS_SENTINEL_MASTER", def: "",
			desc: "name of the master the Sentinels monitor (sentinel monitor <name> ...); required with REDIS_SENTINEL_ADDRS",
			parse: func(c *Config, v string) string {
				switch {
				case v == "" && len(c.RedisSentinelAddrs) > 0:
					return "required when REDIS_SENTINEL_ADDRS is set"
				case v != "" && len(c.RedisSentinelAddrs) == 0:
					return "only used with REDIS_SENTINEL_ADDRS, which is unset"
				case hasControl(v) || strings.ContainsAny(v, " \t"):
					return "must be a Sentinel master name, without spaces"
				}
				c.RedisSentinelMaster = v
				return ""
			},
			format: func(c Config) string { return c.RedisSentinelMaster },
		},
		{
			name: "REDIS_SENTINEL_PASSWORD", def: "", secret: true,
			desc: "password of the Sentinels themselves (requirepass in sentinel.conf), when they need one",
			parse: func(c *Config, v string) string {
				if v != "" && len(c.RedisSentinelAddrs) == 0 {
					return "only used with REDIS_SENTINEL_ADDRS, which is unset"
				}
				return secretVar(func(c *Config) *string { return &c.RedisSentinelPassword })(c, v)
			},
			format: func(c Config) string { return c.RedisSentinelPassword },
		},
		{
			name: "REDIS_USERNAME", def: "",
			desc: "ACL user name for the Redis data nodes, when REDIS_URL does not carry one",
			parse: func(c *Config, v string) string {
				if reason := credentialAllowed(*c, v, "REDIS_USERNAME", func(u *url.Userinfo) bool { return u.Username() != "" }); reason != "" {
					return reason
				}
				if hasControl(v) {
					return "must not contain control characters"
				}
				c.RedisUsername = v
				return ""
			},
			format: func(c Config) string { return c.RedisUsername },
		},
		{
			name: "REDIS_PASSWORD", def: "", secret: true,
			desc: "password for the Redis data nodes (AUTH), when REDIS_URL does not carry one",
			parse: func(c *Config, v string) string {
				if reason := credentialAllowed(*c, v, "REDIS_PASSWORD", func(u *url.Userinfo) bool { _, ok := u.Password(); return ok }); reason != "" {
					return reason
				}
				return secretVar(func(c *Config) *string { return &c.RedisPassword })(c, v)
			},
			format: func(c Config) string { return c.RedisPassword },
		},
		{
			name: "REDIS_TLS_CA_FILE", def: "",
			desc: "PEM file of the CA(s) that sign the Redis servers' certificates; turns TLS on; unset with rediss:// uses the system CA pool",
			parse: func(c *Config, v string) string {
				if v == "" {
					return ""
				}
				if reason := tlsAllowed(*c); reason != "" {
					return reason
				}
				pem, err := os.ReadFile(v)
				if err != nil {
					return "cannot read the CA file: " + fileError(err)
				}
				if !x509.NewCertPool().AppendCertsFromPEM(pem) {
					return "holds no PEM certificate"
				}
				c.RedisTLSCAFile = v
				return ""
			},
			format: func(c Config) string { return c.RedisTLSCAFile },
		},
		{
			name: "REDIS_TLS_CERT_FILE", def: "",
			desc: "PEM client certificate for Redis servers that check clients (tls-auth-clients); with REDIS_TLS_KEY_FILE; turns TLS on",
			parse: func(c *Config, v string) string {
				if v == "" {
					return ""
				}
				if reason := tlsAllowed(*c); reason != "" {
					return reason
				}
				if _, err := os.Stat(v); err != nil {
					return "cannot read the certificate file: " + fileError(err)
				}
				c.RedisTLSCertFile = v
				return ""
			},
			format: func(c Config) string { return c.RedisTLSCertFile },
		},
		{
			name: "REDIS_TLS_KEY_FILE", def: "",
			desc: "PEM private key of REDIS_TLS_CERT_FILE",
			parse: func(c *Config, v string) string {
				switch {
				case v == "" && c.RedisTLSCertFile == "":
					return ""
				case v == "":
					return "required when REDIS_TLS_CERT_FILE is set"
				case c.RedisTLSCertFile == "":
					return "REDIS_TLS_CERT_FILE is unset: set both or neither"
				}
				if _, err := tls.LoadX509KeyPair(c.RedisTLSCertFile, v); err != nil {
					return "with REDIS_TLS_CERT_FILE, not a usable key pair: " + fileError(err)
				}
				c.RedisTLSKeyFile = v
				return ""
			},
			format: func(c Config) string { return c.RedisTLSKeyFile },
		},
		{
			name: "REDIS_ALLOW_EVICTION", def: "false",
			desc: "true lets presenced run on a Redis whose maxmemory-policy is allkeys-* (it may evict presence keys: counts then drift until the next rewrite); true/false",
			parse: func(c *Config, v string) string {
				switch strings.ToLower(v) {
				case "true", "1", "yes":
					c.RedisAllowEviction = true
				case "false", "0", "no":
					c.RedisAllowEviction = false
				default:
					return "must be true/false, 1/0 or yes/no"
				}
				return ""
			},
			format: func(c Config) string { return strconv.FormatBool(c.RedisAllowEviction) },
		},
	}
}

// parseAddrs parses a comma-separated host:port list.
func parseAddrs(v string) ([]string, string) {
	list, reason := parseList(v)
	if reason != "" {
		return nil, reason
	}
	for _, a := range list {
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" {
			return nil, fmt.Sprintf("%q is not host:port, e.g. 10.0.0.1:6379 or redis-1:6379", a)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Sprintf("%q: port must be 1-65535", a)
		}
	}
	return list, ""
}

// redisURLDB returns the database number REDIS_URL selects, "" if none.
func redisURLDB(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(u.Path, "/")
}

// credentialAllowed checks REDIS_USERNAME or REDIS_PASSWORD (name) against
// the topology and REDIS_URL: it needs a topology, and REDIS_URL must not
// carry the same credential (inURL), since two sources would leave the
// reader guessing which one wins.
func credentialAllowed(c Config, v, name string, inURL func(*url.Userinfo) bool) string {
	if v == "" {
		return ""
	}
	if !c.RedisConfigured() {
		return "needs REDIS_URL, REDIS_CLUSTER_ADDRS or REDIS_SENTINEL_ADDRS"
	}
	if c.RedisURL != "" {
		if u, err := url.Parse(c.RedisURL); err == nil && u.User != nil && inURL(u.User) {
			return "REDIS_URL already carries it: set it in one place only"
		}
	}
	return ""
}

// tlsAllowed checks that TLS files fit the configuration: some Redis
// topology is set, and REDIS_URL, if set, does not ask for plain TCP.
func tlsAllowed(c Config) string {
	if !c.RedisConfigured() {
		return "needs REDIS_URL, REDIS_CLUSTER_ADDRS or REDIS_SENTINEL_ADDRS"
	}
	if strings.HasPrefix(c.RedisURL, "redis://") {
		return "REDIS_URL uses redis:// (no TLS): use rediss:// with TLS files"
	}
	return ""
}

// fileError shortens an os error to its cause, keeping the path out (the
// variable's value already shows it).
func fileError(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

// KeySlot returns the Redis Cluster hash slot of key: CRC16 (XMODEM) of
// its hash tag, or of the whole key when it has none, modulo 16384.
func KeySlot(key string) int { return keyslot.Of(key) }

// DefaultKeyPrefix is the key prefix that puts every presence key in the
// slot of onlineKey: onlineKey's own hash tag when it has one, else the
// whole key as the tag ("online_users" -> "{online_users}"), so that on a
// Redis Cluster the scripts touching both never fail with CROSSSLOT.
func DefaultKeyPrefix(onlineKey string) string {
	if open := strings.IndexByte(onlineKey, '{'); open >= 0 {
		if end := strings.IndexByte(onlineKey[open+1:], '}'); end > 0 {
			return onlineKey[open : open+end+2]
		}
	}
	return "{" + onlineKey + "}"
}

// specs lists every variable in documentation and validation order: the
// Redis topology variables follow REDIS_URL.
func specs() []spec {
	base := baseSpecs()
	for i, s := range base {
		if s.name == "REDIS_URL" {
			out := append(append(append([]spec{}, base[:i+1]...), redisSpecs()...), base[i+1:]...)
			return out
		}
	}
	return append(base, redisSpecs()...)
}
