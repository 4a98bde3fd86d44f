// Package web holds the live admin panel's static front-end: index.html,
// app.js and app.css (plain JavaScript, no framework, no build step) and
// the vendored uPlot chart library (static/vendor, see its README).
//
// The files obey the server's Content-Security-Policy (script-src 'self',
// style-src 'self'): no inline scripts, event-handler attributes, style
// attributes or <style> blocks. The server serves static/index.html at
// /admin/ and static/X at /admin/assets/X; use fs.Sub(Static, "static").
package web

import "embed"

// Static is the panel's files under the directory "static".
//
//go:embed static
var Static embed.FS
