package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// fuzzVerifiers are the two shapes a Verifier takes: strict expects
// testIssuer and testAudience (and has a JWKS), plain has only the secret.
func fuzzVerifiers(f *testing.F) (strict, plain *Verifier) {
	k := testKeys()
	srv := newJWKSServer(f, rsaJWK(k.rsa1, "r1"), ecJWK(f, k.ec1, "e1"))
	strict = mustVerifier(f, VerifierOptions{Secret: testSecret, JWKSURL: srv.URL, Issuer: testIssuer, Audience: testAudience})
	plain = mustVerifier(f, VerifierOptions{Secret: testSecret})
	return strict, plain
}

// FuzzVerify feeds arbitrary strings to Verify. It must not panic, every
// error must wrap ErrUnauthorized, and an accepted token must obey every rule
// (see checkAccepted). Since the fuzzer cannot forge signatures, each input
// is also verified re-signed with the test secret, so that mutated headers
// and claims get past the signature check. Seeds: testdata/fuzz/FuzzVerify.
func FuzzVerify(f *testing.F) {
	k := testKeys()
	strict, plain := fuzzVerifiers(f)
	good, err := Mint(testSecret, "u1", true, 3600e9, testNow)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		"", ".", "..", "a.b.c", good, good + "x", good[:len(good)-2],
		sign(f, jwt.SigningMethodHS256, testSecret, "", claims(testNow)),
		sign(f, jwt.SigningMethodRS256, k.rsa1, "r1", claims(testNow)),
		sign(f, jwt.SigningMethodES256, k.ec1, "", claims(testNow)),
		sign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", claims(testNow)),
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIiwiZXhwIjpudWxsfQ.x",
		"eyJhbGciOiJSUzI1NiIsImtpZCI6bnVsbH0.e30.e30",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		for _, tok := range []string{token, resign(token)} {
			checkVerify(t, strict, true, tok)
			checkVerify(t, plain, false, tok)
		}
	})
}

// FuzzClaims signs arbitrary header and claims JSON with the test secret and
// verifies the result, reaching the header and claim checks far more often
// than mutated base64 does.
func FuzzClaims(f *testing.F) {
	strict, plain := fuzzVerifiers(f)
	for _, s := range [][2]string{
		{hsHeader, `{"sub":"u1","exp":1700003600,"iss":"https://issuer.example.com/","aud":"presenced-test"}`},
		{hsHeader, `{"sub":"u1","exp":1700003600,"aud":["x","presenced-other"],"iss":"https://issuer.example.com/","role":"admin"}`},
		{`{"alg":"HS256","crit":["exp"]}`, `{"sub":"u1","exp":1700003600}`},
		{hsHeader, `{"sub":"u1","exp":"1700003600"}`},
		{hsHeader, `{"sub":"u\ud800","exp":1700003600,"nbf":1.5e9,"iat":0}`},
		{hsHeader, `{"sub":"\ud83d\ude00","Sub":"x","exp":1700003600.5,"ROLE":"admin"}`},
		{hsHeader, "{\"sub\":\"u\x7f\",\"exp\":1700003600}"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, header, payload string) {
		tok := signRaw(t, testSecret, header, payload)
		checkVerify(t, strict, true, tok)
		checkVerify(t, plain, false, tok)
	})
}

// resign replaces token's signature by an HS256 one with the test secret;
// a token with fewer than two dots is returned as is.
func resign(token string) string {
	head, rest, ok := strings.Cut(token, ".")
	if !ok {
		return token
	}
	payload, _, ok := strings.Cut(rest, ".")
	if !ok {
		return token
	}
	sig, err := jwt.SigningMethodHS256.Sign(head+"."+payload, testSecret)
	if err != nil {
		return token
	}
	return head + "." + payload + "." + b64u(sig)
}

// checkVerify verifies token with v and, when it is accepted, checks
// checkAccepted's rules; strict says whether v expects testIssuer and
// testAudience.
func checkVerify(t *testing.T, v *Verifier, strict bool, token string) {
	t.Helper()
	c, err := v.Verify(context.Background(), token)
	if err != nil {
		if !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("Verify error %v does not wrap ErrUnauthorized", err)
		}
		if c != (Claims{}) {
			t.Fatalf("Verify returned claims %+q with an error", c)
		}
		return
	}
	if reason := checkAccepted(token, c, strict); reason != "" {
		t.Fatalf("Verify accepted %q with claims %+q, but %s", token, c, reason)
	}
}

// checkAccepted re-reads an accepted token independently of Verify and
// returns what breaks the rules, or "": no crit header; exp a number, nbf and
// iat numbers when present; sub (exact name) equal to UserID and 1-256 bytes
// of UTF-8 without control characters; role read from "role" only; and, when
// strict, iss equal to testIssuer and aud naming one of testAudience.
func checkAccepted(token string, c Claims, strict bool) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "it has not three parts"
	}
	var header map[string]any
	if err := decodePart(parts[0], &header); err != nil {
		return "its header does not decode: " + err.Error()
	}
	if _, ok := header["crit"]; ok {
		return "its header has crit"
	}
	var claims map[string]any
	if err := decodePart(parts[1], &claims); err != nil {
		return "its claims do not decode: " + err.Error()
	}
	for _, name := range []string{"exp", "nbf", "iat"} {
		v, ok := claims[name]
		if _, isNum := v.(json.Number); (ok || name == "exp") && !isNum {
			return name + " is not a number"
		}
	}
	if c.ExpiresAt.IsZero() {
		return "ExpiresAt is zero"
	}

	if sub, _ := claims["sub"].(string); sub != c.UserID {
		return "UserID is not the sub claim"
	}
	if n := len(c.UserID); n < 1 || n > 256 {
		return "UserID is not 1-256 bytes"
	}
	if !utf8.ValidString(c.UserID) {
		return "UserID is not valid UTF-8"
	}
	for _, r := range c.UserID {
		if unicode.IsControl(r) {
			return "UserID has a control character"
		}
	}
	// encoding/json turns invalid UTF-8 and lone surrogates into U+FFFD: one
	// in UserID must have been in the token, literally or escaped.
	if strings.ContainsRune(c.UserID, utf8.RuneError) {
		raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
		lower := bytes.ToLower(raw)
		if !bytes.Contains(raw, []byte("\uFFFD")) && !bytes.Contains(lower, []byte(`\ufffd`)) {
			return "UserID has a U+FFFD the token does not"
		}
	}

	if role, _ := claims["role"].(string); role != c.Role {
		return "Role is not the role claim"
	}

	if !strict {
		return ""
	}
	if claims["iss"] != testIssuer {
		return "iss is not the expected issuer"
	}
	switch aud := claims["aud"].(type) {
	case string:
		if !slices.Contains(testAudience, aud) {
			return "aud is not an expected audience"
		}
	case []any:
		if !slices.ContainsFunc(aud, func(a any) bool { s, ok := a.(string); return ok && slices.Contains(testAudience, s) }) {
			return "aud names no expected audience"
		}
	default:
		return "aud is not a string or an array"
	}
	return ""
}

// decodePart decodes one base64url part of a token as JSON, keeping numbers
// as json.Number.
func decodePart(part string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(v)
}
