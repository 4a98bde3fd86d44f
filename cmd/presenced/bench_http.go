package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// Bounds of `presenced bench http`.
const (
	benchHTTPMaxConns    = 1000
	benchHTTPMaxDuration = 10 * time.Minute
)

// runBenchHTTP is `presenced bench http`: closed-loop load on one admin
// endpoint. --conns keep-alive connections each send a GET, read the
// whole answer and send the next, for --duration; it prints the requests
// answered, req/s and the latency p50/p99/max (a "latency ms" line that
// scripts parse). Requests are written from a prepared byte string and
// answers parsed with net/http's reader, so the client costs little of
// the CPU it shares with the server.
func runBenchHTTP(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench http", flag.ContinueOnError)
	rawURL := fs.String("url", "http://127.0.0.1:8080/api/admin/dashboard/overview", "http:// URL of the endpoint")
	conns := fs.Int("conns", 32, fmt.Sprintf("keep-alive connections, each with one request in flight; at most %d", benchHTTPMaxConns))
	duration := fs.Duration("duration", 10*time.Second, fmt.Sprintf("how long to send requests; at most %s", benchHTTPMaxDuration))
	warmup := fs.Duration("warmup", time.Second, "requests sent before the measured period (not counted)")
	token := fs.String("token", getenv("ADMIN_TOKEN"), "admin token sent as Authorization: Bearer (default $ADMIN_TOKEN); empty sends none")
	timeout := fs.Duration("timeout", 5*time.Second, "limit for one request")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	u, err := url.Parse(*rawURL)
	switch {
	case err != nil || u.Scheme != "http" || u.Host == "":
		return usageError{fmt.Sprintf("bench http: --url %q is not an http:// URL", *rawURL)}
	case *conns < 1 || *conns > benchHTTPMaxConns:
		return usageError{fmt.Sprintf("bench http: --conns must be 1 to %d", benchHTTPMaxConns)}
	case *duration <= 0 || *duration > benchHTTPMaxDuration:
		return usageError{fmt.Sprintf("bench http: --duration must be positive and at most %s", benchHTTPMaxDuration)}
	case *warmup < 0 || *timeout <= 0:
		return usageError{"bench http: --warmup must not be negative and --timeout must be positive"}
	}
	if err := checkLoopback("--url", u.Hostname()); err != nil {
		return err
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: presenced-bench\r\n"
	if *token != "" {
		req += "Authorization: Bearer " + *token + "\r\n"
	}
	req = req + "\r\n"

	type result struct {
		lat          []time.Duration
		errs, non2xx int64
		firstErr     error
	}
	results := make([]result, *conns)
	measureFrom := time.Now().Add(*warmup)
	end := measureFrom.Add(*duration)
	var wg sync.WaitGroup
	for k := range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[k]
			r.lat = make([]time.Duration, 0, 1<<14)
			var c net.Conn
			var br *bufio.Reader
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					break
				}
				if c == nil {
					var err error
					if c, err = (&net.Dialer{Timeout: *timeout}).DialContext(ctx, "tcp", host); err != nil {
						r.errs++
						r.firstErr = firstOf(r.firstErr, err)
						time.Sleep(10 * time.Millisecond)
						continue
					}
					br = bufio.NewReaderSize(c, 4096)
				}
				_ = c.SetDeadline(t0.Add(*timeout))
				status, err := httpRoundTrip(c, br, req)
				if err != nil {
					r.errs++
					r.firstErr = firstOf(r.firstErr, err)
					c.Close()
					c = nil
					continue
				}
				if !t0.Before(measureFrom) {
					r.lat = append(r.lat, time.Since(t0))
					if status/100 != 2 {
						r.non2xx++
					}
				}
			}
			if c != nil {
				c.Close()
			}
		}()
	}
	wg.Wait()
	measured := *duration
	if now := time.Now(); now.Before(end) { // interrupted
		measured = max(now.Sub(measureFrom), time.Millisecond)
	}

	var all []time.Duration
	var errs, non2xx int64
	var firstErr error
	for _, r := range results {
		all = append(all, r.lat...)
		errs += r.errs
		non2xx += r.non2xx
		firstErr = firstOf(firstErr, r.firstErr)
	}
	slices.Sort(all)
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[min(len(all)-1, int(p*float64(len(all))))].Microseconds()) / 1000
	}
	fmt.Fprintf(stdout, "%-12s %s\n", "url", u)
	fmt.Fprintf(stdout, "%-12s %d keep-alive, closed loop\n", "connections", *conns)
	fmt.Fprintf(stdout, "%-12s %.1f s (after %s warm-up)\n", "duration", measured.Seconds(), *warmup)
	fmt.Fprintf(stdout, "%-12s %d (errors %d, non-2xx %d)\n", "requests", len(all), errs, non2xx)
	fmt.Fprintf(stdout, "%-12s %.0f\n", "req/s", float64(len(all))/measured.Seconds())
	fmt.Fprintf(stdout, "latency ms   p50 %.3f p99 %.3f max %.3f\n", pct(0.50), pct(0.99), pct(1))
	if firstErr != nil {
		fmt.Fprintf(stdout, "%-12s %v\n", "first error", firstErr)
	}
	if len(all) == 0 {
		return errors.New("bench http: no request was answered")
	}
	if non2xx > 0 {
		return fmt.Errorf("bench http: %d answers were not 2xx", non2xx)
	}
	return nil
}

// httpRoundTrip writes req on c and reads the whole answer; it returns
// the status code.
func httpRoundTrip(c net.Conn, br *bufio.Reader, req string) (int, error) {
	if _, err := io.WriteString(c, req); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, err
	}
	if resp.Close {
		return resp.StatusCode, errors.New("server closed the keep-alive connection")
	}
	return resp.StatusCode, nil
}

// firstOf returns a if it is set, else b: the first error seen.
func firstOf(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
