package main

import "testing"

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"redis://:secret@cache:6379/2", "redis://cache:6379/2"},
		{"rediss://user:pw@cache.example.com:6380", "rediss://cache.example.com:6380"},
		{"mongodb://app:pw@db1:27017,db2:27017/app?replicaSet=rs0&authSource=admin", "mongodb://db1:27017,db2:27017/app"},
		{"mongodb+srv://app:pw@cluster0.example.net/", "mongodb+srv://cluster0.example.net"},
		{"not a url with pw", "(unparsable)"},
		{"redis://:pw@[::1", "(unparsable)"},
	} {
		if got := redactURL(tc.in); got != tc.want {
			t.Errorf("redactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
