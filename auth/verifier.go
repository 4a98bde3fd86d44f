package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

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
	// defaultLeeway is the clock skew allowed when VerifierOptions.Leeway is nil.
	defaultLeeway = 5 * time.Second
	// maxDateSeconds bounds exp, nbf and iat: beyond it time.Unix overflows
	// and a far-future nbf would wrap into the past.
	maxDateSeconds = 1 << 62
)

// VerifierOptions configures a Verifier. At least one of Secret and JWKSURL
// must be set, and JWKSURL needs Issuer and Audience; every other field has
// a default.
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
	// Issuer, when set, is the one "iss" claim accepted (JWT_ISSUER), on every
	// token, HS256 included. It is required with JWKSURL: a JWKS is often
	// shared by every tenant of an identity provider, and without an issuer
	// and audience check any token the provider signs for anyone would pass,
	// role "admin" included.
	Issuer string
	// Audience, when set, lists the accepted audiences (JWT_AUDIENCE): the
	// token's "aud" claim, a string or an array of strings, must contain at
	// least one of them. Checked on every token; required with JWKSURL, for
	// the same reason as Issuer. Entries must not be empty.
	Audience []string
	// Leeway is the clock skew allowed on exp and nbf (JWT_LEEWAY). Nil means
	// 5 seconds; a pointer so that zero can mean no leeway. Must not be
	// negative.
	Leeway *time.Duration
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
// o.JWKSURL is set, if o.JWKSURL is not an absolute http(s) URL, if o.JWKSURL
// is set without o.Issuer and o.Audience, if an audience is empty or if the
// leeway is negative. It does not fetch the JWKS: Run does, and so does the
// first Verify that needs a key.
func NewVerifier(o VerifierOptions) (*Verifier, error) {
	switch {
	case len(o.Secret) == 0 && o.JWKSURL == "":
		return nil, errors.New("auth: new verifier: need a secret or a JWKS URL")
	case o.JWKSURL != "" && (o.Issuer == "" || len(o.Audience) == 0):
		return nil, errors.New("auth: new verifier: a JWKS URL needs an issuer and an audience, " +
			"else every token the JWKS's keys sign, for any application, is accepted")
	case slices.Contains(o.Audience, ""):
		return nil, errors.New("auth: new verifier: empty audience")
	case o.Leeway != nil && *o.Leeway < 0:
		return nil, fmt.Errorf("auth: new verifier: negative leeway %v", *o.Leeway)
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
	leeway := defaultLeeway
	if o.Leeway != nil {
		leeway = *o.Leeway
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
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(v.now),
	}
	// The library requires the claim once an expected value is set, and
	// WithAudience accepts a token naming any one of the audiences.
	if o.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(o.Issuer))
	}
	if len(o.Audience) > 0 {
		opts = append(opts, jwt.WithAudience(slices.Clone(o.Audience)...))
	}
	v.parser = jwt.NewParser(opts...)
	v.keyFunc = func(t *jwt.Token) (any, error) { return v.key(context.Background(), t) }
	return v, nil
}

// Verify checks token and returns its claims. It refuses a header with
// "crit" and checks the signature, exp (required), nbf (when present), iss
// and aud (when the Verifier expects them) and sub (required: see
// [Claims.UserID]); exp, nbf and iat must be JSON numbers. Claim names are
// matched case-sensitively. Every error wraps ErrUnauthorized. ctx bounds the
// JWKS re-fetch that an unknown kid triggers.
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
	if c.exp == nil { // the parser requires exp; this keeps a library change from panicking here
		return Claims{}, fmt.Errorf("%w: token has no exp", ErrUnauthorized)
	}
	if err := checkSubject(c.sub); err != nil {
		return Claims{}, fmt.Errorf("%w: sub %w", ErrUnauthorized, err)
	}
	// encoding/json copies every string it decodes out of the base64-decoded
	// payload, so c's strings never alias token and need no strings.Clone;
	// TestVerifyClaimsDoNotAliasToken keeps that true.
	return Claims{UserID: c.sub, Role: c.role, ExpiresAt: c.exp.Time}, nil
}

// CheckUserID reports whether id is a user ID a token may carry (see
// [Claims.UserID]); its error reads after "user ID", e.g. "is not valid
// UTF-8". The presence API checks the ids it is asked about with it.
func CheckUserID(id string) error { return checkSubject(id) }

// checkSubject enforces the rules on user IDs (see [Claims.UserID]), for
// Verify and Mint alike. Its errors read after "sub" or "user ID".
func checkSubject(s string) error {
	switch {
	case s == "":
		return errors.New("is missing or empty")
	case len(s) > maxSubjectLen:
		return fmt.Errorf("is longer than %d bytes", maxSubjectLen)
	case !utf8.ValidString(s):
		return errors.New("is not valid UTF-8")
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return errors.New("contains a control character")
	}
	return nil
}

// key returns the verification key for t, whose alg the parser has already
// checked against the allow-list.
func (v *Verifier) key(ctx context.Context, t *jwt.Token) (any, error) {
	// RFC 7515 section 4.1.11: a recipient must reject a token whose crit
	// names an extension it does not understand, and this one understands
	// none (an empty or malformed crit is invalid anyway). Checked here,
	// before any key lookup can trigger a JWKS fetch.
	if _, ok := t.Header["crit"]; ok {
		return nil, errors.New(`header has "crit": no JWS extension is supported`)
	}
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

// tokenClaims holds the claims Verify reads. It decodes them itself, since
// encoding/json matches object keys to struct fields case-insensitively: a
// custom claim "SUB" or "ROLE" after the real one would override it, though
// claim names are case-sensitive (RFC 7519 section 4). Of duplicate names
// the last counts, as RFC 7519 allows.
type tokenClaims struct {
	sub      string
	role     string
	exp, nbf *jwt.NumericDate
	// iss and aud are decoded only when the Verifier expects them: the
	// parser's validator asks for them only then.
	iss, aud json.RawMessage
}

var _ jwt.Claims = (*tokenClaims)(nil)

// UnmarshalJSON decodes the claims set. exp, nbf and iat must be numbers when
// present (the library's NumericDate also takes a string of digits) and sub a
// string whose escapes make valid UTF-8 (encoding/json would silently turn a
// lone surrogate into U+FFFD, so two user IDs could read as one).
func (c *tokenClaims) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	if m == nil {
		return errors.New("claims are not a JSON object")
	}
	var err error
	if raw, ok := m["sub"]; ok {
		if c.sub, err = stringClaim(raw); err != nil {
			return fmt.Errorf("sub %w", err)
		}
	}
	if c.exp, err = dateClaim(m, "exp"); err != nil {
		return err
	}
	if c.nbf, err = dateClaim(m, "nbf"); err != nil {
		return err
	}
	if _, err = dateClaim(m, "iat"); err != nil {
		return err
	}
	c.role = roleClaim(m["role"])
	c.iss, c.aud = m["iss"], m["aud"]
	return nil
}

func (c *tokenClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.exp, nil }
func (c *tokenClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.nbf, nil }
func (c *tokenClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return nil, nil }
func (c *tokenClaims) GetSubject() (string, error)                  { return c.sub, nil }

// GetIssuer returns iss, which must be a string when present.
func (c *tokenClaims) GetIssuer() (string, error) {
	if c.iss == nil {
		return "", nil
	}
	iss, err := stringClaim(c.iss)
	if err != nil {
		return "", fmt.Errorf("iss %w", err)
	}
	return iss, nil
}

// GetAudience returns aud, which must be a string or an array of strings
// when present.
func (c *tokenClaims) GetAudience() (jwt.ClaimStrings, error) {
	if c.aud == nil {
		return nil, nil
	}
	var aud jwt.ClaimStrings
	if err := json.Unmarshal(c.aud, &aud); err != nil {
		return nil, fmt.Errorf("aud is not a string or an array of strings: %w", err)
	}
	return aud, nil
}

// stringClaim decodes raw, which must be a JSON string whose escapes encode
// valid UTF-8. Its errors read after the claim's name.
func stringClaim(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", errors.New("is not a string")
	}
	if !strictUTF8(raw) {
		return "", errors.New("is not valid UTF-8")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("is not a string: %w", err)
	}
	return s, nil
}

// strictUTF8 reports whether the JSON string literal raw (quotes included,
// already known to be well-formed JSON) is valid UTF-8 and has no \u escape
// of an unpaired UTF-16 surrogate, the two things encoding/json replaces by
// U+FFFD instead of refusing.
func strictUTF8(raw []byte) bool {
	if !utf8.Valid(raw) {
		return false
	}
	for i := 1; i < len(raw)-1; i++ {
		if raw[i] != '\\' {
			continue
		}
		i++ // the escaped byte
		if raw[i] != 'u' {
			continue
		}
		r, ok := hex4(raw, i+1)
		if !ok {
			return false
		}
		i += 4
		if !utf16.IsSurrogate(r) {
			continue
		}
		// A high surrogate must be followed at once by a low one.
		if r >= 0xDC00 || i+6 >= len(raw) || raw[i+1] != '\\' || raw[i+2] != 'u' {
			return false
		}
		lo, ok := hex4(raw, i+3)
		if !ok || lo < 0xDC00 || lo > 0xDFFF {
			return false
		}
		i += 6
	}
	return true
}

// hex4 decodes the four hex digits of a \u escape starting at b[i].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[i:i+4]), 16, 16)
	return rune(n), err == nil
}

// dateClaim decodes the NumericDate claim name of m: nil when absent, an
// error unless it is a JSON number within ±2^62 seconds.
func dateClaim(m map[string]json.RawMessage, name string) (*jwt.NumericDate, error) {
	raw, ok := m[name]
	if !ok {
		return nil, nil
	}
	// json.Unmarshal has checked that raw is one JSON value; a number is the
	// only kind that starts with a minus sign or a digit.
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return nil, fmt.Errorf("%s is not a number", name)
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.Abs(f) >= maxDateSeconds {
		return nil, fmt.Errorf("%s is out of range", name)
	}
	sec, frac := math.Modf(f)
	return jwt.NewNumericDate(time.Unix(int64(sec), int64(frac*1e9))), nil
}

// roleClaim decodes the "role" claim. Identity providers put all sorts of
// things there (arrays, objects); anything but a string reads as no role
// rather than making the whole token unreadable.
func roleClaim(raw json.RawMessage) string {
	var s string
	if raw == nil || json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}
