package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gorilla/websocket"

	"github.com/presenced/presenced/auth"
)

// runConnect is a small WebSocket client for operators: it connects to
// /ws (as --user, minting a token with the JWT secret; with --token; or
// as a guest), prints every message it receives on stdout, and ends on
// Ctrl-C (closing with 1000) or when the server closes, printing the close
// code on stderr. A close by the server other than 1000 or 1001, or a
// refused handshake, is exit code 1.
func runConnect(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("connect", flag.ContinueOnError)
	rawURL := fs.String("url", "", "the /ws URL (default ws://127.0.0.1:PORT/ws)")
	user := fs.String("user", "", "connect as this user: mint a token with JWT_SECRET or DATA_DIR/jwt_secret")
	token := fs.String("token", "", "connect with this JWT")
	ttl := fs.Duration("ttl", time.Hour, "lifetime of the token minted for --user")
	envFile := addEnvFile(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *user != "" && *token != "" {
		return usageError{"connect: give --user or --token, not both\n\n" + commandUsage(fs)}
	}
	cfg, err := envFile.load(getenv, stderr)
	if err != nil {
		return err
	}
	target := *rawURL
	if target == "" {
		target = "ws://127.0.0.1:" + strconv.Itoa(cfg.Port) + "/ws"
	}
	if u, err := url.Parse(target); err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return usageError{fmt.Sprintf("connect: --url %q is not a ws:// or wss:// URL", target)}
	}
	tok := *token
	if *user != "" {
		secret, err := existingJWTSecret(cfg)
		if err != nil {
			return fmt.Errorf("connect: --user: %w", err)
		}
		if tok, err = auth.MintFor(secret, *user, false, *ttl, time.Now(), cfg.JWTIssuer, cfg.JWTAudience); err != nil {
			return fmt.Errorf("connect: %w", err)
		}
	}
	h := http.Header{}
	if tok != "" {
		h.Set("Authorization", "Bearer "+tok)
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	c, resp, err := d.DialContext(ctx, target, h)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			resp.Body.Close()
			hint := ""
			if tok == "" && resp.StatusCode == http.StatusUnauthorized {
				hint = " (connecting without --user or --token is as a guest, which needs ALLOW_ANONYMOUS=true on the server)"
			}
			return fmt.Errorf("connect: %s refused the WebSocket: %s %s%s", target, resp.Status, bytes.TrimSpace(body), hint)
		}
		return fmt.Errorf("connect: %s: %w", target, err)
	}
	defer c.Close()
	fmt.Fprintf(stderr, "presenced: connected to %s; Ctrl-C closes\n", target)

	type result struct{ err error }
	done := make(chan result, 1)
	go func() {
		for {
			_, msg, err := c.ReadMessage()
			if err != nil {
				done <- result{err}
				return
			}
			fmt.Fprintf(stdout, "%s\n", msg)
		}
	}()
	var readErr error
	select {
	case r := <-done:
		readErr = r.err
	case <-ctx.Done():
		_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		select {
		case r := <-done:
			readErr = r.err
		case <-time.After(2 * time.Second):
			fmt.Fprintln(stderr, "presenced: closed with 1000; the server did not answer the close within 2s")
			return nil
		}
		var ce *websocket.CloseError
		if errors.As(readErr, &ce) {
			fmt.Fprintf(stderr, "presenced: closed with 1000; the server answered %s\n", closeText(ce))
			return nil
		}
		return fmt.Errorf("connect: closing: %w", readErr)
	}
	var ce *websocket.CloseError
	if !errors.As(readErr, &ce) {
		return fmt.Errorf("connect: connection lost without a close frame: %w", readErr)
	}
	fmt.Fprintf(stderr, "presenced: the server closed the connection: %s\n", closeText(ce))
	if ce.Code != websocket.CloseNormalClosure && ce.Code != websocket.CloseGoingAway {
		return fmt.Errorf("connect: closed by the server with %s", closeText(ce))
	}
	return nil
}

// closeText is e.g. `1008 (policy violation) "too many pings"`.
func closeText(ce *websocket.CloseError) string {
	names := map[int]string{
		1000: "normal closure", 1001: "going away", 1002: "protocol error", 1003: "unsupported data",
		1005: "no status", 1006: "abnormal closure", 1007: "invalid payload", 1008: "policy violation",
		1009: "message too big", 1011: "internal error", 1012: "service restart", 1013: "try again later",
	}
	s := strconv.Itoa(ce.Code)
	if n, ok := names[ce.Code]; ok {
		s += " (" + n + ")"
	}
	if ce.Text != "" {
		s += fmt.Sprintf(" %q", ce.Text)
	}
	return s
}
