package httpapi

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/presenced/presenced/internal/clientip"
	"github.com/presenced/presenced/internal/ratelimit"
)

// ContentSecurityPolicy is sent with every response. It is strict enough
// for the admin panel: scripts, styles and connections from this origin
// only, no inline script, never framed.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Header values every response (or every JSON answer) carries, made once:
// assigning them to the header map directly saves an allocation each per
// request (the overview answers tens of thousands a second; BENCHMARKS.md).
// net/http only reads them; whoever adds to one gets a copy from append.
var (
	hdrJSON    = []string{"application/json"}
	hdrNoStore = []string{"no-store"}
	hdrNosniff = []string{"nosniff"}
	hdrDeny    = []string{"DENY"}
	hdrNoRef   = []string{"no-referrer"}
	hdrCSP     = []string{ContentSecurityPolicy}
)

// encode writes v as JSON with status.
func encode(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h["Content-Type"] = hdrJSON
	h["Cache-Control"] = hdrNoStore
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// encodeError writes {"error": msg}. msg is for clients: never put
// internal details in it.
func encodeError(w http.ResponseWriter, status int, msg string) {
	encode(w, status, map[string]string{"error": msg})
}

// securityHeaders sets the headers every response carries.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["X-Content-Type-Options"] = hdrNosniff
		h["X-Frame-Options"] = hdrDeny
		h["Referrer-Policy"] = hdrNoRef
		h["Content-Security-Policy"] = hdrCSP
		next.ServeHTTP(w, r)
	})
}

// limitBody answers 413 to a request whose declared body is over max. It
// does not wrap r.Body: net/http recognises its own body reader to decide
// whether to send "100 Continue" and to discard what a handler left
// unread, and no handler reads a body yet. A handler that reads one must
// cap it with http.MaxBytesReader(w, r.Body, max) itself.
func limitBody(max int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > max {
				w.Header().Set("Connection", "close")
				encodeError(w, http.StatusRequestEntityTooLarge, "request body over "+strconv.FormatInt(max, 10)+" bytes")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// adminGuard answers 401 unless the request carries admin credentials.
// Failures are counted per client address: past the limit the address
// gets 429 with Retry-After until the minute is over, without its
// credentials being checked. Each address is logged at warn at most twice
// a minute (its first failure, and when it is throttled), never with the
// credentials it sent.
type adminGuard struct {
	check    AdminChecker
	ips      clientip.Resolver
	failures *ratelimit.Failures
	log      *slog.Logger
}

func (g *adminGuard) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.allow(w, r) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// allow reports whether r is an admin request; otherwise it has answered.
func (g *adminGuard) allow(w http.ResponseWriter, r *http.Request) bool {
	return g.allowOr(w, r, "admin credentials required")
}

// allowOr is allow with the 401's message: routes that take other
// credentials too name them.
func (g *adminGuard) allowOr(w http.ResponseWriter, r *http.Request, unauthorized string) bool {
	ip := g.ips.Addr(r)
	if g.throttled(w, ip) {
		encodeError(w, http.StatusTooManyRequests, throttledMsg)
		return false
	}
	if g.check != nil && g.check.Check(r) {
		// Without an Authorization header it was the panel's cookie: a
		// request that may change state must come from our own pages.
		if r.Header.Get("Authorization") == "" && unsafeMethod(r.Method) && !sameOrigin(r, g.ips) {
			encodeError(w, http.StatusForbidden, "cross-site request refused")
			return false
		}
		return true
	}
	g.failed(r, ip)
	w.Header().Set("WWW-Authenticate", `Bearer realm="presenced"`)
	encodeError(w, http.StatusUnauthorized, unauthorized)
	return false
}

const throttledMsg = "too many failed admin authentications; retry later"

// throttled reports whether ip has used up its failures this minute; if
// so it sets Retry-After to the rest of the minute.
func (g *adminGuard) throttled(w http.ResponseWriter, ip netip.Addr) bool {
	left, blocked := g.failures.Blocked(ip)
	if blocked {
		w.Header().Set("Retry-After", strconv.Itoa(int((left+time.Second-1)/time.Second)))
	}
	return blocked
}

// failed counts a failed admin authentication from ip and logs the first
// of each minute and the one that starts the throttle.
func (g *adminGuard) failed(r *http.Request, ip netip.Addr) {
	switch n := g.failures.Fail(ip); {
	case n == 1:
		g.log.Warn("admin authentication failed", "remote", ip.String(), "path", r.URL.Path)
	case n == g.failuresMax():
		g.log.Warn("admin authentication throttled", "remote", ip.String(), "failures", n, "for", "rest of the minute")
	}
}

func (g *adminGuard) failuresMax() int { return g.failures.Max() }

// recoverPanics turns a panic in a handler into a logged 500.
func recoverPanics(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if v := recover(); v != nil {
					if v == http.ErrAbortHandler {
						panic(v)
					}
					log.Error("http: panic", "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
					encodeError(w, http.StatusInternalServerError, "internal error")
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// cors lets the listed browser origins call the API. A listed origin is
// echoed with credentials allowed; "*" allows any origin but never with
// credentials, and the opaque origin "null" (sandboxed frames, file://
// pages) is never echoed.
func cors(origins []string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if len(origins) == 0 {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			origin := r.Header.Get("Origin")
			h := w.Header()
			h.Add("Vary", "Origin")
			allow := ""
			switch {
			case origin == "" || origin == "null":
			case listed(origins, origin):
				allow = origin
				h.Set("Access-Control-Allow-Credentials", "true")
			case listed(origins, "*"):
				allow = "*"
			}
			if allow == "" {
				next.ServeHTTP(w, r)
				return
			}
			h.Set("Access-Control-Allow-Origin", allow)
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
				h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func listed(origins []string, origin string) bool {
	for _, o := range origins {
		if strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// muxErrors serves mux and turns its plain-text answers for unrouted
// requests (404, and 405 with Allow for a known path with another method)
// into JSON errors. Unrouted paths under /api/admin/ need admin
// credentials first, so the admin surface cannot be mapped anonymously.
func muxErrors(mux *http.ServeMux, admin *adminGuard) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/api/admin/") {
			// A known admin route with the wrong method still says 405.
			rec := &statusOnly{header: http.Header{}}
			mux.ServeHTTP(rec, r)
			if rec.status != http.StatusMethodNotAllowed && !admin.allow(w, r) {
				return
			}
		}
		mux.ServeHTTP(&jsonErrors{ResponseWriter: w}, r)
	})
}

// statusOnly records the status a handler answers with and discards the
// rest.
type statusOnly struct {
	header http.Header
	status int
}

func (s *statusOnly) Header() http.Header         { return s.header }
func (s *statusOnly) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusOnly) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
}

// jsonErrors replaces the body of an error answer by {"error": "..."}.
type jsonErrors struct {
	http.ResponseWriter
	wrote bool
}

func (j *jsonErrors) WriteHeader(code int) {
	if j.wrote {
		return
	}
	j.wrote = true
	h := j.ResponseWriter.Header()
	h.Del("Content-Length")
	msg := strings.ToLower(http.StatusText(code))
	if code == http.StatusMethodNotAllowed {
		msg = "method not allowed; allowed: " + h.Get("Allow")
	}
	encodeError(j.ResponseWriter, code, msg)
}

func (j *jsonErrors) Write(b []byte) (int, error) {
	if !j.wrote {
		j.WriteHeader(http.StatusOK)
	}
	return len(b), nil
}
