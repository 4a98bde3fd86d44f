package auth

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
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
		{JWKSURL: "ftp://example.com/jwks"},
		{JWKSURL: "/jwks.json"},
		{JWKSURL: "https://"},
		{JWKSURL: "http://[::1"},
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
	jwks := mustVerifier(t, VerifierOptions{JWKSURL: srv.URL})
	both := mustVerifier(t, VerifierOptions{Secret: testSecret, JWKSURL: srv.URL})

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
	v := mustVerifier(t, VerifierOptions{JWKSURL: srv.URL, Now: clock.Now})
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
		v := mustVerifier(t, VerifierOptions{JWKSURL: srv.URL})
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
		v := mustVerifier(t, VerifierOptions{JWKSURL: srv.URL})
		if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("err = %v, want ErrUnauthorized", err)
		}
	})
	t.Run("down after a good fetch keeps the keys", func(t *testing.T) {
		t.Parallel()
		srv := newJWKSServer(t, rsaJWK(k.rsa1, "r1"))
		clock := newFakeClock()
		v := mustVerifier(t, VerifierOptions{JWKSURL: srv.URL, Now: clock.Now})
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
		v := mustVerifier(t, VerifierOptions{JWKSURL: srv.URL})
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
	v := mustVerifier(t, VerifierOptions{JWKSURL: srv.URL, RefreshInterval: time.Millisecond})
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
	v := mustVerifier(b, VerifierOptions{JWKSURL: srv.URL})
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
