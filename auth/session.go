package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"sync"
	"time"
)

// SessionCookie is the name of the admin panel's session cookie.
const SessionCookie = "presenced_admin"

// DefaultSessionTTL is how long an admin session lasts when
// AdminOptions.SessionTTL is zero.
const DefaultSessionTTL = 12 * time.Hour

// sessions issues and checks the admin panel's session cookies: an expiry
// and a random id, signed with HMAC-SHA256 under a key derived from the
// admin token and the JWT secret, so that rotating either ends every
// session. Logged-out ids are remembered until they would have expired.
type sessions struct {
	key []byte
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	revoked map[[16]byte]time.Time // id -> expiry
}

func newSessions(token string, secret []byte, ttl time.Duration, now func() time.Time) *sessions {
	if ttl <= 0 {
		ttl = DefaultSessionTTL
	}
	if now == nil {
		now = time.Now
	}
	h := sha256.New()
	h.Write([]byte("presenced admin session v1\x00"))
	h.Write([]byte(token))
	h.Write([]byte{0})
	h.Write(secret)
	return &sessions{key: h.Sum(nil), ttl: ttl, now: now, revoked: make(map[[16]byte]time.Time)}
}

// issue returns a new cookie value and its expiry.
func (s *sessions) issue() (string, time.Time) {
	var payload [24]byte
	exp := s.now().Add(s.ttl)
	binary.BigEndian.PutUint64(payload[:8], uint64(exp.Unix()))
	_, _ = rand.Read(payload[8:])
	return base64.RawURLEncoding.EncodeToString(append(payload[:], s.mac(payload[:])...)), exp
}

func (s *sessions) mac(payload []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write(payload)
	return m.Sum(nil)
}

// parse checks a cookie value's signature and expiry and returns its id.
func (s *sessions) parse(value string) ([16]byte, time.Time, bool) {
	var id [16]byte
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(raw) != 24+sha256.Size {
		return id, time.Time{}, false
	}
	if subtle.ConstantTimeCompare(raw[24:], s.mac(raw[:24])) != 1 {
		return id, time.Time{}, false
	}
	exp := time.Unix(int64(binary.BigEndian.Uint64(raw[:8])), 0)
	if !s.now().Before(exp) {
		return id, time.Time{}, false
	}
	copy(id[:], raw[8:24])
	return id, exp, true
}

func (s *sessions) valid(value string) bool {
	id, _, ok := s.parse(value)
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, revoked := s.revoked[id]
	return !revoked
}

func (s *sessions) revoke(value string) {
	id, exp, ok := s.parse(value)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for k, e := range s.revoked { // forget ids that have expired anyway
		if !now.Before(e) {
			delete(s.revoked, k)
		}
	}
	s.revoked[id] = exp
}

// Login checks token as admin credentials (the admin token, or an admin
// JWT) and, if they are, returns a session cookie value and its expiry.
func (a *Admin) Login(ctx context.Context, token string) (string, time.Time, bool) {
	if !a.token(ctx, token) {
		return "", time.Time{}, false
	}
	v, exp := a.sessions.issue()
	return v, exp, true
}

// Logout ends the session r's cookie names, if any. Sessions are
// remembered per process: with several nodes, a logged-out cookie stays
// valid on the others until it expires or the admin token rotates.
func (a *Admin) Logout(r *http.Request) {
	if c, err := r.Cookie(SessionCookie); err == nil {
		a.sessions.revoke(c.Value)
	}
}

// ByCookie reports whether r carries a valid session cookie (and no
// other credentials were needed).
func (a *Admin) ByCookie(r *http.Request) bool {
	c, err := r.Cookie(SessionCookie)
	return err == nil && a.sessions.valid(c.Value)
}

// SessionTTL returns how long a session lasts.
func (a *Admin) SessionTTL() time.Duration { return a.sessions.ttl }
