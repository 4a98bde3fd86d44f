#!/usr/bin/env bash
# rss.sh measures the process RSS one idle authenticated WebSocket
# connection costs presenced, at 19 000 connections on one node (the goal
# is 3 KiB or less). For each mode it starts one node on a fixed loopback
# port, reads its VmRSS once it has idled, opens 4 x 4750 connections with
# `presenced bench` from 127.0.0.2..127.0.0.5 (one process per address: the
# open-files cap is 20 000 per process and each address has its own
# ephemeral ports), waits until the node counts them all, lets it idle,
# reads VmRSS again and prints a table.
#
#   bench/rss.sh                      both modes: embedded, then managed (Redis)
#   MODES=embedded bench/rss.sh       one mode
#   IDLE=30 PORT=18500 bench/rss.sh   longer idle, another port
#
# Everything it starts it stops by PID on exit. It needs curl and, for the
# managed mode, redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."

MODES=${MODES:-"embedded managed"}
PORT=${PORT:-18470}
PROCS=${PROCS:-4}
PER_PROC=${PER_PROC:-4750}
IDLE=${IDLE:-20}              # seconds idle before the final readings
SAMPLES=${SAMPLES:-5}         # VmRSS readings, one per second, after IDLE
GOAL_KIB=3
TOTAL=$((PROCS * PER_PROC))
DEADLINE=$((SECONDS + ${TIME_LIMIT:-170}))
SECRET=rss-bench-secret
ADMIN=rss-bench-admin

tmp=$(mktemp -d "${TMPDIR:-/tmp}/presenced-rss.XXXXXX")
pids=()

stop_pid() { # stop_pid PID: SIGTERM, then SIGKILL after 5 s
	local pid=$1
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
	local pid
	for pid in "${pids[@]}"; do stop_pid "$pid"; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "rss: $*" >&2; exit 1; }
check_time() { ((SECONDS < DEADLINE)) || die "over the time limit; stopping"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
json_int() { # json_int KEY < JSON: the first integer value of "KEY"
	grep -o "\"$1\":[0-9]*" | head -1 | cut -d: -f2
}
free_port() { # a port nothing listens on, for redis-server
	local p
	for p in $(seq 26379 26479); do
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
	done
	die "no free port for redis-server"
}

echo "rss: building presenced"
go build -o "$tmp/presenced" ./cmd/presenced
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
	die "port $PORT is in use; set PORT"
fi

results=()
measure() { # measure MODE
	local mode=$1 redis_pid="" redis_url="" srv k
	local dir="$tmp/$mode"
	mkdir -p "$dir/data"
	if [[ $mode == managed ]]; then
		command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)"
		local rport
		rport=$(free_port)
		redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no \
			--dir "$dir" --daemonize no --loglevel warning >"$dir/redis.log" 2>&1 &
		redis_pid=$!
		pids+=("$redis_pid")
		redis_url="redis://127.0.0.1:$rport"
		for _ in $(seq 100); do
			(exec 3<>"/dev/tcp/127.0.0.1/$rport") 2>/dev/null && break
			sleep 0.05
		done
	fi

	env PORT="$PORT" JWT_SECRET="$SECRET" ADMIN_TOKEN="$ADMIN" DATA_DIR="$dir/data" \
		REDIS_URL="$redis_url" LOG_LEVEL=warn \
		"$tmp/presenced" serve --env-file /dev/null >"$dir/server.log" 2>&1 &
	srv=$!
	pids+=("$srv")
	until curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null; do
		kill -0 "$srv" 2>/dev/null || { cat "$dir/server.log" >&2; die "$mode: server exited"; }
		check_time
		sleep 0.1
	done
	sleep 2
	local base
	base=$(rss_kib "$srv")
	echo "rss: $mode: node pid $srv on :$PORT, baseline VmRSS $base KiB; opening $TOTAL connections"

	local t0=$SECONDS bench=()
	for ((k = 0; k < PROCS; k++)); do
		"$tmp/presenced" bench --url "ws://127.0.0.1:$PORT/ws" --secret "$SECRET" \
			--conns "$PER_PROC" --users "$TOTAL" --offset $((k * PER_PROC)) \
			--source-ips "127.0.0.$((k + 2))" --concurrency 100 --timeout 30s \
			>"$dir/bench$k.log" 2>&1 &
		bench+=($!)
		pids+=($!)
	done
	for ((k = 0; k < PROCS; k++)); do
		until grep -qx READY "$dir/bench$k.log"; do
			kill -0 "${bench[$k]}" 2>/dev/null || { cat "$dir/bench$k.log" >&2; die "$mode: bench $k exited early"; }
			check_time
			sleep 0.2
		done
	done
	local load conns=0 nconns=0
	while :; do
		load=$(curl -sf -H "Authorization: Bearer $ADMIN" "http://127.0.0.1:$PORT/api/admin/dashboard/server-load" || true)
		conns=$(json_int onlineConnections <<<"$load")
		nconns=$(json_int connections <<<"$load")
		[[ ${conns:-0} -eq $TOTAL && ${nconns:-0} -eq $TOTAL ]] && break
		check_time
		kill -0 "$srv" 2>/dev/null || die "$mode: server exited"
		sleep 0.5
	done
	local ramp=$((SECONDS - t0))
	echo "rss: $mode: $TOTAL connections counted after ${ramp}s ($(grep -h '^up ' "$dir"/bench*.log | paste -sd';' -)); idling ${IDLE}s"
	sleep "$IDLE"
	local samples=() s
	for ((s = 0; s < SAMPLES; s++)); do
		samples+=("$(rss_kib "$srv")")
		sleep 1
	done
	local after last gor
	after=$(printf '%s\n' "${samples[@]}" | median)
	last=${samples[-1]}
	load=$(curl -sf -H "Authorization: Bearer $ADMIN" "http://127.0.0.1:$PORT/api/admin/dashboard/server-load" || true)
	gor=$(json_int goroutines <<<"$load")
	conns=$(json_int onlineConnections <<<"$load")
	echo "rss: $mode: VmRSS samples ${samples[*]} KiB; still counted: $conns"

	# Stop the clients, then the node, each by PID; a bench exits non-zero
	# if over 1% of its connections failed.
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
	[[ -n $redis_pid ]] && { kill -TERM "$redis_pid"; wait "$redis_pid" || true; }

	local per
	per=$(awk -v a="$after" -v b="$base" -v n="$TOTAL" 'BEGIN {printf "%.2f", (a - b) / n}')
	local verdict=no
	awk -v p="$per" -v g="$GOAL_KIB" 'BEGIN {exit !(p <= g)}' && verdict=yes
	results+=("$(printf '%-9s %7d %8d %13.1f %13.1f %8s %10s %4s %10s %6d' \
		"$mode" "$TOTAL" "$failed" "$(awk -v x="$base" 'BEGIN{print x/1024}')" \
		"$(awk -v x="$after" 'BEGIN{print x/1024}')" "$per" "<= $GOAL_KIB" "$verdict" "${gor:-?}" "$ramp")")
}

for mode in $MODES; do
	case $mode in embedded | managed) ;; *) die "unknown mode $mode (embedded, managed)" ;; esac
	measure "$mode"
done

echo
echo "RSS per idle authenticated WebSocket connection ($(nproc) cores, idle ${IDLE}s, RSS = median of $SAMPLES readings)"
printf '%-9s %7s %8s %13s %13s %8s %10s %4s %10s %6s\n' \
	mode conns failed "baseline MiB" "at N MiB" "KiB/conn" goal met goroutines "ramp s"
printf '%s\n' "${results[@]}"
