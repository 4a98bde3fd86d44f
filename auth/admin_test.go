package auth

import (
	"net/http/httptest"
	"testing"
	"time"
)

func TestAdminCheck(t *testing.T) {
	t.Parallel()
	v := mustVerifier(t, VerifierOptions{Secret: testSecret})
	mint := func(admin bool, ttl time.Duration) string {
		tok, err := Mint(testSecret, "u1", admin, ttl, testNow)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	adminJWT, userJWT := mint(true, time.Hour), mint(false, time.Hour)
	expiredAdminJWT, err := Mint(testSecret, "u1", true, time.Minute, testNow.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		admin  *Admin
		header string // Authorization; "" sends none
		want   bool
	}{
		{"right token", NewAdmin("s3cret", v, AdminOptions{}), "Bearer s3cret", true},
		{"scheme case-insensitive", NewAdmin("s3cret", nil, AdminOptions{}), "bearer s3cret", true},
		{"wrong token", NewAdmin("s3cret", v, AdminOptions{}), "Bearer s3cre", false},
		{"longer token", NewAdmin("s3cret", v, AdminOptions{}), "Bearer s3cret2", false},
		{"no header", NewAdmin("s3cret", v, AdminOptions{}), "", false},
		{"basic scheme", NewAdmin("s3cret", v, AdminOptions{}), "Basic s3cret", false},
		{"bare token", NewAdmin("s3cret", v, AdminOptions{}), "s3cret", false},
		{"empty configured token, empty bearer", NewAdmin("", v, AdminOptions{}), "Bearer ", false},
		{"empty configured token, empty header", NewAdmin("", v, AdminOptions{}), "", false},
		{"empty configured token, some bearer", NewAdmin("", nil, AdminOptions{}), "Bearer x", false},
		{"admin JWT", NewAdmin("s3cret", v, AdminOptions{}), "Bearer " + adminJWT, true},
		{"admin JWT without admin token", NewAdmin("", v, AdminOptions{}), "Bearer " + adminJWT, true},
		{"non-admin JWT", NewAdmin("s3cret", v, AdminOptions{}), "Bearer " + userJWT, false},
		{"expired admin JWT", NewAdmin("s3cret", v, AdminOptions{}), "Bearer " + expiredAdminJWT, false},
		{"admin JWT without verifier", NewAdmin("s3cret", nil, AdminOptions{}), "Bearer " + adminJWT, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/api/admin/dashboard/overview", nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			if got := tt.admin.Check(r); got != tt.want {
				t.Errorf("Check(Authorization: %q) = %v, want %v", tt.header, got, tt.want)
			}
		})
	}
}
