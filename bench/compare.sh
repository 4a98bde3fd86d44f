#!/usr/bin/env bash
# compare.sh runs the same scenarios against presenced and against the
# design it replaces (bench/peers/incrdecr: Node + Express + socket.io 4.8
# + INCR/DECR on online_users) in one run, with one load generator
# (`presenced bench`), and prints a table with the ratios and the goals of
# issue 12:
#
#   rss        RSS per idle connection, 19 000 connections each, after 60 s
#              idle (the reference and presenced on Socket.IO's WebSocket
#              transport, and presenced on /ws, side by side)
#   connect    unpaced connect rate, 10 000 connections, 200 dials in
#              flight, median of 3 runs; and the count in online_users when
#              the last client got its answer
#   paced      dial-to-answer p99 at 2 000 connects a second
#   churn      10 000 connections held while 5% are dropped and reopened as
#              new users every 100 ms (5 000 connects and 5 000 disconnects
#              a second) for 60 s: CPU of the server and of its Redis, and
#              online_users at the end (all held, then all gone)
#   freshness  a connect / disconnect to its change in online_users and on
#              the admin SSE stream (presenced only: the reference has none)
#   overview   GET /api/admin/dashboard/overview, 32 keep-alive connections,
#              one wrk thread (or `presenced bench http` without wrk), 10 s
#
# Every server has its own redis-server (no persistence), so Redis CPU is
# attributable. Everything runs on loopback, on fixed ports from PORT
# (18700) up and Redis ports from 26700 up; everything started is stopped by
# PID, also on error or a signal. It needs redis-server, node and npm, curl;
# it installs the reference's npm packages (npm ci) and wrk (apt-get, when
# root) if missing. About 7 minutes; QUICK=1 runs small, short phases (a
# trial of the script, not a measurement). The load generator shares the
# machine's cores with the servers; `uptime` is printed with each phase.
#
#   bench/compare.sh
#   QUICK=1 bench/compare.sh
#   KEEP_LOGS=/tmp/cmp bench/compare.sh      keep the servers' and clients' logs
#   PHASES="connect overview" bench/compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

PORT=${PORT:-18700}
RPORT=${RPORT:-26700}
PHASES=${PHASES:-"rss connect paced churn freshness overview"}
if [[ -n ${QUICK:-} ]]; then
	RSS_PROCS=2 RSS_PER=500 IDLE=5 CONNS=2000 RUNS=1 PACED=1000 CHURN_CONNS=1000 CHURN_SECS=5 SAMPLES=10 HTTP_SECS=3
else
	RSS_PROCS=4 RSS_PER=4750 IDLE=60 CONNS=10000 RUNS=3 PACED=10000 CHURN_CONNS=10000 CHURN_SECS=60 SAMPLES=60 HTTP_SECS=10
fi
RSS_CONNS=$((RSS_PROCS * RSS_PER))
SECRET=compare-bench-secret-of-32-bytes
ADMIN=compare-bench-admin

tmp=$(mktemp -d "${TMPDIR:-/tmp}/presenced-compare.XXXXXX")
: >"$tmp/pids"
. bench/procs.sh
cleanup() {
	trap - EXIT INT TERM
	stop_all
	if [[ -n ${KEEP_LOGS:-} ]]; then
		mkdir -p "$KEEP_LOGS" && (cd "$tmp" && find . -name '*.log' -exec cp --parents {} "$KEEP_LOGS" \;)
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE

die() { echo "compare: $*" >&2; exit 1; }
say() { echo "compare: $*" >&2; }
load() { uptime | sed 's/.*load average: //'; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; } # utime + stime
median() { sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "?"}'; }
field() { # field NAME < LINE: the word after NAME
	awk -v k="$1" '{for (i = 1; i < NF; i++) if ($i == k) {print $(i + 1); exit}}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a + 0 > 0 && b + 0 > 0) printf "%.1f×", a / b; else print "-"}'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN {exit !(a != "" && a != "-" && a != "?" && a + 0 <= b + 0)}'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN {exit !(a != "" && a != "-" && a != "?" && a + 0 >= b + 0)}'; }
yn() { if "$@"; then echo yes; else echo NO; fi; }

for cmd in redis-server redis-cli node npm curl go; do
	command -v "$cmd" >/dev/null || die "$cmd not found (apt-get install redis-server nodejs npm curl)"
done
if ! command -v wrk >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
	say "installing wrk"
	apt-get install -y -qq wrk >/dev/null 2>&1 || say "wrk not installed; using presenced bench http"
fi
for ((p = PORT; p < PORT + 10; p++)); do port_busy "$p" && die "port $p is in use; set PORT"; done
for ((p = RPORT; p < RPORT + 10; p++)); do port_busy "$p" && die "port $p is in use; set RPORT"; done

say "building presenced; installing the reference's packages"
go build -o "$tmp/bin/presenced" ./cmd/presenced
bin=$tmp/bin/presenced
if [[ ! -d bench/peers/incrdecr/node_modules ]]; then
	(cd bench/peers/incrdecr && npm ci --no-audit --no-fund --silent) || die "npm ci failed in bench/peers/incrdecr"
fi
peer=$root/bench/peers/incrdecr

wait_port() { # wait_port PORT PID LOG
	for _ in $(seq 300); do
		port_busy "$1" && return 0
		kill -0 "$2" 2>/dev/null || { cat "$3" >&2; die "process $2 (log $3) exited"; }
		sleep 0.05
	done
	die "nothing listens on $1 after 15 s"
}
start_redis() { # start_redis NAME PORT: sets $pid
	mkdir -p "$tmp/$1"
	redis-server --port "$2" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp/$1" \
		--daemonize no --loglevel warning >"$tmp/$1/redis.log" 2>&1 &
	pid=$!
	started "$pid"
	wait_port "$2" "$pid" "$tmp/$1/redis.log"
}
start_presenced() { # start_presenced NAME PORT REDIS_PORT: sets $pid
	mkdir -p "$tmp/$1/data"
	env PORT="$2" JWT_SECRET="$SECRET" ADMIN_TOKEN="$ADMIN" DATA_DIR="$tmp/$1/data" \
		REDIS_URL="redis://127.0.0.1:$3" LOG_LEVEL=warn \
		"$bin" serve --env-file /dev/null >"$tmp/$1/server.log" 2>&1 &
	pid=$!
	started "$pid"
	wait_port "$2" "$pid" "$tmp/$1/server.log"
}
start_ref() { # start_ref NAME PORT REDIS_PORT: sets $pid
	mkdir -p "$tmp/$1"
	env PORT="$2" REDIS_URL="redis://127.0.0.1:$3" JWT_SECRET="$SECRET" ADMIN_TOKEN="$ADMIN" \
		node "$peer/server.js" >"$tmp/$1/server.log" 2>&1 &
	pid=$!
	started "$pid"
	wait_port "$2" "$pid" "$tmp/$1/server.log"
}
online() { redis-cli -p "$1" GET online_users 2>/dev/null | sed 's/^$/0/'; }
wait_online() { # wait_online REDIS_PORT WANT SECONDS: 0 once online_users = WANT
	local end=$((SECONDS + $3))
	while ((SECONDS < end)); do
		[[ $(online "$1") == "$2" ]] && return 0
		sleep 0.1
	done
	return 1
}
url_of() { # url_of KIND PORT: the WebSocket URL and transport for a target kind
	case $1 in
	ws) echo "ws://127.0.0.1:$2/ws ws" ;;
	*) echo "ws://127.0.0.1:$2/socket.io/ socketio" ;;
	esac
}

declare -A R # results, by name
note() { R[$1]=$2; }

# ---- rss: three servers side by side, each with 19 000 idle clients
phase_rss() {
	say "rss: $RSS_CONNS connections to each of the reference (Socket.IO), presenced (Socket.IO) and presenced (/ws); ${IDLE}s idle; load $(load)"
	local k t slot=0 pids=() base=() kinds=(ref sio ws) srv=()
	for t in 0 1 2; do
		start_redis "rss-redis-$t" $((RPORT + 5 + t))
		case ${kinds[$t]} in
		ref) start_ref rss-ref $((PORT + 5 + t)) $((RPORT + 5 + t)) ;;
		*) start_presenced "rss-${kinds[$t]}" $((PORT + 5 + t)) $((RPORT + 5 + t)) ;;
		esac
		srv+=("$pid")
	done
	sleep 2
	for t in 0 1 2; do base+=("$(rss_kib "${srv[$t]}")"); done
	local t0=$SECONDS
	for t in 0 1 2; do
		read -r u tr <<<"$(url_of "${kinds[$t]}" $((PORT + 5 + t)))"
		for ((k = 0; k < RSS_PROCS; k++)); do
			"$bin" bench conn --url "$u" --transport "$tr" --secret "$SECRET" --conns "$RSS_PER" \
				--users "$RSS_CONNS" --offset $((k * RSS_PER)) --source-ips "127.0.$((10 + t)).$((2 + k))" \
				--concurrency 100 --timeout 30s --hold 10m >"$tmp/rss-${kinds[$t]}/bench$k.log" 2>&1 &
			pids+=($!)
			started $!
		done
	done
	for t in 0 1 2; do
		for ((k = 0; k < RSS_PROCS; k++)); do
			local log=$tmp/rss-${kinds[$t]}/bench$k.log
			until grep -q READY "$log"; do
				((SECONDS - t0 < 120)) || die "rss: ${kinds[$t]}: bench $k not ready after 120 s"
				sleep 0.2
			done
			grep -qx READY "$log" || { tail -5 "$log" >&2; die "rss: ${kinds[$t]}: bench $k: $(head -1 "$log")"; }
		done
		wait_online $((RPORT + 5 + t)) "$RSS_CONNS" 30 || die "rss: ${kinds[$t]}: online_users is $(online $((RPORT + 5 + t))), want $RSS_CONNS"
	done
	say "rss: all up after $((SECONDS - t0)) s; idling ${IDLE}s"
	sleep "$IDLE"
	local s
	for t in 0 1 2; do
		local samples=()
		for s in 1 2 3 4 5; do samples+=("$(rss_kib "${srv[$t]}")"); sleep 0.2; done
		local after
		after=$(printf '%s\n' "${samples[@]}" | median)
		note "rss_${kinds[$t]}" "$(awk -v a="$after" -v b="${base[$t]}" -v n="$RSS_CONNS" 'BEGIN {printf "%.2f", (a - b) / n}')"
		note "rss_${kinds[$t]}_detail" "$(awk -v a="$after" -v b="${base[$t]}" 'BEGIN {printf "%.1f -> %.1f MiB", b / 1024, a / 1024}')"
	done
	note rss_load "$(load)"
	for s in "${pids[@]}"; do stop_pid "$s"; done
	for s in "${srv[@]}"; do stop_pid "$s"; done
	say "rss: KiB/conn ref ${R[rss_ref]} (${R[rss_ref_detail]}), presenced Socket.IO ${R[rss_sio]} (${R[rss_sio_detail]}), /ws ${R[rss_ws]} (${R[rss_ws_detail]})"
}

# The servers of the other phases: one each, kept for every phase.
main_up=""
main_servers() {
	[[ -n $main_up ]] && return
	start_redis redis-ref "$RPORT"
	start_ref ref "$PORT" "$RPORT"
	ref_pid=$pid ref_redis_pid=$(tail -2 "$tmp/pids" | head -1 | cut -d' ' -f1)
	start_redis redis-p $((RPORT + 1))
	start_presenced presenced $((PORT + 1)) $((RPORT + 1))
	p_pid=$pid p_redis_pid=$(tail -2 "$tmp/pids" | head -1 | cut -d' ' -f1)
	main_up=1
	sleep 1
}
target_port() { case $1 in ref) echo "$PORT" ;; *) echo $((PORT + 1)) ;; esac; }
target_rport() { case $1 in ref) echo "$RPORT" ;; *) echo $((RPORT + 1)) ;; esac; }
target_url() { # target_url KIND: URL and transport; ref and sio speak Socket.IO, ws is presenced's /ws
	url_of "$1" "$(target_port "$1")"
}

# ---- connect: unpaced connect rate
phase_connect() {
	main_servers
	say "connect: $CONNS connections, unpaced, 200 in flight, $RUNS runs each; load $(load)"
	local run kind rates
	declare -A rates
	for run in $(seq "$RUNS"); do
		for kind in ref sio ws; do
			read -r u tr <<<"$(target_url $kind)"
			local rp log=$tmp/connect-$kind-$run.log
			rp=$(target_rport $kind)
			wait_online "$rp" 0 20 || say "connect: $kind: online_users is $(online "$rp") before the run"
			"$bin" bench conn --url "$u" --transport "$tr" --secret "$SECRET" --conns "$CONNS" \
				--concurrency 200 --source-ips 127.0.0.2 --hold 1s --timeout 30s >"$log" 2>&1 &
			local b=$!
			started $b
			until grep -q READY "$log" 2>/dev/null; do kill -0 $b 2>/dev/null || break; sleep 0.02; done
			local at_ready
			at_ready=$(online "$rp")
			wait $b || true
			local line
			line=$(grep '^summary' "$log") || { tail -5 "$log" >&2; die "connect: $kind: no summary"; }
			rates[$kind]+="$(field conns/s <<<"$line") "
			R[connect_${kind}_committed]+="$at_ready "
			say "connect: run $run $kind: $(field conns/s <<<"$line") conns/s, failed $(field failed <<<"$line"), online_users when all were up: $at_ready/$CONNS"
		done
	done
	for kind in ref sio ws; do
		note "connect_$kind" "$(tr ' ' '\n' <<<"${rates[$kind]}" | grep . | median)"
		note "connect_${kind}_runs" "${rates[$kind]% }"
	done
	note connect_load "$(load)"
}

# ---- paced: handshake p99 at 2 000 connects a second
phase_paced() {
	main_servers
	say "paced: $PACED connections at 2000/s; load $(load)"
	local kind
	for kind in ref sio ws; do
		read -r u tr <<<"$(target_url $kind)"
		wait_online "$(target_rport $kind)" 0 20 || true
		local log=$tmp/paced-$kind.log
		"$bin" bench conn --url "$u" --transport "$tr" --secret "$SECRET" --conns "$PACED" --rate 2000 \
			--concurrency 2000 --source-ips 127.0.0.3 --hold 1s --timeout 30s >"$log" 2>&1 || true
		local line
		line=$(grep '^summary' "$log") || { tail -5 "$log" >&2; die "paced: $kind: no summary"; }
		note "paced_$kind" "$(field p99ms <<<"$line")"
		note "paced_${kind}_rate" "$(field conns/s <<<"$line")"
		say "paced: $kind: p99 $(field p99ms <<<"$line") ms at $(field conns/s <<<"$line") conns/s, failed $(field failed <<<"$line")"
	done
	note paced_load "$(load)"
}

# ---- churn: 5 000 connects + 5 000 disconnects a second for 60 s
phase_churn() {
	main_servers
	local kind
	for kind in ref sio; do
		say "churn: $kind: $CHURN_CONNS held, 5% dropped and reopened every 100 ms for ${CHURN_SECS}s; load $(load)"
		read -r u tr <<<"$(target_url $kind)"
		local rp srv rsrv log=$tmp/churn-$kind.log
		rp=$(target_rport $kind)
		if [[ $kind == ref ]]; then srv=$ref_pid rsrv=$ref_redis_pid; else srv=$p_pid rsrv=$p_redis_pid; fi
		wait_online "$rp" 0 20 || say "churn: $kind: online_users is $(online "$rp") before the run"
		"$bin" bench conn --url "$u" --transport "$tr" --secret "$SECRET" --conns "$CHURN_CONNS" \
			--concurrency 500 --source-ips 127.0.0.4,127.0.0.5 --timeout 30s \
			--churn-rate 0.05 --churn-interval 100ms --churn-for "${CHURN_SECS}s" --hold $((CHURN_SECS + 120))s >"$log" 2>&1 &
		local b=$!
		started $b
		until grep -q READY "$log" 2>/dev/null; do kill -0 $b 2>/dev/null || { cat "$log" >&2; die "churn: $kind: bench exited"; }; sleep 0.05; done
		grep -qx READY "$log" || die "churn: $kind: $(head -1 "$log")"
		local c0 r0 t0 c1 r1 t1
		c0=$(cpu_ticks "$srv") r0=$(cpu_ticks "$rsrv") t0=$(date +%s.%N)
		until grep -q '^churn done' "$log"; do kill -0 $b 2>/dev/null || { cat "$log" >&2; die "churn: $kind: bench exited"; }; sleep 0.1; done
		c1=$(cpu_ticks "$srv") r1=$(cpu_ticks "$rsrv") t1=$(date +%s.%N)
		local line held_at
		line=$(grep '^churn done' "$log")
		sleep 2 # let the last changes land
		held_at=$(online "$rp")
		local expect=$CHURN_CONNS
		stop_pid "$b" # closes every connection
		local gone_at
		wait_online "$rp" 0 15 || true
		gone_at=$(online "$rp")
		local hz
		hz=$(getconf CLK_TCK)
		note "churn_${kind}_conn" "$(field connects/s <<<"$line")"
		note "churn_${kind}_disc" "$(field disconnects/s <<<"$line")"
		note "churn_${kind}_cpu" "$(awk -v a="$c0" -v b="$c1" -v t0="$t0" -v t1="$t1" -v hz="$hz" 'BEGIN {printf "%.0f", 100 * (b - a) / hz / (t1 - t0)}')"
		note "churn_${kind}_rcpu" "$(awk -v a="$r0" -v b="$r1" -v t0="$t0" -v t1="$t1" -v hz="$hz" 'BEGIN {printf "%.0f", 100 * (b - a) / hz / (t1 - t0)}')"
		note "churn_${kind}_held" "$held_at/$expect"
		note "churn_${kind}_gone" "$gone_at"
		note "churn_${kind}_fail" "$(field failed <<<"$line")"
		say "churn: $kind: $line; online_users while $expect held: $held_at, after all left: $gone_at"
	done
	note churn_load "$(load)"
}

# ---- freshness: a connect or disconnect to its change in online_users and on SSE
phase_freshness() {
	main_servers
	say "freshness: $SAMPLES connects and disconnects each, both servers at once; load $(load)"
	local kind fpids=()
	for kind in ref ws; do
		read -r u tr <<<"$(target_url $kind)"
		local sse=()
		[[ $kind != ref ]] && sse=(--sse-url "http://127.0.0.1:$(target_port $kind)/api/admin/dashboard/stream" --token "$ADMIN")
		"$bin" bench freshness --url "$u" --transport "$tr" --secret "$SECRET" \
			--redis-url "redis://127.0.0.1:$(target_rport $kind)" "${sse[@]}" --samples "$SAMPLES" \
			>"$tmp/fresh-$kind.log" 2>&1 &
		fpids+=($!)
		started $!
	done
	local i=0
	for kind in ref ws; do
		wait "${fpids[$i]}" || { cat "$tmp/fresh-$kind.log" >&2; say "freshness: $kind failed"; }
		i=$((i + 1))
		local src ev
		for src in online_users sse; do
			for ev in connect disconnect; do
				local line
				line=$(grep "^freshness $src $ev " "$tmp/fresh-$kind.log" || true)
				note "fresh_${kind}_${src}_${ev}" "$(field p99 <<<"$line")"
				note "fresh_${kind}_${src}_${ev}_p50" "$(field p50 <<<"$line")"
			done
		done
		grep '^freshness ' "$tmp/fresh-$kind.log" | sed "s/^/compare: $kind: /" >&2
	done
	note fresh_load "$(load)"
}

# ---- overview: req/s and p99
phase_overview() {
	main_servers
	say "overview: 32 connections, ${HTTP_SECS}s each, $(command -v wrk >/dev/null && echo wrk -t1 || echo presenced bench http); load $(load)"
	local kind
	for kind in ref sio; do
		local url="http://127.0.0.1:$(target_port $kind)/api/admin/dashboard/overview" rps p99
		curl -sf -H "Authorization: Bearer $ADMIN" "$url" >/dev/null || die "overview: $kind: $url does not answer"
		if command -v wrk >/dev/null; then
			wrk -t1 -c32 -d"${HTTP_SECS}s" --latency -H "Authorization: Bearer $ADMIN" "$url" >"$tmp/wrk-$kind.log" 2>&1
			rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$tmp/wrk-$kind.log")
			p99=$(awk '$1 == "99%" {v = $2; if (v ~ /us$/) {sub(/us$/, "", v); v /= 1000} else if (v ~ /ms$/) {sub(/ms$/, "", v)} else if (v ~ /s$/) {sub(/s$/, "", v); v *= 1000}; printf "%.2f", v}' "$tmp/wrk-$kind.log")
			grep -q "Non-2xx" "$tmp/wrk-$kind.log" && die "overview: $kind: wrk saw non-2xx answers"
		else
			"$bin" bench http --url "$url" --token "$ADMIN" --conns 32 --duration "${HTTP_SECS}s" >"$tmp/wrk-$kind.log" 2>&1
			rps=$(field req/s <"$tmp/wrk-$kind.log")
			p99=$(grep '^latency ms' "$tmp/wrk-$kind.log" | field p99)
		fi
		note "ov_$kind" "$rps"
		note "ov_${kind}_p99" "$p99"
		say "overview: $kind: $rps req/s, p99 $p99 ms"
	done
	note ov_load "$(load)"
}

for ph in $PHASES; do
	case $ph in
	rss | connect | paced | churn | freshness | overview) "phase_$ph" ;;
	*) die "unknown phase $ph (rss connect paced churn freshness overview)" ;;
	esac
done

v() { echo "${R[$1]:--}"; }
row() { printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$@"; }
echo
echo "presenced against the reference (bench/peers/incrdecr: Node $(node --version) + Express 4 + socket.io 4.8 + redis 4, INCR/DECR), $(nproc) cores, one load generator, $(date -u +%Y-%m-%dT%H:%MZ)$([[ -n ${QUICK:-} ]] && echo ', QUICK (not a measurement)')"
echo
row scenario reference "presenced Socket.IO" ratio "presenced /ws" goal met
row --- --- --- --- --- --- ---
if [[ -n ${R[rss_ref]:-} ]]; then
	row "RSS per idle connection, KiB ($RSS_CONNS conns, ${IDLE}s idle; load ${R[rss_load]})" "$(v rss_ref)" "$(v rss_sio)" "$(ratio "$(v rss_ref)" "$(v rss_sio)") less" "$(v rss_ws)" "/ws ≤ 2, Socket.IO ≤ 3" \
		"/ws $(yn le "$(v rss_ws)" 2), Socket.IO $(yn le "$(v rss_sio)" 3)"
fi
if [[ -n ${R[connect_ref]:-} ]]; then
	row "connect rate unpaced, conns/s (median of $RUNS: ref ${R[connect_ref_runs]}; sio ${R[connect_sio_runs]}; ws ${R[connect_ws_runs]}; load ${R[connect_load]})" \
		"$(v connect_ref)" "$(v connect_sio)" "$(ratio "$(v connect_sio)" "$(v connect_ref)")" "$(v connect_ws) ($(ratio "$(v connect_ws)" "$(v connect_ref)"))" "≥ 10 000 and ≥ 6×" \
		"Socket.IO: 10 000 $(yn ge "$(v connect_sio)" 10000), 6× $(yn ge "$(awk -v a="$(v connect_sio)" -v b="$(v connect_ref)" 'BEGIN {print (b > 0 ? a / b : 0)}')" 6); /ws: 10 000 $(yn ge "$(v connect_ws)" 10000), 6× $(yn ge "$(awk -v a="$(v connect_ws)" -v b="$(v connect_ref)" 'BEGIN {print (b > 0 ? a / b : 0)}')" 6)"
	row "online_users when the last client got its answer (of $CONNS)" "${R[connect_ref_committed]% }" "${R[connect_sio_committed]% }" "" "${R[connect_ws_committed]% }" "every connect committed" \
		"$(yn test "$(tr ' ' '\n' <<<"${R[connect_sio_committed]}${R[connect_ws_committed]}" | grep . | sort -u)" == "$CONNS")"
fi
if [[ -n ${R[paced_ref]:-} ]]; then
	row "handshake p99 at 2 000/s, ms (achieved ref ${R[paced_ref_rate]}/s, sio ${R[paced_sio_rate]}/s, ws ${R[paced_ws_rate]}/s; load ${R[paced_load]})" "$(v paced_ref)" "$(v paced_sio)" "$(ratio "$(v paced_ref)" "$(v paced_sio)") less" "$(v paced_ws)" "" ""
fi
if [[ -n ${R[churn_ref_conn]:-} ]]; then
	row "churn, connects/s + disconnects/s achieved (asked 5 000 + 5 000, ${CHURN_SECS}s; load ${R[churn_load]})" "$(v churn_ref_conn) + $(v churn_ref_disc)" "$(v churn_sio_conn) + $(v churn_sio_disc)" "$(ratio "$(v churn_sio_conn)" "$(v churn_ref_conn)")" "" "5 000 + 5 000 sustained" \
		"$(yn ge "$(v churn_sio_conn)" 4900)"
	row "churn: server CPU, % of a core" "$(v churn_ref_cpu)" "$(v churn_sio_cpu)" "" "" "" ""
	row "churn: its Redis's CPU, % of a core" "$(v churn_ref_rcpu)" "$(v churn_sio_rcpu)" "" "" "" ""
	row "churn: online_users with all held / after all left" "$(v churn_ref_held) / $(v churn_ref_gone)" "$(v churn_sio_held) / $(v churn_sio_gone)" "" "" "exact" \
		"$(yn test "$(v churn_sio_held)/$(v churn_sio_gone)" == "$CHURN_CONNS/$CHURN_CONNS/0")"
fi
if [[ -n ${R[fresh_ref_online_users_connect]:-} || -n ${R[fresh_ws_online_users_connect]:-} ]]; then
	row "freshness: connect → online_users, p99 ms (p50; n $SAMPLES; load ${R[fresh_load]})" "$(v fresh_ref_online_users_connect) ($(v fresh_ref_online_users_connect_p50))" "" "" "$(v fresh_ws_online_users_connect) ($(v fresh_ws_online_users_connect_p50))" "≤ 50" "$(yn le "$(v fresh_ws_online_users_connect)" 50)"
	row "freshness: disconnect → online_users, p99 ms (p50)" "$(v fresh_ref_online_users_disconnect) ($(v fresh_ref_online_users_disconnect_p50))" "" "" "$(v fresh_ws_online_users_disconnect) ($(v fresh_ws_online_users_disconnect_p50))" "" ""
	row "freshness: connect → SSE stream, p99 ms (p50)" "no stream" "" "" "$(v fresh_ws_sse_connect) ($(v fresh_ws_sse_connect_p50))" "≤ 300" "$(yn le "$(v fresh_ws_sse_connect)" 300)"
	row "freshness: disconnect → SSE stream, p99 ms (p50)" "no stream" "" "" "$(v fresh_ws_sse_disconnect) ($(v fresh_ws_sse_disconnect_p50))" "" ""
fi
if [[ -n ${R[ov_ref]:-} ]]; then
	row "overview req/s, 32 conns (load ${R[ov_load]})" "$(v ov_ref)" "$(v ov_sio)" "$(ratio "$(v ov_sio)" "$(v ov_ref)")" "" "≥ 8×" "$(yn ge "$(awk -v a="$(v ov_sio)" -v b="$(v ov_ref)" 'BEGIN {print (b > 0 ? a / b : 0)}')" 8)"
	row "overview p99, ms" "$(v ov_ref_p99)" "$(v ov_sio_p99)" "$(ratio "$(v ov_ref_p99)" "$(v ov_sio_p99)") less" "" "≤ 2" "$(yn le "$(v ov_sio_p99)" 2)"
fi
