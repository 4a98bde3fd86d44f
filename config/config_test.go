package config_test

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/config"
)

// env returns a getenv backed by m.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// writeDotenv writes content to a .env file in a fresh directory.
func writeDotenv(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// withJWKS returns a valid JWKS configuration (JWT_JWKS_URL, JWT_ISSUER,
// JWT_AUDIENCE) with the pairs of kv (name, value, ...) set over it.
func withJWKS(kv ...string) map[string]string {
	m := map[string]string{
		"JWT_JWKS_URL": "https://auth.example.com/jwks",
		"JWT_ISSUER":   "https://auth.example.com/",
		"JWT_AUDIENCE": "presenced",
	}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// prefixes parses CIDR prefixes that a test spells out.
func prefixes(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

func TestLoadDefaults(t *testing.T) {
	got, err := config.Load(env(nil), filepath.Join(t.TempDir(), "missing.env"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := config.Config{
		Port:                   8080,
		UsersCollection:        "users",
		MongoBatchSize:         500,
		DataDir:                "./data",
		OnlineUsersKey:         "online_users",
		KeyPrefix:              "{online_users}",
		PresenceMode:           "managed",
		PresenceShards:         1,
		HeartbeatInterval:      2 * time.Second,
		NodeTTL:                6 * time.Second,
		BatchWindow:            10 * time.Millisecond,
		BatchMax:               1000,
		LastSeenInterval:       30 * time.Second,
		StatsRefresh:           10 * time.Second,
		StatsTimezone:          time.UTC,
		PingInterval:           25 * time.Second,
		IdleTimeout:            60 * time.Second,
		MaxMessageBytes:        32768,
		JWTLeeway:              5 * time.Second,
		MaxQueuedBytes:         65536,
		PingRate:               10,
		PingBurst:              20,
		AdminAuthFailures:      20,
		ReadHeaderTimeout:      10 * time.Second,
		HTTPIdleTimeout:        120 * time.Second,
		MaxHeaderBytes:         65536,
		MaxBodyBytes:           1 << 20,
		AdminSessionTTL:        12 * time.Hour,
		SocketIOPath:           "/socket.io/",
		SocketIOPingInterval:   25 * time.Second,
		SocketIOPingTimeout:    20 * time.Second,
		SocketIOMaxPayload:     1_000_000,
		SocketIOConnectTimeout: 45 * time.Second,
		LogFormat:              "text",
		LogLevel:               "info",
		ShutdownTimeout:        8 * time.Second,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}
}

func TestLoadValid(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want any
		got  func(config.Config) any
	}{
		{map[string]string{"PORT": "0"}, 0, func(c config.Config) any { return c.Port }},
		{map[string]string{"PORT": " 9000 "}, 9000, func(c config.Config) any { return c.Port }},
		{map[string]string{"PORT": "65535"}, 65535, func(c config.Config) any { return c.Port }},
		{map[string]string{"REDIS_URL": "redis://localhost:6379"}, "redis://localhost:6379", func(c config.Config) any { return c.RedisURL }},
		{map[string]string{"REDIS_URL": "rediss://u:p%40ss@cache.example.com:6380/2"}, "rediss://u:p%40ss@cache.example.com:6380/2", func(c config.Config) any { return c.RedisURL }},
		{map[string]string{"REDIS_URL": "redis://:secret@127.0.0.1/"}, "redis://:secret@127.0.0.1/", func(c config.Config) any { return c.RedisURL }},
		{map[string]string{"REDIS_URL": "redis://[::1]:6379/0?protocol=3"}, "redis://[::1]:6379/0?protocol=3", func(c config.Config) any { return c.RedisURL }},
		{map[string]string{"MONGODB_URI": "mongodb://u:p@a:27017,b:27017/app?replicaSet=rs0"}, "mongodb://u:p@a:27017,b:27017/app?replicaSet=rs0", func(c config.Config) any { return c.MongoURI }},
		{map[string]string{"MONGODB_URI": "mongodb+srv://u:p@cluster0.example.net/"}, "mongodb+srv://u:p@cluster0.example.net/", func(c config.Config) any { return c.MongoURI }},
		{map[string]string{"MONGODB_DB": "app_prod"}, "app_prod", func(c config.Config) any { return c.MongoDB }},
		{map[string]string{"USERS_COLLECTION": "accounts"}, "accounts", func(c config.Config) any { return c.UsersCollection }},
		{map[string]string{"MONGODB_BATCH_SIZE": "1"}, 1, func(c config.Config) any { return c.MongoBatchSize }},
		{map[string]string{"MONGODB_BATCH_SIZE": "10000"}, 10000, func(c config.Config) any { return c.MongoBatchSize }},
		{map[string]string{"DATA_DIR": "/var/lib/presenced"}, "/var/lib/presenced", func(c config.Config) any { return c.DataDir }},
		{map[string]string{"JWT_SECRET": "s3cret value"}, "s3cret value", func(c config.Config) any { return c.JWTSecret }},
		{withJWKS("JWT_JWKS_URL", "https://auth.example.com/.well-known/jwks.json"), "https://auth.example.com/.well-known/jwks.json", func(c config.Config) any { return c.JWKSURL }},
		{withJWKS("JWT_JWKS_URL", "http://127.0.0.1:9000/jwks"), "http://127.0.0.1:9000/jwks", func(c config.Config) any { return c.JWKSURL }},
		{withJWKS(), "https://auth.example.com/", func(c config.Config) any { return c.JWTIssuer }},
		{withJWKS(), []string{"presenced"}, func(c config.Config) any { return c.JWTAudience }},
		{map[string]string{"JWT_ISSUER": " https://auth.example.com/ "}, "https://auth.example.com/", func(c config.Config) any { return c.JWTIssuer }},
		{map[string]string{"JWT_ISSUER": "presenced-app"}, "presenced-app", func(c config.Config) any { return c.JWTIssuer }},
		{map[string]string{"JWT_AUDIENCE": "api"}, []string{"api"}, func(c config.Config) any { return c.JWTAudience }},
		{map[string]string{"JWT_AUDIENCE": " api , https://presence.example.com,,"}, []string{"api", "https://presence.example.com"}, func(c config.Config) any { return c.JWTAudience }},
		{map[string]string{"JWT_AUDIENCE": ","}, []string(nil), func(c config.Config) any { return c.JWTAudience }},
		{map[string]string{"JWT_LEEWAY": "0"}, time.Duration(0), func(c config.Config) any { return c.JWTLeeway }},
		{map[string]string{"JWT_LEEWAY": "30s"}, 30 * time.Second, func(c config.Config) any { return c.JWTLeeway }},
		{map[string]string{"JWT_LEEWAY": "5m"}, 5 * time.Minute, func(c config.Config) any { return c.JWTLeeway }},
		{map[string]string{"ADMIN_TOKEN": "tok"}, "tok", func(c config.Config) any { return c.AdminToken }},
		{map[string]string{"ONLINE_USERS_KEY": "app:online"}, "app:online", func(c config.Config) any { return c.OnlineUsersKey }},
		{map[string]string{"REDIS_KEY_PREFIX": "app:{p}:"}, "app:{p}:", func(c config.Config) any { return c.KeyPrefix }},
		{map[string]string{"PRESENCE_MODE": "managed"}, "managed", func(c config.Config) any { return c.PresenceMode }},
		{map[string]string{"PRESENCE_MODE": "External", "REDIS_URL": "redis://r:6379"}, "external", func(c config.Config) any { return c.PresenceMode }},
		{map[string]string{"HEARTBEAT_INTERVAL": "50ms", "NODE_TTL": "150ms"}, 50 * time.Millisecond, func(c config.Config) any { return c.HeartbeatInterval }},
		{map[string]string{"HEARTBEAT_INTERVAL": "50ms", "NODE_TTL": "150ms"}, 150 * time.Millisecond, func(c config.Config) any { return c.NodeTTL }},
		{map[string]string{"NODE_TTL": "1m"}, time.Minute, func(c config.Config) any { return c.NodeTTL }},
		{map[string]string{"NODE_ID": "web-1"}, "web-1", func(c config.Config) any { return c.NodeID }},
		{map[string]string{"PRESENCE_BATCH_WINDOW": "0s"}, time.Duration(0), func(c config.Config) any { return c.BatchWindow }},
		{map[string]string{"PRESENCE_BATCH_WINDOW": "1s"}, time.Second, func(c config.Config) any { return c.BatchWindow }},
		{map[string]string{"PRESENCE_BATCH_MAX": "100000"}, 100000, func(c config.Config) any { return c.BatchMax }},
		{map[string]string{"PRESENCE_SHARDS": "16", "REDIS_URL": "redis://r:6379"}, 16, func(c config.Config) any { return c.PresenceShards }},
		{map[string]string{"LAST_SEEN_INTERVAL": "1s"}, time.Second, func(c config.Config) any { return c.LastSeenInterval }},
		{map[string]string{"STATS_REFRESH_INTERVAL": "100ms"}, 100 * time.Millisecond, func(c config.Config) any { return c.StatsRefresh }},
		{map[string]string{"ALLOW_ANONYMOUS": "true"}, true, func(c config.Config) any { return c.AllowAnonymous }},
		{map[string]string{"ALLOW_ANONYMOUS": "YES"}, true, func(c config.Config) any { return c.AllowAnonymous }},
		{map[string]string{"ALLOW_ANONYMOUS": "1"}, true, func(c config.Config) any { return c.AllowAnonymous }},
		{map[string]string{"ALLOW_ANONYMOUS": "False"}, false, func(c config.Config) any { return c.AllowAnonymous }},
		{map[string]string{"ALLOW_ANONYMOUS": "no"}, false, func(c config.Config) any { return c.AllowAnonymous }},
		{map[string]string{"ALLOW_ANONYMOUS": "0"}, false, func(c config.Config) any { return c.AllowAnonymous }},
		{map[string]string{"MAX_CONNS_PER_IP": "20"}, 20, func(c config.Config) any { return c.MaxConnsPerIP }},
		{map[string]string{"CONNECT_RATE_PER_IP": "0"}, 0, func(c config.Config) any { return c.ConnectRatePerIP }},
		{map[string]string{"CONNECT_RATE_PER_IP": "5"}, 5, func(c config.Config) any { return c.ConnectRatePerIP }},
		{map[string]string{"CONNECT_RATE_PER_IP": "1000000"}, 1000000, func(c config.Config) any { return c.ConnectRatePerIP }},
		{map[string]string{"WS_PING_INTERVAL": "100ms", "WS_IDLE_TIMEOUT": "300ms"}, 100 * time.Millisecond, func(c config.Config) any { return c.PingInterval }},
		{map[string]string{"WS_PING_INTERVAL": "100ms", "WS_IDLE_TIMEOUT": "300ms"}, 300 * time.Millisecond, func(c config.Config) any { return c.IdleTimeout }},
		{map[string]string{"WS_MAX_MESSAGE_BYTES": "65536"}, 65536, func(c config.Config) any { return c.MaxMessageBytes }},
		{map[string]string{"WS_MAX_QUEUED_BYTES": "4096"}, 4096, func(c config.Config) any { return c.MaxQueuedBytes }},
		{map[string]string{"WS_MAX_QUEUED_BYTES": "67108864"}, 64 << 20, func(c config.Config) any { return c.MaxQueuedBytes }},
		{map[string]string{"WS_PING_RATE": "1"}, 1, func(c config.Config) any { return c.PingRate }},
		{map[string]string{"WS_PING_RATE": "10000"}, 10000, func(c config.Config) any { return c.PingRate }},
		{map[string]string{"WS_PING_BURST": "1"}, 1, func(c config.Config) any { return c.PingBurst }},
		{map[string]string{"WS_PING_BURST": "100000"}, 100000, func(c config.Config) any { return c.PingBurst }},
		{map[string]string{"CORS_ORIGINS": "*"}, []string{"*"}, func(c config.Config) any { return c.CORSOrigins }},
		{map[string]string{"CORS_ORIGINS": " https://App.Example.com , http://localhost:3000,,"}, []string{"https://app.example.com", "http://localhost:3000"}, func(c config.Config) any { return c.CORSOrigins }},
		{map[string]string{"TRUSTED_PROXIES": "10.0.0.0/8,127.0.0.1"}, prefixes("10.0.0.0/8", "127.0.0.1/32"), func(c config.Config) any { return c.TrustedProxies }},
		{map[string]string{"TRUSTED_PROXIES": " ::1 , fd00::/8,,192.168.1.0/24 "}, prefixes("::1/128", "fd00::/8", "192.168.1.0/24"), func(c config.Config) any { return c.TrustedProxies }},
		{map[string]string{"TRUSTED_PROXIES": "10.1.2.3/8"}, prefixes("10.0.0.0/8"), func(c config.Config) any { return c.TrustedProxies }},
		{map[string]string{"TRUSTED_PROXIES": "::ffff:10.0.0.1,::ffff:172.16.0.0/108"}, prefixes("10.0.0.1/32", "172.16.0.0/12"), func(c config.Config) any { return c.TrustedProxies }},
		{map[string]string{"TRUSTED_PROXIES": "0.0.0.0/0"}, prefixes("0.0.0.0/0"), func(c config.Config) any { return c.TrustedProxies }},
		{map[string]string{"ADMIN_AUTH_FAILURES": "1"}, 1, func(c config.Config) any { return c.AdminAuthFailures }},
		{map[string]string{"ADMIN_AUTH_FAILURES": "100000"}, 100000, func(c config.Config) any { return c.AdminAuthFailures }},
		{map[string]string{"HTTP_READ_HEADER_TIMEOUT": "100ms"}, 100 * time.Millisecond, func(c config.Config) any { return c.ReadHeaderTimeout }},
		{map[string]string{"HTTP_READ_HEADER_TIMEOUT": "5m"}, 5 * time.Minute, func(c config.Config) any { return c.ReadHeaderTimeout }},
		{map[string]string{"HTTP_IDLE_TIMEOUT": "1s"}, time.Second, func(c config.Config) any { return c.HTTPIdleTimeout }},
		{map[string]string{"HTTP_IDLE_TIMEOUT": "1h"}, time.Hour, func(c config.Config) any { return c.HTTPIdleTimeout }},
		{map[string]string{"HTTP_MAX_HEADER_BYTES": "4096"}, 4096, func(c config.Config) any { return c.MaxHeaderBytes }},
		{map[string]string{"HTTP_MAX_HEADER_BYTES": "1048576"}, 1 << 20, func(c config.Config) any { return c.MaxHeaderBytes }},
		{map[string]string{"HTTP_MAX_BODY_BYTES": "1024"}, 1024, func(c config.Config) any { return c.MaxBodyBytes }},
		{map[string]string{"HTTP_MAX_BODY_BYTES": "67108864"}, 64 << 20, func(c config.Config) any { return c.MaxBodyBytes }},
		{map[string]string{"SOCKETIO_PATH": "/rt/socket.io/"}, "/rt/socket.io/", func(c config.Config) any { return c.SocketIOPath }},
		{map[string]string{"SOCKETIO_PING_INTERVAL": "300ms"}, 300 * time.Millisecond, func(c config.Config) any { return c.SocketIOPingInterval }},
		{map[string]string{"SOCKETIO_PING_TIMEOUT": "1s"}, time.Second, func(c config.Config) any { return c.SocketIOPingTimeout }},
		{map[string]string{"SOCKETIO_MAX_PAYLOAD": "2048"}, 2048, func(c config.Config) any { return c.SocketIOMaxPayload }},
		{map[string]string{"SOCKETIO_CONNECT_TIMEOUT": "5s"}, 5 * time.Second, func(c config.Config) any { return c.SocketIOConnectTimeout }},
		{map[string]string{"LOG_FORMAT": "json"}, "json", func(c config.Config) any { return c.LogFormat }},
		{map[string]string{"LOG_LEVEL": "DEBUG"}, "debug", func(c config.Config) any { return c.LogLevel }},
		{map[string]string{"LOG_LEVEL": "error"}, "error", func(c config.Config) any { return c.LogLevel }},
		{map[string]string{"SHUTDOWN_TIMEOUT": "1s"}, time.Second, func(c config.Config) any { return c.ShutdownTimeout }},
		{map[string]string{"SHUTDOWN_TIMEOUT": "60s"}, time.Minute, func(c config.Config) any { return c.ShutdownTimeout }},
	}
	for _, tt := range tests {
		c, err := config.Load(env(tt.env), "")
		if err != nil {
			t.Errorf("%v: Load: %v", tt.env, err)
			continue
		}
		if got := tt.got(c); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%v: got %#v, want %#v", tt.env, got, tt.want)
		}
	}
}

func TestLoadInvalid(t *testing.T) {
	tests := []struct {
		env    map[string]string
		var_   string
		value  string // as shown in the error, masked
		reason string // substring of the reason
		secret string // must not appear in the message
	}{
		{env: map[string]string{"PORT": "abc"}, var_: "PORT", value: "abc", reason: "must be a port number 0-65535"},
		{env: map[string]string{"PORT": "-1"}, var_: "PORT", value: "-1", reason: "port number"},
		{env: map[string]string{"PORT": "65536"}, var_: "PORT", value: "65536", reason: "port number"},
		{env: map[string]string{"REDIS_URL": "localhost:6379"}, var_: "REDIS_URL", value: "localhost:6379", reason: "scheme"},
		{env: map[string]string{"REDIS_URL": "http://localhost:6379"}, var_: "REDIS_URL", value: "http://localhost:6379", reason: "scheme"},
		{env: map[string]string{"REDIS_URL": "redis://"}, var_: "REDIS_URL", value: "redis://", reason: "host"},
		{env: map[string]string{"REDIS_URL": "redis://:hunter2@:6379"}, var_: "REDIS_URL", value: "redis://:***@:6379", reason: "host", secret: "hunter2"},
		{env: map[string]string{"REDIS_URL": "redis://u:hunter2@host:abc"}, var_: "REDIS_URL", value: "redis://u:***@host:abc", secret: "hunter2"},
		{env: map[string]string{"REDIS_URL": "redis://u:hunter2@host:70000"}, var_: "REDIS_URL", value: "redis://u:***@host:70000", reason: "port", secret: "hunter2"},
		{env: map[string]string{"REDIS_URL": "redis://u:hunter2@host:6379/x"}, var_: "REDIS_URL", value: "redis://u:***@host:6379/x", reason: "database", secret: "hunter2"},
		{env: map[string]string{"REDIS_URL": "redis://host:6379/-1"}, var_: "REDIS_URL", value: "redis://host:6379/-1", reason: "database"},
		{env: map[string]string{"REDIS_URL": "redis://u:hun%zzter2@host"}, var_: "REDIS_URL", value: "redis://u:***@host", secret: "hun%zzter2"},
		{env: map[string]string{"MONGODB_URI": "postgres://u:hunter2@h/db"}, var_: "MONGODB_URI", value: "postgres://u:***@h/db", reason: "scheme", secret: "hunter2"},
		{env: map[string]string{"MONGODB_URI": "mongodb://u:hunter2@/db"}, var_: "MONGODB_URI", value: "mongodb://u:***@/db", reason: "host", secret: "hunter2"},
		{env: map[string]string{"MONGODB_URI": "mongodb+srv://c.example.net:27017"}, var_: "MONGODB_URI", value: "mongodb+srv://c.example.net:27017", reason: "one host"},
		// What the driver refuses is a configuration error too (exit 2), not a start failure.
		{env: map[string]string{"MONGODB_URI": "mongodb://u:hunter2@h:bad/db"}, var_: "MONGODB_URI", value: "mongodb://u:***@h:bad/db", reason: "port", secret: "hunter2"},
		{env: map[string]string{"MONGODB_URI": "mongodb://u:hunter2@h/?authMechanism=bogus"}, var_: "MONGODB_URI", value: "mongodb://u:***@h/?authMechanism=bogus", reason: "auth mechanism", secret: "hunter2"},
		{env: map[string]string{"MONGODB_URI": "mongodb://u:hunter2@h/?connectTimeoutMS=abc"}, var_: "MONGODB_URI", value: "mongodb://u:***@h/?connectTimeoutMS=abc", secret: "hunter2"},
		{env: map[string]string{"MONGODB_URI": "mongodb://u:hunter2@h1,h2/?directConnection=true"}, var_: "MONGODB_URI", value: "mongodb://u:***@h1,h2/?directConnection=true", reason: "direct connection", secret: "hunter2"},
		{env: map[string]string{"MONGODB_DB": "my.db"}, var_: "MONGODB_DB", value: "my.db", reason: "database name"},
		{env: map[string]string{"USERS_COLLECTION": "$users"}, var_: "USERS_COLLECTION", value: "$users"},
		{env: map[string]string{"MONGODB_BATCH_SIZE": "0"}, var_: "MONGODB_BATCH_SIZE", value: "0", reason: "1-10000"},
		{env: map[string]string{"MONGODB_BATCH_SIZE": "10001"}, var_: "MONGODB_BATCH_SIZE", value: "10001", reason: "1-10000"},
		{env: map[string]string{"JWT_SECRET": " hunter2"}, var_: "JWT_SECRET", value: "***", reason: "whitespace", secret: "hunter2"},
		{env: map[string]string{"JWT_JWKS_URL": "ftp://auth.example.com/jwks"}, var_: "JWT_JWKS_URL", value: "ftp://auth.example.com/jwks", reason: "http"},
		{env: map[string]string{"JWT_JWKS_URL": "https://auth.example.com/jwks"}, var_: "JWT_ISSUER", value: "", reason: "required when JWT_JWKS_URL is set"},
		{env: map[string]string{"JWT_JWKS_URL": "https://auth.example.com/jwks", "JWT_AUDIENCE": "api"}, var_: "JWT_ISSUER", value: "", reason: "required when JWT_JWKS_URL is set"},
		{env: map[string]string{"JWT_JWKS_URL": "https://auth.example.com/jwks", "JWT_ISSUER": "https://auth.example.com/"}, var_: "JWT_AUDIENCE", value: "", reason: "required when JWT_JWKS_URL is set"},
		{env: map[string]string{"JWT_JWKS_URL": "https://auth.example.com/jwks", "JWT_ISSUER": "https://auth.example.com/", "JWT_AUDIENCE": " , "}, var_: "JWT_AUDIENCE", value: ",", reason: "required when JWT_JWKS_URL is set"},
		{env: map[string]string{"JWT_ISSUER": "https://a.example.com/\x00"}, var_: "JWT_ISSUER", value: "https://a.example.com/\x00", reason: "control"},
		{env: map[string]string{"JWT_AUDIENCE": "api,a\x01b"}, var_: "JWT_AUDIENCE", value: "api,a\x01b", reason: "control"},
		{env: map[string]string{"JWT_LEEWAY": "-1s"}, var_: "JWT_LEEWAY", value: "-1s", reason: "negative"},
		{env: map[string]string{"JWT_LEEWAY": "6m"}, var_: "JWT_LEEWAY", value: "6m", reason: "between 0s and 5m0s"},
		{env: map[string]string{"JWT_LEEWAY": "5"}, var_: "JWT_LEEWAY", value: "5", reason: "duration"},
		{env: map[string]string{"JWT_JWKS_URL": "https:///jwks"}, var_: "JWT_JWKS_URL", value: "https:///jwks", reason: "host"},
		{env: map[string]string{"ADMIN_TOKEN": "hunter2\n"}, var_: "ADMIN_TOKEN", value: "***", reason: "whitespace", secret: "hunter2"},
		{env: map[string]string{"REDIS_KEY_PREFIX": "presence:"}, var_: "REDIS_KEY_PREFIX", value: "presence:", reason: "hash tag"},
		{env: map[string]string{"REDIS_KEY_PREFIX": "{}presence"}, var_: "REDIS_KEY_PREFIX", value: "{}presence", reason: "hash tag"},
		{env: map[string]string{"PRESENCE_MODE": "auto"}, var_: "PRESENCE_MODE", value: "auto", reason: "managed or external"},
		{env: map[string]string{"PRESENCE_MODE": "external"}, var_: "PRESENCE_MODE", value: "external", reason: "requires REDIS_URL"},
		{env: map[string]string{"WEBHOOK_URL": "ftp://x"}, var_: "WEBHOOK_URL", value: "ftp://x", reason: "http:// or https://"},
		{env: map[string]string{"WEBHOOK_URL": "http://hooks.example"}, var_: "WEBHOOK_SECRET", value: "", reason: "required with WEBHOOK_URL"},
		{env: map[string]string{"REDIS_URL": "redis://localhost:6379", "PRESENCE_MODE": "external", "WEBHOOK_URL": "http://h.example"}, var_: "WEBHOOK_URL", value: "http://h.example", reason: "PRESENCE_MODE=external"},
		{env: map[string]string{"API_KEY": " k"}, var_: "API_KEY", value: "***", reason: "whitespace"},
		{env: map[string]string{"HEARTBEAT_INTERVAL": "5"}, var_: "HEARTBEAT_INTERVAL", value: "5", reason: "must be a duration like 2s or 500ms"},
		{env: map[string]string{"HEARTBEAT_INTERVAL": "10ms"}, var_: "HEARTBEAT_INTERVAL", value: "10ms", reason: "at least 50ms"},
		{env: map[string]string{"HEARTBEAT_INTERVAL": "-2s"}, var_: "HEARTBEAT_INTERVAL", value: "-2s", reason: "negative"},
		{env: map[string]string{"NODE_TTL": "2s"}, var_: "NODE_TTL", value: "2s", reason: "longer than HEARTBEAT_INTERVAL (2s)"},
		{env: map[string]string{"NODE_TTL": "1s"}, var_: "NODE_TTL", value: "1s", reason: "longer than HEARTBEAT_INTERVAL"},
		{env: map[string]string{"HEARTBEAT_INTERVAL": "10s"}, var_: "NODE_TTL", value: "", reason: `default "6s"`},
		{env: map[string]string{"NODE_TTL": "six"}, var_: "NODE_TTL", value: "six", reason: "duration"},
		{env: map[string]string{"NODE_ID": "web 1"}, var_: "NODE_ID", value: "web 1", reason: "spaces"},
		{env: map[string]string{"PRESENCE_BATCH_WINDOW": "2s"}, var_: "PRESENCE_BATCH_WINDOW", value: "2s", reason: "between 0s and 1s"},
		{env: map[string]string{"PRESENCE_BATCH_WINDOW": "10"}, var_: "PRESENCE_BATCH_WINDOW", value: "10", reason: "duration"},
		{env: map[string]string{"PRESENCE_BATCH_MAX": "0"}, var_: "PRESENCE_BATCH_MAX", value: "0", reason: "1-100000"},
		{env: map[string]string{"PRESENCE_SHARDS": "0", "REDIS_URL": "redis://r:6379"}, var_: "PRESENCE_SHARDS", value: "0", reason: "1-256"},
		{env: map[string]string{"PRESENCE_SHARDS": "257", "REDIS_URL": "redis://r:6379"}, var_: "PRESENCE_SHARDS", value: "257", reason: "1-256"},
		{env: map[string]string{"PRESENCE_SHARDS": "4"}, var_: "PRESENCE_SHARDS", value: "4", reason: "needs managed mode"},
		{env: map[string]string{"PRESENCE_SHARDS": "4", "PRESENCE_MODE": "external", "REDIS_URL": "redis://r:6379"}, var_: "PRESENCE_SHARDS", value: "4", reason: "needs managed mode"},
		{env: map[string]string{"PRESENCE_BATCH_MAX": "100001"}, var_: "PRESENCE_BATCH_MAX", value: "100001", reason: "1-100000"},
		{env: map[string]string{"LAST_SEEN_INTERVAL": "500ms"}, var_: "LAST_SEEN_INTERVAL", value: "500ms", reason: "at least 1s"},
		{env: map[string]string{"STATS_REFRESH_INTERVAL": "0"}, var_: "STATS_REFRESH_INTERVAL", value: "0", reason: "at least"},
		{env: map[string]string{"ALLOW_ANONYMOUS": "maybe"}, var_: "ALLOW_ANONYMOUS", value: "maybe", reason: "true/false"},
		{env: map[string]string{"MAX_CONNS_PER_IP": "-5"}, var_: "MAX_CONNS_PER_IP", value: "-5", reason: "non-negative"},
		{env: map[string]string{"CONNECT_RATE_PER_IP": "-1"}, var_: "CONNECT_RATE_PER_IP", value: "-1", reason: "0-1000000"},
		{env: map[string]string{"CONNECT_RATE_PER_IP": "1000001"}, var_: "CONNECT_RATE_PER_IP", value: "1000001", reason: "0-1000000"},
		{env: map[string]string{"CONNECT_RATE_PER_IP": "2.5"}, var_: "CONNECT_RATE_PER_IP", value: "2.5", reason: "integer"},
		{env: map[string]string{"WS_PING_INTERVAL": "1h"}, var_: "WS_IDLE_TIMEOUT", value: "", reason: "longer than WS_PING_INTERVAL (1h0m0s)"},
		{env: map[string]string{"WS_IDLE_TIMEOUT": "25s"}, var_: "WS_IDLE_TIMEOUT", value: "25s", reason: "longer than WS_PING_INTERVAL"},
		{env: map[string]string{"WS_PING_INTERVAL": "25"}, var_: "WS_PING_INTERVAL", value: "25", reason: "duration"},
		{env: map[string]string{"WS_MAX_MESSAGE_BYTES": "4k"}, var_: "WS_MAX_MESSAGE_BYTES", value: "4k", reason: "integer"},
		{env: map[string]string{"WS_MAX_MESSAGE_BYTES": "1"}, var_: "WS_MAX_MESSAGE_BYTES", value: "1", reason: "64-"},
		{env: map[string]string{"WS_MAX_QUEUED_BYTES": "4095"}, var_: "WS_MAX_QUEUED_BYTES", value: "4095", reason: "4096-67108864"},
		{env: map[string]string{"WS_MAX_QUEUED_BYTES": "67108865"}, var_: "WS_MAX_QUEUED_BYTES", value: "67108865", reason: "4096-67108864"},
		{env: map[string]string{"WS_MAX_QUEUED_BYTES": "64KiB"}, var_: "WS_MAX_QUEUED_BYTES", value: "64KiB", reason: "integer"},
		{env: map[string]string{"WS_PING_RATE": "0"}, var_: "WS_PING_RATE", value: "0", reason: "1-10000"},
		{env: map[string]string{"WS_PING_RATE": "10001"}, var_: "WS_PING_RATE", value: "10001", reason: "1-10000"},
		{env: map[string]string{"WS_PING_RATE": "0.5"}, var_: "WS_PING_RATE", value: "0.5", reason: "integer"},
		{env: map[string]string{"WS_PING_BURST": "0"}, var_: "WS_PING_BURST", value: "0", reason: "1-100000"},
		{env: map[string]string{"WS_PING_BURST": "100001"}, var_: "WS_PING_BURST", value: "100001", reason: "1-100000"},
		{env: map[string]string{"CORS_ORIGINS": "https://a.example.com,example.com"}, var_: "CORS_ORIGINS", value: "https://a.example.com,example.com", reason: `"example.com" is not an origin`},
		{env: map[string]string{"CORS_ORIGINS": "https://a.example.com/"}, var_: "CORS_ORIGINS", value: "https://a.example.com/", reason: "not an origin"},
		{env: map[string]string{"CORS_ORIGINS": "https://a.example.com/app"}, var_: "CORS_ORIGINS", reason: "not an origin", value: "https://a.example.com/app"},
		{env: map[string]string{"TRUSTED_PROXIES": "10.0.0.0/33"}, var_: "TRUSTED_PROXIES", value: "10.0.0.0/33", reason: `"10.0.0.0/33" is not an IP address or CIDR prefix`},
		{env: map[string]string{"TRUSTED_PROXIES": "127.0.0.1,proxy.internal"}, var_: "TRUSTED_PROXIES", value: "127.0.0.1,proxy.internal", reason: `"proxy.internal" is not`},
		{env: map[string]string{"TRUSTED_PROXIES": "10.0.0.1:8080"}, var_: "TRUSTED_PROXIES", value: "10.0.0.1:8080", reason: "not an IP address"},
		{env: map[string]string{"TRUSTED_PROXIES": "fe80::1%eth0"}, var_: "TRUSTED_PROXIES", value: "fe80::1%eth0", reason: "not an IP address"},
		{env: map[string]string{"TRUSTED_PROXIES": "10.0.0.0/8 192.168.0.0/16"}, var_: "TRUSTED_PROXIES", value: "10.0.0.0/8 192.168.0.0/16", reason: "not an IP address"},
		{env: map[string]string{"ADMIN_AUTH_FAILURES": "0"}, var_: "ADMIN_AUTH_FAILURES", value: "0", reason: "1-100000"},
		{env: map[string]string{"ADMIN_AUTH_FAILURES": "100001"}, var_: "ADMIN_AUTH_FAILURES", value: "100001", reason: "1-100000"},
		{env: map[string]string{"HTTP_READ_HEADER_TIMEOUT": "50ms"}, var_: "HTTP_READ_HEADER_TIMEOUT", value: "50ms", reason: "between 100ms and 5m0s"},
		{env: map[string]string{"HTTP_READ_HEADER_TIMEOUT": "6m"}, var_: "HTTP_READ_HEADER_TIMEOUT", value: "6m", reason: "between 100ms and 5m0s"},
		{env: map[string]string{"HTTP_READ_HEADER_TIMEOUT": "10"}, var_: "HTTP_READ_HEADER_TIMEOUT", value: "10", reason: "duration"},
		{env: map[string]string{"HTTP_IDLE_TIMEOUT": "500ms"}, var_: "HTTP_IDLE_TIMEOUT", value: "500ms", reason: "between 1s and 1h0m0s"},
		{env: map[string]string{"HTTP_IDLE_TIMEOUT": "2h"}, var_: "HTTP_IDLE_TIMEOUT", value: "2h", reason: "between 1s and 1h0m0s"},
		{env: map[string]string{"HTTP_MAX_HEADER_BYTES": "4095"}, var_: "HTTP_MAX_HEADER_BYTES", value: "4095", reason: "4096-1048576"},
		{env: map[string]string{"HTTP_MAX_HEADER_BYTES": "1048577"}, var_: "HTTP_MAX_HEADER_BYTES", value: "1048577", reason: "4096-1048576"},
		{env: map[string]string{"HTTP_MAX_BODY_BYTES": "1023"}, var_: "HTTP_MAX_BODY_BYTES", value: "1023", reason: "1024-67108864"},
		{env: map[string]string{"HTTP_MAX_BODY_BYTES": "67108865"}, var_: "HTTP_MAX_BODY_BYTES", value: "67108865", reason: "1024-67108864"},
		{env: map[string]string{"HTTP_MAX_BODY_BYTES": "1MiB"}, var_: "HTTP_MAX_BODY_BYTES", value: "1MiB", reason: "integer"},
		{env: map[string]string{"SOCKETIO_PATH": "socket.io"}, var_: "SOCKETIO_PATH", value: "socket.io", reason: "starting and ending"},
		{env: map[string]string{"SOCKETIO_PATH": "/api/admin/sio/"}, var_: "SOCKETIO_PATH", value: "/api/admin/sio/", reason: "not under /api/admin/"},
		{env: map[string]string{"SOCKETIO_PING_INTERVAL": "5ms"}, var_: "SOCKETIO_PING_INTERVAL", value: "5ms", reason: "10ms"},
		{env: map[string]string{"SOCKETIO_PING_TIMEOUT": "soon"}, var_: "SOCKETIO_PING_TIMEOUT", value: "soon", reason: "duration"},
		{env: map[string]string{"SOCKETIO_MAX_PAYLOAD": "10"}, var_: "SOCKETIO_MAX_PAYLOAD", value: "10", reason: "1024-100000000"},
		{env: map[string]string{"SOCKETIO_CONNECT_TIMEOUT": "-1s"}, var_: "SOCKETIO_CONNECT_TIMEOUT", value: "-1s", reason: "negative"},
		{env: map[string]string{"LOG_FORMAT": "xml"}, var_: "LOG_FORMAT", value: "xml", reason: "text or json"},
		{env: map[string]string{"LOG_LEVEL": "trace"}, var_: "LOG_LEVEL", value: "trace", reason: "debug, info, warn or error"},
		{env: map[string]string{"SHUTDOWN_TIMEOUT": "500ms"}, var_: "SHUTDOWN_TIMEOUT", value: "500ms", reason: "between 1s and 1m0s"},
		{env: map[string]string{"SHUTDOWN_TIMEOUT": "2m"}, var_: "SHUTDOWN_TIMEOUT", value: "2m", reason: "between 1s and 1m0s"},
	}
	for _, tt := range tests {
		_, err := config.Load(env(tt.env), "")
		var cerr *config.Error
		if !errors.As(err, &cerr) {
			t.Errorf("%q: got error %v, want *config.Error", tt.env, err)
			continue
		}
		if cerr.Var != tt.var_ || cerr.Value != tt.value || !strings.Contains(cerr.Reason, tt.reason) {
			t.Errorf("%q: got %+v, want Var %s, Value %q, Reason containing %q", tt.env, *cerr, tt.var_, tt.value, tt.reason)
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "config: "+tt.var_+"=") {
			t.Errorf("%q: message %q does not start with the variable", tt.env, msg)
		}
		if tt.secret != "" && strings.Contains(msg, tt.secret) {
			t.Errorf("%q: message %q leaks the secret", tt.env, msg)
		}
	}
}

func TestLoadErrorMessage(t *testing.T) {
	_, err := config.Load(env(map[string]string{"PORT": "abc"}), "")
	if got, want := err.Error(), `config: PORT="abc": must be a port number 0-65535`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestLoadJWKSRequiresIssuerAndAudience: an unset variable that another one
// requires gets a reason without the "its default applies" suffix, which
// would read oddly for a variable with no default.
func TestLoadJWKSRequiresIssuerAndAudience(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{withJWKS("JWT_ISSUER", ""), `config: JWT_ISSUER="": required when JWT_JWKS_URL is set: a JWKS may sign tokens for other issuers`},
		{withJWKS("JWT_AUDIENCE", ""), `config: JWT_AUDIENCE="": required when JWT_JWKS_URL is set: a JWKS may sign tokens for other applications`},
	} {
		_, err := config.Load(env(tt.env), "")
		if err == nil || err.Error() != tt.want {
			t.Errorf("%v: got %v, want %s", tt.env, err, tt.want)
		}
	}
	if _, err := config.Load(env(withJWKS()), ""); err != nil {
		t.Errorf("JWKS with issuer and audience: %v", err)
	}
}

func TestLoadReportsFirstInvalidInVarsOrder(t *testing.T) {
	_, err := config.Load(env(map[string]string{"LOG_LEVEL": "loud", "PORT": "x", "NODE_TTL": "1ms"}), "")
	var cerr *config.Error
	if !errors.As(err, &cerr) || cerr.Var != "PORT" {
		t.Fatalf("got %v, want the PORT error", err)
	}
}

func TestLoadDotenv(t *testing.T) {
	path := writeDotenv(t, `# comment
PORT=9001
export LOG_LEVEL=debug
JWT_SECRET='p$ss word'
ADMIN_TOKEN="adm"  # trailing comment
REDIS_URL=redis://127.0.0.1:6390/1
CORS_ORIGINS=https://a.example.com
`)
	c, err := config.Load(env(map[string]string{
		"PORT":         "9002", // real environment wins
		"CORS_ORIGINS": "",     // empty falls through to the file
	}), path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Port != 9002 {
		t.Errorf("Port = %d, want 9002 from the environment", c.Port)
	}
	if c.LogLevel != "debug" || c.JWTSecret != "p$ss word" || c.AdminToken != "adm" ||
		c.RedisURL != "redis://127.0.0.1:6390/1" || !reflect.DeepEqual(c.CORSOrigins, []string{"https://a.example.com"}) {
		t.Errorf("values from .env not applied: %+v", c)
	}
}

func TestLoadDotenvInvalidValueNamesVariable(t *testing.T) {
	path := writeDotenv(t, "SHUTDOWN_TIMEOUT=forever\n")
	_, err := config.Load(env(nil), path)
	var cerr *config.Error
	if !errors.As(err, &cerr) || cerr.Var != "SHUTDOWN_TIMEOUT" || cerr.Value != "forever" {
		t.Fatalf("got %v, want a SHUTDOWN_TIMEOUT error", err)
	}
}

func TestLoadDotenvMissingIsFine(t *testing.T) {
	for _, path := range []string{"", filepath.Join(t.TempDir(), "nope", ".env")} {
		if _, err := config.Load(env(nil), path); err != nil {
			t.Errorf("Load(%q): %v", path, err)
		}
	}
}

func TestLoadDotenvMalformed(t *testing.T) {
	tests := []struct {
		content string
		want    string // substring of the message besides the file name
	}{
		{"PORT=1\nJWT-SECRET=hunter2\n", "line 2"},
		{"PORT=1\nJWT_SECRET=\"hunter2\n", "unterminated"},
		{"PORT=1\nhunter2\n", "line 2"},
		{"PORT=1\nhunter2", "NAME=value"},
	}
	for _, tt := range tests {
		path := writeDotenv(t, tt.content)
		_, err := config.Load(env(nil), path)
		if err == nil {
			t.Errorf("%q: Load succeeded, want an error", tt.content)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, path) || !strings.Contains(msg, tt.want) {
			t.Errorf("%q: error %q should name %s and contain %q", tt.content, msg, path, tt.want)
		}
		if strings.Contains(msg, "hunter2") {
			t.Errorf("%q: error %q leaks file content", tt.content, msg)
		}
		var cerr *config.Error
		if errors.As(err, &cerr) {
			t.Errorf("%q: a file error should not be a variable *Error: %v", tt.content, err)
		}
	}
}

func TestLoadDotenvUnreadable(t *testing.T) {
	// A directory where the file should be cannot be read.
	_, err := config.Load(env(nil), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "dotenv") {
		t.Errorf("got %v, want a dotenv read error", err)
	}
}

func TestConfigVars(t *testing.T) {
	vars := config.Vars()
	if n := reflect.TypeFor[config.Config]().NumField(); len(vars) != n {
		t.Errorf("Vars() has %d variables, Config has %d fields", len(vars), n)
	}
	seen := make(map[string]bool)
	name := regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)
	for _, v := range vars {
		if !name.MatchString(v.Name) || seen[v.Name] {
			t.Errorf("bad or duplicate name %q", v.Name)
		}
		seen[v.Name] = true
		if v.Description == "" || strings.Contains(v.Description, "\n") {
			t.Errorf("%s: description must be one non-empty line", v.Name)
		}
	}
	if !reflect.DeepEqual(vars, config.Vars()) {
		t.Error("Vars() is not stable")
	}
	// Each documented default is what Load applies: setting it explicitly
	// changes nothing.
	defaults, err := config.Load(env(nil), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vars {
		if v.Default == "" {
			continue
		}
		c, err := config.Load(env(map[string]string{v.Name: v.Default}), "")
		if err != nil || !reflect.DeepEqual(c, defaults) {
			t.Errorf("%s=%q: got %v, %+v; want the defaults", v.Name, v.Default, err, c)
		}
	}
}

func TestConfigRedacted(t *testing.T) {
	c, err := config.Load(env(map[string]string{
		"JWT_SECRET":  "jwt-hunter2",
		"ADMIN_TOKEN": "adm-hunter2",
		"REDIS_URL":   "redis://user:redis-hunter2@r:6379/0",
		"MONGODB_URI": "mongodb://user:mongo-hunter2@m:27017/app",
	}), "")
	if err != nil {
		t.Fatal(err)
	}
	r := c.Redacted()
	for _, v := range config.Vars() {
		if _, ok := r[v.Name]; !ok {
			t.Errorf("Redacted() lacks %s", v.Name)
		}
	}
	for k, v := range r {
		if strings.Contains(v, "hunter2") {
			t.Errorf("Redacted()[%s] = %q leaks a secret", k, v)
		}
	}
	want := map[string]string{
		"JWT_SECRET":         "***",
		"ADMIN_TOKEN":        "***",
		"REDIS_URL":          "redis://user:***@r:6379/0",
		"MONGODB_URI":        "mongodb://user:***@m:27017/app",
		"PORT":               "8080",
		"HEARTBEAT_INTERVAL": "2s",
		"ALLOW_ANONYMOUS":    "false",
		"CORS_ORIGINS":       "",
		"JWT_LEEWAY":         "5s",
		"TRUSTED_PROXIES":    "",
		"HTTP_IDLE_TIMEOUT":  "2m0s",
	}
	for k, w := range want {
		if r[k] != w {
			t.Errorf("Redacted()[%s] = %q, want %q", k, r[k], w)
		}
	}
	lists, err := config.Load(env(map[string]string{
		"JWT_AUDIENCE":    "api, web",
		"TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1",
	}), "")
	if err != nil {
		t.Fatal(err)
	}
	if r := lists.Redacted(); r["JWT_AUDIENCE"] != "api,web" || r["TRUSTED_PROXIES"] != "10.0.0.0/8,127.0.0.1/32" {
		t.Errorf("Redacted() lists: JWT_AUDIENCE %q, TRUSTED_PROXIES %q", r["JWT_AUDIENCE"], r["TRUSTED_PROXIES"])
	}
	if empty := (config.Config{}).Redacted(); empty["JWT_SECRET"] != "" {
		t.Errorf("an unset secret should read empty, got %q", empty["JWT_SECRET"])
	}
}

// TestConfigREADME checks that the README's configuration table lists every
// variable: a table row ("| ...") naming it.
func TestConfigREADME(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("README.md does not exist yet")
	}
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "|") {
			rows = append(rows, line)
		}
	}
	for _, v := range config.Vars() {
		word := regexp.MustCompile(`(^|[^A-Z0-9_])` + v.Name + `($|[^A-Z0-9_])`)
		found := false
		for _, row := range rows {
			if word.MatchString(row) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("README.md's configuration table has no row for %s (default %q: %s)", v.Name, v.Default, v.Description)
		}
	}
}
