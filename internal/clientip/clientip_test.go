package clientip

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}
	cases := []struct {
		name    string
		trusted []netip.Prefix
		remote  string
		headers map[string][]string
		want    string
	}{
		{"no proxies trusted: header ignored", nil, "203.0.113.5:4000", map[string][]string{"X-Forwarded-For": {"1.2.3.4"}}, "203.0.113.5"},
		{"untrusted peer: header ignored", trusted, "203.0.113.5:4000", map[string][]string{"X-Forwarded-For": {"1.2.3.4"}}, "203.0.113.5"},
		{"trusted peer: client from XFF", trusted, "10.1.1.1:4000", map[string][]string{"X-Forwarded-For": {"198.51.100.7"}}, "198.51.100.7"},
		{"spoofed left entry ignored", trusted, "10.1.1.1:4000", map[string][]string{"X-Forwarded-For": {"6.6.6.6, 198.51.100.7"}}, "198.51.100.7"},
		{"chain of trusted proxies", trusted, "127.0.0.1:4000", map[string][]string{"X-Forwarded-For": {"198.51.100.7, 10.2.2.2"}}, "198.51.100.7"},
		{"repeated XFF headers", trusted, "10.1.1.1:4000", map[string][]string{"X-Forwarded-For": {"6.6.6.6", "198.51.100.7"}}, "198.51.100.7"},
		{"garbage stops at last trusted", trusted, "10.1.1.1:4000", map[string][]string{"X-Forwarded-For": {"198.51.100.7, junk"}}, "10.1.1.1"},
		{"no header", trusted, "10.1.1.1:4000", nil, "10.1.1.1"},
		{"Forwarded", trusted, "10.1.1.1:4000", map[string][]string{"Forwarded": {`for=198.51.100.9;proto=https, for="[2001:db8::1]:4711"`}}, "2001:db8::1"},
		{"Forwarded wins over XFF", trusted, "10.1.1.1:4000", map[string][]string{"Forwarded": {"for=198.51.100.9"}, "X-Forwarded-For": {"1.1.1.1"}}, "198.51.100.9"},
		{"Forwarded obfuscated node stops", trusted, "10.1.1.1:4000", map[string][]string{"Forwarded": {"for=_hidden"}}, "10.1.1.1"},
		{"IPv4-mapped peer", trusted, "[::ffff:10.1.1.1]:4000", map[string][]string{"X-Forwarded-For": {"198.51.100.7"}}, "198.51.100.7"},
		{"IPv6 peer", nil, "[2001:db8::2]:80", nil, "2001:db8::2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tc.remote, Header: http.Header{}}
			for k, vs := range tc.headers {
				for _, v := range vs {
					r.Header.Add(k, v)
				}
			}
			if got := New(tc.trusted).Addr(r).String(); got != tc.want {
				t.Fatalf("Addr = %s, want %s", got, tc.want)
			}
		})
	}
}
