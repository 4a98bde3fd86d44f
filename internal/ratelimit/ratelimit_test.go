package ratelimit

import (
	"net/netip"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestBuckets(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	b := NewBuckets(10, 20, c.now)
	a := netip.MustParseAddr("192.0.2.1")
	other := netip.MustParseAddr("192.0.2.2")
	for i := range 20 {
		if !b.Allow(a) {
			t.Fatalf("burst: attempt %d refused", i+1)
		}
	}
	if b.Allow(a) {
		t.Fatal("21st attempt in the same instant allowed")
	}
	if !b.Allow(other) {
		t.Fatal("another address shares the bucket")
	}
	c.t = c.t.Add(100 * time.Millisecond) // one token at 10/s
	if !b.Allow(a) || b.Allow(a) {
		t.Fatal("refill after 100ms is not exactly one token")
	}
	c.t = c.t.Add(time.Hour)
	for i := range 20 {
		if !b.Allow(a) {
			t.Fatalf("after refill: attempt %d refused", i+1)
		}
	}
}

func TestFailures(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	f := NewFailures(3, c.now)
	a := netip.MustParseAddr("192.0.2.1")
	for i := 1; i <= 3; i++ {
		if _, blocked := f.Blocked(a); blocked {
			t.Fatalf("blocked before failure %d", i)
		}
		if n := f.Fail(a); n != i {
			t.Fatalf("Fail = %d, want %d", n, i)
		}
	}
	c.t = c.t.Add(20 * time.Second)
	left, blocked := f.Blocked(a)
	if !blocked || left != 40*time.Second {
		t.Fatalf("Blocked = %v, %v; want true, 40s", left, blocked)
	}
	if _, blocked := f.Blocked(netip.MustParseAddr("192.0.2.9")); blocked {
		t.Fatal("another address blocked")
	}
	c.t = c.t.Add(41 * time.Second)
	if _, blocked := f.Blocked(a); blocked {
		t.Fatal("still blocked in the next minute")
	}
}
