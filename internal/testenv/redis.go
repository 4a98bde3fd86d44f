package testenv

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// redisReadyTimeout bounds the wait for a new redis-server to answer PING
	// and for a stopped one to exit and release its port.
	redisReadyTimeout = 10 * time.Second
	// redisPollEvery is how often readiness and port release are probed.
	redisPollEvery = 20 * time.Millisecond
	// redisDoTimeout bounds one Do call, so a paused server fails the test
	// instead of hanging it.
	redisDoTimeout = 5 * time.Second
)

// errPortInUse marks a start that failed because another process holds the
// port; StartRedis then retries on a new one.
var errPortInUse = errors.New("port already in use")

// Redis is a real redis-server child process listening on 127.0.0.1, with no
// persistence and its files under the test's temporary directory. Its methods
// may be called from several goroutines. Those that fail the test do so with
// tb.Fatalf, which, like testing.T.FailNow, must run on the test's goroutine;
// use DoErr from other goroutines.
type Redis struct {
	tb   testing.TB
	bin  string // redis-server executable
	dir  string // parent of each run's working directory
	port int    // fixed once StartRedis returns

	// args, when set, returns the arguments of each run, given its
	// directory, instead of the default ones (a Sentinel's config file).
	args func(dir string) []string
	// extra are arguments added to the default ones (cluster mode, TLS).
	extra []string
	// tlsConfig, when set, makes the server listen for TLS only (port 0,
	// tls-port on port; extra carries the certificate) and Do speak TLS.
	tlsConfig *tls.Config
	// password, when set, is sent with AUTH before each Do command.
	password string

	mu     sync.Mutex // serialises Start, Stop, Kill, Pause, Resume
	proc   *redisProc // nil while not running
	paused bool
	runs   int // processes started so far; names each run's directory
}

// redisProc is one running redis-server.
type redisProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
	log  string        // file receiving its stdout and stderr
}

// StartRedis starts redis-server on a free 127.0.0.1 port with persistence
// off (--save "" --appendonly no) and its directory under tb.TempDir(),
// waits until it answers PING, and stops it in tb.Cleanup.
//
// redis-server is looked up in PATH, then /usr/bin and /usr/sbin. When it is
// missing, or does not start within 10 s, StartRedis fails the test; it never
// skips it.
func StartRedis(tb testing.TB) *Redis {
	tb.Helper()
	return StartRedisWith(tb)
}

// StartRedisWith is StartRedis with extra redis-server arguments, e.g.
// "--requirepass", "secret" or "--maxmemory-policy", "allkeys-lru". Do
// speaks no AUTH, so it fails on a server that requires a password.
func StartRedisWith(tb testing.TB, extra ...string) *Redis {
	tb.Helper()
	return startRedis(tb, func(r *Redis) { r.extra = extra })
}

// startRedis starts a server after setup has adjusted it (its port is
// not chosen yet; its dir is).
func startRedis(tb testing.TB, setup func(r *Redis)) *Redis {
	tb.Helper()
	bin, err := redisServerBinary()
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	r := &Redis{tb: tb, bin: bin, dir: tb.TempDir()}
	if setup != nil {
		setup(r)
	}
	tb.Cleanup(r.cleanup)

	// The free port may be taken by another process before redis-server
	// binds it, so a start that loses that race is retried on a new port.
	for range 5 {
		if r.port, err = freePort(); err != nil {
			tb.Fatalf("testenv: find a free port for redis-server: %v", err)
		}
		r.mu.Lock()
		err = r.startLocked()
		r.mu.Unlock()
		if !errors.Is(err, errPortInUse) {
			break
		}
	}
	if err != nil {
		tb.Fatalf("testenv: start redis-server: %v", err)
	}
	return r
}

// Addr returns the server's address, "127.0.0.1:port".
func (r *Redis) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
}

// URL returns the server's address as a REDIS_URL, "redis://127.0.0.1:port".
func (r *Redis) URL() string {
	return "redis://" + r.Addr()
}

// Port returns the TCP port the server listens on; it stays the same across
// Kill, Stop and Start.
func (r *Redis) Port() int {
	return r.port
}

// Kill ends the server with SIGKILL, as a crash would, and waits until it
// has exited and its port is closed. Killing a stopped server does nothing.
func (r *Redis) Kill() {
	r.tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return
	}
	if err := r.stopLocked(syscall.SIGKILL); err != nil {
		r.tb.Fatalf("testenv: kill redis-server: %v", err)
	}
}

// Stop shuts the server down cleanly with SIGTERM (nothing is saved, as
// persistence is off) and waits until it has exited and its port is closed.
// A paused server is resumed first so that it can handle the signal.
// Stopping a stopped server does nothing.
func (r *Redis) Stop() {
	r.tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return
	}
	if err := r.stopLocked(syscall.SIGTERM); err != nil {
		r.tb.Fatalf("testenv: stop redis-server: %v", err)
	}
}

// Start starts the server again after Kill or Stop, on the same port and
// with no data, and waits until it answers PING. It fails the test if the
// server is running or if another process has taken the port.
func (r *Redis) Start() {
	r.tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil {
		r.tb.Fatalf("testenv: start redis-server on %s: already running", r.Addr())
	}
	if err := r.startLocked(); err != nil {
		r.tb.Fatalf("testenv: restart redis-server on %s: %v", r.Addr(), err)
	}
}

// StartWith is Start with other extra redis-server arguments (see
// StartRedisWith), kept for later starts, e.g. to bring Redis back with
// another maxmemory-policy.
func (r *Redis) StartWith(extra ...string) {
	r.tb.Helper()
	r.mu.Lock()
	r.extra = extra
	r.mu.Unlock()
	r.Start()
}

// Pause freezes the server with SIGSTOP: connections stay open and requests
// go unanswered, as when Redis hangs. Resume undoes it.
func (r *Redis) Pause() {
	r.tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		r.tb.Fatalf("testenv: pause redis-server on %s: not running", r.Addr())
	}
	if err := r.proc.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		r.tb.Fatalf("testenv: pause redis-server: %v", err)
	}
	r.paused = true
	waitProcState(r.proc.cmd.Process.Pid, 'T')
}

// Resume continues a server frozen by Pause with SIGCONT.
func (r *Redis) Resume() {
	r.tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		r.tb.Fatalf("testenv: resume redis-server on %s: not running", r.Addr())
	}
	if err := r.proc.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		r.tb.Fatalf("testenv: resume redis-server: %v", err)
	}
	r.paused = false
}

// Do sends one command on a new connection and returns the reply as text:
// a simple string or bulk string as is ("OK", the value), an integer in
// decimal, a nil reply as "(nil)", an error reply as "(error) ERR ...", and
// an array as its elements joined by spaces in brackets ("[a b]"). It fails
// the test on a network error or after 5 s without a reply.
func (r *Redis) Do(args ...string) string {
	r.tb.Helper()
	reply, err := r.DoErr(args...)
	if err != nil {
		r.tb.Fatalf("testenv: %v", err)
	}
	return reply
}

// DoErr is Do returning the network error instead of failing the test, for
// goroutines other than the test's.
func (r *Redis) DoErr(args ...string) (string, error) {
	return r.do(redisDoTimeout, args...)
}

// do sends one command as Do does, over TLS and after AUTH when the
// server was set up so.
func (r *Redis) do(timeout time.Duration, args ...string) (string, error) {
	return redisDoWith(r.Addr(), timeout, r.tlsConfig, r.password, args...)
}

// cleanup kills the server at the end of the test.
func (r *Redis) cleanup() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return
	}
	if err := r.stopLocked(syscall.SIGKILL); err != nil {
		r.tb.Errorf("testenv: kill redis-server at cleanup: %v", err)
	}
}

// startLocked starts a process on r.port in a fresh directory and waits for
// PING to succeed. r.mu is held.
func (r *Redis) startLocked() error {
	addr := r.Addr()
	// Probe the port first: a server that cannot bind exits, but only a
	// probe tells that case apart from other start failures reliably.
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: %w", addr, errPortInUse)
	}
	l.Close()

	r.runs++
	dir := filepath.Join(r.dir, fmt.Sprintf("run-%d", r.runs))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	logPath := filepath.Join(dir, "redis.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child holds its own descriptor

	args := []string{
		"--port", strconv.Itoa(r.port),
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--loglevel", "notice",
	}
	if r.tlsConfig != nil {
		args[1] = "0" // no plain port
		args = append(args, "--tls-port", strconv.Itoa(r.port))
	}
	if r.args != nil {
		args = r.args(dir)
	}
	cmd := exec.Command(r.bin, append(args, r.extra...)...)
	// A file, not a pipe: a pipe would keep `go test` waiting for a server
	// that outlives a crashed test binary.
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", r.bin, err)
	}
	p := &redisProc{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		cmd.Wait()
		close(p.done)
	}()

	deadline := time.Now().Add(redisReadyTimeout)
	for {
		select {
		case <-p.done:
			log := readTail(logPath)
			if strings.Contains(log, "Address already in use") {
				return fmt.Errorf("%s: %w", addr, errPortInUse)
			}
			return fmt.Errorf("redis-server exited at start (%v); log:\n%s", cmd.ProcessState, log)
		default:
		}
		// A server started with --requirepass answers NOAUTH: it is up.
		if reply, err := r.do(200*time.Millisecond, "PING"); err == nil && (reply == "PONG" || strings.HasPrefix(reply, "(error) NOAUTH")) {
			r.proc, r.paused = p, false
			return nil
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-p.done
			return fmt.Errorf("no PONG from %s within %s; log:\n%s", addr, redisReadyTimeout, readTail(logPath))
		}
		time.Sleep(redisPollEvery)
	}
}

// stopLocked sends sig, waits for the process to exit and for its port to
// close. r.mu is held.
func (r *Redis) stopLocked(sig syscall.Signal) error {
	p := r.proc
	if r.paused && sig != syscall.SIGKILL {
		// A stopped process acts on no signal but SIGKILL until continued.
		p.cmd.Process.Signal(syscall.SIGCONT)
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.done:
	case <-time.After(redisReadyTimeout):
		p.cmd.Process.Kill()
		<-p.done
		r.proc, r.paused = nil, false
		return fmt.Errorf("redis-server did not exit within %s of %v; killed it", redisReadyTimeout, sig)
	}
	r.proc, r.paused = nil, false

	addr := r.Addr()
	deadline := time.Now().Add(redisReadyTimeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return nil
		}
		c.Close()
		if time.Now().After(deadline) {
			return fmt.Errorf("port %s still accepts connections after redis-server exited", addr)
		}
		time.Sleep(redisPollEvery)
	}
}

// redisServerBinary finds redis-server in PATH, /usr/bin or /usr/sbin.
func redisServerBinary() (string, error) {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/bin/redis-server", "/usr/sbin/redis-server"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("redis-server not found in PATH, /usr/bin or /usr/sbin; install it: apt-get install redis-server")
}

// waitProcState waits briefly until /proc shows the process in state (e.g.
// 'T' for stopped), so that Pause returns only once the server is frozen.
// Without /proc it returns at once: the signal is then merely sent.
func waitProcState(pid int, state byte) {
	path := fmt.Sprintf("/proc/%d/stat", pid)
	for range 50 {
		b, err := os.ReadFile(path)
		if err != nil {
			return
		}
		// The state follows the parenthesised command name: "pid (comm) S ...".
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == state {
			return
		}
		time.Sleep(redisPollEvery / 4)
	}
}

// readTail returns the last few KiB of a log file, for failure messages.
func readTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	const max = 4 << 10
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// redisDo sends one command as a RESP array of bulk strings on a new
// connection and reads one reply, all within timeout.
func redisDo(addr string, timeout time.Duration, args ...string) (string, error) {
	return redisDoWith(addr, timeout, nil, "", args...)
}

// redisDoWith is redisDo over TLS when tlsConfig is set, and after AUTH
// password when password is set (an AUTH error reply is returned as the
// reply).
func redisDoWith(addr string, timeout time.Duration, tlsConfig *tls.Config, password string, args ...string) (string, error) {
	if len(args) == 0 {
		return "", errors.New("redis: no command")
	}
	dialer := &net.Dialer{Timeout: timeout}
	var (
		c   net.Conn
		err error
	)
	if tlsConfig != nil {
		c, err = tls.DialWithDialer(dialer, "tcp", addr, tlsConfig)
	} else {
		c, err = dialer.Dial("tcp", addr)
	}
	if err != nil {
		return "", fmt.Errorf("redis %s: %w", args[0], err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	br := bufio.NewReader(c)
	if password != "" {
		if _, err := c.Write(encodeRESP([]string{"AUTH", password})); err != nil {
			return "", fmt.Errorf("redis AUTH: %w", err)
		}
		reply, err := readRESP(br)
		if err != nil {
			return "", fmt.Errorf("redis AUTH: %w", err)
		}
		if reply != "OK" {
			return reply, nil
		}
	}
	if _, err := c.Write(encodeRESP(args)); err != nil {
		return "", fmt.Errorf("redis %s: %w", args[0], err)
	}
	reply, err := readRESP(br)
	if err != nil {
		return "", fmt.Errorf("redis %s: %w", args[0], err)
	}
	return reply, nil
}

// encodeRESP encodes a command: *N\r\n then $len\r\narg\r\n per argument.
func encodeRESP(args []string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.Bytes()
}

// readRESP reads one RESP2 reply and renders it as Do documents.
func readRESP(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	if len(line) < 3 || !strings.HasSuffix(line, "\r\n") {
		return "", fmt.Errorf("malformed reply line %q", line)
	}
	kind, body := line[0], line[1:len(line)-2]
	switch kind {
	case '+', ':':
		return body, nil
	case '-':
		return "(error) " + body, nil
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return "", fmt.Errorf("malformed bulk length %q", body)
		}
		if n == -1 {
			return "(nil)", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return "", err
		}
		if !bytes.HasSuffix(buf, []byte("\r\n")) {
			return "", errors.New("bulk string not terminated by CRLF")
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return "", fmt.Errorf("malformed array length %q", body)
		}
		if n == -1 {
			return "(nil)", nil
		}
		elems := make([]string, n)
		for i := range elems {
			if elems[i], err = readRESP(br); err != nil {
				return "", err
			}
		}
		return "[" + strings.Join(elems, " ") + "]", nil
	}
	return "", fmt.Errorf("unsupported reply type %q", kind)
}
