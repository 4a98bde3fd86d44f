// Package auth verifies user tokens for the WebSocket gateway and admin
// credentials for the dashboard API.
//
// User tokens are JWTs: HS256 signed with a shared secret (JWT_SECRET), or
// RS256 / ES256 signed by an identity provider whose public keys are published
// as a JWKS (JWT_JWKS_URL), in which case the issuer (JWT_ISSUER) and audience
// (JWT_AUDIENCE) are required and checked. Admins present either the static
// admin token or a JWT whose role claim is "admin".
package auth

import (
	"errors"
	"time"
)

// ErrUnauthorized is wrapped by every verification failure, so callers can map
// any of them to 401 with errors.Is.
var ErrUnauthorized = errors.New("auth: unauthorized")

// AdminRole is the value of the "role" claim that makes a token an admin's.
const AdminRole = "admin"

// Claims are the verified facts a token carries. The strings never share
// memory with the token, so callers may keep them for a connection's lifetime.
type Claims struct {
	UserID    string    // the "sub" claim: 1-256 bytes of valid UTF-8 without control characters (unicode.IsControl)
	Role      string    // the "role" claim when it is a string, otherwise ""
	ExpiresAt time.Time // the "exp" claim; always set, since exp is required
}

// IsAdmin reports whether the token's role claim is "admin".
func (c Claims) IsAdmin() bool { return c.Role == AdminRole }
