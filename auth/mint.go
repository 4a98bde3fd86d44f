package auth

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// secretFile is the name of the generated HS256 secret inside the data directory.
const secretFile = "jwt_secret"

// mintClaims is the payload Mint signs.
type mintClaims struct {
	Sub  string   `json:"sub"`
	Iss  string   `json:"iss,omitempty"`
	Aud  []string `json:"aud,omitempty"`
	Iat  int64    `json:"iat"`
	Exp  int64    `json:"exp"`
	Role string   `json:"role,omitempty"`
}

func (c mintClaims) GetExpirationTime() (*jwt.NumericDate, error) {
	return jwt.NewNumericDate(time.Unix(c.Exp, 0)), nil
}
func (c mintClaims) GetIssuedAt() (*jwt.NumericDate, error) {
	return jwt.NewNumericDate(time.Unix(c.Iat, 0)), nil
}
func (c mintClaims) GetNotBefore() (*jwt.NumericDate, error) { return nil, nil }
func (c mintClaims) GetIssuer() (string, error)              { return c.Iss, nil }
func (c mintClaims) GetSubject() (string, error)             { return c.Sub, nil }
func (c mintClaims) GetAudience() (jwt.ClaimStrings, error)  { return c.Aud, nil }

// Mint signs an HS256 token with sub=userID, iat=now, exp=now+ttl and, when
// admin is true, role "admin". It fails on an empty secret, a userID that
// Verify would reject (see [Claims.UserID]) or a ttl that is not positive.
// The token carries no iss or aud, so a Verifier that expects them refuses it.
func Mint(secret []byte, userID string, admin bool, ttl time.Duration, now time.Time) (string, error) {
	return MintFor(secret, userID, admin, ttl, now, "", nil)
}

// MintFor is Mint with an iss claim (when issuer is not "") and an aud
// claim (when audience is not empty), for a Verifier configured with
// JWT_ISSUER and JWT_AUDIENCE.
func MintFor(secret []byte, userID string, admin bool, ttl time.Duration, now time.Time, issuer string, audience []string) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("auth: mint: empty secret")
	}
	if err := checkSubject(userID); err != nil {
		return "", fmt.Errorf("auth: mint: user ID %w", err)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("auth: mint: ttl %v is not positive", ttl)
	}
	c := mintClaims{Sub: userID, Iss: issuer, Aud: audience, Iat: now.Unix(), Exp: now.Add(ttl).Unix()}
	if admin {
		c.Role = AdminRole
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("auth: mint: %w", err)
	}
	return s, nil
}

// LoadOrCreateSecret returns the HS256 secret stored in dir/jwt_secret: the
// file's contents with surrounding whitespace trimmed. When the file is
// missing it creates dir (mode 0700) and the file (mode 0600) holding 32
// random bytes hex-encoded. Concurrent callers all get the same secret.
func LoadOrCreateSecret(dir string) ([]byte, error) {
	s, _, err := LoadOrCreateFile(dir, secretFile, NewSecret)
	return s, err
}

// NewSecret returns a new HS256 secret: 32 random bytes, hex-encoded.
func NewSecret() string {
	raw := make([]byte, 32)
	_, _ = rand.Read(raw) // never fails (crypto/rand crashes the program instead)
	return hex.EncodeToString(raw)
}

// LoadOrCreateFile returns the contents of dir/name with surrounding
// whitespace trimmed. When the file is missing it creates dir (mode 0700)
// and the file (mode 0600) holding generate() and reports created. The file
// appears whole or not at all, and concurrent callers all get the same
// value (created is true for the one whose value won).
func LoadOrCreateFile(dir, name string, generate func() string) (value []byte, created bool, err error) {
	path := filepath.Join(dir, name)
	value, err = readSecret(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return value, false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("auth: create secret dir: %w", err)
	}
	created = true
	if err := createExclusive(dir, path, []byte(generate()+"\n")); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			return nil, false, fmt.Errorf("auth: create secret: %w", err)
		}
		created = false // another process won the race; use its value
	}
	value, err = readSecret(path)
	return value, created && err == nil, err
}

// ReplaceFile replaces dir/name by a file (mode 0600) holding value: a
// reader sees the old file or the new one, never a mix.
func ReplaceFile(dir, name, value string) error {
	f, err := os.CreateTemp(dir, "."+name+".tmp*") // mode 0600
	if err != nil {
		return fmt.Errorf("auth: replace %s: %w", name, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.WriteString(value + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		return fmt.Errorf("auth: replace %s: %w", name, err)
	}
	return nil
}

func readSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: read secret: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("auth: read secret: %s is empty", path)
	}
	return b, nil
}

// createExclusive writes data to path unless path exists (then the error wraps
// fs.ErrExist). It writes a temporary file and hard-links it into place, so a
// concurrent reader never sees a half-written secret.
func createExclusive(dir, path string, data []byte) error {
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*") // mode 0600
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Link(tmp, path)
}

// RandomToken returns a random URL-safe token with 32 bytes of entropy, for
// use as an admin token.
func RandomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand crashes the program instead)
	return base64.RawURLEncoding.EncodeToString(b)
}
