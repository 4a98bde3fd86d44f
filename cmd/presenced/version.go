package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// version is the version a node reports (server-load, the startup log).
// -ldflags "-X main.version=..." sets it; otherwise init takes the module
// version the Go toolchain stamped into the binary (a pseudo-version with
// the commit for a build in a clone, the tag for `go install ...@v1.2.3`).
var version = "dev"

// revision and buildTime may be set with -ldflags "-X main.revision=...
// -X main.buildTime=..." (make build does): the toolchain records neither
// the build time nor, in a git worktree or with -buildvcs=false, the
// revision. The build info's revision wins when it has one.
var (
	revision  = ""
	buildTime = ""
)

func init() {
	if version != "dev" {
		return
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		version = bi.Main.Version
	}
}

// versionLine is what `presenced version` prints, e.g. "presenced
// v0.0.0-20261201115630-2cc14006315f (rev 2cc14006315f, modified, committed
// 2026-12-01T11:56:30Z, built 2026-12-01T12:00:00Z, go1.26.8 linux/amd64)".
// A revision given by -ldflags ends in "-modified" when the tree was.
func versionLine(bi *debug.BuildInfo, version, revision, buildTime string) string {
	s := map[string]string{}
	if bi != nil {
		for _, kv := range bi.Settings {
			s[kv.Key] = kv.Value
		}
	}
	var parts []string
	rev, modified := s["vcs.revision"], s["vcs.modified"] == "true"
	if rev == "" {
		rev, modified = strings.CutSuffix(revision, "-modified")
	}
	if rev != "" {
		parts = append(parts, "rev "+rev[:min(12, len(rev))])
	}
	if modified {
		parts = append(parts, "modified")
	}
	if t := s["vcs.time"]; t != "" {
		parts = append(parts, "committed "+t)
	}
	if buildTime != "" {
		parts = append(parts, "built "+buildTime)
	}
	goVersion := runtime.Version()
	if bi != nil && bi.GoVersion != "" {
		goVersion = bi.GoVersion
	}
	parts = append(parts, goVersion+" "+runtime.GOOS+"/"+runtime.GOARCH)
	return fmt.Sprintf("presenced %s (%s)", version, strings.Join(parts, ", "))
}

// buildInfo is the binary's build info, nil when it has none.
func buildInfo() *debug.BuildInfo {
	bi, _ := debug.ReadBuildInfo()
	return bi
}
