package gateway

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lesismal/nbio"

	"github.com/presenced/presenced/internal/wsproto"
)

// closeGrace is how long a connection that was sent a close frame may
// take to answer with its own before the TCP connection is closed.
const closeGrace = time.Second

// session is what the event loop keeps per connection: the WebSocket
// state plus what the endpoint (/ws, and later Socket.IO) attaches to it.
type session interface {
	ws() *wsConn
	// onMessage handles one whole data message; data is only valid during
	// the call. It returns false once it has failed the connection.
	onMessage(op byte, data []byte) bool
	// onClosed runs once, when the TCP connection is gone.
	onClosed()
}

// wsConn is one WebSocket connection on the event loop. It holds no
// buffer while idle: the decoder allocates only for an incomplete frame.
type wsConn struct {
	nc     *nbio.Conn
	limits *wsLimits
	stats  *Stats
	active atomic.Int64 // unix seconds of the last bytes from the client
	live   atomic.Bool  // on the loop: send may write

	mu         sync.Mutex // guards what follows; held while decoding
	dec        wsproto.Decoder
	attached   bool    // the connection is on the loop: it may be written to
	closing    bool    // a close frame was sent (or is due): wait for the answer
	lost       bool    // the input is out of frame sync: discard it
	pending    int16   // close code due once attached
	pingTokens float32 // token bucket for pings (control and application)
	pingAt     int64   // unix nanoseconds the bucket was last filled
}

// wsLimits are the per-connection bounds, shared by every connection of a
// loop.
type wsLimits struct {
	maxMessage int
	pingRate   float64 // tokens per second
	pingBurst  float64
}

// ws lets a session embed its wsConn.
func (w *wsConn) ws() *wsConn { return w }

// feed decodes bytes from the client. Control frames are answered here;
// data messages go to s.onMessage. Called by the poller with the bytes it
// read (only valid during the call), and once by the handshake with the
// bytes that arrived along with the handshake.
func (w *wsConn) feed(s session, data []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.feedLocked(s, data)
}

func (w *wsConn) feedLocked(s session, data []byte) {
	w.active.Store(time.Now().Unix())
	if w.closing {
		w.drain(data)
		return
	}
	rest, err := w.dec.Feed(data, w.limits.maxMessage, func(op byte, payload []byte) bool {
		switch op {
		case wsproto.OpPing:
			if !w.allowPingLocked() {
				w.failLocked(wsproto.ClosePolicyViolation, "too many pings")
				return false
			}
			_ = w.send(wsproto.OpPong, payload)
			return true
		case wsproto.OpPong:
			return true
		case wsproto.OpClose:
			code, _, _ := wsproto.ParseClose(payload)
			if code == wsproto.CloseNoStatus {
				code = wsproto.CloseNormal
			}
			_, _ = w.nc.Write(wsproto.AppendClose(nil, code, ""))
			w.closing = true
			_ = w.nc.Close()
			return false
		}
		return s.onMessage(op, payload)
	})
	switch {
	case err != nil:
		w.lost = true
		w.failLocked(err.Code, err.Reason)
	case len(rest) > 0 && w.closing:
		w.drain(rest)
	}
}

// drain reads what a client sends after it was sent a close frame,
// looking for its close frame to end the TCP connection; anything else is
// dropped, and so is everything after a violation (the stream is out of
// frame sync then), until the close deadline. Reading on (rather than
// closing at once) keeps the kernel from answering with a reset, which
// could destroy the close frame in flight.
func (w *wsConn) drain(data []byte) {
	if w.lost {
		return
	}
	_, err := w.dec.Feed(data, w.limits.maxMessage, func(op byte, _ []byte) bool {
		if op == wsproto.OpClose {
			_ = w.nc.Close()
			return false
		}
		return true
	})
	if err != nil {
		w.lost = true
	}
}

// allowPingLocked takes a token from the ping bucket.
func (w *wsConn) allowPingLocked() bool {
	now := time.Now().UnixNano()
	l := w.limits
	if w.pingAt == 0 {
		w.pingTokens = float32(l.pingBurst)
	} else {
		w.pingTokens = float32(min(l.pingBurst, float64(w.pingTokens)+float64(now-w.pingAt)/1e9*l.pingRate))
	}
	w.pingAt = now
	if w.pingTokens < 1 {
		return false
	}
	w.pingTokens--
	return true
}

// send writes one frame. The event loop queues what the socket cannot
// take at once; over the queue cap the connection is closed as a slow
// consumer.
func (w *wsConn) send(op byte, payload []byte) error {
	if !w.live.Load() {
		return net.ErrClosed // not on the loop yet (or never)
	}
	_, err := w.nc.Write(wsproto.AppendFrame(make([]byte, 0, 10+len(payload)), true, op, payload))
	if errors.Is(err, nbio.ErrOverflow) {
		w.stats.SlowConsumers.Add(1)
	}
	return err
}

// fail sends a close frame with code and closes the connection once the
// client answers or closeGrace has passed.
func (w *wsConn) fail(code int, reason string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failLocked(code, reason)
}

func (w *wsConn) failLocked(code int, reason string) {
	if w.closing {
		return
	}
	w.closing = true
	switch code {
	case wsproto.CloseProtocolError, wsproto.CloseInvalidPayload, wsproto.CloseTooBig:
		w.stats.ProtocolErrors.Add(1)
	case wsproto.ClosePolicyViolation:
		w.stats.PolicyCloses.Add(1)
	}
	if !w.attached {
		w.pending = int16(code)
		return
	}
	if _, err := w.nc.Write(wsproto.AppendClose(nil, code, reason)); err != nil {
		_ = w.nc.Close()
		return
	}
	_ = w.nc.SetReadDeadline(time.Now().Add(closeGrace))
}

// loop is the event loop that holds every WebSocket connection after its
// handshake: epoll, a few poller goroutines, no goroutine per connection.
type loop struct {
	engine *nbio.Engine
}

func newLoop(name string, maxQueued int) (*loop, error) {
	e := nbio.NewEngine(nbio.Config{
		Name:               name,
		NPoller:            runtime.NumCPU(),
		ReadBufferSize:     16 << 10, // one per poller, shared by its connections
		MaxWriteBufferSize: maxQueued,
	})
	e.OnData(func(c *nbio.Conn, data []byte) {
		if s, ok := c.Session().(session); ok {
			s.ws().feed(s, data)
		}
	})
	e.OnClose(func(c *nbio.Conn, _ error) {
		if s, ok := c.Session().(session); ok {
			s.onClosed()
		}
	})
	if err := e.Start(); err != nil {
		return nil, fmt.Errorf("gateway: start event loop: %w", err)
	}
	return &loop{engine: e}, nil
}

// wrap takes a hijacked connection out of net/http: it duplicates its
// descriptor and closes conn. The result can be closed, but not written,
// until adopt has put it on the loop.
func wrap(conn net.Conn) (*nbio.Conn, error) {
	nc, err := nbio.NBConn(conn)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("gateway: take over connection: %w", err)
	}
	return nc, nil
}

// adopt puts s's connection (from wrap) on the loop. buffered are the bytes
// read past the handshake. On error the connection is closed, and
// s.onClosed may or may not have run.
func (l *loop) adopt(s session, buffered []byte) error {
	w := s.ws()
	w.active.Store(time.Now().Unix())
	w.nc.SetSession(s)
	// Hold the lock across the hand-off, so the poller decodes bytes that
	// arrive now only after the buffered ones.
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := l.engine.AddConn(w.nc); err != nil {
		_ = w.nc.Close()
		return fmt.Errorf("gateway: move connection to the event loop: %w", err)
	}
	w.attached = true
	w.live.Store(true)
	if w.closing {
		// Failed (shutdown) while not yet on the loop.
		w.closing = false
		w.failLocked(int(w.pending), "server shutting down")
		return nil
	}
	if len(buffered) > 0 {
		w.feedLocked(s, buffered)
	}
	return nil
}

// closeNow closes the TCP connection at once.
func (w *wsConn) closeNow() {
	w.mu.Lock()
	defer w.mu.Unlock()
	_ = w.nc.Close()
}

// stop stops the loop, closing its connections. nbio v1.6.8 can miss a
// Stop that comes before its pollers have started (each clears its stop
// flag as it starts), and then waits for ever; so the wait is bounded: a
// process that stops that soon is exiting anyway.
func (l *loop) stop() {
	done := make(chan struct{})
	go func() { defer close(done); l.engine.Stop() }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
}
