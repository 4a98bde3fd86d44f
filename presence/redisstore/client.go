package redisstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClientOptions chooses the Redis topology and how to reach its data
// nodes. Exactly one of URL (alone), ClusterAddrs or SentinelAddrs picks
// the topology; with ClusterAddrs or SentinelAddrs, URL (when set) only
// gives the credentials, database and TLS (rediss://) of the data nodes,
// and its host is not used.
type ClientOptions struct {
	URL              string   // redis://[user:password@]host:port[/db] or rediss://
	ClusterAddrs     []string // seeds of a Redis Cluster
	SentinelAddrs    []string // Sentinels watching SentinelMaster
	SentinelMaster   string   // the monitored master's name
	SentinelPassword string   // the Sentinels' own password, if any
	Username         string   // data nodes' ACL user, when URL has none
	Password         string   // data nodes' password, when URL has none
	TLSCAFile        string   // PEM CA bundle; "" uses the system pool; setting it turns TLS on
	TLSCertFile      string   // PEM client certificate; turns TLS on
	TLSKeyFile       string   // PEM client key
}

// NewClient returns a go-redis client for url (redis://[user:password@]host:port[/db],
// rediss:// for TLS) set up as NewUniversalClient sets up a single server.
func NewClient(url string) (*redis.Client, error) {
	opts, err := singleOptions(ClientOptions{URL: url})
	if err != nil {
		return nil, err
	}
	return redis.NewClient(opts), nil
}

// NewUniversalClient returns a go-redis client for the topology o
// describes: a *redis.Client for one server, a *redis.ClusterClient, or a
// Sentinel-backed *redis.Client (NewFailoverClient) that follows the
// master across failovers. All are set up the way presenced needs them:
// context deadlines honoured (the dashboard gives Redis a 150 ms budget),
// short dials, one retry, and a dialer that keeps the pool healthy across
// outages. It does not touch the network.
func NewUniversalClient(o ClientOptions) (redis.UniversalClient, error) {
	switch {
	case len(o.ClusterAddrs) > 0 && len(o.SentinelAddrs) > 0:
		return nil, errors.New("redisstore: both Cluster and Sentinel addresses given; choose one topology")
	case len(o.ClusterAddrs) > 0:
		base, err := urlOptions(o)
		if err != nil {
			return nil, err
		}
		if base.DB != 0 {
			return nil, fmt.Errorf("redisstore: a Redis Cluster has only database 0, not %d", base.DB)
		}
		copts := &redis.ClusterOptions{
			Addrs: o.ClusterAddrs, Username: base.Username, Password: base.Password,
			TLSConfig: base.TLSConfig, ContextTimeoutEnabled: true,
			DialTimeout: 2 * time.Second, MaxRetries: 1,
		}
		copts.Dialer = redisDialer(&redis.Options{Network: "tcp", DialTimeout: copts.DialTimeout, TLSConfig: base.TLSConfig})
		return redis.NewClusterClient(copts), nil
	case len(o.SentinelAddrs) > 0:
		if o.SentinelMaster == "" {
			return nil, errors.New("redisstore: Sentinel addresses given without a master name")
		}
		base, err := urlOptions(o)
		if err != nil {
			return nil, err
		}
		fopts := &redis.FailoverOptions{
			MasterName: o.SentinelMaster, SentinelAddrs: o.SentinelAddrs, SentinelPassword: o.SentinelPassword,
			Username: base.Username, Password: base.Password, DB: base.DB, TLSConfig: base.TLSConfig,
			ContextTimeoutEnabled: true, DialTimeout: 2 * time.Second, MaxRetries: 1,
			// One dial attempt per connection. redisDialer never fails a
			// dial to a data node, so go-redis's dial retries (5, 100 ms
			// apart) only repeat asking every Sentinel for the master
			// when none answered. With Sentinels refusing the client
			// certificate (each Sentinel's command is retried too) a
			// Ping then failed after 1.5 s alone, and after more than
			// the 2 s budget of presenced's probe in the binary, which
			// said "unreachable" instead of "tls failed"; with one
			// attempt, under 0.2 s. presenced retries on its own.
			DialerRetries: 1,
		}
		fopts.Dialer = redisDialer(&redis.Options{Network: "tcp", DialTimeout: fopts.DialTimeout, TLSConfig: base.TLSConfig})
		return redis.NewFailoverClient(fopts), nil
	}
	opts, err := singleOptions(o)
	if err != nil {
		return nil, err
	}
	return redis.NewClient(opts), nil
}

// singleOptions are the options of a single-server client.
func singleOptions(o ClientOptions) (*redis.Options, error) {
	if o.URL == "" {
		return nil, errors.New("redisstore: no Redis URL")
	}
	opts, err := urlOptions(o)
	if err != nil {
		return nil, err
	}
	opts.ContextTimeoutEnabled = true
	opts.DialTimeout = 2 * time.Second
	opts.MaxRetries = 1
	opts.Dialer = redisDialer(opts)
	return opts, nil
}

// urlOptions parses o.URL (when set) and applies the separate credentials
// and TLS files over it. Without a URL the options hold only those.
func urlOptions(o ClientOptions) (*redis.Options, error) {
	opts := &redis.Options{Network: "tcp"}
	if o.URL != "" {
		var err error
		if opts, err = redis.ParseURL(o.URL); err != nil {
			// go-redis quotes nothing secret here, but the URL may be
			// malformed around its password: keep only the cause.
			return nil, fmt.Errorf("redisstore: REDIS_URL: %w", err)
		}
		if len(o.ClusterAddrs) > 0 || len(o.SentinelAddrs) > 0 {
			// Each node's name comes from its own address.
			if opts.TLSConfig != nil {
				opts.TLSConfig.ServerName = ""
			}
		}
	}
	if o.Username != "" {
		opts.Username = o.Username
	}
	if o.Password != "" {
		opts.Password = o.Password
	}
	if o.TLSCAFile != "" || o.TLSCertFile != "" {
		if opts.TLSConfig == nil {
			opts.TLSConfig = &tls.Config{}
		}
		opts.TLSConfig.MinVersion = tls.VersionTLS12
		if o.TLSCAFile != "" {
			pem, err := os.ReadFile(o.TLSCAFile)
			if err != nil {
				return nil, fmt.Errorf("redisstore: TLS CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("redisstore: TLS CA file %s holds no PEM certificate", o.TLSCAFile)
			}
			opts.TLSConfig.RootCAs = pool
		}
		if o.TLSCertFile != "" {
			cert, err := tls.LoadX509KeyPair(o.TLSCertFile, o.TLSKeyFile)
			if err != nil {
				return nil, fmt.Errorf("redisstore: TLS client certificate: %w", err)
			}
			opts.TLSConfig.Certificates = []tls.Certificate{cert}
		}
	}
	return opts, nil
}

// redisDialer is go-redis's own dialer, except that a failed dial reaches
// go-redis as a connection that fails on first use, not as a dial error.
//
// Why: go-redis counts dial errors over a client's whole life (a
// successful dial does not reset the count) and, once they reach
// PoolSize, fails every command at once and probes Redis only once a
// second. After an outage or two, every later Redis restart would then be
// noticed up to a second late, and the count would be exact again only
// after HEARTBEAT_INTERVAL + 1s, not within the one heartbeat DESIGN.md
// promises. A connection that fails on first use is dropped by go-redis
// like any broken one, and the command still returns the dial error.
func redisDialer(opts *redis.Options) func(ctx context.Context, network, addr string) (net.Conn, error) {
	dial := redis.NewDialer(opts)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return failedConn{err: err}, nil
		}
		return c, nil
	}
}

// failedConn is a connection whose dial failed: every read and write
// returns that error.
type failedConn struct{ err error }

func (c failedConn) Read([]byte) (int, error)         { return 0, c.err }
func (c failedConn) Write([]byte) (int, error)        { return 0, c.err }
func (c failedConn) Close() error                     { return nil }
func (c failedConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c failedConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c failedConn) SetDeadline(time.Time) error      { return nil }
func (c failedConn) SetReadDeadline(time.Time) error  { return nil }
func (c failedConn) SetWriteDeadline(time.Time) error { return nil }
