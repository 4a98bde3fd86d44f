package main

import (
	"context"
	"io"
)

// runBench is the load generator used by the benchmarks under bench/.
func runBench(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return usageError{"bench: not built yet"}
}
