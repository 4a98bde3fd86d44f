package config_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/presenced/presenced/config"
)

// TestLoadDotenvSyntax: the values the dotenv rules give, including
// quotes over several lines and expansion of earlier names.
func TestLoadDotenvSyntax(t *testing.T) {
	t.Parallel()
	path := writeDotenv(t, "\r\n"+
		"  # indented comment\n"+
		"NODE_ID = spaced  \n"+
		"JWT_ISSUER=\"https://a.example/\" # comment after quotes\n"+
		"ADMIN_TOKEN=\"line1\nline2 \\\"q\\\" \\$NODE_ID $NODE_ID\"\n"+
		"JWT_SECRET='${NODE_ID} # not a comment'\n"+
		"MONGODB_DB=${NODE_ID}db#kept\n"+
		"ONLINE_USERS_KEY=$MISSING\n"+
		"REDIS_KEY_PREFIX=\n"+
		"LOG_LEVEL=debug") // no final newline
	c, err := config.Load(env(nil), path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	checks := []struct{ name, got, want string }{
		{"NODE_ID", c.NodeID, "spaced"},
		{"JWT_ISSUER", c.JWTIssuer, "https://a.example/"},
		{"ADMIN_TOKEN", c.AdminToken, "line1\nline2 \"q\" $NODE_ID spaced"},
		{"JWT_SECRET", c.JWTSecret, "${NODE_ID} # not a comment"},
		{"MONGODB_DB", c.MongoDB, "spaceddb#kept"},
		{"ONLINE_USERS_KEY", c.OnlineUsersKey, "online_users"}, // $MISSING is "", so the default applies
		{"LOG_LEVEL", c.LogLevel, "debug"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %q, want %q", ch.name, ch.got, ch.want)
		}
	}
}

// TestLoadDotenvErrorLine: every malformed file names the file and the
// line of the mistake, is a *FileError, and never quotes the content.
func TestLoadDotenvErrorLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		content string
		line    int
		want    string
	}{
		{"PORT=1\nthis is junk\n", 2, "NAME=value"},
		{"PORT=1\n\n# c\nhunter2", 4, "NAME=value"},
		{"PORT=1\n9LIVES=hunter2\n", 2, "NAME=value"},
		{"A=1\nJWT_SECRET=\"hunter2\nstill\n", 2, "unterminated"},
		{"A='x\ny'\nB='hunter2' junk\n", 3, "closing quote"},
		{"A=1\n=hunter2\n", 2, "NAME=value"},
	}
	for _, tt := range tests {
		path := writeDotenv(t, tt.content)
		_, err := config.Load(env(nil), path)
		var fe *config.FileError
		if !errors.As(err, &fe) {
			t.Errorf("%q: got %v, want a *config.FileError", tt.content, err)
			continue
		}
		if fe.Path != path || fe.Line != tt.line || !strings.Contains(fe.Reason, tt.want) {
			t.Errorf("%q: %+v, want %s line %d saying %q", tt.content, fe, path, tt.line, tt.want)
		}
		if msg := err.Error(); !strings.Contains(msg, path) || strings.Contains(msg, "hunter2") {
			t.Errorf("%q: message %q must name the file and not quote it", tt.content, msg)
		}
	}
}

// TestLoadDotenvRequired: a dotenv file named explicitly must exist; the
// default one may be absent.
func TestLoadDotenvRequired(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "nope.env")
	_, err := config.LoadDotenv(env(nil), config.Dotenv{Path: path, Required: true})
	var fe *config.FileError
	if !errors.As(err, &fe) || fe.Path != path || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("required missing file: %v, want a FileError naming %s", err, path)
	}
	if _, err := config.LoadDotenv(env(nil), config.Dotenv{Path: path}); err != nil {
		t.Fatalf("optional missing file: %v", err)
	}
}

// TestLoadDotenvUnknownKeys: one warning per unknown key, with a
// suggestion only for a near miss; known keys and the environment give none.
func TestLoadDotenvUnknownKeys(t *testing.T) {
	t.Parallel()
	path := writeDotenv(t, "POTR=8080\nPORT=8081\nPOTR=8082\nport=1\nREDIS_ULR=redis://x\nNODE_TTLL=5s\nCOMPOSE_PROJECT_NAME=app\n")
	var warnings []string
	c, err := config.LoadDotenv(env(map[string]string{"PROT": "1"}), config.Dotenv{
		Path: path, Warn: func(m string) { warnings = append(warnings, m) },
	})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Port != 8081 {
		t.Errorf("Port = %d, want 8081", c.Port)
	}
	want := []string{
		path + " line 1: POTR is not a presenced variable; ignored (did you mean PORT?)",
		path + " line 4: port is not a presenced variable; ignored (did you mean PORT?)",
		path + " line 5: REDIS_ULR is not a presenced variable; ignored (did you mean REDIS_URL?)",
		path + " line 6: NODE_TTLL is not a presenced variable; ignored (did you mean NODE_TTL?)",
		path + " line 7: COMPOSE_PROJECT_NAME is not a presenced variable; ignored",
	}
	if strings.Join(warnings, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(warnings, "\n"), strings.Join(want, "\n"))
	}
}

// TestLoadDotenvEditorArtifacts: what editors leave in a file — a UTF-8
// byte-order mark (Windows Notepad), CRLF line endings, also around quoted
// values — does not change the values or the line numbers.
func TestLoadDotenvEditorArtifacts(t *testing.T) {
	t.Parallel()
	path := writeDotenv(t, "\xef\xbb\xbfPORT=8081\r\n"+
		"ADMIN_TOKEN=\"abc#def\" # comment\r\n"+
		"API_KEY='k1'\r\n"+
		"NODE_ID=n1 # c\r\n")
	c, err := config.Load(env(nil), path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Port != 8081 || c.AdminToken != "abc#def" || c.APIKey != "k1" || c.NodeID != "n1" {
		t.Errorf("Port %d, ADMIN_TOKEN %q, API_KEY %q, NODE_ID %q; want 8081, abc#def, k1, n1", c.Port, c.AdminToken, c.APIKey, c.NodeID)
	}
	// The mark counts for nothing in line numbers either.
	path = writeDotenv(t, "\xef\xbb\xbfPORT=1\r\njunk\r\n")
	var fe *config.FileError
	if _, err := config.Load(env(nil), path); !errors.As(err, &fe) || fe.Line != 2 {
		t.Errorf("BOM then junk on line 2: %v, want a FileError for line 2", err)
	}
}
