package config_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/presenced/presenced/config"
)

func TestStatsTimezone(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.env")
	c, err := config.Load(env(map[string]string{"STATS_TIMEZONE": "Europe/Berlin"}), missing)
	if err != nil {
		t.Fatal(err)
	}
	if c.StatsTimezone.String() != "Europe/Berlin" {
		t.Errorf("StatsTimezone = %v, want Europe/Berlin", c.StatsTimezone)
	}
	for _, bad := range []string{"Mars/Olympus", "Local", "+02:00", "../etc/passwd"} {
		_, err := config.Load(env(map[string]string{"STATS_TIMEZONE": bad}), missing)
		var cerr *config.Error
		if !errors.As(err, &cerr) || cerr.Var != "STATS_TIMEZONE" {
			t.Errorf("STATS_TIMEZONE=%q: got %v, want a config.Error naming STATS_TIMEZONE", bad, err)
		}
	}
}
