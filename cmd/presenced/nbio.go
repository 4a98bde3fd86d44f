package main

import (
	"fmt"
	"log/slog"

	"github.com/lesismal/nbio/logging"
)

// nbioLogger sends nbio's log lines to slog at debug level (warnings and
// errors at warn), so its connection-level chatter does not flood the log.
type nbioLogger struct{ log *slog.Logger }

func (l nbioLogger) SetLevel(int) {}
func (l nbioLogger) Debug(format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...), "component", "nbio")
}
func (l nbioLogger) Info(format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...), "component", "nbio")
}
func (l nbioLogger) Warn(format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...), "component", "nbio")
}
func (l nbioLogger) Error(format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...), "component", "nbio")
}

// quietNBIO routes nbio's package-level logger (the library has no other)
// into ours.
func quietNBIO(log *slog.Logger) { logging.SetLogger(nbioLogger{log}) }
