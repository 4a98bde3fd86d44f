package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// port is released before FreePort returns, so another process may take it
// first; servers started here retry on a new port when that happens.
func FreePort(tb testing.TB) int {
	tb.Helper()
	port, err := freePort()
	if err != nil {
		tb.Fatalf("testenv: find a free port: %v", err)
	}
	return port
}

// freePort asks the kernel for a port that is free on every address, not
// on 127.0.0.1 alone: for that, the kernel readily hands out a port that
// loopback client sockets in TIME_WAIT still hold, which a server binding
// all addresses (presenced listens on ":PORT") cannot take; with some
// thousands of such sockets around, nearly every port was one. When the
// ephemeral range is exhausted (a benchmark holding tens of thousands of
// connections), it probes ports below that range, which clients never use.
func freePort() (int, error) {
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		for range 100 {
			port := 20000 + rand.IntN(12000) // below 32768, Linux's default ephemeral start
			if l, perr := net.Listen("tcp", fmt.Sprintf(":%d", port)); perr == nil {
				l.Close()
				return port, nil
			}
		}
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
