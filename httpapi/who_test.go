package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/httpapi"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/presence/memstore"
)

func TestWhoRoutes(t *testing.T) {
	ms := memstore.New(time.Minute, nil)
	users := map[string]int64{}
	for i := range 25 {
		users[fmt.Sprintf("u%02d", i)] = int64(i%2 + 1)
	}
	if _, err := ms.Sync(context.Background(), presence.Share{Node: "n", Seq: 1, Users: users}); err != nil {
		t.Fatal(err)
	}
	addr := serve(t, httpapi.Deps{Who: ms, APIKey: "the-api-key", MaxBodyBytes: 4096}, httpapi.Limits{})
	base := "http://" + addr

	// The walk visits every user once.
	seen, cursor := map[string]int64{}, ""
	for range 30 {
		resp, body := do(t, http.MethodGet, base+"/api/admin/presence/users?limit=10&cursor="+cursor, admin(), nil)
		var p struct {
			Users []struct {
				UserID      string `json:"userId"`
				Connections int64  `json:"connections"`
			} `json:"users"`
			NextCursor string `json:"nextCursor"`
			Total      int64  `json:"total"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(body, &p) != nil || p.Total != 25 || len(p.Users) > 10 {
			t.Fatalf("list: %d %s", resp.StatusCode, body)
		}
		for _, u := range p.Users {
			seen[u.UserID] += u.Connections
		}
		if cursor = p.NextCursor; cursor == "" {
			break
		}
	}
	if len(seen) != 25 || seen["u01"] != 2 {
		t.Fatalf("walk saw %v", seen)
	}

	resp, body := do(t, http.MethodGet, base+"/api/admin/presence/users/u03", admin(), nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"online":true,"connections":2,"lastSeenAt":null`) {
		t.Fatalf("lookup u03: %d %s", resp.StatusCode, body)
	}
	for path, want := range map[string]string{
		"%00":                         "user id contains a control character",
		"%FF":                         "user id is not valid UTF-8",
		strings.Repeat("x", 257):      "user id is longer than 256 bytes",
		"%C3%BC%2Fni%20code":          `"userId":"ü/ni code","online":false`,
		strings.Repeat("%C3%BC", 128): `"online":false`,
	} {
		resp, body := do(t, http.MethodGet, base+"/api/admin/presence/users/"+path, admin(), nil)
		if !strings.Contains(string(body), want) || (resp.StatusCode == 200) != strings.Contains(want, "online") {
			t.Errorf("lookup %.40s: %d %s; want %q", path, resp.StatusCode, body, want)
		}
	}

	for _, c := range []struct {
		header http.Header
		body   string
		status int
		want   string
	}{
		{http.Header{"X-Api-Key": {"the-api-key"}}, `{"userIds":["u01","zz"]}`, 200, `{"online":{"u01":true,"zz":false}}`},
		{http.Header{"Authorization": {"Bearer the-api-key"}}, `{"userIds":[]}`, 200, `{"online":{}}`},
		{admin(), `{"userIds":["u02"]}`, 200, `"u02":true`},
		{http.Header{"Authorization": {"Bearer nope"}}, `{"userIds":["u01"]}`, 401, "error"},
		{http.Header{"X-Api-Key": {"the-api-key"}}, `{"userIds":[null]}`, 400, "userIds[0] must be a string"},
		{http.Header{"X-Api-Key": {"the-api-key"}}, `{"userIds":["a"]} {}`, 400, "one JSON object"},
		{http.Header{"X-Api-Key": {"the-api-key"}}, `{"userIds":["` + strings.Repeat("x", 5000) + `"]}`, 413, "request body over 4096 bytes"},
		// The 401 names what this route takes.
		{http.Header{"X-Api-Key": {"nope"}}, `{"userIds":["u01"]}`, 401, "API key or admin credentials required"},
		// Ids follow the user id rule of tokens: an id no token can carry
		// is refused, not answered false (invalid UTF-8 would come back
		// as U+FFFD, a key the caller never sent).
		{http.Header{"X-Api-Key": {"the-api-key"}}, `{"userIds":[""]}`, 400, "userIds[0] is missing or empty"},
		{http.Header{"X-Api-Key": {"the-api-key"}}, `{"userIds":["ok","a\u0000b"]}`, 400, "userIds[1] contains a control character"},
		{http.Header{"X-Api-Key": {"the-api-key"}}, "{\"userIds\":[\"\xff\"]}", 400, "userIds[0] is not valid UTF-8"},
		{http.Header{"X-Api-Key": {"the-api-key"}}, `{"userIds":["` + strings.Repeat("x", 257) + `"]}`, 400, "userIds[0] is longer than 256 bytes"},
		{http.Header{"X-Api-Key": {"the-api-key"}}, `{"userIds":["` + strings.Repeat("ü", 128) + `"]}`, 200, `":false}}`},
		// Names are case-sensitive, as everywhere in presenced's JSON.
		{http.Header{"X-Api-Key": {"the-api-key"}}, `{"UserIds":["u01"]}`, 400, "userIds is required"},
	} {
		resp, body := do(t, http.MethodPost, base+"/api/presence/status", c.header, strings.NewReader(c.body))
		if resp.StatusCode != c.status || !strings.Contains(string(body), c.want) {
			t.Errorf("POST %.40s: %d %s; want %d with %q", c.body, resp.StatusCode, body, c.status, c.want)
		}
	}
}

// TestWhoWithoutDirectory: external mode answers 501 with a reason.
func TestWhoWithoutDirectory(t *testing.T) {
	addr := serve(t, httpapi.Deps{}, httpapi.Limits{})
	for _, path := range []string{"/api/admin/presence/users", "/api/admin/presence/users/x"} {
		resp, body := do(t, http.MethodGet, "http://"+addr+path, admin(), nil)
		if resp.StatusCode != http.StatusNotImplemented || !strings.Contains(string(body), "PRESENCE_MODE=external") {
			t.Errorf("GET %s: %d %s; want 501", path, resp.StatusCode, body)
		}
	}
}
