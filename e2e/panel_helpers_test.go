package e2e_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's chromium, which scripts/test.sh installs.
const chromiumPath = "/usr/bin/chromium"

// browserStep bounds every browser action of the panel tests; none should
// take more than a fraction of it.
const browserStep = 15 * time.Second

// Browser is one headless chromium with one tab, driven over the DevTools
// protocol, that records everything the page writes to its console.
type Browser struct {
	t   testing.TB
	ctx context.Context // the tab's context; every step derives a timeout from it
	out *syncBuffer     // chromium's stdout and stderr

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

// StartBrowser starts chromium with a fresh profile under t.TempDir and
// opens a blank tab. It fails the test (never skips) when chromium is not
// installed: the panel is part of the product, and a missing browser must
// not pass for a working panel. The browser is closed at cleanup.
func StartBrowser(t testing.TB) *Browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the admin panel browser test needs chromium at %s (%v): run scripts/test.sh, "+
			"or apt-get install chromium", chromiumPath, err)
	}
	b := &Browser{t: t, out: &syncBuffer{}}
	// This machine's network is closed: without the flags that stop
	// chromium's own background traffic (updates, sync, QUIC probes) its
	// refused connections fill the log and slow the start.
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.CombinedOutput(b.out),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.WindowSize(1280, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		if t.Failed() {
			t.Logf("chromium output:\n%s", tail(b.out.String(), 40))
		}
	})
	b.ctx = ctx

	// The first action starts the browser and ties its life to the context
	// it runs with, so it runs with the tab's context (no deadline) and the
	// wait for it is bounded here instead.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("start chromium: %v\n%s", err, tail(b.out.String(), 40))
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("chromium did not start within 30s:\n%s", tail(b.out.String(), 40))
	}

	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return // the tab closed
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	return b
}

// Do runs actions in order within one browserStep, failing the test with
// what on error.
func (b *Browser) Do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser: %s: %v", what, err)
	}
}

// Eval evaluates expr in the page within one browserStep and decodes its
// value into T.
func Eval[T any](b *Browser, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

// MustEval is Eval that fails the test with what on error.
func MustEval[T any](b *Browser, what, expr string) T {
	b.t.Helper()
	v, err := Eval[T](b, expr)
	if err != nil {
		b.t.Fatalf("browser: %s: %v", what, err)
	}
	return v
}

// RunAction runs a with a value within one browserStep.
func RunAction[T any](b *Browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("browser: %s: %v", what, err)
	}
	return v
}

// PollDOM evaluates expr every 50 ms until ok accepts its value, and
// returns how long that took after start; it fails the test with what and
// the last value seen when timeout passes first.
func PollDOM[T any](b *Browser, what, expr string, start time.Time, timeout time.Duration, ok func(T) bool) time.Duration {
	b.t.Helper()
	deadline := start.Add(timeout)
	var last T
	var lastErr error
	for {
		v, err := Eval[T](b, expr)
		if err == nil && ok(v) {
			return time.Since(start)
		}
		last, lastErr = v, err
		if time.Now().After(deadline) {
			b.t.Fatalf("browser: %s: not within %v; last value %+v (error %v)", what, timeout, last, lastErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Console returns a copy of the console messages seen so far.
func (b *Browser) Console() []chromedp.ConsoleMessage {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]chromedp.ConsoleMessage(nil), b.console...)
}

// consoleLine is one message as a test failure shows it.
func consoleLine(m chromedp.ConsoleMessage) string {
	s := m.String()
	if m.Source != "" {
		s = "[" + m.Source + "] " + s
	}
	if m.URL != "" {
		s += fmt.Sprintf(" (%s:%d)", m.URL, m.Line+1)
	}
	return strings.ReplaceAll(s, "\n", " ")
}
