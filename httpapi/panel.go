package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/presenced/presenced/internal/clientip"
)

// PanelSessions are the admin panel's login sessions (auth.Admin).
type PanelSessions interface {
	// Login checks admin credentials and returns a session cookie value.
	Login(ctx context.Context, token string) (value string, expires time.Time, ok bool)
	// Logout ends the session of r's cookie.
	Logout(r *http.Request)
	// ByCookie reports whether r carries a valid session cookie.
	ByCookie(r *http.Request) bool
}

// sessionCookie is the cookie the panel's session travels in; the name
// matches auth.SessionCookie.
const sessionCookie = "presenced_admin"

// maxLoginBody bounds a login request: a token and some form encoding.
const maxLoginBody = 16 << 10

// secureRequest reports whether the client reached us over TLS: directly,
// or through a trusted proxy that says so.
func secureRequest(r *http.Request, ips clientip.Resolver) bool {
	if r.TLS != nil {
		return true
	}
	if !ips.Trusted(clientip.Peer(r.RemoteAddr)) {
		return false
	}
	if strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		return true
	}
	for _, f := range r.Header.Values("Forwarded") {
		if strings.Contains(strings.ToLower(f), "proto=https") {
			return true
		}
	}
	return false
}

// sameOrigin is the CSRF check for requests authenticated by the session
// cookie (SameSite=Strict is the first defence): the browser's Origin
// header must be this server's origin, or, without Origin, Sec-Fetch-Site
// must say same-origin. Requests from non-browsers carry neither and use
// a bearer token instead.
func sameOrigin(r *http.Request, ips clientip.Resolver) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return r.Header.Get("Sec-Fetch-Site") == "same-origin"
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	scheme := "http"
	if secureRequest(r, ips) {
		scheme = "https"
	}
	host := r.Host
	if h := r.Header.Get("X-Forwarded-Host"); h != "" && ips.Trusted(clientip.Peer(r.RemoteAddr)) {
		host = h
	}
	return strings.EqualFold(u.Scheme, scheme) && strings.EqualFold(u.Host, host)
}

// unsafeMethod reports whether m may change state (and so needs the CSRF
// check when a cookie authenticates it).
func unsafeMethod(m string) bool {
	return m != http.MethodGet && m != http.MethodHead && m != http.MethodOptions
}

// handlePanel serves the panel's page at /admin/ and its assets at
// /admin/assets/, from static (index.html at its root).
func handlePanel(static fs.FS) http.Handler {
	files := http.StripPrefix("/admin/assets/", http.FileServerFS(static))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if strings.HasPrefix(r.URL.Path, "/admin/assets/") {
			if strings.HasSuffix(r.URL.Path, "/") { // no directory listings
				encodeError(w, http.StatusNotFound, "not found")
				return
			}
			h.Set("Cache-Control", "no-cache")
			files.ServeHTTP(w, r)
			return
		}
		b, err := fs.ReadFile(static, "index.html")
		if err != nil {
			encodeError(w, http.StatusNotFound, "admin panel not built into this binary")
			return
		}
		h.Set("Content-Type", mime.TypeByExtension(".html"))
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(b)
		}
	})
}

// handleLogin exchanges the admin token (or an admin JWT), given as the
// form field or JSON field "token", for a session cookie. A form post is
// answered with a redirect to the panel (with ?error= when refused); a
// JSON request with JSON. Failures count towards the per-address admin
// throttle.
func handleLogin(sessions PanelSessions, guard *adminGuard) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		isJSON := strings.HasPrefix(r.Header.Get("Content-Type"), "application/json")
		fail := func(status int, msg string) {
			if isJSON {
				encodeError(w, status, msg)
				return
			}
			http.Redirect(w, r, "/admin/?error="+url.QueryEscape(msg), http.StatusSeeOther)
		}
		if r.Header.Get("Origin") != "" && !sameOrigin(r, guard.ips) {
			fail(http.StatusForbidden, "cross-origin login refused")
			return
		}
		ip := guard.ips.Addr(r)
		if guard.throttled(w, ip) {
			fail(http.StatusTooManyRequests, throttledMsg)
			return
		}
		token, err := loginToken(w, r, isJSON)
		if err != nil {
			fail(http.StatusBadRequest, err.Error())
			return
		}
		value, expires, ok := sessions.Login(r.Context(), token)
		if !ok {
			guard.failed(r, ip)
			fail(http.StatusUnauthorized, "wrong admin token")
			return
		}
		http.SetCookie(w, &http.Cookie{
			Name: sessionCookie, Value: value, Path: "/", Expires: expires,
			MaxAge: int(time.Until(expires).Seconds()), HttpOnly: true,
			Secure: secureRequest(r, guard.ips), SameSite: http.SameSiteStrictMode,
		})
		if isJSON {
			encode(w, http.StatusOK, map[string]any{"ok": true, "expiresAt": expires.UTC()})
			return
		}
		http.Redirect(w, r, "/admin/", http.StatusSeeOther)
	})
}

type loginError string

func (e loginError) Error() string { return string(e) }

// loginToken reads the "token" field of a JSON or form body.
func loginToken(w http.ResponseWriter, r *http.Request, isJSON bool) (string, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	if isJSON {
		var body struct {
			Token string `json:"token"`
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return "", loginError("request body too large or unreadable")
		}
		if err := json.Unmarshal(b, &body); err != nil {
			return "", loginError(`body must be JSON {"token": "..."}`)
		}
		if body.Token == "" {
			return "", loginError("token is required")
		}
		return body.Token, nil
	}
	if err := r.ParseForm(); err != nil {
		return "", loginError("request body too large or not a form")
	}
	t := r.PostForm.Get("token")
	if t == "" {
		return "", loginError("token is required")
	}
	return t, nil
}

// handleLogout ends the session and clears the cookie.
func handleLogout(sessions PanelSessions, guard *adminGuard) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !sameOrigin(r, guard.ips) && r.Header.Get("Authorization") == "" {
			encodeError(w, http.StatusForbidden, "cross-origin logout refused")
			return
		}
		sessions.Logout(r)
		http.SetCookie(w, &http.Cookie{
			Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
			Secure: secureRequest(r, guard.ips), SameSite: http.SameSiteStrictMode,
		})
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
	})
}
