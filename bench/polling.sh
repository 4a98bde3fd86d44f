#!/usr/bin/env bash
# polling.sh measures the process RSS one Socket.IO long-polling session
# costs presenced (embedded mode), in two states:
#   between polls  the clients connect, then stop polling: the server holds
#                  only the session (ping interval set to 10 min so that the
#                  sessions outlive the measurement)
#   polling        every client keeps a GET pending, as socket.io-client
#                  does; each pending GET is a net/http request in flight
#                  (a goroutine and its buffers)
# SESSIONS sessions per state, over PROCS `presenced bench --transport
# polling` processes (one source address each); RSS is read after IDLE
# seconds and compared with the node's baseline.
#
#   bench/polling.sh                      4 000 sessions per state, 30 s idle
#   SESSIONS=2000 IDLE=10 bench/polling.sh
#
# Sessions are fewer than the 19 000 WebSocket connections of rss.sh: a
# polling client needs a second TCP connection for its POSTs while its GET
# is pending, and the server, like each client process, may hold 20 000
# open files here. It stops everything it starts by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

SESSIONS=${SESSIONS:-4000}
PROCS=${PROCS:-2}
IDLE=${IDLE:-30}
PORT=${PORT:-18495}
SECRET=polling-bench-secret-of-32-bytes-x
ADMIN=polling-bench-admin
tmp=$(mktemp -d "${TMPDIR:-/tmp}/presenced-polling.XXXXXX")
pids=()
cleanup() {
	trap - EXIT INT TERM
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { echo "polling: $*" >&2; exit 1; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

echo "polling: building presenced" >&2
go build -o "$tmp/presenced" ./cmd/presenced
per=$((SESSIONS / PROCS))

measure() { # measure STATE SLOT: prints one table row
	local state=$1 slot=$2 port=$((PORT + $2)) dir="$tmp/$1" srv base after k poll=true interval=25s
	mkdir -p "$dir/data"
	if [[ $state == between ]]; then poll=false interval=10m; fi
	env PORT="$port" JWT_SECRET="$SECRET" ADMIN_TOKEN="$ADMIN" DATA_DIR="$dir/data" LOG_LEVEL=warn \
		SOCKETIO_PING_INTERVAL="$interval" SOCKETIO_CONNECT_TIMEOUT=10m \
		"$tmp/presenced" serve --env-file /dev/null >"$dir/server.log" 2>&1 &
	srv=$!
	pids+=("$srv")
	for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
	sleep 2
	base=$(rss_kib "$srv")
	local bench=()
	for ((k = 0; k < PROCS; k++)); do
		"$tmp/presenced" bench --transport polling --poll="$poll" --url "http://127.0.0.1:$port/socket.io/" \
			--secret "$SECRET" --conns "$per" --offset $((k * per)) --users "$SESSIONS" \
			--source-ips "127.0.0.$((20 + slot * PROCS + k))" --concurrency 100 --timeout 30s \
			>"$dir/bench$k.log" 2>&1 &
		bench+=($!)
		pids+=($!)
	done
	for ((k = 0; k < PROCS; k++)); do
		for _ in $(seq 600); do grep -qx READY "$dir/bench$k.log" && break; sleep 0.2; done
		grep -qx READY "$dir/bench$k.log" || { cat "$dir/bench$k.log" >&2; die "$state: bench $k not ready"; }
	done
	sleep "$IDLE"
	after=$(rss_kib "$srv")
	local users
	users=$(curl -sf -H "Authorization: Bearer $ADMIN" "http://127.0.0.1:$port/api/admin/dashboard/overview" |
		grep -o '"onlineConnections":[0-9]*' | cut -d: -f2)
	for ((k = 0; k < PROCS; k++)); do kill -TERM "${bench[$k]}" 2>/dev/null || true; done
	for ((k = 0; k < PROCS; k++)); do wait "${bench[$k]}" 2>/dev/null || true; done
	kill -TERM "$srv"
	wait "$srv" 2>/dev/null || true
	printf '%-14s %8d %11s %13.1f %10.1f %9.2f\n' "$state" "$SESSIONS" "${users:-?}" \
		"$(awk -v x="$base" 'BEGIN {print x / 1024}')" "$(awk -v x="$after" 'BEGIN {print x / 1024}')" \
		"$(awk -v a="$after" -v b="$base" -v n="$SESSIONS" 'BEGIN {print (a - b) / n}')"
}

echo "Socket.IO long-polling sessions: $(nproc) cores, embedded node, RSS after ${IDLE}s"
printf '%-14s %8s %11s %13s %10s %9s\n' state sessions "counted" "baseline MiB" "at N MiB" "KiB/sess"
measure between 0
measure polling 1
