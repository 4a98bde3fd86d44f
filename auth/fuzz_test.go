package auth

import (
	"context"
	"errors"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

func FuzzVerify(f *testing.F) {
	k := testKeys()
	srv := newJWKSServer(f, rsaJWK(k.rsa1, "r1"), ecJWK(f, k.ec1, "e1"))
	v := mustVerifier(f, VerifierOptions{Secret: testSecret, JWKSURL: srv.URL})
	good, err := Mint(testSecret, "u1", true, 3600e9, testNow)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		"", ".", "..", "a.b.c", good, good + "x", good[:len(good)-2],
		sign(f, jwt.SigningMethodRS256, k.rsa1, "r1", claims(testNow)),
		sign(f, jwt.SigningMethodES256, k.ec1, "", claims(testNow)),
		sign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", claims(testNow)),
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIiwiZXhwIjpudWxsfQ.x",
		"eyJhbGciOiJSUzI1NiIsImtpZCI6bnVsbH0.e30.e30",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(context.Background(), token)
		if err != nil && !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("Verify error %v does not wrap ErrUnauthorized", err)
		}
		if err == nil && (c.UserID == "" || len(c.UserID) > maxSubjectLen || c.ExpiresAt.IsZero()) {
			t.Fatalf("Verify accepted %q with claims %+v", token, c)
		}
	})
}
