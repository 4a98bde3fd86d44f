#!/usr/bin/env bash
# rss.sh measures the process RSS one idle authenticated WebSocket
# connection costs presenced, at 19 000 connections on one node (the goal
# is 3 KiB or less), in the embedded mode and in the managed mode (Redis).
#
# For each mode it starts one node on its own loopback port, reads the
# node's VmRSS once it has idled 2 s, opens 4 x 4750 connections with
# `presenced bench` (one process per source address, 127.0.0.2 and up: the
# open-files cap is 20 000 per process and each address has its own
# ephemeral ports), waits until every bench prints READY and the node's
# server-load stats count 19 000 connections, lets it idle, reads VmRSS
# again (the median of a few readings) and prints a table. The modes run
# side by side, so the idle period can be long enough for the pings
# (every 25 s) and the last-seen refresh (every 30 s) to reach their steady
# state and still end within 3 minutes.
#
#   bench/rss.sh                      both modes, 120 s idle
#   MODES=embedded bench/rss.sh       one mode
#   IDLE=20 PORT=18500 bench/rss.sh   shorter idle, other ports
#   KEEP_LOGS=/tmp/rss bench/rss.sh   keep the node and bench logs
#   TRANSPORT=socketio bench/rss.sh   Socket.IO clients (WebSocket transport) instead of /ws
#
# It stops everything it starts by PID, also on error or SIGINT/SIGTERM.
# It needs curl and, for the managed mode, redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."

MODES=${MODES:-"embedded managed"}
PORT=${PORT:-18470}    # first node's port; the next mode uses PORT+1
PROCS=${PROCS:-4}      # bench processes (and source addresses) per node
PER_PROC=${PER_PROC:-4750}
IDLE=${IDLE:-120}      # seconds idle before the final readings
SAMPLES=${SAMPLES:-5}  # VmRSS readings, one a second, after IDLE
TRANSPORT=${TRANSPORT:-ws} # ws (/ws) or socketio (/socket.io/, WebSocket transport)
GOAL_KIB=2.5
[[ $TRANSPORT == socketio ]] && GOAL_KIB=3
TOTAL=$((PROCS * PER_PROC))
DEADLINE=$((SECONDS + ${TIME_LIMIT:-$((IDLE + 55))}))
SECRET=rss-bench-secret-of-32-bytes-min
ADMIN=rss-bench-admin

tmp=$(mktemp -d "${TMPDIR:-/tmp}/presenced-rss.XXXXXX")
: >"$tmp/pids"

# Every process started is listed in $tmp/pids. Each one's command line
# names $tmp (the binary is $tmp/presenced, redis-server's --dir is under
# it), which cleanup checks so as never to signal a PID the system reused.
started() { echo "$1" >>"$tmp/pids"; }
ours() { [[ -r /proc/$1/cmdline ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF "$tmp"; }
stop_pid() { # stop_pid PID: SIGTERM, then SIGKILL after 5 s
	local pid=$1
	ours "$pid" || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 50); do
		ours "$pid" || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
	local pid
	trap - EXIT INT TERM
	for pid in ${workers:-}; do kill -TERM "$pid" 2>/dev/null || true; done
	while read -r pid; do stop_pid "$pid"; done <"$tmp/pids"
	wait 2>/dev/null || true
	if [[ -n ${KEEP_LOGS:-} ]]; then
		mkdir -p "$KEEP_LOGS" && (cd "$tmp" && find . -name '*.log' -exec cp --parents {} "$KEEP_LOGS" \;)
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "rss: $*" >&2; exit 1; }
check_time() { ((SECONDS < DEADLINE)) || die "over the time limit; stopping"; }
pause() { # pause SECONDS, in steps, so that a signal is acted on quickly
	local end=$((SECONDS + $1))
	while ((SECONDS < end)); do sleep 1; done
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
json_int() { # json_int KEY < JSON: the first integer value of "KEY"
	grep -o "\"$1\":[0-9]*" | head -1 | cut -d: -f2
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { # a port nothing listens on, for redis-server
	local p
	for p in $(seq $((26379 + RANDOM % 1000)) 27999); do
		port_busy "$p" || { echo "$p"; return; }
	done
	die "no free port for redis-server"
}

# measure MODE SLOT runs one node and its clients and writes the table row
# to $tmp/MODE.row. It runs in a subshell of its own.
measure() {
	local mode=$1 slot=$2 redis_url="" srv k
	local port=$((PORT + slot)) dir="$tmp/$mode"
	mkdir -p "$dir/data"
	port_busy "$port" && die "$mode: port $port is in use; set PORT"
	if [[ $mode == managed ]]; then
		command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)"
		local rport redis_pid
		rport=$(free_port)
		redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no \
			--dir "$dir" --daemonize no --loglevel warning >"$dir/redis.log" 2>&1 &
		redis_pid=$!
		started "$redis_pid"
		redis_url="redis://127.0.0.1:$rport"
		until port_busy "$rport"; do
			kill -0 "$redis_pid" 2>/dev/null || { cat "$dir/redis.log" >&2; die "redis-server exited"; }
			check_time
			sleep 0.05
		done
	fi

	env PORT="$port" JWT_SECRET="$SECRET" ADMIN_TOKEN="$ADMIN" DATA_DIR="$dir/data" \
		REDIS_URL="$redis_url" LOG_LEVEL=warn \
		"$tmp/presenced" serve --env-file /dev/null >"$dir/server.log" 2>&1 &
	srv=$!
	started "$srv"
	until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do
		kill -0 "$srv" 2>/dev/null || { cat "$dir/server.log" >&2; die "$mode: server exited"; }
		check_time
		sleep 0.1
	done
	sleep 2
	local base
	base=$(rss_kib "$srv")
	echo "rss: $mode: node pid $srv on :$port, baseline VmRSS $base KiB; opening $TOTAL connections"

	local t0=$SECONDS bench=() ip
	for ((k = 0; k < PROCS; k++)); do
		ip=127.0.0.$((2 + slot * PROCS + k))
		"$tmp/presenced" bench --url "ws://127.0.0.1:$port$([[ $TRANSPORT == socketio ]] && echo /socket.io/ || echo /ws)" \
			--transport "$TRANSPORT" --secret "$SECRET" \
			--conns "$PER_PROC" --users "$TOTAL" --offset $((k * PER_PROC)) \
			--source-ips "$ip" --concurrency 100 --timeout 30s \
			>"$dir/bench$k.log" 2>&1 &
		bench+=($!)
		started $!
	done
	for ((k = 0; k < PROCS; k++)); do
		until grep -qx READY "$dir/bench$k.log"; do
			kill -0 "${bench[$k]}" 2>/dev/null || { cat "$dir/bench$k.log" >&2; die "$mode: bench $k exited early"; }
			check_time
			sleep 0.2
		done
	done
	local load conns nconns
	while :; do
		load=$(curl -sf -H "Authorization: Bearer $ADMIN" "http://127.0.0.1:$port/api/admin/dashboard/server-load" || true)
		conns=$(json_int onlineConnections <<<"$load")
		nconns=$(json_int connections <<<"$load")
		[[ ${conns:-0} -eq $TOTAL && ${nconns:-0} -eq $TOTAL ]] && break
		check_time
		kill -0 "$srv" 2>/dev/null || die "$mode: server exited"
		sleep 0.5
	done
	local ramp=$((SECONDS - t0))
	echo "rss: $mode: $TOTAL connections counted after ${ramp}s; idling ${IDLE}s"
	pause "$IDLE"
	local samples=() s
	for ((s = 0; s < SAMPLES; s++)); do
		samples+=("$(rss_kib "$srv")")
		sleep 1
	done
	local after gor
	after=$(printf '%s\n' "${samples[@]}" | median)
	load=$(curl -sf -H "Authorization: Bearer $ADMIN" "http://127.0.0.1:$port/api/admin/dashboard/server-load" || true)
	gor=$(json_int goroutines <<<"$load")
	conns=$(json_int onlineConnections <<<"$load")
	echo "rss: $mode: VmRSS readings ${samples[*]} KiB; still counted: ${conns:-?}"

	# Stop the clients, then the node; a bench exits non-zero if over 1%
	# of its connections failed.
	local failed=0 rc
	for ((k = 0; k < PROCS; k++)); do kill -TERM "${bench[$k]}"; done
	for ((k = 0; k < PROCS; k++)); do
		rc=0
		wait "${bench[$k]}" || rc=$?
		((rc == 0)) || { echo "rss: $mode: bench $k exit $rc" >&2; tail -12 "$dir/bench$k.log" >&2; }
		failed=$((failed + $(awk '$1 == "failed" {print $2}' "$dir/bench$k.log")))
	done
	kill -TERM "$srv"
	rc=0
	wait "$srv" || rc=$?
	((rc == 0)) || echo "rss: $mode: server exit $rc" >&2
	[[ -n ${redis_pid:-} ]] && { kill -TERM "$redis_pid"; wait "$redis_pid" || true; }

	local per met=no
	per=$(awk -v a="$after" -v b="$base" -v n="$TOTAL" 'BEGIN {printf "%.2f", (a - b) / n}')
	awk -v p="$per" -v g="$GOAL_KIB" 'BEGIN {exit !(p <= g)}' && met=yes
	printf '%-9s %7d %7d %13.1f %13.1f %9s %6s %4s %11s %7d\n' \
		"$mode" "$TOTAL" "$failed" "$(awk -v x="$base" 'BEGIN {print x / 1024}')" \
		"$(awk -v x="$after" 'BEGIN {print x / 1024}')" "$per" "<= $GOAL_KIB" "$met" "${gor:-?}" "$ramp" \
		>"$dir.row"
}

for mode in $MODES; do
	case $mode in embedded | managed) ;; *) die "unknown mode $mode (embedded, managed)" ;; esac
done
echo "rss: building presenced"
go build -o "$tmp/presenced" ./cmd/presenced

workers="" slot=0
for mode in $MODES; do
	measure "$mode" "$slot" &
	workers+=" $!"
	slot=$((slot + 1))
done
status=0
for pid in $workers; do wait "$pid" || status=1; done
workers=""
((status == 0)) || die "a measurement failed"

echo
echo "RSS per idle authenticated $([[ $TRANSPORT == socketio ]] && echo Socket.IO || echo WebSocket) connection: $(nproc) cores; after ${IDLE}s idle, RSS = median of $SAMPLES readings"
printf '%-9s %7s %7s %13s %13s %9s %6s %4s %11s %7s\n' \
	mode conns failed "baseline MiB" "at N MiB" "KiB/conn" goal met goroutines "ramp s"
for mode in $MODES; do cat "$tmp/$mode.row"; done
