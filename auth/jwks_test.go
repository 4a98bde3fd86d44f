package auth

import (
	"encoding/json"
	"log/slog"
	"testing"
)

func TestParseJWKS(t *testing.T) {
	t.Parallel()
	k := testKeys()
	log := slog.New(slog.DiscardHandler)
	doc := func(keys ...map[string]any) []byte {
		b, err := json.Marshal(map[string]any{"keys": keys})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	with := func(m map[string]any, kv ...string) map[string]any {
		out := make(map[string]any, len(m))
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	rsa1, ec1 := rsaJWK(k.rsa1, "r1"), ecJWK(t, k.ec1, "e1")
	small := rsaJWK(k.rsa1, "small")
	small["n"] = b64u(k.rsa1.N.Bytes()[:128]) // 1024 bits

	tests := []struct {
		name    string
		data    []byte
		wantErr bool
		want    map[string]int // keys per kty
	}{
		{name: "rsa and ec", data: doc(rsa1, ec1), want: map[string]int{"RSA": 1, "EC": 1}},
		{name: "padded base64 and no use or alg", data: doc(with(rsa1, "n", b64u(k.rsa1.N.Bytes())+"=", "use", "", "alg", "")), want: map[string]int{"RSA": 1}},
		{name: "skips encryption keys", data: doc(rsa1, with(ec1, "use", "enc")), want: map[string]int{"RSA": 1}},
		{name: "skips unknown kty", data: doc(map[string]any{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}, ec1), want: map[string]int{"EC": 1}},
		{name: "skips other algs and curves", data: doc(with(rsa1, "alg", "RS512"), with(ec1, "crv", "P-384"), ec1), want: map[string]int{"EC": 1}},
		{name: "skips bad key material", data: doc(small, with(rsa1, "e", ""), with(ec1, "x", "!!"), with(ec1, "y", b64u(make([]byte, 32))), rsa1), want: map[string]int{"RSA": 1}},
		{name: "skips duplicate kid", data: doc(rsa1, with(rsaJWK(k.rsa2, "r1"))), want: map[string]int{"RSA": 1}},
		{name: "no usable key", data: doc(with(ec1, "use", "enc")), wantErr: true},
		{name: "empty", data: doc(), wantErr: true},
		{name: "not JSON", data: []byte("<html>"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks, err := parseJWKS(tt.data, log)
			if tt.wantErr {
				if err == nil {
					t.Fatal("parseJWKS succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for kty, n := range tt.want {
				if got := len(ks.byKty[kty]); got != n {
					t.Errorf("%s keys = %d, want %d", kty, got, n)
				}
			}
			if len(ks.byKty) != len(tt.want) {
				t.Errorf("key types = %d, want %d", len(ks.byKty), len(tt.want))
			}
		})
	}
}
