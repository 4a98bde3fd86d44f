package testenv

import (
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// FaultProxy forwards TCP connections to a real redis-server and injects
// the faults that leave a call's outcome unknown to the client: requests
// held back (and delivered late, after the client gave up) and replies
// dropped (the command ran, the client never hears of it). It does not
// speak RESP: it only withholds or discards bytes.
type FaultProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	conns   map[*proxyConn]bool
	holdNew bool    // new connections start held
	chance  float64 // probability that a read of a request breaks its connection (random faults)
	next    string  // "hold" or "drop": what the next request read does to its connection
	rnd     *rand.Rand
	faults  int
}

type proxyConn struct {
	client, server net.Conn

	mu   sync.Mutex
	hold bool   // keep what the client sends instead of forwarding it
	held []byte // what was kept, delivered by Release
	drop bool   // discard what the server answers
}

// StartFaultProxy listens on a loopback port and forwards to target
// (host:port) until the test ends.
func StartFaultProxy(tb testing.TB, target string) *FaultProxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &FaultProxy{ln: ln, target: target, conns: map[*proxyConn]bool{}, rnd: rand.New(rand.NewPCG(7, 8))}
	go p.accept()
	tb.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for c := range p.conns {
			c.client.Close()
			c.server.Close()
		}
	})
	return p
}

// Addr is the proxy's host:port.
func (p *FaultProxy) Addr() string { return p.ln.Addr().String() }

func (p *FaultProxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		c := &proxyConn{client: client, server: server}
		p.mu.Lock()
		c.hold = p.holdNew
		p.conns[c] = true
		p.mu.Unlock()
		go p.upstream(c)
		go p.downstream(c)
	}
}

// upstream copies client -> server, keeping the bytes while held. When
// the client goes away, a held connection stays open towards the server
// so that Release can still deliver what it kept.
func (p *FaultProxy) upstream(c *proxyConn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := c.client.Read(buf)
		if n > 0 {
			p.maybeBreak(c)
			c.mu.Lock()
			if c.hold {
				c.held = append(c.held, buf[:n]...)
				c.mu.Unlock()
			} else {
				c.mu.Unlock()
				if _, werr := c.server.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			c.mu.Lock()
			held := c.hold
			c.mu.Unlock()
			if !held {
				c.server.Close()
			}
			return
		}
	}
}

// downstream copies server -> client, discarding replies while drop is set.
func (p *FaultProxy) downstream(c *proxyConn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := c.server.Read(buf)
		if n > 0 {
			c.mu.Lock()
			drop := c.drop
			c.mu.Unlock()
			if !drop {
				if _, werr := c.client.Write(buf[:n]); werr != nil && err == nil {
					_, _ = io.Copy(io.Discard, c.server) // the client left: drain late replies
					return
				}
			}
		}
		if err != nil {
			c.client.Close()
			return
		}
	}
}

// maybeBreak turns a random fault on for c: its request held back and
// delivered late (after 0.5 to 2 s, when its client has given up), or its
// replies dropped.
func (p *FaultProxy) maybeBreak(c *proxyConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.next != "" {
		c.mu.Lock()
		c.hold, c.drop = c.hold || p.next == "hold", c.drop || p.next == "drop"
		c.mu.Unlock()
		p.next = ""
		return
	}
	if p.chance == 0 || p.rnd.Float64() >= p.chance {
		return
	}
	p.faults++
	c.mu.Lock()
	if p.rnd.IntN(2) == 0 {
		c.hold = true
		late := 500*time.Millisecond + time.Duration(p.rnd.Int64N(int64(1500*time.Millisecond)))
		time.AfterFunc(late, c.release)
	} else {
		c.drop = true
	}
	c.mu.Unlock()
}

// release delivers what c held and lets it through again.
func (c *proxyConn) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hold {
		c.hold = false
		if len(c.held) > 0 {
			_, _ = c.server.Write(c.held)
			c.held = nil
		}
	}
}

// Armed reports whether a HoldNext or DropNext is still waiting for a request.
func (p *FaultProxy) Armed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.next != ""
}

// HoldNext makes the connection of the next request read keep it (and
// what follows) until Release.
func (p *FaultProxy) HoldNext() {
	p.mu.Lock()
	p.next = "hold"
	p.mu.Unlock()
}

// DropNext makes the connection of the next request read discard its
// replies: the request runs, its client never hears of it.
func (p *FaultProxy) DropNext() {
	p.mu.Lock()
	p.next = "drop"
	p.mu.Unlock()
}

// Random makes each request read break its connection with probability
// chance (0 turns it off).
func (p *FaultProxy) Random(chance float64) {
	p.mu.Lock()
	p.chance = chance
	p.mu.Unlock()
}

// Faults returns how many random faults were injected.
func (p *FaultProxy) Faults() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.faults
}

// Hold makes every open connection keep what its client sends; with
// alsoNew, connections opened from now on too (so even a read-back fails).
func (p *FaultProxy) Hold(alsoNew bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holdNew = alsoNew
	for c := range p.conns {
		c.mu.Lock()
		c.hold = true
		c.mu.Unlock()
	}
}

// StopHoldingNew lets connections opened from now on through; the ones
// held stay held until Release.
func (p *FaultProxy) StopHoldingNew() {
	p.mu.Lock()
	p.holdNew = false
	p.mu.Unlock()
}

// Release delivers, late, everything held, and lets those connections
// through again (their replies go to clients that gave up long ago).
func (p *FaultProxy) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holdNew = false
	for c := range p.conns {
		c.release()
	}
}
