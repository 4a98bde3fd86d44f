package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// Dotenv says which dotenv file [LoadDotenv] reads and how.
type Dotenv struct {
	Path     string // "" reads no file
	Required bool   // a missing file is an error (the file was named on the command line)
	// Warn receives one message per key of the file that is not a
	// presenced variable, with "did you mean X?" for a near miss. Nil
	// drops them.
	Warn func(msg string)
}

// FileError reports a dotenv file that cannot be used: missing (when
// required), unreadable or malformed. It never quotes the file's content,
// which may hold secrets.
type FileError struct {
	Path   string
	Line   int // 1-based; 0 when the problem is not one line's
	Reason string
}

// Error returns e.g. `config: dotenv file ".env" line 3: want NAME=value`.
func (e *FileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("config: dotenv file %q line %d: %s", e.Path, e.Line, e.Reason)
	}
	return fmt.Sprintf("config: dotenv file %q: %s", e.Path, e.Reason)
}

// dotenvEntry is one NAME=value statement of a dotenv file.
type dotenvEntry struct {
	key, value string
	line       int
}

// readDotenv reads the dotenv file d names; a missing file yields no values
// unless d.Required. It warns through d.Warn about unknown keys.
func readDotenv(d Dotenv) (map[string]string, error) {
	if d.Path == "" {
		return nil, nil
	}
	src, err := os.ReadFile(d.Path)
	if errors.Is(err, fs.ErrNotExist) && !d.Required {
		return nil, nil
	}
	if err != nil {
		reason := err.Error()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			reason = pe.Err.Error()
		}
		if errors.Is(err, fs.ErrNotExist) {
			reason = "no such file"
		}
		return nil, &FileError{Path: d.Path, Reason: "cannot read: " + reason}
	}
	entries, perr := parseDotenv(src)
	if perr != nil {
		perr.Path = d.Path
		return nil, perr
	}
	values := make(map[string]string, len(entries))
	warned := make(map[string]bool)
	for _, e := range entries {
		values[e.key] = e.value
		if d.Warn == nil || known(e.key) || warned[e.key] {
			continue
		}
		warned[e.key] = true
		msg := fmt.Sprintf("%s line %d: %s is not a presenced variable; ignored", d.Path, e.line, e.key)
		if near := nearestVar(e.key); near != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", near)
		}
		d.Warn(msg)
	}
	return values, nil
}

// parseDotenv parses dotenv text, one NAME=value per line:
//
//   - a leading UTF-8 byte-order mark is ignored, CRLF is LF;
//   - blank lines and lines starting with # are skipped; "export " before
//     NAME is allowed;
//   - NAME is letters, digits, _ and . and does not start with a digit;
//   - an unquoted value ends at the line's end or at " #" (a comment) and
//     is trimmed;
//   - '...' is taken literally; "..." understands \n, \r, \", \\ and \$;
//     both may span lines, and only a comment may follow the closing quote;
//   - in unquoted and "..." values, $NAME and ${NAME} expand to the value
//     of an earlier NAME in the same file ("" if none); \$ is a literal $.
//
// These are the rules of the godotenv library presenced used before, made
// strict where godotenv guessed, so that a mistake stops at its line.
func parseDotenv(src []byte) ([]dotenvEntry, *FileError) {
	// A UTF-8 byte-order mark (Windows editors write one) is not part of
	// the first name.
	src = bytes.TrimPrefix(src, []byte("\xef\xbb\xbf"))
	text := string(bytes.ReplaceAll(src, []byte("\r\n"), []byte("\n")))
	var entries []dotenvEntry
	seen := make(map[string]string)
	line := 0
	for len(text) > 0 {
		line++
		cur, rest, _ := strings.Cut(text, "\n")
		text = rest
		stmt := strings.TrimLeft(cur, " \t")
		if stmt == "" || stmt[0] == '#' {
			continue
		}
		if after, ok := strings.CutPrefix(stmt, "export"); ok && after != "" && (after[0] == ' ' || after[0] == '\t') {
			stmt = strings.TrimLeft(after, " \t")
		}
		name, value, ok := strings.Cut(stmt, "=")
		name = strings.TrimRight(name, " \t")
		if !ok || !validName(name) {
			return nil, &FileError{Line: line, Reason: "want NAME=value (NAME of letters, digits, _ and .)"}
		}
		value = strings.TrimLeft(value, " \t")
		start := line
		var v string
		if value != "" && (value[0] == '\'' || value[0] == '"') {
			q := value[0]
			// The quoted value may go on over the following lines.
			body := value[1:] + "\n" + text
			end := closingQuote(body, q)
			if end < 0 {
				return nil, &FileError{Line: start, Reason: "unterminated quoted value"}
			}
			quoted := body[:end]
			after := body[end+1:]
			line += strings.Count(quoted, "\n")
			tail, rest, _ := strings.Cut(after, "\n")
			text = rest
			if t := strings.TrimSpace(tail); t != "" && t[0] != '#' {
				return nil, &FileError{Line: line, Reason: "only a # comment may follow a closing quote"}
			}
			if q == '\'' {
				v = quoted
			} else {
				v = expand(unescape(quoted), seen)
			}
		} else {
			if i := commentStart(value); i >= 0 {
				value = value[:i]
			}
			v = expand(strings.TrimSpace(value), seen)
		}
		seen[name] = v
		entries = append(entries, dotenvEntry{key: name, value: v, line: start})
	}
	return entries, nil
}

func validName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// closingQuote returns the index in s of the first q not escaped by a
// backslash (in "..." only), or -1.
func closingQuote(s string, q byte) int {
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && q == '"':
			i++
		case s[i] == q:
			return i
		}
	}
	return -1
}

// commentStart returns where a " #" comment starts in an unquoted value, or -1.
func commentStart(v string) int {
	for i := 1; i < len(v); i++ {
		if v[i] == '#' && (v[i-1] == ' ' || v[i-1] == '\t') {
			return i
		}
	}
	return -1
}

// unescape resolves the escapes of a "..." value; \$ stays escaped for expand.
func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case '$':
			b.WriteString(`\$`)
		default: // \" \\ and anything else: the character itself
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// expand replaces $NAME and ${NAME} by earlier values; \$ is a literal $.
func expand(s string, vars map[string]string) string {
	if !strings.ContainsRune(s, '$') {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == '$':
			b.WriteByte('$')
			i++
		case s[i] == '$':
			j, braced := i+1, false
			if j < len(s) && s[j] == '{' {
				j, braced = j+1, true
			}
			k := j
			for k < len(s) && (s[k] == '_' || s[k] >= 'A' && s[k] <= 'Z' || s[k] >= 'a' && s[k] <= 'z' || s[k] >= '0' && s[k] <= '9') {
				k++
			}
			if k == j || (braced && (k == len(s) || s[k] != '}')) {
				b.WriteByte('$') // not a reference: keep it
				continue
			}
			b.WriteString(vars[s[j:k]])
			if braced {
				k++
			}
			i = k - 1
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// known reports whether name is a presenced variable.
func known(name string) bool {
	for _, s := range specs() {
		if s.name == name {
			return true
		}
	}
	return false
}

// nearestVar returns the presenced variable closest to name when it is a
// likely misspelling (other case, a transposition, a letter or two off),
// else "".
func nearestVar(name string) string {
	upper := strings.ToUpper(name)
	best, bestD := "", 0
	for _, s := range specs() {
		d := editDistance(upper, s.name)
		if best == "" || d < bestD {
			best, bestD = s.name, d
		}
	}
	limit := 1
	if len(upper) >= 8 {
		limit = 2
	}
	if best == "" || bestD > limit {
		return ""
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of neighbours each cost 1.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
