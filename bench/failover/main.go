// Command failover records and draws the picture of bench/failover.sh:
// the online count of presenced and of the reference peer through a
// kill -9 of one of three nodes and a Redis restart.
//
//	go run ./bench/failover sample -out samples.csv -truth FILE -stop FILE \
//	    -p-redis 127.0.0.1:26720 -p-overview http://127.0.0.1:18720/api/admin/dashboard/overview \
//	    -ref-redis 127.0.0.1:26721 -ref-overview http://127.0.0.1:18723/api/admin/dashboard/overview -token T
//	go run ./bench/failover plot -in samples.csv -events events.csv -out docs/failover.svg
//
// sample reads, every 100 ms until the stop file exists, GET online_users
// from each Redis and onlineUsers from each overview, with the true count
// (the number the script's clients hold, written by the script into the
// truth file), and writes one CSV row per reading. plot draws the rows as
// an SVG: no plotting library, just lines.
package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: failover sample|plot [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "sample":
		err = sample(os.Args[2:])
	case "plot":
		err = plot(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: want sample or plot", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
		os.Exit(1)
	}
}

// columns of the CSV, after t_ms.
var columns = []string{"truth", "presenced_redis", "presenced_overview", "reference_redis", "reference_overview"}

func loopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%s is not a loopback address", addr)
	}
	return nil
}

func sample(args []string) error {
	fs := flag.NewFlagSet("sample", flag.ExitOnError)
	out := fs.String("out", "samples.csv", "CSV written")
	truthFile := fs.String("truth", "", "file holding the true count, rewritten by the script")
	stopFile := fs.String("stop", "", "sampling stops once this file exists")
	every := fs.Duration("every", 100*time.Millisecond, "sampling interval")
	limit := fs.Duration("limit", 3*time.Minute, "sampling stops after this long in any case")
	pRedis := fs.String("p-redis", "", "presenced's Redis host:port")
	pOverview := fs.String("p-overview", "", "presenced's overview URL")
	refRedis := fs.String("ref-redis", "", "the reference's Redis host:port")
	refOverview := fs.String("ref-overview", "", "the reference's overview URL")
	token := fs.String("token", "", "admin token for the overviews")
	_ = fs.Parse(args)
	for _, a := range []string{*pRedis, *refRedis} {
		if err := loopback(a); err != nil {
			return err
		}
	}
	for _, u := range []string{*pOverview, *refOverview} {
		if !strings.HasPrefix(u, "http://127.") && !strings.HasPrefix(u, "http://localhost:") {
			return fmt.Errorf("%q is not a loopback http:// URL", u)
		}
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	defer f.Close()
	w := csv.NewWriter(f)
	_ = w.Write(append([]string{"t_ms"}, columns...))

	ctx := context.Background()
	rdb := func(addr string) *redis.Client {
		return redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 50 * time.Millisecond,
			ReadTimeout: 50 * time.Millisecond, WriteTimeout: 50 * time.Millisecond})
	}
	pr, rr := rdb(*pRedis), rdb(*refRedis)
	defer pr.Close()
	defer rr.Close()
	client := &http.Client{Timeout: 80 * time.Millisecond}
	get := func(c *redis.Client) string {
		n, err := c.Get(ctx, "online_users").Int64()
		switch {
		case errors.Is(err, redis.Nil):
			return "0"
		case err != nil:
			return ""
		}
		return strconv.FormatInt(n, 10)
	}
	overview := func(u string) string {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Authorization", "Bearer "+*token)
		resp, err := client.Do(req)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		var o struct {
			OnlineUsers *int64 `json:"onlineUsers"`
		}
		if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&o) != nil || o.OnlineUsers == nil {
			return ""
		}
		return strconv.FormatInt(*o.OnlineUsers, 10)
	}
	start := time.Now()
	for i := 0; ; i++ {
		next := start.Add(time.Duration(i) * *every)
		time.Sleep(time.Until(next))
		if _, err := os.Stat(*stopFile); err == nil || time.Since(start) > *limit {
			break
		}
		truth := ""
		if b, err := os.ReadFile(*truthFile); err == nil {
			truth = strings.TrimSpace(string(b))
		}
		row := []string{strconv.FormatInt(time.Since(start).Milliseconds(), 10), truth,
			get(pr), overview(*pOverview), get(rr), overview(*refOverview)}
		_ = w.Write(row)
		w.Flush()
	}
	w.Flush()
	return w.Error()
}

// series is one line of the plot.
type series struct {
	col, label, color, dash string
	width                   float64
}

func plot(args []string) error {
	fs := flag.NewFlagSet("plot", flag.ExitOnError)
	in := fs.String("in", "samples.csv", "CSV from sample")
	events := fs.String("events", "", "CSV of t_ms,label: the events marked on the plot")
	out := fs.String("out", "failover.svg", "SVG written")
	title := fs.String("title", "online_users through a kill -9 and a Redis restart", "title")
	_ = fs.Parse(args)
	rows, err := readCSV(*in)
	if err != nil {
		return err
	}
	if len(rows) < 2 {
		return fmt.Errorf("%s: no samples", *in)
	}
	head := rows[0]
	rows = rows[1:]
	idx := map[string]int{}
	for i, h := range head {
		idx[h] = i
	}
	var evs [][]string
	if *events != "" {
		if evs, err = readCSV(*events); err != nil {
			return err
		}
	}
	// Drawn in this order: the truth last, thin and dashed, so that it
	// shows on top of a line that sits on it.
	lines := []series{
		{"reference_overview", "reference (INCR/DECR): overview = online_users", "#d62728", "", 2.5},
		{"presenced_redis", "presenced: online_users in Redis", "#1f77b4", "2 3", 1.5},
		{"presenced_overview", "presenced: overview", "#1f77b4", "", 2.5},
		{"truth", "users actually connected", "#222222", "5 5", 1.2},
	}
	val := func(r []string, col string) (float64, bool) {
		i, ok := idx[col]
		if !ok || i >= len(r) || r[i] == "" {
			return 0, false
		}
		v, err := strconv.ParseFloat(r[i], 64)
		return v, err == nil
	}
	tmax := 0.0
	lo, hi := 0.0, 0.0
	for _, r := range rows {
		t, _ := val(r, "t_ms")
		tmax = math.Max(tmax, t/1000)
		for _, s := range lines {
			if v, ok := val(r, s.col); ok {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	step := niceStep((hi - lo) / 6)
	lo = math.Floor(lo/step) * step
	hi = math.Ceil(hi/step)*step + step
	const W, H, left, right, top, bottom = 960.0, 480.0, 70.0, 20.0, 40.0, 150.0
	pw, ph := W-left-right, H-top-bottom
	x := func(t float64) float64 { return left + t/tmax*pw }
	y := func(v float64) float64 { return top + (hi-v)/(hi-lo)*ph }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", left, esc(*title))
	for v := lo; v <= hi+step/2; v += step {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", left, left+pw, y(v), y(v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#444">%.0f</text>`+"\n", left-6, y(v)+4, v)
	}
	if lo < 0 {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#999"/>`+"\n", left, left+pw, y(0), y(0))
	}
	for t := 0.0; t <= tmax; t += 5 {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#444">%.0f s</text>`+"\n", x(t), top+ph+16, t)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#bbb"/>`+"\n", x(t), x(t), top+ph, top+ph+4)
	}
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#999"/>`+"\n", left, top, pw, ph)
	for i, e := range evs {
		if len(e) < 2 {
			continue
		}
		t, err := strconv.ParseFloat(e[0], 64)
		if err != nil {
			continue
		}
		xe := x(t / 1000)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#555" stroke-dasharray="3 3"/>`+"\n", xe, xe, top, top+ph)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#333">%s</text>`+"\n", xe+4, top+14+float64(i%3)*14, esc(e[1]))
	}
	for _, s := range lines {
		var pts []string
		flush := func() {
			if len(pts) > 1 {
				dash := ""
				if s.dash != "" {
					dash = ` stroke-dasharray="` + s.dash + `"`
				}
				fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="%.1f"%s points="%s"/>`+"\n", s.color, s.width, dash, strings.Join(pts, " "))
			}
			pts = pts[:0]
		}
		for _, r := range rows {
			t, _ := val(r, "t_ms")
			v, ok := val(r, s.col)
			if !ok { // no answer (server or Redis down): a gap in the line
				flush()
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(t/1000), y(v)))
		}
		flush()
	}
	for i, s := range lines {
		ly := top + ph + 40 + float64(i)*20
		dash := ""
		if s.dash != "" {
			dash = ` stroke-dasharray="` + s.dash + `"`
		}
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="%.1f"%s/>`+"\n", left, left+40, ly, ly, s.color, s.width, dash)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", left+48, ly+4, esc(s.label))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#666" text-anchor="end">sampled every 100 ms; a gap: no answer</text>`+"\n", left+pw, top+ph+40)
	b.WriteString("</svg>\n")
	return os.WriteFile(*out, []byte(b.String()), 0o644)
}

func readCSV(path string) ([][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(bufio.NewReader(f))
	r.FieldsPerRecord = -1
	return r.ReadAll()
}

// niceStep rounds d up to 1, 2 or 5 times a power of ten.
func niceStep(d float64) float64 {
	if d <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(d)))
	for _, m := range []float64{1, 2, 5, 10} {
		if d <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
