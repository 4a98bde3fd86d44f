package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	// maxTokenLen bounds the work an anonymous client can make Verify do.
	// Real tokens are a few hundred bytes.
	maxTokenLen = 8 << 10
	// maxSubjectLen bounds the user IDs that end up in Redis keys and logs.
	maxSubjectLen = 256
	// refetchMinInterval rate limits the JWKS re-fetches that tokens with an
	// unknown kid trigger, so a flood of forged kids cannot hammer the
	// identity provider.
	refetchMinInterval = 10 * time.Second
	// minSecretLen is the HS256 key size RFC 7518 section 3.2 asks for.
	minSecretLen = 32
)

// VerifierOptions configures a Verifier. At least one of Secret and JWKSURL
// must be set; every other field has a default.
type VerifierOptions struct {
	// Secret is the HS256 key (JWT_SECRET). Empty disables HS256.
	Secret []byte
	// JWKSURL is the http(s) address of a JWKS with RS256 or ES256 (P-256)
	// public keys (JWT_JWKS_URL). Empty disables RS256 and ES256.
	JWKSURL string
	// HTTPClient fetches the JWKS. Nil means a client with a 5 second timeout.
	HTTPClient *http.Client
	// RefreshInterval is how often Run re-fetches the JWKS. Zero means 5
	// minutes. A token with an unknown kid also triggers an immediate
	// re-fetch, at most once per 10 seconds.
	RefreshInterval time.Duration
	// Leeway is the clock skew allowed on exp and nbf. Zero means 5 seconds.
	Leeway time.Duration
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Logger receives JWKS fetch failures and skipped keys. Nil discards.
	Logger *slog.Logger
}

// Verifier checks user JWTs. It is safe for concurrent use; Verify does no
// network I/O except the rate-limited re-fetch for an unknown kid.
type Verifier struct {
	secret   []byte
	hsKey    any // secret, boxed once: returning a []byte as an interface allocates
	jwksURL  string
	client   *http.Client
	refresh  time.Duration
	now      func() time.Time
	log      *slog.Logger
	parser   *jwt.Parser
	keyFunc  jwt.Keyfunc // used when there is no JWKS: needs no context, so no per-call closure
	keys     atomic.Pointer[keySet]
	fetchSem chan struct{} // held while fetching the JWKS; guards lastFetch
	// lastFetch is when the JWKS was last fetched (or tried), by v.now.
	lastFetch time.Time
}

// NewVerifier returns a Verifier for o. It fails if neither o.Secret nor
// o.JWKSURL is set, or if o.JWKSURL is not an absolute http(s) URL. It does not
// fetch the JWKS: Run does, and so does the first Verify that needs a key.
func NewVerifier(o VerifierOptions) (*Verifier, error) {
	if len(o.Secret) == 0 && o.JWKSURL == "" {
		return nil, errors.New("auth: new verifier: need a secret or a JWKS URL")
	}
	v := &Verifier{
		secret:   append([]byte(nil), o.Secret...),
		jwksURL:  o.JWKSURL,
		client:   o.HTTPClient,
		refresh:  o.RefreshInterval,
		now:      o.Now,
		log:      o.Logger,
		fetchSem: make(chan struct{}, 1),
	}
	if v.jwksURL != "" {
		u, err := url.Parse(v.jwksURL)
		if err != nil {
			return nil, fmt.Errorf("auth: new verifier: JWKS URL: %w", err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("auth: new verifier: JWKS URL %q is not an absolute http(s) URL", v.jwksURL)
		}
	}
	if v.client == nil {
		v.client = &http.Client{Timeout: 5 * time.Second}
	}
	if v.refresh <= 0 {
		v.refresh = 5 * time.Minute
	}
	if v.now == nil {
		v.now = time.Now
	}
	v.hsKey = v.secret
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	leeway := o.Leeway
	if leeway <= 0 {
		leeway = 5 * time.Second
	}
	if n := len(v.secret); n > 0 && n < minSecretLen {
		v.log.Warn("auth: JWT secret is shorter than 32 bytes", "bytes", n)
	}

	// The allow-list is what stops alg "none" and the HS256-with-a-public-key
	// confusion: HS256 is only listed when there is a secret to check it with.
	var methods []string
	if len(v.secret) > 0 {
		methods = append(methods, jwt.SigningMethodHS256.Alg())
	}
	if v.jwksURL != "" {
		methods = append(methods, jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg())
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(v.now),
	)
	v.keyFunc = func(t *jwt.Token) (any, error) { return v.key(context.Background(), t) }
	return v, nil
}

// Verify checks token's signature, exp (required), nbf (when present) and sub
// (required, at most 256 bytes) and returns its claims. Every error wraps
// ErrUnauthorized. ctx bounds the JWKS re-fetch that an unknown kid triggers.
func (v *Verifier) Verify(ctx context.Context, token string) (Claims, error) {
	if len(token) > maxTokenLen {
		return Claims{}, fmt.Errorf("%w: token longer than %d bytes", ErrUnauthorized, maxTokenLen)
	}
	keyFunc := v.keyFunc
	if v.jwksURL != "" {
		keyFunc = func(t *jwt.Token) (any, error) { return v.key(ctx, t) }
	}
	var c tokenClaims
	if _, err := v.parser.ParseWithClaims(token, &c, keyFunc); err != nil {
		return Claims{}, fmt.Errorf("%w: %w", ErrUnauthorized, err)
	}
	switch {
	case c.Exp == nil: // the parser requires exp; this keeps a library change from panicking here
		return Claims{}, fmt.Errorf("%w: token has no exp", ErrUnauthorized)
	case c.Sub == "":
		return Claims{}, fmt.Errorf("%w: token has no sub", ErrUnauthorized)
	case len(c.Sub) > maxSubjectLen:
		return Claims{}, fmt.Errorf("%w: sub longer than %d bytes", ErrUnauthorized, maxSubjectLen)
	}
	// encoding/json copies every string it decodes out of the base64-decoded
	// payload, so c's strings never alias token and need no strings.Clone;
	// TestVerifyClaimsDoNotAliasToken keeps that true.
	return Claims{UserID: c.Sub, Role: string(c.Role), ExpiresAt: c.Exp.Time}, nil
}

// key returns the verification key for t, whose alg the parser has already
// checked against the allow-list.
func (v *Verifier) key(ctx context.Context, t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if alg == jwt.SigningMethodHS256.Alg() {
		return v.hsKey, nil
	}
	var kid string
	if k, ok := t.Header["kid"]; ok {
		if kid, ok = k.(string); !ok {
			return nil, errors.New("kid is not a string")
		}
	}
	seen := v.keys.Load()
	if k, err := seen.lookup(alg, kid); err == nil {
		return k, nil
	}
	ks, err := v.refetch(ctx, seen)
	if err != nil {
		return nil, err
	}
	return ks.lookup(alg, kid)
}

// refetch re-fetches the JWKS after a key lookup in seen failed, unless
// another goroutine replaced seen meanwhile or the last fetch was less than
// refetchMinInterval ago.
func (v *Verifier) refetch(ctx context.Context, seen *keySet) (*keySet, error) {
	select {
	case v.fetchSem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-v.fetchSem }()
	if cur := v.keys.Load(); cur != seen {
		return cur, nil
	}
	now := v.now()
	if !v.lastFetch.IsZero() && now.Before(v.lastFetch.Add(refetchMinInterval)) {
		if seen == nil {
			return nil, errors.New("JWKS not loaded yet")
		}
		return seen, nil
	}
	return v.fetchLocked(ctx, now)
}

// fetchLocked fetches the JWKS and installs it; the caller holds fetchSem. On
// failure the previous key set stays in use.
func (v *Verifier) fetchLocked(ctx context.Context, now time.Time) (*keySet, error) {
	v.lastFetch = now
	ks, err := fetchJWKS(ctx, v.client, v.jwksURL, v.log)
	if err != nil {
		v.log.Warn("auth: JWKS fetch failed", "url", v.jwksURL, "err", err)
		return nil, err
	}
	v.keys.Store(ks)
	return ks, nil
}

// Run fetches the JWKS now and then every RefreshInterval (every 10 seconds
// while fetches fail) until ctx is done. Without a JWKS URL it returns at once.
func (v *Verifier) Run(ctx context.Context) {
	if v.jwksURL == "" {
		return
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		next := v.refresh
		if err := v.fetch(ctx); err != nil && next > refetchMinInterval {
			next = refetchMinInterval
		}
		t.Reset(next)
	}
}

// fetch fetches the JWKS unconditionally, waiting for any fetch in progress.
func (v *Verifier) fetch(ctx context.Context) error {
	select {
	case v.fetchSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-v.fetchSem }()
	_, err := v.fetchLocked(ctx, v.now())
	return err
}

// tokenClaims holds only the claims Verify reads, which keeps decoding cheap.
type tokenClaims struct {
	Sub  string           `json:"sub"`
	Exp  *jwt.NumericDate `json:"exp"`
	Nbf  *jwt.NumericDate `json:"nbf"`
	Role roleClaim        `json:"role"`
}

var _ jwt.Claims = (*tokenClaims)(nil)

func (c *tokenClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.Exp, nil }
func (c *tokenClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.Nbf, nil }
func (c *tokenClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return nil, nil }
func (c *tokenClaims) GetIssuer() (string, error)                   { return "", nil }
func (c *tokenClaims) GetSubject() (string, error)                  { return c.Sub, nil }
func (c *tokenClaims) GetAudience() (jwt.ClaimStrings, error)       { return nil, nil }

// roleClaim is the "role" claim. Identity providers put all sorts of things
// there (arrays, objects); anything but a string reads as no role rather than
// making the whole token unreadable.
type roleClaim string

func (r *roleClaim) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*r = roleClaim(s)
	}
	return nil
}
