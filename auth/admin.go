package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"time"
)

// Admin checks admin credentials on HTTP requests: the static admin token
// (ADMIN_TOKEN) or a user JWT whose role claim is "admin". It is safe for
// concurrent use.
type Admin struct {
	// tokenHash is the SHA-256 of the admin token, so comparing fixed-size
	// digests does not leak the token's length; nil when there is no token.
	tokenHash []byte
	verifier  *Verifier
	sessions  *sessions
}

// AdminOptions configures an Admin's panel sessions. The zero value means
// the defaults.
type AdminOptions struct {
	// Secret is mixed into the session signing key with the admin token
	// (JWT_SECRET), so rotating either ends every session.
	Secret []byte
	// SessionTTL is how long a panel session lasts; zero means 12h.
	SessionTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// NewAdmin returns an Admin that accepts token and the admin JWTs that v
// verifies, and issues panel sessions as o says. An empty token is never
// accepted; a nil v disables JWTs.
func NewAdmin(token string, v *Verifier, o AdminOptions) *Admin {
	a := &Admin{verifier: v, sessions: newSessions(token, o.Secret, o.SessionTTL, o.Now)}
	if token != "" {
		h := sha256.Sum256([]byte(token))
		a.tokenHash = h[:]
	}
	return a
}

// Check reports whether r carries admin credentials: "Authorization: Bearer
// <token>" where <token> is the admin token (compared in constant time) or a
// JWT that the Verifier accepts with role "admin"; without an Authorization
// header, a valid panel session cookie (see Login).
func (a *Admin) Check(r *http.Request) bool {
	tok, ok := bearer(r)
	if !ok {
		return a.ByCookie(r)
	}
	return a.token(r.Context(), tok)
}

// token reports whether tok is the admin token or an admin JWT.
func (a *Admin) token(ctx context.Context, tok string) bool {
	if tok == "" {
		return false
	}
	if a.tokenHash != nil {
		h := sha256.Sum256([]byte(tok))
		if subtle.ConstantTimeCompare(h[:], a.tokenHash) == 1 {
			return true
		}
	}
	if a.verifier != nil && looksLikeJWT(tok) {
		c, err := a.verifier.Verify(ctx, tok)
		return err == nil && c.IsAdmin()
	}
	return false
}
