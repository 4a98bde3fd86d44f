package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/presenced/presenced/dashboard"
)

// runStatus prints the overview and server load of a running node as
// tables. It authenticates as adminCredential says. A node that does not
// answer, or refuses the credential, is exit code 1 with what went wrong.
func runStatus(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	rawURL := fs.String("url", "", "the node's base URL (default http://127.0.0.1:PORT)")
	timeout := fs.Duration("timeout", 5*time.Second, "limit for each request")
	envFile := addEnvFile(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	cfg, err := envFile.load(getenv, stderr)
	if err != nil {
		return err
	}
	base := *rawURL
	if base == "" {
		base = "http://127.0.0.1:" + strconv.Itoa(cfg.Port)
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageError{fmt.Sprintf("status: --url %q is not an http:// or https:// URL", base)}
	}
	base = strings.TrimRight(base, "/")
	cred, err := adminCredential(cfg)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	client := &http.Client{Timeout: *timeout}
	var o dashboard.Overview
	if err := getAdmin(ctx, client, base+"/api/admin/dashboard/overview", cred, &o); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	var sl dashboard.ServerLoad
	if err := getAdmin(ctx, client, base+"/api/admin/dashboard/server-load", cred, &sl); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	printStatus(stdout, base, o, sl)
	return nil
}

// getAdmin GETs an admin API path into v.
func getAdmin(ctx context.Context, client *http.Client, u, cred string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+cred)
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("no presenced answering at %s (%v): is it running? (--url points elsewhere)", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("%s refused the admin credential (401): this is not the token that server uses; set ADMIN_TOKEN, or run where its DATA_DIR is (after presenced admin-token --rotate, the server takes the new token only once restarted)", u)
	case resp.StatusCode != http.StatusOK:
		var e struct{ Error string }
		_ = json.Unmarshal(body, &e)
		return fmt.Errorf("%s answered %s %s", u, resp.Status, e.Error)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s: not the JSON of a presenced node: %w", u, err)
	}
	return nil
}

func printStatus(w io.Writer, base string, o dashboard.Overview, sl dashboard.ServerLoad) {
	stale := ""
	if o.Stale {
		stale = " (user stats stale: the data store is not answering)"
	}
	fmt.Fprintf(w, "presenced at %s, source %s, as of %s%s\n\n", base, o.Source, o.GeneratedAt.Local().Format(time.DateTime), stale)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, row := range []struct {
		name string
		v    int64
	}{
		{"online users", o.OnlineUsers}, {"online connections", o.OnlineConnections}, {"guests", o.OnlineGuests},
		{"peak today", o.PeakOnlineToday}, {"total users", o.TotalUsers}, {"new today", o.NewUsersToday},
		{"active 24 h", o.ActiveUsers24h},
	} {
		fmt.Fprintf(tw, "%s\t%d\n", row.name, row.v)
	}
	tw.Flush()

	fmt.Fprintf(w, "\nnodes: %d\n", len(sl.Nodes))
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "NODE\tHOST\tPID\tVERSION\tUSERS\tCONNS\tCPU %\tMEMORY\tGOROUTINES\tUPTIME\tHEALTHY\t")
	for _, n := range sl.Nodes {
		up := sl.GeneratedAt.Sub(n.StartedAt).Truncate(time.Second)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\t%.1f\t%s\t%d\t%s\t%t\t\n",
			n.ID, n.Host, n.PID, n.Version, n.Users, n.Connections, n.CPUPercent, mib(int64(n.MemoryBytes)), n.Goroutines, up, n.Healthy)
	}
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DEPENDENCY\tSTATUS\tLATENCY\tMEMORY\tERROR")
	for _, d := range []struct {
		name string
		dep  dashboard.Dependency
	}{{"redis", sl.Redis}, {dataStoreName(sl), sl.DataStore}} {
		lat, mem := "-", "-"
		if d.dep.LatencyMs != nil {
			lat = strconv.FormatFloat(*d.dep.LatencyMs, 'f', 2, 64) + " ms"
		}
		if d.dep.UsedMemoryBytes != nil {
			mem = mib(*d.dep.UsedMemoryBytes)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.name, d.dep.Status, lat, mem, d.dep.Error)
	}
	tw.Flush()
}

func dataStoreName(sl dashboard.ServerLoad) string {
	if sl.DataStore.Kind != "" {
		return "data store (" + sl.DataStore.Kind + ")"
	}
	return "data store"
}

func mib(b int64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) + " MiB" }
