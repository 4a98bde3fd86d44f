package e2e_test

import (
	"bytes"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// rssSlack is how much the server's resident set may grow over a test.
const rssSlack = 64 << 20

// baselineRSS measures the node's RSS after one full WebSocket exchange
// and one HTTP request, so that lazily allocated buffers and pools are
// already counted.
func baselineRSS(t *testing.T, n *Node) uint64 {
	t.Helper()
	c := dialWS(t, n, "warm-up")
	c.send(wsText(`{"type":"ping"}`))
	if m, err := c.readFrame(); err != nil || m.op != 0x1 {
		t.Fatalf("warm-up ping: %v %v", m, err)
	}
	c.send(wsClose(1000))
	c.closeCode()
	if status := n.Get("/healthz", false, nil); status != http.StatusOK {
		t.Fatalf("warm-up /healthz: %d", status)
	}
	time.Sleep(200 * time.Millisecond)
	return n.RSS(t)
}

// checkRSS fails the test if the node grew more than rssSlack over base.
func checkRSS(t *testing.T, n *Node, base uint64, peak uint64) {
	t.Helper()
	after := n.RSS(t)
	t.Logf("RSS: baseline %s, peak seen %s, after %s (growth %+.1f MiB)", mib(base), mib(max(peak, after)), mib(after), (float64(after)-float64(base))/(1<<20))
	if after > base+rssSlack {
		t.Errorf("RSS after %s is over baseline %s + 64 MiB", mib(after), mib(base))
	}
}

// sampleRSS records the node's largest RSS every 20ms until stop is
// called, which returns it.
func sampleRSS(n *Node) (stop func() uint64) {
	done, peakc := make(chan struct{}), make(chan uint64)
	go func() {
		var peak uint64
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				peakc <- peak
				return
			case <-tick.C:
				if rss, err := n.rss(); err == nil {
					peak = max(peak, rss)
				}
			}
		}
	}()
	return func() uint64 { close(done); return <-peakc }
}

// TestPingFloodMemory: a client that sends control pings as fast as it can
// and never reads is closed (ping rate limit), and what it sent does not
// pile up in the server.
func TestPingFloodMemory(t *testing.T) {
	t.Parallel()
	n := StartNode(t, nil)
	base := baselineRSS(t, n)
	stop := sampleRSS(n)

	const pings, batch = 200_000, 1000
	c := dialWS(t, n, "flooder")
	frames := bytes.Repeat(wsFrame(finPing, []byte("0123456789abcdefghijkl")), batch)
	sent := 0
	var werr error
	for sent < pings && werr == nil {
		if werr = c.write(frames); werr == nil {
			sent += batch
		}
	}
	// However far the writes got, the server must have told the client
	// why it is going and then ended the connection.
	code, before, cerr := c.untilClose()
	more, err := c.more(ioTimeout)
	peak := stop()
	t.Logf("sent %d of %d pings (write error: %v); %d frames, then close %d (%v); then %d bytes and %v", sent, pings, werr, len(before), code, cerr, len(more), err)
	switch {
	case cerr != nil:
		t.Errorf("ping flood: %v; frames before: %v", cerr, before)
	case code != 1008:
		t.Errorf("ping flood closed with %d, want 1008", code)
	}
	if isTimeout(err) {
		t.Errorf("the connection was still open %v after the close frame", ioTimeout)
	}
	checkRSS(t, n, base, peak)
}

// TestUnterminatedHeaderMemory: 16 clients each try to send a 60 MiB
// header line; every one is answered or cut off long before, and the
// server does not hold what they sent.
func TestUnterminatedHeaderMemory(t *testing.T) {
	t.Parallel()
	n := StartNode(t, nil)
	base := baselineRSS(t, n)
	stop := sampleRSS(n)

	const conns, size = 16, 60 << 20
	var wg sync.WaitGroup
	results := make([]string, conns)
	failed := make([]bool, conns)
	for i := range conns {
		c := dialRaw(t, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			prefix := fmt.Appendf(nil, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long-%d: ", i)
			written, resp, werr := c.headerFlood(prefix, size, 64<<10, 0)
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			results[i] = fmt.Sprintf("conn %d: %.1f MiB accepted, answer %d, write error %v", i, float64(written)/(1<<20), status, werr)
			// Answered means 431; no answer is fine if the server cut
			// the connection.
			answered := status == http.StatusRequestHeaderFieldsTooLarge || (resp == nil && werr != nil && !isTimeout(werr))
			failed[i] = written >= size/2 || !answered
		}()
	}
	wg.Wait()
	peak := stop()
	for i, r := range results {
		if failed[i] {
			t.Errorf("%s; want 431 or a closed connection well before 60 MiB", r)
		} else {
			t.Log(r)
		}
	}
	time.Sleep(500 * time.Millisecond)
	checkRSS(t, n, base, peak)
}

// TestAbandonedSSEStreams: admin event streams whose clients vanish
// (reset, no goodbye) end, and their goroutines with them.
func TestAbandonedSSEStreams(t *testing.T) {
	t.Parallel()
	n := StartNode(t, nil)
	base := n.Goroutines(t)

	const streams = 100
	conns := make([]*rawConn, streams)
	for i := range conns {
		c := dialRaw(t, n)
		c.send([]byte("GET /api/admin/dashboard/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + adminToken + "\r\n\r\n"))
		_ = c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %d: %s (%v)", i, dumpResponse(resp, nil), err)
		}
		// The first event: a data line, then a blank line.
		var event bytes.Buffer
		buf := make([]byte, 512)
		for !bytes.Contains(event.Bytes(), []byte("data: ")) || !bytes.Contains(event.Bytes(), []byte("\n\n")) {
			k, err := resp.Body.Read(buf)
			event.Write(buf[:k])
			if err != nil {
				t.Fatalf("stream %d: first event: read %q, then %v", i, event.Bytes(), err)
			}
		}
		conns[i] = c
	}
	open := n.Goroutines(t)
	for _, c := range conns {
		_ = c.nc.SetLinger(0) // close with a reset
		_ = c.nc.Close()
	}
	start := time.Now()
	var now int
	waitFor(t, 10*time.Second, "goroutines back to the baseline", func() (bool, string) {
		now = n.Goroutines(t)
		return now <= base+10, fmt.Sprintf("%d goroutines, baseline %d, %d with %d streams open", now, base, open, streams)
	})
	t.Logf("goroutines: baseline %d, %d with %d streams open, %d after %v", base, open, streams, now, time.Since(start).Round(time.Millisecond))
}
