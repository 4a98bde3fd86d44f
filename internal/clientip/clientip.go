// Package clientip finds the address of the client behind a request. The
// X-Forwarded-For and Forwarded headers are believed only when the peer
// that sent them is a trusted proxy (TRUSTED_PROXIES); anyone else could
// write any address there.
package clientip

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Resolver finds client addresses. The zero value trusts no proxy: the
// client is always the TCP peer.
type Resolver struct {
	trusted []netip.Prefix
}

// New returns a Resolver that believes forwarding headers from peers in
// trusted.
func New(trusted []netip.Prefix) Resolver {
	return Resolver{trusted: append([]netip.Prefix(nil), trusted...)}
}

// Trusted reports whether a is a trusted proxy.
func (r Resolver) Trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Addr returns the client address of req: the TCP peer, or, when the peer
// is a trusted proxy, the nearest address in the forwarding chain that is
// not itself a trusted proxy. Forwarded (RFC 7239) is read when present,
// X-Forwarded-For otherwise. A malformed entry ends the walk at the last
// address that could be trusted, so a client cannot forge its way past a
// proxy. The zero Addr means the peer address could not be parsed.
func (r Resolver) Addr(req *http.Request) netip.Addr {
	peer := Peer(req.RemoteAddr)
	if len(r.trusted) == 0 || !peer.IsValid() || !r.Trusted(peer) {
		return peer
	}
	chain := forwardedFor(req.Header)
	if chain == nil {
		chain = xForwardedFor(req.Header)
	}
	client := peer
	for i := len(chain) - 1; i >= 0; i-- {
		a, ok := parseNode(chain[i])
		if !ok {
			return client
		}
		client = a
		if !r.Trusted(a) {
			return a
		}
	}
	return client
}

// Peer parses a RemoteAddr ("host:port", or a bare host).
func Peer(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap()
	}
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

func xForwardedFor(h http.Header) []string {
	var out []string
	for _, v := range h.Values("X-Forwarded-For") {
		for e := range strings.SplitSeq(v, ",") {
			out = append(out, strings.TrimSpace(e))
		}
	}
	return out
}

// forwardedFor returns the for= values of every Forwarded element, or nil
// when there is no Forwarded header.
func forwardedFor(h http.Header) []string {
	vals := h.Values("Forwarded")
	if len(vals) == 0 {
		return nil
	}
	out := []string{}
	for _, v := range vals {
		for elem := range strings.SplitSeq(v, ",") {
			node := "" // an element without for= is unusable: stop there
			for pair := range strings.SplitSeq(elem, ";") {
				k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if ok && strings.EqualFold(k, "for") {
					node = strings.Trim(val, `"`)
				}
			}
			out = append(out, node)
		}
	}
	return out
}

// parseNode parses one hop: an IP, "IP:port" or "[IPv6]:port".
func parseNode(s string) (netip.Addr, bool) {
	if s == "" {
		return netip.Addr{}, false
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}
