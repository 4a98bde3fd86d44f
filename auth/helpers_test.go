package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// testNow is the fixed time tests run at; tokens are minted relative to it.
var testNow = time.Unix(1_700_000_000, 0)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// testIssuer and testAudience are what JWKS verifiers in tests expect; the
// claims helper puts them in every token (the first audience).
const testIssuer = "https://issuer.example.com/"

var testAudience = []string{"presenced-test", "presenced-other"}

// fakeClock is a settable clock for Verifier.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: testNow} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// claims returns the usual claims: sub "u1", exp an hour after at, iss
// testIssuer and aud testAudience[0].
func claims(at time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"sub": "u1", "iat": at.Unix(), "exp": at.Add(time.Hour).Unix(),
		"iss": testIssuer, "aud": testAudience[0],
	}
}

// signRaw signs header and payload, JSON given byte for byte, with HS256
// and secret: for claims that json.Marshal would not produce, such as
// invalid UTF-8, duplicate names or a particular key order.
func signRaw(tb testing.TB, secret []byte, header, payload string) string {
	tb.Helper()
	signing := b64u([]byte(header)) + "." + b64u([]byte(payload))
	sig, err := jwt.SigningMethodHS256.Sign(signing, secret)
	if err != nil {
		tb.Fatalf("sign: %v", err)
	}
	return signing + "." + b64u(sig)
}

// sign signs c with method and key, setting the kid header when kid != "".
func sign(tb testing.TB, method jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	tb.Helper()
	t := jwt.NewWithClaims(method, c)
	if kid != "" {
		t.Header["kid"] = kid
	}
	s, err := t.SignedString(key)
	if err != nil {
		tb.Fatalf("sign: %v", err)
	}
	return s
}

// testKeys are generated once: RSA key generation is slow under -race.
var testKeys = sync.OnceValue(func() (k struct {
	rsa1, rsa2 *rsa.PrivateKey
	ec1, ec2   *ecdsa.PrivateKey
}) {
	gen := func() *rsa.PrivateKey {
		r, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		return r
	}
	genEC := func() *ecdsa.PrivateKey {
		e, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		return e
	}
	k.rsa1, k.rsa2, k.ec1, k.ec2 = gen(), gen(), genEC(), genEC()
	return k
})

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// rsaJWK is the public JWK of k.
func rsaJWK(k *rsa.PrivateKey, kid string) map[string]any {
	return map[string]any{
		"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
		"n": b64u(k.N.Bytes()), "e": b64u(big.NewInt(int64(k.E)).Bytes()),
	}
}

// ecJWK is the public JWK of k.
func ecJWK(tb testing.TB, k *ecdsa.PrivateKey, kid string) map[string]any {
	tb.Helper()
	p, err := k.PublicKey.Bytes() // 0x04 || x || y
	if err != nil {
		tb.Fatal(err)
	}
	return map[string]any{"kty": "EC", "kid": kid, "crv": "P-256", "x": b64u(p[1:33]), "y": b64u(p[33:])}
}

// jwksServer serves a JWKS that tests can replace, counting fetches.
type jwksServer struct {
	*httptest.Server
	body    atomic.Pointer[[]byte]
	status  atomic.Int32
	fetches atomic.Int32
}

func newJWKSServer(tb testing.TB, keys ...map[string]any) *jwksServer {
	tb.Helper()
	s := &jwksServer{}
	s.status.Store(http.StatusOK)
	s.set(tb, keys...)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(int(s.status.Load()))
		w.Write(*s.body.Load())
	}))
	tb.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(tb testing.TB, keys ...map[string]any) {
	tb.Helper()
	if keys == nil {
		keys = []map[string]any{}
	}
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		tb.Fatal(err)
	}
	s.body.Store(&b)
}

func mustVerifier(tb testing.TB, o VerifierOptions) *Verifier {
	tb.Helper()
	if o.Now == nil {
		o.Now = func() time.Time { return testNow }
	}
	v, err := NewVerifier(o)
	if err != nil {
		tb.Fatalf("NewVerifier: %v", err)
	}
	return v
}
