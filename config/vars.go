package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"
)

// spec is one variable: its documentation, how to parse it into a Config and
// how to print it back. parse returns "" on success, else the reason.
type spec struct {
	name, def, desc string
	secret          bool // whole value is masked
	url             bool // password in the URL is masked
	parse           func(c *Config, v string) string
	format          func(c Config) string
}

// baseSpecs lists every variable but the Redis topology ones (redisSpecs,
// spliced in after REDIS_URL by specs) in documentation and validation
// order. A variable whose check depends on another comes after it.
func baseSpecs() []spec {
	return []spec{
		{
			name: "PORT", def: "8080",
			desc:   "HTTP listen port; 0 picks a free port",
			parse:  intVar(func(c *Config) *int { return &c.Port }, 0, 65535, "must be a port number 0-65535"),
			format: func(c Config) string { return strconv.Itoa(c.Port) },
		},
		{
			name: "REDIS_URL", def: "", url: true,
			desc: "redis://[user:password@]host:port[/db] or rediss:// for TLS; unset runs a single node without Redis",
			parse: func(c *Config, v string) string {
				if reason := checkRedisURL(v); reason != "" {
					return reason
				}
				c.RedisURL = v
				return ""
			},
			format: func(c Config) string { return c.RedisURL },
		},
		{
			name: "MONGODB_URI", def: "", url: true,
			desc: "mongodb:// or mongodb+srv:// URI of the data store; unset uses SQLite in DATA_DIR",
			parse: func(c *Config, v string) string {
				if reason := checkMongoURI(v); reason != "" {
					return reason
				}
				c.MongoURI = v
				return ""
			},
			format: func(c Config) string { return c.MongoURI },
		},
		{
			name: "MONGODB_DB", def: "",
			desc: `MongoDB database; unset uses the database in MONGODB_URI, else "presenced"`,
			parse: func(c *Config, v string) string {
				if len(v) > 63 || strings.ContainsAny(v, "/\\. \"$\x00") {
					return `must be a MongoDB database name: at most 63 bytes, none of / \ . " $ or space`
				}
				c.MongoDB = v
				return ""
			},
			format: func(c Config) string { return c.MongoDB },
		},
		{
			name: "USERS_COLLECTION", def: "users",
			desc: "MongoDB collection of the app's users (_id, createdAt), only read; SQLite uses its own users table",
			parse: func(c *Config, v string) string {
				if strings.ContainsAny(v, "$\x00") || strings.HasPrefix(v, "system.") {
					return `must be a collection name: no "$", not starting with "system."`
				}
				c.UsersCollection = v
				return ""
			},
			format: func(c Config) string { return c.UsersCollection },
		},
		{
			name: "MONGODB_BATCH_SIZE", def: "500",
			desc:   "documents per MongoDB bulk write and cursor batch, 1-10000",
			parse:  intVar(func(c *Config) *int { return &c.MongoBatchSize }, 1, 10000, "must be an integer 1-10000"),
			format: func(c Config) string { return strconv.Itoa(c.MongoBatchSize) },
		},
		{
			name: "DATA_DIR", def: "./data",
			desc: "directory for the SQLite database and other local state",
			parse: func(c *Config, v string) string {
				c.DataDir = v
				return ""
			},
			format: func(c Config) string { return c.DataDir },
		},
		{
			name: "JWT_SECRET", def: "", secret: true,
			desc:   "HS256 key for user tokens",
			parse:  secretVar(func(c *Config) *string { return &c.JWTSecret }),
			format: func(c Config) string { return c.JWTSecret },
		},
		{
			name: "JWT_JWKS_URL", def: "",
			desc: "http(s) URL of a JWKS for RS256/ES256 user tokens",
			parse: func(c *Config, v string) string {
				if v == "" {
					return ""
				}
				u, err := url.Parse(v)
				if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" {
					return "must be an http:// or https:// URL with a host"
				}
				c.JWKSURL = v
				return ""
			},
			format: func(c Config) string { return c.JWKSURL },
		},
		{
			name: "JWT_ISSUER", def: "",
			desc: `the only "iss" accepted on user tokens, e.g. https://auth.example.com/; required with JWT_JWKS_URL`,
			parse: func(c *Config, v string) string {
				if v == "" && c.JWKSURL != "" {
					return "required when JWT_JWKS_URL is set: a JWKS may sign tokens for other issuers"
				}
				if hasControl(v) {
					return "must not contain control characters"
				}
				c.JWTIssuer = v
				return ""
			},
			format: func(c Config) string { return c.JWTIssuer },
		},
		{
			name: "JWT_AUDIENCE", def: "",
			desc: `comma-separated audiences; a user token's "aud" must name one; required with JWT_JWKS_URL`,
			parse: func(c *Config, v string) string {
				aud, reason := parseList(v)
				if reason != "" {
					return reason
				}
				if len(aud) == 0 && c.JWKSURL != "" {
					return "required when JWT_JWKS_URL is set: a JWKS may sign tokens for other applications"
				}
				c.JWTAudience = aud
				return ""
			},
			format: func(c Config) string { return strings.Join(c.JWTAudience, ",") },
		},
		{
			name: "JWT_LEEWAY", def: "5s",
			desc:   "clock skew allowed on user tokens' exp and nbf, 0-5m",
			parse:  durationVar(func(c *Config) *time.Duration { return &c.JWTLeeway }, 0, 5*time.Minute),
			format: func(c Config) string { return c.JWTLeeway.String() },
		},
		{
			name: "ADMIN_TOKEN", def: "", secret: true,
			desc:   "bearer token for the admin API and panel",
			parse:  secretVar(func(c *Config) *string { return &c.AdminToken }),
			format: func(c Config) string { return c.AdminToken },
		},
		{
			name: "ONLINE_USERS_KEY", def: "online_users",
			desc: "Redis string key holding the number of online users, kept exact by presenced (read only in external mode)",
			parse: func(c *Config, v string) string {
				if v == "" {
					return "must not be empty"
				}
				c.OnlineUsersKey = v
				return ""
			},
			format: func(c Config) string { return c.OnlineUsersKey },
		},
		{
			name: "REDIS_KEY_PREFIX", def: "",
			desc: "prefix of presenced's other Redis keys; its {hash tag} keeps them in one cluster slot; unset: ONLINE_USERS_KEY as the tag, {online_users}, the slot of online_users itself",
			parse: func(c *Config, v string) string {
				if v == "" {
					v = DefaultKeyPrefix(c.OnlineUsersKey)
				}
				if !hasHashTag(v) {
					return `must contain a non-empty {hash tag}, e.g. "{online_users}" or "app:{presence}:"`
				}
				if len(c.RedisClusterAddrs) > 0 && KeySlot(v) != KeySlot(c.OnlineUsersKey) {
					return fmt.Sprintf("its hash tag is in cluster slot %d but ONLINE_USERS_KEY %q is in slot %d: on a Redis Cluster every presence script would fail with CROSSSLOT; unset it or use a prefix like %q",
						KeySlot(v), c.OnlineUsersKey, KeySlot(c.OnlineUsersKey), DefaultKeyPrefix(c.OnlineUsersKey))
				}
				c.KeyPrefix = v
				return ""
			},
			format: func(c Config) string { return c.KeyPrefix },
		},
		{
			name: "PRESENCE_MODE", def: "managed",
			desc: "managed: presenced keeps presence in Redis; external: another program maintains ONLINE_USERS_KEY (INCR/DECR) and presenced only reads it",
			parse: func(c *Config, v string) string {
				switch v = strings.ToLower(v); v {
				case "managed":
				case "external":
					if !c.RedisConfigured() {
						return "external mode requires REDIS_URL (or REDIS_CLUSTER_ADDRS or REDIS_SENTINEL_ADDRS)"
					}
				default:
					return "must be managed or external"
				}
				c.PresenceMode = v
				return ""
			},
			format: func(c Config) string { return c.PresenceMode },
		},
		{
			name: "PRESENCE_SHARDS", def: "1",
			desc: "split the users over this many Redis hash tags (1-256), so that presence spreads over a Redis Cluster's masters; online_users is then their sum; every node must use the same; managed mode only",
			parse: func(c *Config, v string) string {
				if reason := intVar(func(c *Config) *int { return &c.PresenceShards }, 1, 256, "must be an integer 1-256")(c, v); reason != "" {
					return reason
				}
				if c.PresenceShards > 1 && (!c.RedisConfigured() || c.PresenceMode != "managed") {
					return "shards split presence kept in Redis: it needs managed mode (PRESENCE_MODE=managed) with REDIS_URL, REDIS_CLUSTER_ADDRS or REDIS_SENTINEL_ADDRS"
				}
				return ""
			},
			format: func(c Config) string { return strconv.Itoa(c.PresenceShards) },
		},
		{
			name: "HEARTBEAT_INTERVAL", def: "2s",
			desc:   "how often a node renews its liveness in Redis, at least 50ms",
			parse:  durationVar(func(c *Config) *time.Duration { return &c.HeartbeatInterval }, 50*time.Millisecond, 0),
			format: func(c Config) string { return c.HeartbeatInterval.String() },
		},
		{
			name: "NODE_TTL", def: "6s",
			desc: "a node silent this long is dead and its connections are dropped; longer than HEARTBEAT_INTERVAL",
			parse: func(c *Config, v string) string {
				if reason := durationVar(func(c *Config) *time.Duration { return &c.NodeTTL }, 0, 0)(c, v); reason != "" {
					return reason
				}
				if c.NodeTTL <= c.HeartbeatInterval {
					return fmt.Sprintf("must be longer than HEARTBEAT_INTERVAL (%s)", c.HeartbeatInterval)
				}
				return ""
			},
			format: func(c Config) string { return c.NodeTTL.String() },
		},
		{
			name: "NODE_ID", def: "",
			desc: "this node's ID in Redis; unset generates hostname-pid-random",
			parse: func(c *Config, v string) string {
				if strings.IndexFunc(v, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
					return "must not contain spaces or control characters"
				}
				c.NodeID = v
				return ""
			},
			format: func(c Config) string { return c.NodeID },
		},
		{
			name: "PRESENCE_BATCH_WINDOW", def: "10ms",
			desc:   "presence changes are coalesced this long before one Redis call, 0-1s; 0 flushes at once",
			parse:  durationVar(func(c *Config) *time.Duration { return &c.BatchWindow }, 0, time.Second),
			format: func(c Config) string { return c.BatchWindow.String() },
		},
		{
			name: "PRESENCE_BATCH_MAX", def: "1000",
			desc:   "users per Redis script call, 1-100000 (with PRESENCE_SHARDS a node's batch holds up to this many per shard)",
			parse:  intVar(func(c *Config) *int { return &c.BatchMax }, 1, 100000, "must be an integer 1-100000"),
			format: func(c Config) string { return strconv.Itoa(c.BatchMax) },
		},
		{
			name: "LAST_SEEN_INTERVAL", def: "30s",
			desc:   "connected users' last-seen times are rewritten this often (those written within half an interval are skipped); the fallback count is users seen within two intervals; at least 1s",
			parse:  durationVar(func(c *Config) *time.Duration { return &c.LastSeenInterval }, time.Second, 0),
			format: func(c Config) string { return c.LastSeenInterval.String() },
		},
		{
			name: "STATS_REFRESH_INTERVAL", def: "10s",
			desc:   "how often cached data-store totals are refreshed, at least 10ms",
			parse:  durationVar(func(c *Config) *time.Duration { return &c.StatsRefresh }, 10*time.Millisecond, 0),
			format: func(c Config) string { return c.StatsRefresh.String() },
		},
		{
			name: "STATS_TIMEZONE", def: "UTC",
			desc: `IANA time zone, e.g. Europe/Berlin, whose midnight starts "today" for peakOnlineToday and newUsersToday; every node must use the same`,
			parse: func(c *Config, v string) string {
				loc, err := time.LoadLocation(v)
				if err != nil || v == "" || v == "Local" {
					return "must be an IANA time zone name such as UTC or Europe/Berlin"
				}
				c.StatsTimezone = loc
				return ""
			},
			format: func(c Config) string { return c.StatsTimezone.String() },
		},
		{
			name: "ALLOW_ANONYMOUS", def: "false",
			desc: "accept WebSocket connections without a token: true/false, 1/0, yes/no",
			parse: func(c *Config, v string) string {
				switch strings.ToLower(v) {
				case "true", "1", "yes":
					c.AllowAnonymous = true
				case "false", "0", "no":
					c.AllowAnonymous = false
				default:
					return "must be true/false, 1/0 or yes/no"
				}
				return ""
			},
			format: func(c Config) string { return strconv.FormatBool(c.AllowAnonymous) },
		},
		{
			name: "MAX_CONNS_PER_IP", def: "0",
			desc:   "open WebSocket connections allowed per client IP; 0 means no limit",
			parse:  intVar(func(c *Config) *int { return &c.MaxConnsPerIP }, 0, 1<<31-1, "must be a non-negative integer (0 = no limit)"),
			format: func(c Config) string { return strconv.Itoa(c.MaxConnsPerIP) },
		},
		{
			name: "CONNECT_RATE_PER_IP", def: "0",
			desc:   "new WebSocket connections per second allowed from one client address (bursts of twice that), 0-1000000; 0 means no limit",
			parse:  intVar(func(c *Config) *int { return &c.ConnectRatePerIP }, 0, 1000000, "must be an integer 0-1000000 (0 = no limit)"),
			format: func(c Config) string { return strconv.Itoa(c.ConnectRatePerIP) },
		},
		{
			name: "WS_PING_INTERVAL", def: "25s",
			desc:   "how often the server pings each WebSocket, at least 10ms",
			parse:  durationVar(func(c *Config) *time.Duration { return &c.PingInterval }, 10*time.Millisecond, 0),
			format: func(c Config) string { return c.PingInterval.String() },
		},
		{
			name: "WS_IDLE_TIMEOUT", def: "60s",
			desc: "a WebSocket silent this long is closed; longer than WS_PING_INTERVAL",
			parse: func(c *Config, v string) string {
				if reason := durationVar(func(c *Config) *time.Duration { return &c.IdleTimeout }, 0, 0)(c, v); reason != "" {
					return reason
				}
				if c.IdleTimeout <= c.PingInterval {
					return fmt.Sprintf("must be longer than WS_PING_INTERVAL (%s)", c.PingInterval)
				}
				return ""
			},
			format: func(c Config) string { return c.IdleTimeout.String() },
		},
		{
			name: "WS_MAX_MESSAGE_BYTES", def: "32768",
			desc:   "largest client message accepted, 64-16777216 bytes",
			parse:  intVar(func(c *Config) *int { return &c.MaxMessageBytes }, 64, 16<<20, "must be an integer 64-16777216"),
			format: func(c Config) string { return strconv.Itoa(c.MaxMessageBytes) },
		},
		{
			name: "WS_MAX_QUEUED_BYTES", def: "65536",
			desc:   "bytes queued for one slow WebSocket client before it is closed, 4096-67108864",
			parse:  intVar(func(c *Config) *int { return &c.MaxQueuedBytes }, 4096, 64<<20, "must be an integer 4096-67108864"),
			format: func(c Config) string { return strconv.Itoa(c.MaxQueuedBytes) },
		},
		{
			name: "WS_PING_RATE", def: "10",
			desc:   `pings (control pings and {"type":"ping"}) allowed per second per WebSocket, 1-10000; beyond it and WS_PING_BURST the connection is closed with 1008`,
			parse:  intVar(func(c *Config) *int { return &c.PingRate }, 1, 10000, "must be an integer 1-10000"),
			format: func(c Config) string { return strconv.Itoa(c.PingRate) },
		},
		{
			name: "WS_PING_BURST", def: "20",
			desc:   "pings allowed in a burst per WebSocket, 1-100000; beyond it and WS_PING_RATE the connection is closed with 1008",
			parse:  intVar(func(c *Config) *int { return &c.PingBurst }, 1, 100000, "must be an integer 1-100000"),
			format: func(c Config) string { return strconv.Itoa(c.PingBurst) },
		},
		{
			name: "CORS_ORIGINS", def: "",
			desc: "comma-separated browser origins allowed to call the API, e.g. https://app.example.com; * allows any origin, without credentials",
			parse: func(c *Config, v string) string {
				origins, reason := parseOrigins(v)
				if reason != "" {
					return reason
				}
				c.CORSOrigins = origins
				return ""
			},
			format: func(c Config) string { return strings.Join(c.CORSOrigins, ",") },
		},
		{
			name: "TRUSTED_PROXIES", def: "",
			desc: "comma-separated CIDRs or IPs of proxies, e.g. 10.0.0.0/8,127.0.0.1; X-Forwarded-For and Forwarded are believed only from these peers",
			parse: func(c *Config, v string) string {
				prefixes, reason := parsePrefixes(v)
				if reason != "" {
					return reason
				}
				c.TrustedProxies = prefixes
				return ""
			},
			format: func(c Config) string {
				s := make([]string, len(c.TrustedProxies))
				for i, p := range c.TrustedProxies {
					s[i] = p.String()
				}
				return strings.Join(s, ",")
			},
		},
		{
			name: "ADMIN_AUTH_FAILURES", def: "20",
			desc:   "failed admin authentications allowed per minute from one client address before 429, 1-100000",
			parse:  intVar(func(c *Config) *int { return &c.AdminAuthFailures }, 1, 100000, "must be an integer 1-100000"),
			format: func(c Config) string { return strconv.Itoa(c.AdminAuthFailures) },
		},
		{
			name: "HTTP_READ_HEADER_TIMEOUT", def: "10s",
			desc:   "time an HTTP client has to send a request's headers, 100ms-5m",
			parse:  durationVar(func(c *Config) *time.Duration { return &c.ReadHeaderTimeout }, 100*time.Millisecond, 5*time.Minute),
			format: func(c Config) string { return c.ReadHeaderTimeout.String() },
		},
		{
			name: "HTTP_IDLE_TIMEOUT", def: "120s",
			desc:   "an idle keep-alive HTTP connection is closed after this, 1s-1h",
			parse:  durationVar(func(c *Config) *time.Duration { return &c.HTTPIdleTimeout }, time.Second, time.Hour),
			format: func(c Config) string { return c.HTTPIdleTimeout.String() },
		},
		{
			name: "HTTP_MAX_HEADER_BYTES", def: "65536",
			desc:   "largest HTTP request line and headers, 4096-1048576 bytes",
			parse:  intVar(func(c *Config) *int { return &c.MaxHeaderBytes }, 4096, 1<<20, "must be an integer 4096-1048576"),
			format: func(c Config) string { return strconv.Itoa(c.MaxHeaderBytes) },
		},
		{
			name: "HTTP_MAX_BODY_BYTES", def: "1048576",
			desc:   "largest HTTP request body, 1024-67108864 bytes; a larger one gets 413",
			parse:  intVar(func(c *Config) *int { return &c.MaxBodyBytes }, 1024, 64<<20, "must be an integer 1024-67108864"),
			format: func(c Config) string { return strconv.Itoa(c.MaxBodyBytes) },
		},
		{
			name: "ADMIN_SESSION_TTL", def: "12h",
			desc:   "how long an admin panel login lasts, 1m-720h",
			parse:  durationVar(func(c *Config) *time.Duration { return &c.AdminSessionTTL }, time.Minute, 720*time.Hour),
			format: func(c Config) string { return c.AdminSessionTTL.String() },
		},
		{
			name: "SOCKETIO_PATH", def: "/socket.io/",
			desc: "URL path of the Socket.IO endpoint, starting and ending with /",
			parse: func(c *Config, v string) string {
				if len(v) < 2 || v[0] != '/' || v[len(v)-1] != '/' || strings.ContainsAny(v, " ?#{}\x00") ||
					v == "/api/" || strings.HasPrefix(v, "/api/admin/") || v == "/ws/" {
					return `must be a path like /socket.io/: starting and ending with "/", no spaces, "?", "#" or braces, not under /api/admin/`
				}
				c.SocketIOPath = v
				return ""
			},
			format: func(c Config) string { return c.SocketIOPath },
		},
		{
			name: "SOCKETIO_PING_INTERVAL", def: "25s",
			desc:   "how often the server pings each Socket.IO session, at least 10ms",
			parse:  durationVar(func(c *Config) *time.Duration { return &c.SocketIOPingInterval }, 10*time.Millisecond, 0),
			format: func(c Config) string { return c.SocketIOPingInterval.String() },
		},
		{
			name: "SOCKETIO_PING_TIMEOUT", def: "20s",
			desc:   "a Socket.IO session that has not answered a ping within this is closed, at least 10ms",
			parse:  durationVar(func(c *Config) *time.Duration { return &c.SocketIOPingTimeout }, 10*time.Millisecond, 0),
			format: func(c Config) string { return c.SocketIOPingTimeout.String() },
		},
		{
			name: "SOCKETIO_MAX_PAYLOAD", def: "1000000",
			desc:   "largest Socket.IO polling request body or WebSocket message, 1024-100000000 bytes",
			parse:  intVar(func(c *Config) *int { return &c.SocketIOMaxPayload }, 1024, 100_000_000, "must be an integer 1024-100000000"),
			format: func(c Config) string { return strconv.Itoa(c.SocketIOMaxPayload) },
		},
		{
			name: "SOCKETIO_CONNECT_TIMEOUT", def: "45s",
			desc:   "a Socket.IO session that has not connected to the main namespace within this is closed, at least 10ms",
			parse:  durationVar(func(c *Config) *time.Duration { return &c.SocketIOConnectTimeout }, 10*time.Millisecond, 0),
			format: func(c Config) string { return c.SocketIOConnectTimeout.String() },
		},
		{
			name: "LOG_FORMAT", def: "text",
			desc: "text or json",
			parse: func(c *Config, v string) string {
				switch v = strings.ToLower(v); v {
				case "text", "json":
					c.LogFormat = v
					return ""
				}
				return "must be text or json"
			},
			format: func(c Config) string { return c.LogFormat },
		},
		{
			name: "LOG_LEVEL", def: "info",
			desc: "debug, info, warn or error",
			parse: func(c *Config, v string) string {
				switch v = strings.ToLower(v); v {
				case "debug", "info", "warn", "error":
					c.LogLevel = v
					return ""
				}
				return "must be debug, info, warn or error"
			},
			format: func(c Config) string { return c.LogLevel },
		},
		{
			name: "SHUTDOWN_TIMEOUT", def: "8s",
			desc:   "how long a graceful stop may take, 1s-60s",
			parse:  durationVar(func(c *Config) *time.Duration { return &c.ShutdownTimeout }, time.Second, time.Minute),
			format: func(c Config) string { return c.ShutdownTimeout.String() },
		},
		{
			name: "API_KEY", def: "", secret: true,
			desc:   "key the app's backend sends (Authorization: Bearer or X-API-Key) to POST /api/presence/status; admin credentials work too",
			parse:  secretVar(func(c *Config) *string { return &c.APIKey }),
			format: func(c Config) string { return c.APIKey },
		},
		{
			name: "WEBHOOK_URL", def: "", url: true,
			desc: "http(s) URL that receives online/offline events in signed batches; unset sends none",
			parse: func(c *Config, v string) string {
				if v == "" {
					return ""
				}
				u, err := url.Parse(v)
				if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
					return "must be an http:// or https:// URL with a host"
				}
				if c.PresenceMode == "external" {
					return "not available with PRESENCE_MODE=external: another program keeps the count, so presenced sees no online/offline transitions"
				}
				c.WebhookURL = v
				return ""
			},
			format: func(c Config) string { return c.WebhookURL },
		},
		{
			name: "WEBHOOK_SECRET", def: "", secret: true,
			desc: "HMAC-SHA256 key signing webhook batches (X-Presenced-Signature); required with WEBHOOK_URL, at least 16 characters",
			parse: func(c *Config, v string) string {
				if c.WebhookURL != "" && len(v) < 16 {
					return "required with WEBHOOK_URL: at least 16 characters"
				}
				return secretVar(func(c *Config) *string { return &c.WebhookSecret })(c, v)
			},
			format: func(c Config) string { return c.WebhookSecret },
		},
	}
}

// intVar parses a decimal integer in [lo, hi] into the field.
func intVar(field func(*Config) *int, lo, hi int, reason string) func(*Config, string) string {
	return func(c *Config, v string) string {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return reason
		}
		*field(c) = n
		return ""
	}
}

// durationVar parses a time.ParseDuration value of at least lo and, when hi
// is not 0, at most hi.
func durationVar(field func(*Config) *time.Duration, lo, hi time.Duration) func(*Config, string) string {
	return func(c *Config, v string) string {
		d, err := time.ParseDuration(v)
		switch {
		case err != nil:
			return "must be a duration like 2s or 500ms"
		case d < 0:
			return "must not be negative"
		case hi != 0 && (d < lo || d > hi):
			return fmt.Sprintf("must be between %s and %s", lo, hi)
		case d < lo:
			return fmt.Sprintf("must be at least %s", lo)
		}
		*field(c) = d
		return ""
	}
}

// secretVar stores a secret verbatim but rejects surrounding whitespace, a
// copy-and-paste slip that would otherwise make every token fail.
func secretVar(field func(*Config) *string) func(*Config, string) string {
	return func(c *Config, v string) string {
		if strings.TrimSpace(v) != v {
			return "must not start or end with whitespace"
		}
		*field(c) = v
		return ""
	}
}

// checkRedisURL validates redis://[user:password@]host[:port][/db] and
// rediss://. Reasons never quote the URL, whose password must not leak.
func checkRedisURL(v string) string {
	const want = "must be a URL like redis://[user:password@]host:port[/db] or rediss://..."
	if v == "" {
		return ""
	}
	u, err := url.Parse(v)
	if err != nil {
		return want
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return "scheme must be redis or rediss"
	}
	if u.Opaque != "" || u.Hostname() == "" {
		return "must have a host: " + strings.TrimPrefix(want, "must be ")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "port must be 1-65535"
		}
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		if _, err := strconv.Atoi(db); err != nil || !isDigits(db) {
			return "database (the path) must be a non-negative integer, e.g. redis://host:6379/0"
		}
	}
	return ""
}

// checkMongoURI checks the scheme and that there is a host. The driver does
// the full parse when connecting; this only catches a wrong variable early.
func checkMongoURI(v string) string {
	if v == "" {
		return ""
	}
	scheme, rest, ok := strings.Cut(v, "://")
	scheme = strings.ToLower(scheme)
	if !ok || (scheme != "mongodb" && scheme != "mongodb+srv") {
		return "scheme must be mongodb:// or mongodb+srv://"
	}
	authority, _, _ := strings.Cut(rest, "/")
	authority, _, _ = strings.Cut(authority, "?")
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		authority = authority[at+1:]
	}
	for _, h := range strings.Split(authority, ",") {
		if h == "" || strings.HasPrefix(h, ":") {
			return "must have a host, e.g. mongodb://user:password@host:27017/db"
		}
	}
	if scheme == "mongodb+srv" && (strings.Contains(authority, ",") || strings.Contains(authority, ":")) {
		return "mongodb+srv:// takes one host name without a port"
	}
	// The driver's own parse, so that what it would refuse at start (a bad
	// port, an unknown option value) is a configuration error here. Not for
	// mongodb+srv://, whose parse looks the host up in DNS.
	if scheme == "mongodb" {
		if _, err := connstring.ParseAndValidate(v); err != nil {
			msg := err.Error()
			if userinfo, _, ok := strings.Cut(strings.SplitN(rest, "/", 2)[0], "@"); ok {
				if _, pw, ok := strings.Cut(userinfo, ":"); ok && pw != "" {
					msg = strings.ReplaceAll(msg, pw, "***")
					if u, err := url.PathUnescape(pw); err == nil && u != "" {
						msg = strings.ReplaceAll(msg, u, "***")
					}
				}
			}
			return "the MongoDB driver refuses it: " + msg
		}
	}
	return ""
}

// hasHashTag reports whether key has a Redis Cluster hash tag: a "{" followed
// later by "}" with at least one byte between the first such pair.
func hasHashTag(key string) bool {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return false
	}
	end := strings.IndexByte(key[open+1:], '}')
	return end > 0
}

// parseOrigins splits a comma-separated origin list. Each entry is "*" or
// scheme://host[:port]; scheme and host are lower-cased, as browsers send them.
func parseOrigins(v string) ([]string, string) {
	var origins []string
	for _, o := range strings.Split(v, ",") {
		o = strings.TrimSpace(o)
		switch o {
		case "":
			continue
		case "*":
			origins = append(origins, o)
			continue
		}
		u, err := url.Parse(o)
		if err != nil || u.Scheme == "" || u.Host == "" || u.Opaque != "" || u.User != nil ||
			u.Path != "" || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(o, "?") || strings.HasSuffix(o, "#") {
			return nil, fmt.Sprintf("%q is not an origin: want scheme://host[:port] without a path, e.g. https://app.example.com, or *", o)
		}
		origins = append(origins, u.Scheme+"://"+strings.ToLower(u.Host))
	}
	return origins, ""
}

// parseList splits a comma-separated list, trimming entries and dropping
// empty ones (as CORS_ORIGINS does); entries must not contain control
// characters.
func parseList(v string) ([]string, string) {
	var list []string
	for e := range strings.SplitSeq(v, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if hasControl(e) {
			return nil, fmt.Sprintf("%q contains a control character", e)
		}
		list = append(list, e)
	}
	return list, ""
}

// parsePrefixes parses a comma-separated list of CIDR prefixes and bare IP
// addresses; a bare address becomes a /32 (IPv4) or /128 (IPv6) prefix.
// Prefixes are stored masked, and IPv4-mapped IPv6 forms as IPv4, because
// that is how Go reports an IPv4 peer.
func parsePrefixes(v string) ([]netip.Prefix, string) {
	var prefixes []netip.Prefix
	for e := range strings.SplitSeq(v, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		p, err := netip.ParsePrefix(e)
		if err != nil {
			a, aerr := netip.ParseAddr(e)
			if aerr != nil || a.Zone() != "" {
				return nil, fmt.Sprintf("%q is not an IP address or CIDR prefix: want e.g. 10.0.0.0/8, 127.0.0.1 or ::1", e)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		prefixes = append(prefixes, p.Masked())
	}
	return prefixes, ""
}

// hasControl reports whether s contains a control character.
func hasControl(s string) bool { return strings.IndexFunc(s, unicode.IsControl) >= 0 }

// isDigits reports whether s is one or more ASCII digits.
func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}
