package auth

import (
	"net/http/httptest"
	"testing"
)

func TestUserToken(t *testing.T) {
	t.Parallel()
	const (
		jwtA = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnQQ"
		jwtB = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJiIn0.c2lnQg"
	)
	tests := []struct {
		name      string
		target    string
		auth      string
		protocols []string // one Sec-WebSocket-Protocol header each
		wantToken string
		wantProto string
	}{
		{name: "none", target: "/ws"},
		{name: "query", target: "/ws?token=" + jwtA, wantToken: jwtA},
		{name: "empty query falls through", target: "/ws?token=", auth: "Bearer " + jwtB, wantToken: jwtB},
		{name: "bearer header", target: "/ws", auth: "Bearer " + jwtA, wantToken: jwtA},
		{name: "non-bearer header ignored", target: "/ws", auth: "Basic dTpw"},
		{name: "subprotocol pair", target: "/ws", protocols: []string{"bearer, " + jwtA}, wantToken: jwtA, wantProto: "bearer"},
		{name: "subprotocol pair after other protocol", target: "/ws", protocols: []string{"chat.v1,bearer," + jwtA}, wantToken: jwtA, wantProto: "bearer"},
		{name: "subprotocol pair with opaque token", target: "/ws", protocols: []string{"bearer, opaque-token"}, wantToken: "opaque-token", wantProto: "bearer"},
		{name: "subprotocol pair across headers", target: "/ws", protocols: []string{"bearer", jwtA}, wantToken: jwtA, wantProto: "bearer"},
		{name: "subprotocol bare JWT", target: "/ws", protocols: []string{jwtA}, wantToken: jwtA, wantProto: jwtA},
		{name: "subprotocol JWT after other protocol", target: "/ws", protocols: []string{"chat.v1, " + jwtA}, wantToken: jwtA, wantProto: jwtA},
		{name: "subprotocol bearer without token", target: "/ws", protocols: []string{"chat.v1, bearer"}},
		{name: "subprotocol non-JWT entries", target: "/ws", protocols: []string{"chat.v1, a.b, a..c, a.b.c.d, a.b.c!"}},
		{name: "query before header", target: "/ws?token=" + jwtA, auth: "Bearer " + jwtB, wantToken: jwtA},
		// The offered protocol is still answered, or a browser fails the handshake.
		{name: "query before subprotocol", target: "/ws?token=" + jwtA, protocols: []string{"bearer, " + jwtB}, wantToken: jwtA, wantProto: "bearer"},
		{name: "header before subprotocol", target: "/ws", auth: "Bearer " + jwtA, protocols: []string{"bearer, " + jwtB}, wantToken: jwtA, wantProto: "bearer"},
		{name: "query beside a lone JWT protocol", target: "/ws?token=" + jwtA, protocols: []string{jwtB}, wantToken: jwtA, wantProto: jwtB},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tt.target, nil)
			if tt.auth != "" {
				r.Header.Set("Authorization", tt.auth)
			}
			for _, p := range tt.protocols {
				r.Header.Add("Sec-WebSocket-Protocol", p)
			}
			tok, proto := UserToken(r)
			if tok != tt.wantToken || proto != tt.wantProto {
				t.Errorf("UserToken = (%q, %q), want (%q, %q)", tok, proto, tt.wantToken, tt.wantProto)
			}
		})
	}
}

func TestLooksLikeJWT(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"a.b.c": true, "eyJ-_.x0.Y9": true,
		"": false, "a.b": false, ".b.c": false, "a..c": false, "a.b.": false, "a.b.c.d": false, "a.b.c=": false, "a b.c.d": false,
	} {
		if got := looksLikeJWT(s); got != want {
			t.Errorf("looksLikeJWT(%q) = %v, want %v", s, got, want)
		}
	}
}
