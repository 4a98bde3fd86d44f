package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

const (
	// maxJWKSBytes bounds the JWKS response; real ones are a few KiB.
	maxJWKSBytes = 1 << 20
	// minRSABits is the smallest RSA modulus accepted (RFC 7518 section 3.3).
	minRSABits = 2048
)

// keySet is one fetched JWKS, immutable once built.
type keySet struct {
	byKid map[keyID]any // *rsa.PublicKey or *ecdsa.PublicKey
	// byKty lists the keys of each type, for tokens without a kid: those are
	// accepted only when the set has exactly one key of the token's type.
	byKty map[string][]any
}

type keyID struct{ kty, kid string }

// ktyFor maps an accepted JWS alg to the JWK key type that verifies it.
func ktyFor(alg string) string {
	switch alg {
	case jwt.SigningMethodRS256.Alg():
		return "RSA"
	case jwt.SigningMethodES256.Alg():
		return "EC"
	}
	return ""
}

// lookup returns the key for a token signed with alg whose header names kid
// ("" when it has none). ks may be nil (no JWKS fetched yet).
func (ks *keySet) lookup(alg, kid string) (any, error) {
	if ks == nil {
		return nil, errors.New("JWKS not loaded")
	}
	kty := ktyFor(alg)
	if kid != "" {
		if k, ok := ks.byKid[keyID{kty, kid}]; ok {
			return k, nil
		}
		return nil, fmt.Errorf("no %s key with kid %q in JWKS", kty, kid)
	}
	if keys := ks.byKty[kty]; len(keys) == 1 {
		return keys[0], nil
	}
	return nil, fmt.Errorf("token has no kid and JWKS has %d %s keys", len(ks.byKty[kty]), kty)
}

// fetchJWKS GETs and parses the JWKS at url.
func fetchJWKS(ctx context.Context, client *http.Client, url string, log *slog.Logger) (*keySet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("auth: fetch JWKS: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("auth: fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("auth: fetch JWKS: status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("auth: fetch JWKS: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("auth: fetch JWKS: response larger than %d bytes", maxJWKSBytes)
	}
	return parseJWKS(body, log)
}

// jwk holds the JWK members parseJWKS reads (RFC 7517, RFC 7518 section 6).
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS builds a keySet from a JWKS document. Keys that cannot verify
// RS256 or ES256 signatures (encryption keys, other types, curves or algs) are
// skipped; a set with no usable key at all is an error, so a broken response
// never replaces a working set.
func parseJWKS(data []byte, log *slog.Logger) (*keySet, error) {
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("auth: parse JWKS: %w", err)
	}
	ks := &keySet{byKid: make(map[keyID]any), byKty: make(map[string][]any)}
	for i, k := range doc.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		var (
			pub any
			err error
		)
		switch k.Kty {
		case "RSA":
			if k.Alg != "" && k.Alg != jwt.SigningMethodRS256.Alg() {
				continue
			}
			pub, err = rsaKey(k)
		case "EC":
			if k.Crv != "P-256" || (k.Alg != "" && k.Alg != jwt.SigningMethodES256.Alg()) {
				continue
			}
			pub, err = ecKey(k)
		default:
			continue
		}
		if err != nil {
			log.Warn("auth: skipping JWKS key", "index", i, "kid", k.Kid, "kty", k.Kty, "err", err)
			continue
		}
		if k.Kid != "" {
			id := keyID{k.Kty, k.Kid}
			if _, dup := ks.byKid[id]; dup {
				log.Warn("auth: skipping JWKS key with duplicate kid", "index", i, "kid", k.Kid, "kty", k.Kty)
				continue
			}
			ks.byKid[id] = pub
		}
		ks.byKty[k.Kty] = append(ks.byKty[k.Kty], pub)
	}
	if len(ks.byKty) == 0 {
		return nil, fmt.Errorf("auth: parse JWKS: no usable RS256 or ES256 signing key among %d keys", len(doc.Keys))
	}
	return ks, nil
}

// rsaKey converts an RSA JWK (RFC 7518 section 6.3.1) to a public key.
func rsaKey(k jwk) (*rsa.PublicKey, error) {
	n, err := b64(k.N)
	if err != nil {
		return nil, fmt.Errorf("n: %w", err)
	}
	e, err := b64(k.E)
	if err != nil {
		return nil, fmt.Errorf("e: %w", err)
	}
	if len(e) == 0 || len(e) > 4 {
		return nil, fmt.Errorf("e is %d bytes", len(e))
	}
	var exp int
	for _, b := range e {
		exp = exp<<8 | int(b)
	}
	if exp < 3 || exp > 1<<31-1 || exp%2 == 0 {
		return nil, fmt.Errorf("bad exponent %d", exp)
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}
	if bits := pub.N.BitLen(); bits < minRSABits {
		return nil, fmt.Errorf("modulus of %d bits, want at least %d", bits, minRSABits)
	}
	return pub, nil
}

// ecKey converts a P-256 EC JWK (RFC 7518 section 6.2.1) to a public key,
// checking that the point is on the curve.
func ecKey(k jwk) (*ecdsa.PublicKey, error) {
	x, err := b64(k.X)
	if err != nil {
		return nil, fmt.Errorf("x: %w", err)
	}
	y, err := b64(k.Y)
	if err != nil {
		return nil, fmt.Errorf("y: %w", err)
	}
	// RFC 7518 requires the full coordinate length, leading zeros included.
	if len(x) != 32 || len(y) != 32 {
		return nil, fmt.Errorf("coordinates of %d and %d bytes, want 32", len(x), len(y))
	}
	point := make([]byte, 0, 65)
	point = append(point, 4) // uncompressed
	point = append(point, x...)
	point = append(point, y...)
	return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
}

// b64 decodes base64url, with or without the padding some providers add.
func b64(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
