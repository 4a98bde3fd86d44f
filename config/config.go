// Package config reads presenced's configuration from environment variables
// and an optional dotenv file.
//
// Every variable, its default and its meaning are listed by [Vars]; the
// README's configuration table is checked against that list. [Load] stops at
// the first invalid variable and returns an [*Error] naming it.
package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Config is the effective configuration of one presenced process. [Load]
// fills every field, applying the documented default where a variable is
// unset or empty.
type Config struct {
	Port                   int            // PORT: HTTP listen port; 0 picks a free port
	RedisURL               string         // REDIS_URL: "" runs without Redis (single node, in memory)
	RedisClusterAddrs      []string       // REDIS_CLUSTER_ADDRS: seeds of a Redis Cluster; nil: not a cluster
	RedisSentinelAddrs     []string       // REDIS_SENTINEL_ADDRS: Sentinels; nil: no Sentinel
	RedisSentinelMaster    string         // REDIS_SENTINEL_MASTER: the master name the Sentinels monitor
	RedisSentinelPassword  string         // REDIS_SENTINEL_PASSWORD: the Sentinels' own password (secret)
	RedisUsername          string         // REDIS_USERNAME: ACL user of the data nodes, when REDIS_URL has none
	RedisPassword          string         // REDIS_PASSWORD: password of the data nodes, when REDIS_URL has none (secret)
	RedisTLSCAFile         string         // REDIS_TLS_CA_FILE: CA bundle for the servers' certificates; "" uses the system pool
	RedisTLSCertFile       string         // REDIS_TLS_CERT_FILE: client certificate (PEM)
	RedisTLSKeyFile        string         // REDIS_TLS_KEY_FILE: client key (PEM)
	RedisAllowEviction     bool           // REDIS_ALLOW_EVICTION: run even under an allkeys-* maxmemory-policy
	MongoURI               string         // MONGODB_URI: "" uses SQLite under DataDir
	MongoDB                string         // MONGODB_DB: "" lets the store use the URI's database or "presenced"
	UsersCollection        string         // USERS_COLLECTION: the application's users, read-only
	MongoBatchSize         int            // MONGODB_BATCH_SIZE: documents per bulk write / cursor batch
	DataDir                string         // DATA_DIR: SQLite database and other local state
	JWTSecret              string         // JWT_SECRET: HS256 key for user tokens (secret)
	JWKSURL                string         // JWT_JWKS_URL: JWKS endpoint for RS/ES user tokens
	JWTIssuer              string         // JWT_ISSUER: the only accepted "iss"; "" skips the check; required with JWKSURL
	JWTAudience            []string       // JWT_AUDIENCE: a token's "aud" must name one; nil skips the check; required with JWKSURL
	JWTLeeway              time.Duration  // JWT_LEEWAY: clock skew allowed on exp and nbf; 0 allows none
	AdminToken             string         // ADMIN_TOKEN: bearer token for the admin API and panel (secret)
	OnlineUsersKey         string         // ONLINE_USERS_KEY: Redis set of online user IDs
	KeyPrefix              string         // REDIS_KEY_PREFIX: prefix of every other Redis key; holds a {hash tag}; default "{"+OnlineUsersKey+"}"
	PresenceMode           string         // PRESENCE_MODE: "managed" or "external"
	PresenceShards         int            // PRESENCE_SHARDS: hash tags the users are split over (1: one)
	HeartbeatInterval      time.Duration  // HEARTBEAT_INTERVAL: how often a node renews its liveness key
	NodeTTL                time.Duration  // NODE_TTL: a node silent this long is dead; > HeartbeatInterval
	NodeID                 string         // NODE_ID: "" lets the wiring generate hostname-pid-random
	BatchWindow            time.Duration  // PRESENCE_BATCH_WINDOW: presence changes are coalesced this long; 0 flushes at once
	BatchMax               int            // PRESENCE_BATCH_MAX: users per Redis script call
	LastSeenInterval       time.Duration  // LAST_SEEN_INTERVAL: how often last-seen times are written to the data store
	StatsRefresh           time.Duration  // STATS_REFRESH_INTERVAL: how often cached data-store totals are refreshed
	StatsTimezone          *time.Location // STATS_TIMEZONE: the zone whose midnight starts "today" (peak, new users)
	AllowAnonymous         bool           // ALLOW_ANONYMOUS: accept WebSocket connections without a token
	MaxConnsPerIP          int            // MAX_CONNS_PER_IP: 0 means no limit
	ConnectRatePerIP       int            // CONNECT_RATE_PER_IP: new WebSocket connections per second per client address, burst twice that; 0 means no limit
	PingInterval           time.Duration  // WS_PING_INTERVAL: server ping period
	IdleTimeout            time.Duration  // WS_IDLE_TIMEOUT: a connection silent this long is closed; > PingInterval
	MaxMessageBytes        int            // WS_MAX_MESSAGE_BYTES: largest accepted client message
	MaxQueuedBytes         int            // WS_MAX_QUEUED_BYTES: bytes queued for one slow client before it is closed
	PingRate               int            // WS_PING_RATE: client pings (control and {"type":"ping"}) per second per connection
	PingBurst              int            // WS_PING_BURST: client pings allowed in a burst; beyond rate and burst, close 1008
	CORSOrigins            []string       // CORS_ORIGINS: allowed browser origins; "*" allows any, without credentials
	TrustedProxies         []netip.Prefix // TRUSTED_PROXIES: peers whose X-Forwarded-For/Forwarded are believed; nil trusts none
	AdminAuthFailures      int            // ADMIN_AUTH_FAILURES: failed admin authentications per minute per client address before 429
	ReadHeaderTimeout      time.Duration  // HTTP_READ_HEADER_TIMEOUT: time allowed to send a request's headers
	HTTPIdleTimeout        time.Duration  // HTTP_IDLE_TIMEOUT: an idle keep-alive HTTP connection is closed after this
	MaxHeaderBytes         int            // HTTP_MAX_HEADER_BYTES: largest request line and headers
	MaxBodyBytes           int            // HTTP_MAX_BODY_BYTES: largest request body; larger gets 413
	AdminSessionTTL        time.Duration  // ADMIN_SESSION_TTL: how long a panel login lasts
	SocketIOPath           string         // SOCKETIO_PATH: the Socket.IO endpoint's path, "/socket.io/"
	SocketIOPingInterval   time.Duration  // SOCKETIO_PING_INTERVAL: server ping period
	SocketIOPingTimeout    time.Duration  // SOCKETIO_PING_TIMEOUT: unanswered ping closes the session after this
	SocketIOMaxPayload     int            // SOCKETIO_MAX_PAYLOAD: largest polling body or WebSocket message
	SocketIOConnectTimeout time.Duration  // SOCKETIO_CONNECT_TIMEOUT: no CONNECT within this closes the session
	LogFormat              string         // LOG_FORMAT: "text" or "json"
	LogLevel               string         // LOG_LEVEL: "debug", "info", "warn" or "error"
	ShutdownTimeout        time.Duration  // SHUTDOWN_TIMEOUT: graceful stop budget
	APIKey                 string         // API_KEY: the app backend's key for POST /api/presence/status (secret)
	WebhookURL             string         // WEBHOOK_URL: receives online/offline events; "" sends none
	WebhookSecret          string         // WEBHOOK_SECRET: HMAC-SHA256 key of webhook batches (secret)
}

// Error reports one invalid variable. Value is the offending value with
// secrets replaced by "***" (all of JWT_SECRET and ADMIN_TOKEN, the password
// of REDIS_URL and MONGODB_URI), so an Error is always safe to log.
type Error struct {
	Var    string // the variable's name, e.g. "PORT"
	Value  string // the value as given, secrets masked; "" when the default was used
	Reason string // what a valid value looks like
}

// Error returns e.g. `config: PORT="abc": must be a port number 0-65535`.
func (e *Error) Error() string {
	return fmt.Sprintf("config: %s=%q: %s", e.Var, e.Value, e.Reason)
}

// Var documents one configuration variable.
type Var struct {
	Name        string // environment variable name
	Default     string // default as text; "" means unset
	Description string // one line
}

// Vars returns every configuration variable in a stable order: the order in
// which [Load] validates them and in which the README lists them.
func Vars() []Var {
	specs := specs()
	vars := make([]Var, len(specs))
	for i, s := range specs {
		vars[i] = Var{Name: s.name, Default: s.def, Description: s.desc}
	}
	return vars
}

// Load reads the configuration. Each variable is taken from getenv; when
// getenv returns "" it is looked up in the dotenv file at dotenvPath, and when
// that is empty too its default applies. A missing dotenv file (or an empty
// dotenvPath) is fine; a malformed one is a [*FileError] naming the file and
// line. Dotenv syntax (see parseDotenv): $VAR and ${VAR} expand to earlier
// variables of the same file except inside single quotes, so quote secrets
// with '...'.
//
// Load validates variables in [Vars] order and returns the first invalid one
// as an [*Error]; other errors concern the dotenv file.
func Load(getenv func(string) string, dotenvPath string) (Config, error) {
	return LoadDotenv(getenv, Dotenv{Path: dotenvPath})
}

// LoadDotenv is [Load] with the dotenv file's handling spelled out: d
// says whether a missing file is an error and where warnings about
// unknown keys go. Problems with the file itself are a [*FileError].
func LoadDotenv(getenv func(string) string, d Dotenv) (Config, error) {
	dotenv, err := readDotenv(d)
	if err != nil {
		return Config{}, err
	}
	var c Config
	for _, s := range specs() {
		raw := getenv(s.name)
		if raw == "" {
			raw = dotenv[s.name]
		}
		v := raw
		if !s.secret {
			// Stray spaces around a port or URL are typos, not meaning;
			// secrets are used byte for byte and rejected if padded.
			v = strings.TrimSpace(v)
		}
		defaulted := v == ""
		if defaulted {
			v = s.def
		}
		if reason := s.parse(&c, v); reason != "" {
			shown := mask(s, v)
			if defaulted {
				shown = ""
				// A variable without a default fails unset only when
				// another one requires it, which its reason says.
				if s.def != "" {
					reason += fmt.Sprintf("; %s is unset, so its default %q applies: set it", s.name, s.def)
				}
			}
			return Config{}, &Error{Var: s.name, Value: shown, Reason: reason}
		}
	}
	return c, nil
}

// Redacted returns the effective configuration keyed by variable name, for
// logging at startup: JWT_SECRET and ADMIN_TOKEN read "***" when set, and the
// passwords in REDIS_URL and MONGODB_URI are masked.
func (c Config) Redacted() map[string]string {
	out := make(map[string]string)
	for _, s := range specs() {
		out[s.name] = mask(s, s.format(c))
	}
	return out
}

// mask hides the secret part of v for variable s.
func mask(s spec, v string) string {
	switch {
	case v == "":
		return ""
	case s.secret:
		return "***"
	case s.url:
		return maskURLPassword(v)
	}
	return v
}

// maskURLPassword replaces the password of scheme://user:password@host... by
// "***". It works on strings that net/url rejects too, since invalid URLs are
// exactly the ones that end up in error messages; when in doubt it masks more.
func maskURLPassword(raw string) string {
	i := strings.Index(raw, "://")
	if i < 0 {
		if strings.Contains(raw, "@") {
			return "***"
		}
		return raw
	}
	rest := raw[i+3:]
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return raw
	}
	userinfo := rest[:at]
	colon := strings.Index(userinfo, ":")
	if colon < 0 {
		return raw // user name only, no password
	}
	return raw[:i+3] + userinfo[:colon+1] + "***" + rest[at:]
}
