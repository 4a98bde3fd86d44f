package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
)

// Admin checks admin credentials on HTTP requests: the static admin token
// (ADMIN_TOKEN) or a user JWT whose role claim is "admin". It is safe for
// concurrent use.
type Admin struct {
	// tokenHash is the SHA-256 of the admin token, so comparing fixed-size
	// digests does not leak the token's length; nil when there is no token.
	tokenHash []byte
	verifier  *Verifier
}

// NewAdmin returns an Admin that accepts token and the admin JWTs that v
// verifies. An empty token is never accepted; a nil v disables JWTs.
func NewAdmin(token string, v *Verifier) *Admin {
	a := &Admin{verifier: v}
	if token != "" {
		h := sha256.Sum256([]byte(token))
		a.tokenHash = h[:]
	}
	return a
}

// Check reports whether r carries admin credentials: "Authorization: Bearer
// <token>" where <token> is the admin token (compared in constant time) or a
// JWT that the Verifier accepts with role "admin". Further credentials, such
// as the admin panel's session cookie, belong here too, so that callers keep
// calling Check alone.
func (a *Admin) Check(r *http.Request) bool {
	tok, ok := bearer(r)
	if !ok {
		return false
	}
	if a.tokenHash != nil {
		h := sha256.Sum256([]byte(tok))
		if subtle.ConstantTimeCompare(h[:], a.tokenHash) == 1 {
			return true
		}
	}
	if a.verifier != nil && looksLikeJWT(tok) {
		c, err := a.verifier.Verify(r.Context(), tok)
		return err == nil && c.IsAdmin()
	}
	return false
}
