package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestFreePort(t *testing.T) {
	t.Parallel()
	port := FreePort(t)
	if port <= 0 || port > 65535 {
		t.Fatalf("FreePort = %d", port)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("FreePort returned %d, but it cannot be bound: %v", port, err)
	}
	l.Close()
}

func TestStartRedis(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	if want := "127.0.0.1:" + strconv.Itoa(r.Port()); r.Addr() != want {
		t.Errorf("Addr() = %q, want %q", r.Addr(), want)
	}
	if want := "redis://" + r.Addr(); r.URL() != want {
		t.Errorf("URL() = %q, want %q", r.URL(), want)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"PING"}, "PONG"},
		{[]string{"SET", "greeting", "hello world\r\n"}, "OK"},
		{[]string{"GET", "greeting"}, "hello world\r\n"},
		{[]string{"GET", "missing"}, "(nil)"},
		{[]string{"INCRBY", "n", "41"}, "41"},
		{[]string{"HSET", "h", "f", "v"}, "1"},
		{[]string{"HGETALL", "h"}, "[f v]"},
		{[]string{"LRANGE", "nothing", "0", "-1"}, "[]"},
		{[]string{"NOSUCHCOMMAND"}, "(error) ERR unknown command 'NOSUCHCOMMAND', with args beginning with: "},
		{[]string{"CONFIG", "GET", "save"}, "[save ]"},
		{[]string{"CONFIG", "GET", "appendonly"}, "[appendonly no]"},
	} {
		if got := r.Do(tt.args...); got != tt.want {
			t.Errorf("Do(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
}

func TestRedisKillStart(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	port := r.Port()
	r.Do("SET", "k", "v")

	r.Kill()
	if _, err := r.DoErr("PING"); err == nil {
		t.Fatal("PING answered after Kill")
	}
	r.Kill() // no-op when not running

	r.Start()
	if r.Port() != port {
		t.Fatalf("port changed from %d to %d", port, r.Port())
	}
	if got := r.Do("GET", "k"); got != "(nil)" {
		t.Errorf("GET k after restart = %q, want (nil): data should be gone", got)
	}
	if got := r.Do("DBSIZE"); got != "0" {
		t.Errorf("DBSIZE after restart = %q, want 0", got)
	}
}

func TestRedisStopStart(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	r.Do("SET", "k", "v")
	r.Stop()
	if _, err := r.DoErr("PING"); err == nil {
		t.Fatal("PING answered after Stop")
	}
	r.Start()
	if got := r.Do("EXISTS", "k"); got != "0" {
		t.Errorf("EXISTS k after Stop/Start = %q, want 0", got)
	}
}

func TestRedisPauseResume(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	r.Pause()
	if _, err := redisDo(r.Addr(), 300*time.Millisecond, "PING"); err == nil {
		t.Fatal("PING answered while paused")
	}

	// A request sent while paused is answered once the server resumes.
	var wg sync.WaitGroup
	var reply string
	var err error
	wg.Add(1)
	go func() {
		defer wg.Done()
		reply, err = r.DoErr("PING")
	}()
	time.Sleep(100 * time.Millisecond)
	r.Resume()
	wg.Wait()
	if err != nil || reply != "PONG" {
		t.Fatalf("PING sent while paused: %q, %v; want PONG after Resume", reply, err)
	}
	if got := r.Do("PING"); got != "PONG" {
		t.Errorf("PING after Resume = %q", got)
	}
}

func TestRedisStopWhilePaused(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	r.Pause()
	r.Stop()
	r.Start()
	if got := r.Do("PING"); got != "PONG" {
		t.Errorf("PING = %q", got)
	}
	r.Pause() // cleanup must still kill a paused server
}

func TestRedisStartOnTakenPortFails(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	r.Kill()
	l, err := net.Listen("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// Start would fail the test; check the error it reports instead.
	r.mu.Lock()
	err = r.startLocked()
	r.mu.Unlock()
	if !errors.Is(err, errPortInUse) {
		t.Errorf("start on a taken port: got %v, want errPortInUse", err)
	}
}

func TestRedisConcurrentDo(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.DoErr("INCR", "n"); err != nil {
				t.Errorf("INCR %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if got := r.Do("GET", "n"); got != "20" {
		t.Errorf("n = %q, want 20", got)
	}
}

func TestRedisRESPDecode(t *testing.T) {
	t.Parallel()
	srv, cli := net.Pipe()
	defer srv.Close()
	defer cli.Close()
	go fmt.Fprint(srv, "*3\r\n:1\r\n*2\r\n+a\r\n$-1\r\n$0\r\n\r\n")
	got, err := readRESP(bufio.NewReader(cli))
	if err != nil || got != "[1 [a (nil)] ]" {
		t.Errorf("nested array: %q, %v", got, err)
	}
	if got := string(encodeRESP([]string{"SET", "k", ""})); got != "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n" {
		t.Errorf("encodeRESP = %q", got)
	}
}
