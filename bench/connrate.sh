#!/usr/bin/env bash
# connrate.sh measures the unpaced connect rate of /ws: one embedded node,
# one `presenced bench` process opening CONNS authenticated connections
# with CONCURRENCY dials in flight, RUNS times, and prints the ramp-up rate
# and the dial-to-hello latency of each run.
#
# With BASE=<git revision> it also builds that revision and runs the same
# load against it, alternating runs, so the two are measured side by side
# on the same machine state:
#
#   bench/connrate.sh                         the working tree, 3 runs of 10 000
#   BASE=52f122f bench/connrate.sh            against the revision before the net/http front door
#   CONNS=19000 CONCURRENCY=400 RUNS=5 bench/connrate.sh
#
# It stops everything it starts by PID, also on error or SIGINT/SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-10000}
CONCURRENCY=${CONCURRENCY:-200}
RUNS=${RUNS:-3}
PORT=${PORT:-18490}
SECRET=connrate-bench-secret-of-32-bytes
tmp=$(mktemp -d "${TMPDIR:-/tmp}/presenced-connrate.XXXXXX")
pids=()
cleanup() {
	trap - EXIT INT TERM
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [[ -d $tmp/base-src ]]; then git worktree remove --force "$tmp/base-src" >/dev/null 2>&1 || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "connrate: building the working tree" >&2
go build -o "$tmp/current" ./cmd/presenced
bins=(current)
if [[ -n ${BASE:-} ]]; then
	echo "connrate: building $BASE" >&2
	git worktree add --detach "$tmp/base-src" "$BASE" >/dev/null 2>&1
	(cd "$tmp/base-src" && go build -o "$tmp/base" ./cmd/presenced)
	bins+=(base)
fi

run_one() { # run_one BIN RUN: prints one table row
	local bin=$1 run=$2 port=$((PORT + run)) dir="$tmp/$1-$2" pid out
	mkdir -p "$dir"
	(cd "$dir" && exec env PORT=$port JWT_SECRET=$SECRET ADMIN_TOKEN=x LOG_LEVEL=warn "$tmp/$bin") >"$dir/node.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	for _ in $(seq 100); do
		curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
		sleep 0.1
	done
	out=$("$tmp/current" bench --url "ws://127.0.0.1:$port/ws" --secret "$SECRET" --conns "$CONNS" \
		--concurrency "$CONCURRENCY" --hold 1s --source-ips 127.0.0.2 2>&1 || true)
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	local rate lat fails
	rate=$(sed -n 's/^ramp-up .*(\([0-9]*\) conns\/s)$/\1/p' <<<"$out")
	lat=$(sed -n 's/^dial to hello *//p' <<<"$out")
	fails=$(sed -n 's/^failed *//p' <<<"$out")
	printf '%-8s %3d %10s %8s   %s\n' "$bin" "$run" "${rate:-?}" "${fails:-?}" "${lat:-?}"
}

printf '%-8s %3s %10s %8s   %s\n' binary run "conns/s" failed "dial to hello"
for run in $(seq "$RUNS"); do
	for bin in "${bins[@]}"; do
		run_one "$bin" "$run"
	done
done
