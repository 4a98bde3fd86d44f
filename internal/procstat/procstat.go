// Package procstat measures this process for the server-load stats.
package procstat

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Sampler computes CPU use between two samples.
type Sampler struct {
	mu       sync.Mutex
	lastWall time.Time
	lastCPU  time.Duration
}

// Sample returns the CPU percent since the previous call (100 = one core),
// the resident set size in bytes and the number of goroutines.
func (s *Sampler) Sample() (cpuPercent float64, rss uint64, goroutines int) {
	now, cpu := time.Now(), cpuTime()
	s.mu.Lock()
	if !s.lastWall.IsZero() {
		if wall := now.Sub(s.lastWall); wall > 0 {
			cpuPercent = float64(cpu-s.lastCPU) / float64(wall) * 100
		}
	}
	s.lastWall, s.lastCPU = now, cpu
	s.mu.Unlock()
	return cpuPercent, RSS(), runtime.NumGoroutine()
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// RSS returns the resident set size in bytes (from /proc/self/statm), or
// the Go runtime's view of its memory when /proc is not there.
func RSS() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			if pages, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				return pages * uint64(os.Getpagesize())
			}
		}
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.Sys
}
