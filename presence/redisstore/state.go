package redisstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/redis/go-redis/v9"
)

// State is the state of presenced's Redis connection, as an operator reads
// it in the log and in server-load's redis.error.
type State string

// The states Classify tells apart. Auth refused and wrong database are
// errors configuration must fix: retrying does not help.
const (
	StateOK            State = "ok"
	StateAuthRefused   State = "auth refused"   // WRONGPASS, NOAUTH, NOPERM, AUTH without a password set
	StateWrongDatabase State = "wrong database" // SELECT of a database the server lacks, or any but 0 on a Cluster
	StateTLSFailed     State = "tls failed"     // handshake or certificate verification failed
	StateUnreachable   State = "unreachable"    // no connection, no answer in time, or the server cannot serve (LOADING, CLUSTERDOWN, MASTERDOWN)
	StateOther         State = "error"          // Redis answered with another error
)

// Classify tells apart why a Redis call failed; nil is StateOK.
func Classify(err error) State {
	if err == nil {
		return StateOK
	}
	var (
		unknownCA  x509.UnknownAuthorityError
		hostname   x509.HostnameError
		invalid    x509.CertificateInvalidError
		verify     *tls.CertificateVerificationError
		record     tls.RecordHeaderError
		alert      tls.AlertError
		redisError redis.Error
	)
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid),
		errors.As(err, &verify), errors.As(err, &record), errors.As(err, &alert):
		return StateTLSFailed
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "tls: "), strings.Contains(msg, "x509: "):
		return StateTLSFailed
	case hasReplyPrefix(msg, "WRONGPASS"), hasReplyPrefix(msg, "NOAUTH"), hasReplyPrefix(msg, "NOPERM"),
		strings.Contains(msg, "ERR AUTH <password> called without any password"),
		strings.Contains(msg, "ERR invalid password"), strings.Contains(msg, "invalid username-password pair"):
		return StateAuthRefused
	case strings.Contains(msg, "ERR DB index is out of range"), strings.Contains(msg, "ERR SELECT is not allowed in cluster mode"),
		strings.Contains(msg, "ERR invalid DB index"):
		return StateWrongDatabase
	case hasReplyPrefix(msg, "LOADING"), hasReplyPrefix(msg, "CLUSTERDOWN"), hasReplyPrefix(msg, "MASTERDOWN"),
		hasReplyPrefix(msg, "TRYAGAIN"), strings.Contains(msg, "all sentinels are unreachable"),
		strings.Contains(msg, "connection pool timeout"):
		return StateUnreachable
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, redis.ErrClosed) || errors.Is(err, net.ErrClosed) {
		return StateUnreachable
	}
	if errors.As(err, &redisError) {
		return StateOther
	}
	return StateUnreachable
}

// hasReplyPrefix reports whether an error message holds a Redis error
// reply starting with code, alone or after a "...: " wrapping prefix.
func hasReplyPrefix(msg, code string) bool {
	return strings.HasPrefix(msg, code) || strings.Contains(msg, ": "+code)
}

// Advice returns one plain sentence for the log about what s means and
// what fixes it; "" for StateOK.
func (s State) Advice() string {
	switch s {
	case StateOK:
		return ""
	case StateAuthRefused:
		return "Redis refused presenced's credentials: check the user and password in REDIS_URL or REDIS_USERNAME/REDIS_PASSWORD (and the server's requirepass/ACL), or REDIS_SENTINEL_PASSWORD for the Sentinels; retrying will not help until that is fixed"
	case StateWrongDatabase:
		return "Redis has no such database: the /N at the end of REDIS_URL is beyond the server's `databases` setting (or not 0 on a Cluster); retrying will not help until that is fixed"
	case StateTLSFailed:
		return "the TLS handshake with Redis failed: check rediss://, REDIS_TLS_CA_FILE (the CA that signed the server's certificate), the server's name in its certificate, and REDIS_TLS_CERT_FILE/REDIS_TLS_KEY_FILE when the server asks for a client certificate"
	case StateUnreachable:
		return "Redis is unreachable (no connection, or no answer in time); retrying"
	}
	return "Redis answered with an error; retrying"
}

// StateError is an error with the State Classify gave it, so that callers
// reporting it (the dashboard) need not know Redis errors.
type StateError struct {
	State State
	Err   error
}

func (e *StateError) Error() string { return e.Err.Error() }
func (e *StateError) Unwrap() error { return e.Err }

// RedisState returns the state's name, e.g. "auth refused".
func (e *StateError) RedisState() string { return string(e.State) }

// classified wraps err (non-nil) with its state.
func classified(op string, err error) error {
	return &StateError{State: Classify(err), Err: fmt.Errorf("redisstore: %s: %w", op, err)}
}
