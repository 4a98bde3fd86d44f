#!/usr/bin/env bash
# run.sh runs every presenced benchmark (`make bench` calls it): Redis round
# trips per connection for a burst of 10 000 connects, then RSS per idle
# connection at 19 000 connections (bench/rss.sh), then the unpaced connect
# rate (bench/connrate.sh). See BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Redis round trips per connection, burst of 10 000 connects (goal <= 0.05)"
go test -run XXX -bench BurstConnects -benchtime 3x ./presence/redisstore/
echo
echo "== RSS per idle connection at 19 000 connections (goal <= 2.5 KiB)"
bench/rss.sh
echo
echo "== Unpaced /ws connect rate, 10 000 connections"
bench/connrate.sh
