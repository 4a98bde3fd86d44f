package redisstore

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// NewClient returns a go-redis client for url (redis://[user:password@]host:port[/db],
// rediss:// for TLS) set up the way presenced needs it: context deadlines
// honoured (the dashboard gives Redis a 150 ms budget), short dials, one
// retry, and a dialer that keeps the pool healthy across outages.
func NewClient(url string) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	opts.ContextTimeoutEnabled = true
	opts.DialTimeout = 2 * time.Second
	opts.MaxRetries = 1
	opts.Dialer = redisDialer(opts)
	return redis.NewClient(opts), nil
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
