// Package ratelimit holds the per-address limits of the front door: a
// token bucket for connection attempts and a per-minute failure counter
// for admin authentication. Both keep at most MaxKeys addresses, so an
// attacker with many addresses cannot grow them without bound.
package ratelimit

import (
	"net/netip"
	"sync"
	"time"
)

// MaxKeys bounds the addresses a limiter remembers. Beyond it, addresses
// it does not know are refused until old entries expire: under an attack
// that large, refusing is the safe side.
const MaxKeys = 100_000

// Buckets is a token bucket per address: Rate tokens a second, up to
// Burst. It is safe for concurrent use.
type Buckets struct {
	rate, burst float64
	now         func() time.Time

	mu    sync.Mutex
	b     map[netip.Addr]*bucket
	swept time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

// NewBuckets returns per-address buckets. now may be nil (time.Now).
func NewBuckets(rate, burst float64, now func() time.Time) *Buckets {
	if now == nil {
		now = time.Now
	}
	return &Buckets{rate: rate, burst: burst, now: now, b: make(map[netip.Addr]*bucket)}
}

// Allow takes one token for a and reports whether there was one.
func (l *Buckets) Allow(a netip.Addr) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute || len(l.b) >= MaxKeys {
		l.sweep(now)
	}
	b, ok := l.b[a]
	if !ok {
		if len(l.b) >= MaxKeys {
			return false
		}
		b = &bucket{tokens: l.burst, at: now}
		l.b[a] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweep forgets buckets that have refilled: they behave like new ones.
func (l *Buckets) sweep(now time.Time) {
	l.swept = now
	for a, b := range l.b {
		if b.tokens+now.Sub(b.at).Seconds()*l.rate >= l.burst {
			delete(l.b, a)
		}
	}
}

// Failures counts failures per address in fixed one-minute windows. It is
// safe for concurrent use.
type Failures struct {
	max int
	now func() time.Time

	mu    sync.Mutex
	start time.Time // of the current window
	n     map[netip.Addr]int
}

// NewFailures returns a counter that blocks an address after max failures
// in a minute. now may be nil (time.Now).
func NewFailures(max int, now func() time.Time) *Failures {
	if now == nil {
		now = time.Now
	}
	return &Failures{max: max, now: now, n: make(map[netip.Addr]int)}
}

// Max returns the failures allowed per address per minute.
func (f *Failures) Max() int { return f.max }

// Blocked reports whether a has used up its failures in this window, and
// if so how long until the window ends.
func (f *Failures) Blocked(a netip.Addr) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	left := f.roll()
	n, ok := f.n[a]
	if !ok && len(f.n) >= MaxKeys {
		return left, true
	}
	return left, n >= f.max
}

// Fail records a failure for a and returns the count in this window.
func (f *Failures) Fail(a netip.Addr) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.roll()
	if _, ok := f.n[a]; !ok && len(f.n) >= MaxKeys {
		return f.max
	}
	f.n[a]++
	return f.n[a]
}

// roll starts a new window when the current one is over and returns the
// time left in the current window.
func (f *Failures) roll() time.Duration {
	now := f.now()
	if now.Sub(f.start) >= time.Minute {
		f.start = now
		clear(f.n)
	}
	return f.start.Add(time.Minute).Sub(now)
}
