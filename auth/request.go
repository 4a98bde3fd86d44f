package auth

import (
	"net/http"
	"strings"
)

// subprotocolBearer is the Sec-WebSocket-Protocol entry that announces that
// the next entry is the token, for browsers, which cannot set headers on a
// WebSocket handshake.
const subprotocolBearer = "bearer"

// UserToken extracts a user token from a WebSocket handshake request. It looks,
// in this order, at the "token" query parameter, an "Authorization: Bearer"
// header and the Sec-WebSocket-Protocol header. In that header it accepts the
// entry "bearer" followed by the token as the next entry, or a lone entry that
// looks like a JWT. subprotocol is what the server must echo in its handshake
// response whenever the client offered one of those forms, wherever the token
// was taken from (a browser fails a handshake whose offered protocols get no
// answer): "bearer" for the pair, the token entry itself when it came alone,
// and "" when the header holds neither. token is "" when the request carries
// none.
func UserToken(r *http.Request) (token, subprotocol string) {
	token, subprotocol = fromSubprotocol(r)
	if t := r.URL.Query().Get("token"); t != "" {
		return t, subprotocol
	}
	if t, ok := bearer(r); ok {
		return t, subprotocol
	}
	return token, subprotocol
}

// fromSubprotocol finds a token in the Sec-WebSocket-Protocol header and the
// entry to echo for it.
func fromSubprotocol(r *http.Request) (token, subprotocol string) {
	var prev string // the previous entry, across repeated headers
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for e := range strings.SplitSeq(h, ",") {
			e = strings.TrimSpace(e)
			if e == "" {
				continue
			}
			if prev == subprotocolBearer {
				return e, subprotocolBearer
			}
			if e != subprotocolBearer && looksLikeJWT(e) {
				return e, e
			}
			prev = e
		}
	}
	return "", ""
}

// bearer returns the credentials of an "Authorization: Bearer <token>" header.
// The scheme is case-insensitive (RFC 9110 section 11.1).
func bearer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// looksLikeJWT reports whether s has the shape of a JWS in compact form:
// three non-empty base64url parts separated by dots.
func looksLikeJWT(s string) bool {
	parts, partLen := 1, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '.':
			if partLen == 0 {
				return false
			}
			parts, partLen = parts+1, 0
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			partLen++
		default:
			return false
		}
	}
	return parts == 3 && partLen > 0
}
