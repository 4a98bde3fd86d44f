package auth

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/golang-jwt/jwt/v5"
)

func TestNewVerifierErrors(t *testing.T) {
	t.Parallel()
	for _, o := range []VerifierOptions{
		{},
		{JWKSURL: "ftp://example.com/jwks", Issuer: testIssuer, Audience: testAudience},
		{JWKSURL: "/jwks.json", Issuer: testIssuer, Audience: testAudience},
		{JWKSURL: "https://", Issuer: testIssuer, Audience: testAudience},
		{JWKSURL: "http://[::1", Issuer: testIssuer, Audience: testAudience},
		// A JWKS is often shared by every tenant of an identity provider:
		// without iss and aud checks it would vouch for all their tokens.
		{JWKSURL: "https://idp.example.com/jwks"},
		{JWKSURL: "https://idp.example.com/jwks", Issuer: testIssuer},
		{JWKSURL: "https://idp.example.com/jwks", Audience: testAudience},
		{JWKSURL: "https://idp.example.com/jwks", Issuer: testIssuer, Audience: []string{}},
		{Secret: testSecret, JWKSURL: "https://idp.example.com/jwks", Audience: testAudience},
		{Secret: testSecret, Audience: []string{"a", ""}},
		{Secret: testSecret, Leeway: new(-time.Second)},
	} {
		if _, err := NewVerifier(o); err == nil || !strings.HasPrefix(err.Error(), "auth: ") {
			t.Errorf("NewVerifier(%+v) error = %v, want an auth: error", o, err)
		}
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	k := testKeys()
	srv := newJWKSServer(t, rsaJWK(k.rsa1, "r1"), ecJWK(t, k.ec1, "e1"))
	hs := mustVerifier(t, VerifierOptions{Secret: testSecret})
	jwks := mustVerifier(t, VerifierOptions{JWKSURL: srv.URL, Issuer: testIssuer, Audience: testAudience})
	both := mustVerifier(t, VerifierOptions{Secret: testSecret, JWKSURL: srv.URL, Issuer: testIssuer, Audience: testAudience})

	with := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := claims(testNow)
		edit(c)
		return c
	}
	pubPEM, err := x509.MarshalPKIXPublicKey(&k.rsa1.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubPEM})
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", claims(testNow))

	tests := []struct {
		name     string
		v        *Verifier
		token    string
		wantErr  bool
		wantRole string
	}{
		{name: "HS256 good", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, "", claims(testNow))},
		{name: "HS256 admin", v: hs, wantRole: "admin",
			token: sign(t, jwt.SigningMethodHS256, testSecret, "", with(func(c jwt.MapClaims) { c["role"] = "admin" }))},
		{name: "HS256 on verifier with both", v: both, token: sign(t, jwt.SigningMethodHS256, testSecret, "", claims(testNow))},
		{name: "wrong secret", v: hs, wantErr: true,
			token: sign(t, jwt.SigningMethodHS256, []byte("another secret, 32 bytes long!!!"), "", claims(testNow))},
		{name: "expired", v: hs, wantErr: true,
			token: sign(t, jwt.SigningMethodHS256, testSecret, "", with(func(c jwt.MapClaims) { c["exp"] = testNow.Add(-time.Minute).Unix() }))},
		{name: "expired within leeway", v: hs,
			token: sign(t, jwt.SigningMethodHS256, testSecret, "", with(func(c jwt.MapClaims) { c["exp"] = testNow.Add(-2 * time.Second).Unix() }))},
		{name: "exp missing", v: hs, wantErr: true,
			token: sign(t, jwt.SigningMethodHS256, testSecret, "", with(func(c jwt.MapClaims) { delete(c, "exp") }))},
		{name: "exp not a number", v: hs, wantErr: true,
			token: sign(t, jwt.SigningMethodHS256, testSecret, "", with(func(c jwt.MapClaims) { c["exp"] = "tomorrow" }))},
		{name: "nbf in future", v: hs, wantErr: true,
			token: sign(t, jwt.SigningMethodHS256, testSecret, "", with(func(c jwt.MapClaims) { c["nbf"] = testNow.Add(time.Minute).Unix() }))},
		{name: "nbf within leeway", v: hs,
			token: sign(t, jwt.SigningMethodHS256, testSecret, "", with(func(c jwt.MapClaims) { c["nbf"] = testNow.Add(2 * time.Second).Unix() }))},
		{name: "missing sub", v: hs, wantErr: true,
			token: sign(t, jwt.SigningMethodHS256, testSecret, "", with(func(c jwt.MapClaims) { delete(c, "sub") }))},
		{name: "empty sub", v: hs, wantErr: true,
			token: sign(t, jwt.SigningMethodHS256, testSecret, "", with(func(c jwt.MapClaims) { c["sub"] = "" }))},
		{name: "sub not a string", v: hs, wantErr: true,
			token: sign(t, jwt.SigningMethodHS256, testSecret, "", with(func(c jwt.MapClaims) { c["sub"] = 42 }))},
		{name: "sub of 256 bytes", v: hs,
			token: sign(t, jwt.SigningMethodHS256, testSecret, "", with(func(c jwt.MapClaims) { c["sub"] = strings.Repeat("x", 256) }))},
		{name: "sub of 257 bytes", v: hs, wantErr: true,
			token: sign(t, jwt.SigningMethodHS256, testSecret, "", with(func(c jwt.MapClaims) { c["sub"] = strings.Repeat("x", 257) }))},
		{name: "role not a string", v: hs, wantRole: "",
			token: sign(t, jwt.SigningMethodHS256, testSecret, "", with(func(c jwt.MapClaims) { c["role"] = []string{"admin"} }))},
		{name: "alg none", v: hs, wantErr: true, token: none},
		{name: "alg none on JWKS verifier", v: both, wantErr: true, token: none},
		{name: "HS384 with the secret", v: hs, wantErr: true,
			token: sign(t, jwt.SigningMethodHS384, testSecret, "", claims(testNow))},
		{name: "HS256 signed with RSA public key, JWKS only", v: jwks, wantErr: true,
			token: sign(t, jwt.SigningMethodHS256, pubPEM, "r1", claims(testNow))},
		{name: "HS256 signed with RSA public key, both", v: both, wantErr: true,
			token: sign(t, jwt.SigningMethodHS256, pubPEM, "r1", claims(testNow))},
		{name: "HS256 on JWKS-only verifier", v: jwks, wantErr: true,
			token: sign(t, jwt.SigningMethodHS256, testSecret, "", claims(testNow))},
		{name: "RS256 good", v: jwks, token: sign(t, jwt.SigningMethodRS256, k.rsa1, "r1", claims(testNow))},
		{name: "RS256 without kid, one RSA key", v: jwks, token: sign(t, jwt.SigningMethodRS256, k.rsa1, "", claims(testNow))},
		{name: "RS256 on HS-only verifier", v: hs, wantErr: true,
			token: sign(t, jwt.SigningMethodRS256, k.rsa1, "r1", claims(testNow))},
		{name: "RS256 wrong key, known kid", v: jwks, wantErr: true,
			token: sign(t, jwt.SigningMethodRS256, k.rsa2, "r1", claims(testNow))},
		{name: "RS256 expired", v: jwks, wantErr: true,
			token: sign(t, jwt.SigningMethodRS256, k.rsa1, "r1", with(func(c jwt.MapClaims) { c["exp"] = testNow.Add(-time.Hour).Unix() }))},
		{name: "RS512", v: jwks, wantErr: true, token: sign(t, jwt.SigningMethodRS512, k.rsa1, "r1", claims(testNow))},
		{name: "PS256", v: jwks, wantErr: true, token: sign(t, jwt.SigningMethodPS256, k.rsa1, "r1", claims(testNow))},
		{name: "ES256 good", v: jwks, token: sign(t, jwt.SigningMethodES256, k.ec1, "e1", claims(testNow))},
		{name: "ES256 without kid, one EC key", v: jwks, token: sign(t, jwt.SigningMethodES256, k.ec1, "", claims(testNow))},
		{name: "ES256 wrong key", v: jwks, wantErr: true, token: sign(t, jwt.SigningMethodES256, k.ec2, "e1", claims(testNow))},
		{name: "ES256 naming an RSA kid", v: jwks, wantErr: true,
			token: sign(t, jwt.SigningMethodES256, k.ec1, "r1", claims(testNow))},
		{name: "kid not a string", v: jwks, wantErr: true, token: func() string {
			tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims(testNow))
			tok.Header["kid"] = 7
			s, err := tok.SignedString(k.rsa1)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}()},
		{name: "empty", v: hs, wantErr: true, token: ""},
		{name: "garbage", v: both, wantErr: true, token: "a.b.c"},
		{name: "too long", v: hs, wantErr: true, token: strings.Repeat("a", maxTokenLen+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.v.Verify(context.Background(), tt.token)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Verify succeeded with %+v, want an error", c)
				}
				if !errors.Is(err, ErrUnauthorized) {
					t.Fatalf("Verify error %v does not wrap ErrUnauthorized", err)
				}
				if c != (Claims{}) {
					t.Errorf("Verify returned claims %+v with an error", c)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.UserID == "" || c.Role != tt.wantRole || c.ExpiresAt.IsZero() {
				t.Errorf("Verify = %+v, want a user, role %q and an expiry", c, tt.wantRole)
			}
		})
	}
}

// verifyCase is one token for one Verifier; the tests below differ in data.
type verifyCase struct {
	name     string
	v        *Verifier
	token    string
	wantErr  bool
	wantUser string // checked when not ""
	wantRole string
}

func runVerifyCases(t *testing.T, tests []verifyCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.v.Verify(context.Background(), tt.token)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Verify succeeded with %+q, want an error", c)
				}
				if !errors.Is(err, ErrUnauthorized) {
					t.Fatalf("Verify error %v does not wrap ErrUnauthorized", err)
				}
				if c != (Claims{}) {
					t.Errorf("Verify returned claims %+v with an error", c)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if (tt.wantUser != "" && c.UserID != tt.wantUser) || c.UserID == "" || c.Role != tt.wantRole || c.ExpiresAt.IsZero() {
				t.Errorf("Verify = %+q, want user %q, role %q and an expiry", c, tt.wantUser, tt.wantRole)
			}
		})
	}
}

// rawClaims is a payload for signRaw: the usual claims followed by extra,
// which is "" or starts with a comma.
func rawClaims(extra string) string {
	return fmt.Sprintf(`{"iat":%d,"exp":%d%s}`, testNow.Unix(), testNow.Add(time.Hour).Unix(), extra)
}

const hsHeader = `{"alg":"HS256","typ":"JWT"}`

func TestVerifyCrit(t *testing.T) {
	t.Parallel()
	k := testKeys()
	srv := newJWKSServer(t, rsaJWK(k.rsa1, "r1"))
	hs := mustVerifier(t, VerifierOptions{Secret: testSecret})
	jwks := mustVerifier(t, VerifierOptions{JWKSURL: srv.URL, Issuer: testIssuer, Audience: testAudience})
	withCrit := func(method jwt.SigningMethod, key any, crit any) string {
		tok := jwt.NewWithClaims(method, claims(testNow))
		tok.Header["crit"] = crit
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	runVerifyCases(t, []verifyCase{
		{name: "no crit", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, "", claims(testNow))},
		{name: "crit naming a claim", v: hs, wantErr: true, token: withCrit(jwt.SigningMethodHS256, testSecret, []string{"exp"})},
		{name: "crit b64 (RFC 7797)", v: hs, wantErr: true,
			token: signRaw(t, testSecret, `{"alg":"HS256","b64":false,"crit":["b64"]}`, rawClaims(`,"sub":"u1"`))},
		{name: "empty crit", v: hs, wantErr: true, token: withCrit(jwt.SigningMethodHS256, testSecret, []string{})},
		{name: "crit not an array", v: hs, wantErr: true, token: withCrit(jwt.SigningMethodHS256, testSecret, "exp")},
		{name: "crit null", v: hs, wantErr: true, token: withCrit(jwt.SigningMethodHS256, testSecret, nil)},
		{name: "crit on RS256", v: jwks, wantErr: true, token: withCrit(jwt.SigningMethodRS256, k.rsa1, []string{"exp"})},
		// Header names are case-sensitive: "CRIT" is some other header.
		{name: "CRIT is not crit", v: hs, token: signRaw(t, testSecret, `{"alg":"HS256","CRIT":["exp"]}`, rawClaims(`,"sub":"u1"`))},
	})
	if got := srv.fetches.Load(); got != 0 {
		t.Errorf("a token with crit made %d JWKS fetches, want 0", got)
	}
}

func TestVerifyNumericDates(t *testing.T) {
	t.Parallel()
	hs := mustVerifier(t, VerifierOptions{Secret: testSecret})
	exp, past := testNow.Add(time.Hour).Unix(), testNow.Add(-time.Hour).Unix()
	tok := func(payload string, args ...any) string {
		return signRaw(t, testSecret, hsHeader, fmt.Sprintf(payload, args...))
	}
	runVerifyCases(t, []verifyCase{
		{name: "integers", v: hs, token: tok(`{"sub":"u1","exp":%d,"nbf":%d,"iat":%d}`, exp, past, past)},
		{name: "fractions", v: hs, token: tok(`{"sub":"u1","exp":%d.5,"nbf":%d.25,"iat":%d.75}`, exp, past, past)},
		{name: "exponent", v: hs, token: tok(`{"sub":"u1","exp":1.8e9}`)},
		{name: "iat in the future is not checked", v: hs, token: tok(`{"sub":"u1","exp":%d,"iat":%d}`, exp, exp)},
		// golang-jwt's NumericDate decodes through json.Number, which takes
		// a string of digits too: Verify must not.
		{name: "exp a string of digits", v: hs, wantErr: true, token: tok(`{"sub":"u1","exp":"%d"}`, exp)},
		{name: "exp a word", v: hs, wantErr: true, token: tok(`{"sub":"u1","exp":"tomorrow"}`)},
		{name: "exp null", v: hs, wantErr: true, token: tok(`{"sub":"u1","exp":null}`)},
		{name: "exp true", v: hs, wantErr: true, token: tok(`{"sub":"u1","exp":true}`)},
		{name: "exp an array", v: hs, wantErr: true, token: tok(`{"sub":"u1","exp":[%d]}`, exp)},
		{name: "exp an object", v: hs, wantErr: true, token: tok(`{"sub":"u1","exp":{"t":%d}}`, exp)},
		{name: "exp beyond int64 seconds", v: hs, wantErr: true, token: tok(`{"sub":"u1","exp":1e300}`)},
		{name: "exp beyond float64", v: hs, wantErr: true, token: tok(`{"sub":"u1","exp":1e400}`)},
		{name: "exp at 2^62", v: hs, wantErr: true, token: tok(`{"sub":"u1","exp":4611686018427387904}`)},
		{name: "exp Exp only", v: hs, wantErr: true, token: tok(`{"sub":"u1","Exp":%d}`, exp)},
		{name: "nbf a string of digits", v: hs, wantErr: true, token: tok(`{"sub":"u1","exp":%d,"nbf":"%d"}`, exp, past)},
		{name: "nbf null", v: hs, wantErr: true, token: tok(`{"sub":"u1","exp":%d,"nbf":null}`, exp)},
		// A far-future nbf must not wrap around into the past.
		{name: "nbf near int64 max", v: hs, wantErr: true, token: tok(`{"sub":"u1","exp":%d,"nbf":9223372036854775807}`, exp)},
		{name: "iat a string of digits", v: hs, wantErr: true, token: tok(`{"sub":"u1","exp":%d,"iat":"%d"}`, exp, past)},
		{name: "iat null", v: hs, wantErr: true, token: tok(`{"sub":"u1","exp":%d,"iat":null}`, exp)},
		{name: "claims not an object", v: hs, wantErr: true, token: tok(`[%d]`, exp)},
		{name: "claims null", v: hs, wantErr: true, token: tok(`null`)},
	})
}

func TestVerifySubject(t *testing.T) {
	t.Parallel()
	hs := mustVerifier(t, VerifierOptions{Secret: testSecret})
	// sub is spliced into the payload as written: a JSON string literal with
	// its escapes, or raw bytes json.Marshal would not produce.
	tok := func(sub string) string { return signRaw(t, testSecret, hsHeader, rawClaims(`,"sub":`+sub)) }
	tests := []verifyCase{
		{name: "ascii", token: tok(`"user-42"`), wantUser: "user-42"},
		{name: "space inside", token: tok(`"Ada Lovelace"`), wantUser: "Ada Lovelace"},
		{name: "one byte", token: tok(`"x"`), wantUser: "x"},
		{name: "256 bytes", token: tok(`"` + strings.Repeat("x", 256) + `"`), wantUser: strings.Repeat("x", 256)},
		{name: "256 bytes of 2-byte runes", token: tok(`"` + strings.Repeat("é", 128) + `"`), wantUser: strings.Repeat("é", 128)},
		{name: "257 bytes", wantErr: true, token: tok(`"` + strings.Repeat("x", 257) + `"`)},
		{name: "258 bytes of 2-byte runes", wantErr: true, token: tok(`"` + strings.Repeat("é", 129) + `"`)},
		{name: "257 bytes once unescaped", wantErr: true, token: tok(`"` + strings.Repeat("x", 256) + `\u0041"`)},
		{name: "raw UTF-8", token: tok(`"ユーザー"`), wantUser: "ユーザー"},
		{name: "escaped BMP rune", token: tok(`"caf\u00e9"`), wantUser: "café"},
		{name: "escaped surrogate pair", token: tok(`"\ud83d\ude00"`), wantUser: "😀"},
		{name: "escaped backslash before u", token: tok(`"a\\ud800"`), wantUser: `a\ud800`},
		{name: "literal U+FFFD", token: tok(`"a\ufffd"`), wantUser: "a\ufffd"},
		{name: "format character is not a control character", token: tok(`"a\u200bb"`), wantUser: "a\u200bb"},
		{name: "missing", wantErr: true, token: signRaw(t, testSecret, hsHeader, rawClaims(""))},
		{name: "empty", wantErr: true, token: tok(`""`)},
		{name: "null", wantErr: true, token: tok(`null`)},
		{name: "number", wantErr: true, token: tok(`42`)},
		{name: "array", wantErr: true, token: tok(`["u1"]`)},
		{name: "invalid UTF-8 byte", wantErr: true, token: tok("\"u\xff\"")},
		{name: "overlong UTF-8", wantErr: true, token: tok("\"u\xc0\xaf\"")},
		{name: "lone high surrogate", wantErr: true, token: tok(`"u\ud800"`)},
		{name: "lone low surrogate", wantErr: true, token: tok(`"u\udc00"`)},
		{name: "high surrogate then letter", wantErr: true, token: tok(`"\ud83dx"`)},
		{name: "high surrogate then BMP escape", wantErr: true, token: tok(`"\ud83d\u0041"`)},
		{name: "two high surrogates", wantErr: true, token: tok(`"\ud83d\ud83d"`)},
		{name: "NUL", wantErr: true, token: tok(`"u\u00001"`)},
		{name: "newline", wantErr: true, token: tok(`"u\n1"`)},
		{name: "tab", wantErr: true, token: tok(`"u\t1"`)},
		{name: "DEL", wantErr: true, token: tok("\"u\x7f1\"")},
		{name: "C1 control", wantErr: true, token: tok(`"u\u00851"`)},
		// Claim names are case-sensitive; encoding/json alone would read
		// "SUB" or "Sub" into the sub field.
		{name: "SUB only", wantErr: true, token: signRaw(t, testSecret, hsHeader, rawClaims(`,"SUB":"u1"`))},
		{name: "Sub after sub", token: tok(`"u1","Sub":"mallory"`), wantUser: "u1"},
		{name: "duplicate sub: the last counts", token: tok(`"mallory","sub":"u1"`), wantUser: "u1"},
	}
	for i := range tests {
		tests[i].v = hs
	}
	runVerifyCases(t, tests)
}

func TestVerifyRole(t *testing.T) {
	t.Parallel()
	hs := mustVerifier(t, VerifierOptions{Secret: testSecret})
	tok := func(extra string) string { return signRaw(t, testSecret, hsHeader, rawClaims(`,"sub":"u1"`+extra)) }
	runVerifyCases(t, []verifyCase{
		{name: "admin", v: hs, token: tok(`,"role":"admin"`), wantRole: "admin"},
		{name: "ROLE after role", v: hs, token: tok(`,"role":"user","ROLE":"admin"`), wantRole: "user"},
		{name: "Role only", v: hs, token: tok(`,"Role":"admin"`)},
		{name: "role an array", v: hs, token: tok(`,"role":["admin"]`)},
		{name: "role an object", v: hs, token: tok(`,"role":{"name":"admin"}`)},
	})
}

func TestVerifyIssuerAudience(t *testing.T) {
	t.Parallel()
	k := testKeys()
	srv := newJWKSServer(t, rsaJWK(k.rsa1, "r1"))
	hs := mustVerifier(t, VerifierOptions{Secret: testSecret})
	hsIss := mustVerifier(t, VerifierOptions{Secret: testSecret, Issuer: testIssuer})
	hsAud := mustVerifier(t, VerifierOptions{Secret: testSecret, Audience: testAudience})
	both := mustVerifier(t, VerifierOptions{Secret: testSecret, JWKSURL: srv.URL, Issuer: testIssuer, Audience: testAudience})
	jwks := mustVerifier(t, VerifierOptions{JWKSURL: srv.URL, Issuer: testIssuer, Audience: testAudience})

	with := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := claims(testNow)
		edit(c)
		return c
	}
	hsTok := func(edit func(jwt.MapClaims)) string {
		return sign(t, jwt.SigningMethodHS256, testSecret, "", with(edit))
	}
	rsTok := func(edit func(jwt.MapClaims)) string {
		return sign(t, jwt.SigningMethodRS256, k.rsa1, "r1", with(edit))
	}
	raw := func(extra string) string { return signRaw(t, testSecret, hsHeader, rawClaims(`,"sub":"u1"`+extra)) }
	keep := func(jwt.MapClaims) {}
	admin := func(c jwt.MapClaims) { c["role"] = "admin" }

	runVerifyCases(t, []verifyCase{
		{name: "RS256 right iss and aud", v: jwks, token: rsTok(keep)},
		{name: "RS256 second audience", v: jwks, token: rsTok(func(c jwt.MapClaims) { c["aud"] = testAudience[1] })},
		{name: "RS256 aud array with one of ours", v: jwks, token: rsTok(func(c jwt.MapClaims) { c["aud"] = []string{"someone-else", testAudience[0]} })},
		// The issue: a provider's JWKS signs every tenant's tokens.
		{name: "RS256 admin token of another tenant", v: jwks, wantErr: true, token: rsTok(func(c jwt.MapClaims) {
			admin(c)
			c["iss"], c["aud"] = "https://idp.example.com/other-tenant/", "other-app"
		})},
		{name: "RS256 admin token for another app of the same issuer", v: jwks, wantErr: true,
			token: rsTok(func(c jwt.MapClaims) { admin(c); c["aud"] = "other-app" })},
		{name: "RS256 our audience, another issuer", v: jwks, wantErr: true,
			token: rsTok(func(c jwt.MapClaims) { c["iss"] = "https://evil.example.com/" })},
		{name: "RS256 no iss", v: jwks, wantErr: true, token: rsTok(func(c jwt.MapClaims) { delete(c, "iss") })},
		{name: "RS256 no aud", v: jwks, wantErr: true, token: rsTok(func(c jwt.MapClaims) { delete(c, "aud") })},
		{name: "RS256 empty aud array", v: jwks, wantErr: true, token: rsTok(func(c jwt.MapClaims) { c["aud"] = []string{} })},
		{name: "RS256 aud array without ours", v: jwks, wantErr: true, token: rsTok(func(c jwt.MapClaims) { c["aud"] = []string{"a", "b"} })},
		{name: "RS256 iss differs by a slash", v: jwks, wantErr: true,
			token: rsTok(func(c jwt.MapClaims) { c["iss"] = strings.TrimSuffix(testIssuer, "/") })},
		{name: "RS256 iss differs in case", v: jwks, wantErr: true,
			token: rsTok(func(c jwt.MapClaims) { c["iss"] = strings.ToUpper(testIssuer) })},
		// Every token is checked, HS256 included.
		{name: "HS256 on both, right iss and aud", v: both, token: hsTok(keep)},
		{name: "HS256 on both, no iss", v: both, wantErr: true, token: hsTok(func(c jwt.MapClaims) { delete(c, "iss") })},
		{name: "HS256 on both, wrong aud", v: both, wantErr: true, token: hsTok(func(c jwt.MapClaims) { c["aud"] = "x" })},
		{name: "Mint token on both", v: both, wantErr: true, token: func() string {
			s, err := Mint(testSecret, "u1", true, time.Hour, testNow)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}()},
		{name: "issuer only: right iss, any aud", v: hsIss, token: hsTok(func(c jwt.MapClaims) { c["aud"] = "x" })},
		{name: "issuer only: wrong iss", v: hsIss, wantErr: true, token: hsTok(func(c jwt.MapClaims) { c["iss"] = "x" })},
		{name: "audience only: right aud, any iss", v: hsAud, token: hsTok(func(c jwt.MapClaims) { c["iss"] = "x" })},
		{name: "audience only: no aud", v: hsAud, wantErr: true, token: hsTok(func(c jwt.MapClaims) { delete(c, "aud") })},
		// Types, when checked, are strict; names are case-sensitive.
		{name: "iss a number", v: hsIss, wantErr: true, token: raw(`,"iss":42`)},
		{name: "iss null", v: hsIss, wantErr: true, token: raw(`,"iss":null`)},
		{name: "iss an array", v: hsIss, wantErr: true, token: raw(`,"iss":["` + testIssuer + `"]`)},
		{name: "ISS only", v: hsIss, wantErr: true, token: raw(`,"ISS":"` + testIssuer + `"`)},
		{name: "ISS after a wrong iss", v: hsIss, wantErr: true, token: raw(`,"iss":"x","ISS":"` + testIssuer + `"`)},
		{name: "aud a number", v: hsAud, wantErr: true, token: raw(`,"aud":42`)},
		{name: "aud null", v: hsAud, wantErr: true, token: raw(`,"aud":null`)},
		{name: "aud array with a number", v: hsAud, wantErr: true, token: raw(`,"aud":["presenced-test",1]`)},
		{name: "AUD only", v: hsAud, wantErr: true, token: raw(`,"AUD":"presenced-test"`)},
		// Without an expected issuer or audience, iss and aud are not read.
		{name: "unchecked: iss and aud of any type", v: hs, token: raw(`,"iss":42,"aud":{"x":1}`)},
	})
}

func TestVerifyLeeway(t *testing.T) {
	t.Parallel()
	def := mustVerifier(t, VerifierOptions{Secret: testSecret})
	none := mustVerifier(t, VerifierOptions{Secret: testSecret, Leeway: new(time.Duration(0))})
	long := mustVerifier(t, VerifierOptions{Secret: testSecret, Leeway: new(time.Minute)})
	expiredAgo := func(d time.Duration) string {
		c := claims(testNow)
		c["exp"] = testNow.Add(-d).Unix()
		return sign(t, jwt.SigningMethodHS256, testSecret, "", c)
	}
	notBeforeIn := func(d time.Duration) string {
		c := claims(testNow)
		c["nbf"] = testNow.Add(d).Unix()
		return sign(t, jwt.SigningMethodHS256, testSecret, "", c)
	}
	runVerifyCases(t, []verifyCase{
		{name: "default: expired 4s ago", v: def, token: expiredAgo(4 * time.Second)},
		{name: "default: expired 6s ago", v: def, wantErr: true, token: expiredAgo(6 * time.Second)},
		{name: "default: nbf in 4s", v: def, token: notBeforeIn(4 * time.Second)},
		{name: "default: nbf in 6s", v: def, wantErr: true, token: notBeforeIn(6 * time.Second)},
		{name: "zero: expired 1s ago", v: none, wantErr: true, token: expiredAgo(time.Second)},
		{name: "zero: expires in 1s", v: none, token: expiredAgo(-time.Second)},
		{name: "zero: nbf in 1s", v: none, wantErr: true, token: notBeforeIn(time.Second)},
		{name: "zero: nbf now", v: none, token: notBeforeIn(0)},
		{name: "1m: expired 50s ago", v: long, token: expiredAgo(50 * time.Second)},
		{name: "1m: expired 70s ago", v: long, wantErr: true, token: expiredAgo(70 * time.Second)},
		{name: "1m: nbf in 50s", v: long, token: notBeforeIn(50 * time.Second)},
	})
}

func TestVerifyClaimsDoNotAliasToken(t *testing.T) {
	t.Parallel()
	v := mustVerifier(t, VerifierOptions{Secret: testSecret})
	tok, err := Mint(testSecret, "user-42", true, time.Hour, testNow)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	lo := uintptr(unsafe.Pointer(unsafe.StringData(tok)))
	hi := lo + uintptr(len(tok))
	for _, s := range []string{c.UserID, c.Role} {
		if p := uintptr(unsafe.Pointer(unsafe.StringData(s))); p >= lo && p < hi {
			t.Errorf("claim %q points into the token's memory", s)
		}
	}
}

func TestMintRoundTrip(t *testing.T) {
	t.Parallel()
	v := mustVerifier(t, VerifierOptions{Secret: testSecret})
	for _, admin := range []bool{false, true} {
		tok, err := Mint(testSecret, "user-1", admin, 10*time.Minute, testNow)
		if err != nil {
			t.Fatal(err)
		}
		c, err := v.Verify(context.Background(), tok)
		if err != nil {
			t.Fatalf("Verify(Mint(admin=%v)): %v", admin, err)
		}
		if c.UserID != "user-1" || c.IsAdmin() != admin || !c.ExpiresAt.Equal(testNow.Add(10*time.Minute)) {
			t.Errorf("Verify(Mint(admin=%v)) = %+v", admin, c)
		}
	}
	// Expired once ttl and leeway have passed.
	tok, err := Mint(testSecret, "user-1", false, time.Minute, testNow.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Verify(expired Mint) error = %v, want ErrUnauthorized", err)
	}
}

func TestMintErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		secret []byte
		user   string
		ttl    time.Duration
	}{
		{"empty secret", nil, "u", time.Hour},
		{"empty user", testSecret, "", time.Hour},
		{"long user", testSecret, strings.Repeat("u", 257), time.Hour},
		{"user not UTF-8", testSecret, "u\xff", time.Hour},
		{"user with a control character", testSecret, "u\n1", time.Hour},
		{"zero ttl", testSecret, "u", 0},
	} {
		if _, err := Mint(tt.secret, tt.user, false, tt.ttl, testNow); err == nil {
			t.Errorf("%s: Mint succeeded", tt.name)
		}
	}
}

func TestVerifyKidRotation(t *testing.T) {
	t.Parallel()
	k := testKeys()
	srv := newJWKSServer(t, rsaJWK(k.rsa1, "r1"))
	clock := newFakeClock()
	v := mustVerifier(t, VerifierOptions{JWKSURL: srv.URL, Issuer: testIssuer, Audience: testAudience, Now: clock.Now})
	ctx := context.Background()
	verify := func(key any, method jwt.SigningMethod, kid string) error {
		_, err := v.Verify(ctx, sign(t, method, key, kid, claims(clock.Now())))
		return err
	}

	if err := verify(k.rsa1, jwt.SigningMethodRS256, "r1"); err != nil {
		t.Fatalf("first key: %v", err)
	}
	if got := srv.fetches.Load(); got != 1 {
		t.Fatalf("fetches after first Verify = %d, want 1 (lazy fetch)", got)
	}
	if err := verify(k.rsa1, jwt.SigningMethodRS256, "r1"); err != nil || srv.fetches.Load() != 1 {
		t.Fatalf("known kid: err %v, fetches %d; want no error and no fetch", err, srv.fetches.Load())
	}

	// The provider rotates to r2 and an EC key. Within 10s of the last fetch an
	// unknown kid does not refetch.
	srv.set(t, rsaJWK(k.rsa2, "r2"), ecJWK(t, k.ec1, "e1"))
	clock.Advance(5 * time.Second)
	if err := verify(k.rsa2, jwt.SigningMethodRS256, "r2"); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("new kid within rate limit: err = %v, want ErrUnauthorized", err)
	}
	if got := srv.fetches.Load(); got != 1 {
		t.Fatalf("fetches within rate limit = %d, want 1", got)
	}
	clock.Advance(6 * time.Second)
	if err := verify(k.rsa2, jwt.SigningMethodRS256, "r2"); err != nil {
		t.Fatalf("new kid after rate limit: %v", err)
	}
	if got := srv.fetches.Load(); got != 2 {
		t.Fatalf("fetches after unknown kid = %d, want 2", got)
	}
	if err := verify(k.ec1, jwt.SigningMethodES256, "e1"); err != nil {
		t.Fatalf("EC key from the new set: %v", err)
	}
	// r1 is gone from the set; asking for it again is rate limited.
	if err := verify(k.rsa1, jwt.SigningMethodRS256, "r1"); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("rotated-out kid: err = %v, want ErrUnauthorized", err)
	}
	if got := srv.fetches.Load(); got != 2 {
		t.Fatalf("fetches = %d, want 2", got)
	}

	// A burst of forged kids makes at most one fetch per 10s.
	clock.Advance(11 * time.Second)
	var wg sync.WaitGroup
	tok := sign(t, jwt.SigningMethodRS256, k.rsa2, "forged", claims(clock.Now()))
	for range 50 {
		wg.Go(func() {
			if _, err := v.Verify(ctx, tok); !errors.Is(err, ErrUnauthorized) {
				t.Errorf("forged kid: err = %v, want ErrUnauthorized", err)
			}
		})
	}
	wg.Wait()
	if got := srv.fetches.Load(); got != 3 {
		t.Fatalf("fetches after burst of forged kids = %d, want 3", got)
	}
}

func TestVerifyJWKSDown(t *testing.T) {
	t.Parallel()
	k := testKeys()
	tok := sign(t, jwt.SigningMethodRS256, k.rsa1, "r1", claims(testNow))

	t.Run("unreachable", func(t *testing.T) {
		t.Parallel()
		srv := newJWKSServer(t)
		srv.Close()
		v := mustVerifier(t, VerifierOptions{JWKSURL: srv.URL, Issuer: testIssuer, Audience: testAudience})
		if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("err = %v, want ErrUnauthorized", err)
		}
		// Run keeps retrying without panicking and returns when cancelled.
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { v.Run(ctx); close(done) }()
		cancel()
		<-done
	})
	t.Run("status 500", func(t *testing.T) {
		t.Parallel()
		srv := newJWKSServer(t, rsaJWK(k.rsa1, "r1"))
		srv.status.Store(http.StatusInternalServerError)
		v := mustVerifier(t, VerifierOptions{JWKSURL: srv.URL, Issuer: testIssuer, Audience: testAudience})
		if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("err = %v, want ErrUnauthorized", err)
		}
	})
	t.Run("down after a good fetch keeps the keys", func(t *testing.T) {
		t.Parallel()
		srv := newJWKSServer(t, rsaJWK(k.rsa1, "r1"))
		clock := newFakeClock()
		v := mustVerifier(t, VerifierOptions{JWKSURL: srv.URL, Issuer: testIssuer, Audience: testAudience, Now: clock.Now})
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
		srv.Close()
		clock.Advance(time.Minute)
		if err := v.fetch(context.Background()); err == nil {
			t.Fatal("fetch from a closed server succeeded")
		}
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatalf("Verify after failed refresh: %v", err)
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		t.Parallel()
		srv := newJWKSServer(t, rsaJWK(k.rsa1, "r1"))
		v := mustVerifier(t, VerifierOptions{JWKSURL: srv.URL, Issuer: testIssuer, Audience: testAudience})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := v.Verify(ctx, tok); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("err = %v, want ErrUnauthorized", err)
		}
	})
}

func TestRun(t *testing.T) {
	t.Parallel()
	k := testKeys()
	srv := newJWKSServer(t, rsaJWK(k.rsa1, "r1"))
	v := mustVerifier(t, VerifierOptions{JWKSURL: srv.URL, Issuer: testIssuer, Audience: testAudience, RefreshInterval: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { v.Run(ctx); close(done) }()
	for srv.fetches.Load() < 3 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	// A fetch cancelled by cancel may still reach the server after Run
	// returned: let the server's count settle before reading it.
	n := srv.fetches.Load()
	for {
		time.Sleep(20 * time.Millisecond)
		m := srv.fetches.Load()
		if m == n {
			break
		}
		n = m
	}
	// Keys fetched by Run serve Verify without another fetch.
	if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, k.rsa1, "r1", claims(testNow))); err != nil {
		t.Fatal(err)
	}
	if srv.fetches.Load() != n {
		t.Error("Verify fetched although Run had loaded the keys")
	}

	// Without a JWKS, Run returns at once.
	mustVerifier(t, VerifierOptions{Secret: testSecret}).Run(context.Background())
}

func BenchmarkVerifyHS256(b *testing.B) {
	v := mustVerifier(b, VerifierOptions{Secret: testSecret})
	tok, err := Mint(testSecret, "user-123456", false, time.Hour, testNow)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkVerifyES256(b *testing.B) {
	k := testKeys()
	srv := newJWKSServer(b, ecJWK(b, k.ec1, "e1"))
	v := mustVerifier(b, VerifierOptions{JWKSURL: srv.URL, Issuer: testIssuer, Audience: testAudience})
	tok := sign(b, jwt.SigningMethodES256, k.ec1, "e1", claims(testNow))
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMintForScopedVerifier: tokens from MintFor carry what a Verifier
// with an issuer and audience asks for; Mint's do not.
func TestMintForScopedVerifier(t *testing.T) {
	secret := []byte("mint-for-test-secret-0123456789abcdef")
	v, err := NewVerifier(VerifierOptions{Secret: secret, Issuer: "https://issuer.example", Audience: []string{"presenced"}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	scoped, err := MintFor(secret, "alice", false, time.Hour, now, "https://issuer.example", []string{"presenced"})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := v.Verify(context.Background(), scoped); err != nil || c.UserID != "alice" {
		t.Fatalf("MintFor token: %+v %v", c, err)
	}
	plain, err := Mint(secret, "alice", false, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), plain); err == nil {
		t.Fatal("token without iss/aud accepted by a scoped verifier")
	}
}
