package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/presence/memstore"
	"github.com/presenced/presenced/webhook"
)

const secret = "0123456789abcdef-secret"

type receiver struct {
	mu       sync.Mutex
	status   []int // answers for the first requests; then 200
	posts    int
	accepted []presence.Event
	bad      int
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.posts++
	if !webhook.Verify(secret, body, r.Header.Get(webhook.SignatureHeader)) {
		rc.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if len(rc.status) > 0 {
		st := rc.status[0]
		rc.status = rc.status[1:]
		w.WriteHeader(st)
		return
	}
	var p struct {
		Events []presence.Event `json:"events"`
	}
	_ = json.Unmarshal(body, &p)
	rc.accepted = append(rc.accepted, p.Events...)
}

func (rc *receiver) snapshot() (int, []presence.Event, int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.posts, append([]presence.Event(nil), rc.accepted...), rc.bad
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func start(t *testing.T, rc *receiver, attempts int) (*memstore.Store, *webhook.Sender) {
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	ms := memstore.New(time.Minute, nil)
	s, err := webhook.New(webhook.Options{
		URL: srv.URL, Secret: secret, Node: "n1", Log: ms, Coord: ms,
		Attempts: attempts, Backoff: 20 * time.Millisecond, MaxBackoff: 40 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return ms, s
}

func TestRetryAfter500(t *testing.T) {
	rc := &receiver{status: []int{500, 503}}
	ms, s := start(t, rc, 5)
	if _, err := ms.Sync(context.Background(), presence.Share{Node: "a", Seq: 1, Users: map[string]int64{"u1": 1, "u2": 1}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two events accepted", func() bool { _, acc, _ := rc.snapshot(); return len(acc) == 2 })
	if _, err := ms.Sync(context.Background(), presence.Share{Node: "a", Seq: 2}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "four events accepted", func() bool { _, acc, _ := rc.snapshot(); return len(acc) == 4 })
	posts, acc, bad := rc.snapshot()
	if bad != 0 || posts != 4 {
		t.Fatalf("%d posts, %d badly signed; want 4 (two failed, two accepted), 0", posts, bad)
	}
	ids := map[string]bool{}
	for _, e := range acc {
		if ids[e.ID] {
			t.Fatalf("event %s accepted twice", e.ID)
		}
		ids[e.ID] = true
	}
	if s.Delivered() != 4 || s.Failures() != 2 || s.Dropped() != 0 {
		t.Fatalf("delivered %d, failures %d, dropped %d; want 4, 2, 0", s.Delivered(), s.Failures(), s.Dropped())
	}
}

func TestDropAfterAttempts(t *testing.T) {
	rc := &receiver{status: []int{500, 500, 500}}
	ms, s := start(t, rc, 3)
	if _, err := ms.Sync(context.Background(), presence.Share{Node: "a", Seq: 1, Users: map[string]int64{"u1": 1}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the event dropped", func() bool { return s.Dropped() == 1 })
	// The next event is delivered: a dropped batch does not block the log.
	if _, err := ms.Sync(context.Background(), presence.Share{Node: "a", Seq: 2}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the next event accepted", func() bool { _, acc, _ := rc.snapshot(); return len(acc) == 1 })
	_, acc, _ := rc.snapshot()
	if acc[0].Type != presence.EventOffline || acc[0].User != "u1" {
		t.Fatalf("accepted %+v, want offline u1", acc)
	}
}

func TestSignature(t *testing.T) {
	body := []byte(`{"events":[]}`)
	sig := webhook.Sign(secret, body)
	if !webhook.Verify(secret, body, sig) || webhook.Verify("other-secret-xxxxxxxx", body, sig) || webhook.Verify(secret, []byte(`{}`), sig) {
		t.Fatal("Verify does not check the HMAC")
	}
	// A known vector: HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
	if got := webhook.Sign("key", []byte("The quick brown fox jumps over the lazy dog")); got != "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8" {
		t.Fatalf("Sign = %s", got)
	}
}

// wholeLog is an event log that, like the Redis store's whole stream
// entries, returns every event after the one named, whatever count says.
type wholeLog struct{ evs []presence.Event }

func (l wholeLog) ReadEvents(ctx context.Context, after string, _ int, block time.Duration) ([]presence.Event, error) {
	for i, e := range l.evs {
		if after == "0-0" || e.ID > after {
			return l.evs[i:], nil
		}
	}
	select {
	case <-ctx.Done():
	case <-time.After(block):
	}
	return nil, nil
}

func (l wholeLog) LastEventID(context.Context) (string, error) { return l.evs[len(l.evs)-1].ID, nil }

// TestBatchMaxWithLargerReads: a log that returns more events than asked
// is still posted BatchMax at a time, each event once, the position saved
// after each POST.
func TestBatchMaxWithLargerReads(t *testing.T) {
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	var log wholeLog
	for k := range 250 {
		// The ids of one entry of 250 transitions; fixed width so that
		// the string order of this test's log is the ids' order.
		log.evs = append(log.evs, presence.Event{ID: fmt.Sprintf("1733050000000-0.%03d", k), Type: presence.EventOnline, User: fmt.Sprint("u", k), At: time.Now()})
	}
	ms := memstore.New(time.Minute, nil)
	s, err := webhook.New(webhook.Options{URL: srv.URL, Secret: secret, Node: "n1", Log: log, Coord: ms, BatchMax: 100})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "250 events accepted", func() bool { _, acc, _ := rc.snapshot(); return len(acc) >= 250 })
	posts, acc, _ := rc.snapshot()
	if posts != 3 || len(acc) != 250 {
		t.Fatalf("%d posts of %d events, want 3 of 250 (100, 100, 50)", posts, len(acc))
	}
	for i, e := range acc {
		if e.ID != log.evs[i].ID {
			t.Fatalf("event %d is %s, want %s", i, e.ID, log.evs[i].ID)
		}
	}
	waitFor(t, "the position saved", func() bool { pos, _ := ms.Position(context.Background()); return pos == log.evs[249].ID })
}
