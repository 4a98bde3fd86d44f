#!/usr/bin/env bash
# failover.sh draws bench/failover/failover.svg: the online count of a
# three-node presenced cluster and of a three-node cluster of the reference
# peer (bench/peers/incrdecr, INCR/DECR), sampled every 100 ms through the
# same faults, next to the number of users actually connected:
#
#   1. 1 000 Socket.IO clients connect to each node (3 000 users); then
#      sampling starts
#   2. node 3 is killed with kill -9; its 1 000 users reconnect to node 1
#   3. Redis is killed and restarted empty (no persistence)
#   4. the 1 000 users first connected to node 1 leave
#
# The reference never DECRs for the killed node and loses its count with
# Redis, so its line ends far from the truth; presenced reaps the dead
# node (within NODE_TTL + HEARTBEAT_INTERVAL), rewrites every node's share
# when Redis returns, and ends on the truth. Each cluster has its own
# redis-server; presenced's nodes each have their own SQLite (embedded data
# store), so while Redis is down presenced's overview shows node 1's
# fallback count, which knows only node 1's users (a shared MongoDB in
# production knows them all).
#
#   bench/failover.sh                  writes bench/failover/failover.svg
#   OUT=/tmp/f.svg bench/failover.sh
#   KEEP=/tmp/failover bench/failover.sh     keep the CSV and the logs
#
# Loopback only, ports from PORT (18720) and RPORT (26720); about a minute.
# It stops everything it starts by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-18720}
RPORT=${RPORT:-26720}
OUT=${OUT:-bench/failover/failover.svg}
PER=${PER:-1000}
SECRET=failover-bench-secret-of-32-bytes
ADMIN=failover-bench-admin

tmp=$(mktemp -d "${TMPDIR:-/tmp}/presenced-failover.XXXXXX")
: >"$tmp/pids"
. bench/procs.sh
cleanup() {
	trap - EXIT INT TERM
	stop_all
	if [[ -n ${KEEP:-} ]]; then mkdir -p "$KEEP" && cp -r "$tmp"/*.csv "$tmp"/logs "$KEEP"/ 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE
die() { echo "failover: $*" >&2; exit 1; }
say() { echo "failover: $*" >&2; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # wait_port PORT PID LOG
	for _ in $(seq 300); do
		port_busy "$1" && return 0
		kill -0 "$2" 2>/dev/null || { cat "$3" >&2; die "process $2 exited"; }
		sleep 0.05
	done
	die "nothing listens on $1"
}

for cmd in redis-server node npm curl go; do command -v "$cmd" >/dev/null || die "$cmd not found"; done
for ((p = PORT; p < PORT + 6; p++)); do port_busy "$p" && die "port $p is in use; set PORT"; done
for ((p = RPORT; p < RPORT + 2; p++)); do port_busy "$p" && die "port $p is in use; set RPORT"; done
say "building"
mkdir -p "$tmp/bin" "$tmp/logs"
go build -o "$tmp/bin/presenced" ./cmd/presenced
go build -o "$tmp/bin/failover" ./bench/failover
bin=$tmp/bin/presenced
peer=$PWD/bench/peers/incrdecr
[[ -d $peer/node_modules ]] || (cd "$peer" && npm ci --no-audit --no-fund --silent)

declare -A REDIS
start_redis() { # start_redis NAME PORT
	mkdir -p "$tmp/$1"
	redis-server --port "$2" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp/$1" \
		--daemonize no --loglevel warning >>"$tmp/logs/$1.log" 2>&1 &
	REDIS[$1]=$!
	started $!
	wait_port "$2" $! "$tmp/logs/$1.log"
}
start_redis redis-p "$RPORT"
start_redis redis-ref $((RPORT + 1))
declare -a PNODE RNODE
for k in 0 1 2; do
	mkdir -p "$tmp/p$k"
	env PORT=$((PORT + k)) JWT_SECRET="$SECRET" ADMIN_TOKEN="$ADMIN" DATA_DIR="$tmp/p$k" NODE_ID="node-$((k + 1))" \
		REDIS_URL="redis://127.0.0.1:$RPORT" LOG_LEVEL=warn "$bin" serve --env-file /dev/null >"$tmp/logs/presenced$k.log" 2>&1 &
	PNODE[$k]=$!
	started $!
	env PORT=$((PORT + 3 + k)) JWT_SECRET="$SECRET" ADMIN_TOKEN="$ADMIN" REDIS_URL="redis://127.0.0.1:$((RPORT + 1))" \
		node "$peer/server.js" >"$tmp/logs/reference$k.log" 2>&1 &
	RNODE[$k]=$!
	started $!
done
for k in 0 1 2; do
	wait_port $((PORT + k)) "${PNODE[$k]}" "$tmp/logs/presenced$k.log"
	wait_port $((PORT + 3 + k)) "${RNODE[$k]}" "$tmp/logs/reference$k.log"
done

# The clients connect first; sampling starts once all are up.
declare -A BENCH
nclients=0
clients() { # clients NAME NODE_PORT OFFSET
	nclients=$((nclients + 1))
	"$bin" bench conn --url "ws://127.0.0.1:$2/socket.io/" --transport socketio --secret "$SECRET" \
		--conns "$PER" --users $((3 * PER)) --offset "$3" --concurrency 50 --timeout 20s --hold 10m \
		--source-ips "127.0.$((30 + nclients)).2" >"$tmp/logs/bench-$1.log" 2>&1 &
	BENCH[$1]=$!
	started $!
}
ready() { # ready NAME...
	local n
	for n in "$@"; do
		for _ in $(seq 600); do grep -q READY "$tmp/logs/bench-$n.log" 2>/dev/null && break; sleep 0.05; done
		grep -qx READY "$tmp/logs/bench-$n.log" || die "clients $n not ready: $(head -3 "$tmp/logs/bench-$n.log")"
	done
}
say "3 000 users connect, 1 000 per node"
for k in 0 1 2; do
	clients "p$k" $((PORT + k)) $((k * PER))
	clients "r$k" $((PORT + 3 + k)) $((k * PER))
done
ready p0 p1 p2 r0 r1 r2
sleep 1
echo $((3 * PER)) >"$tmp/truth"
"$tmp/bin/failover" sample -out "$tmp/samples.csv" -truth "$tmp/truth" -stop "$tmp/stop" \
	-p-redis "127.0.0.1:$RPORT" -p-overview "http://127.0.0.1:$PORT/api/admin/dashboard/overview" \
	-ref-redis "127.0.0.1:$((RPORT + 1))" -ref-overview "http://127.0.0.1:$((PORT + 3))/api/admin/dashboard/overview" \
	-token "$ADMIN" 2>"$tmp/logs/sample.log" &
sampler=$!
started $sampler
t0=$(date +%s%N)
echo "t_ms,label" >"$tmp/events.csv"
event() { echo "$((($(date +%s%N) - t0) / 1000000)),$1" >>"$tmp/events.csv"; say "$1"; }
at() { # at SECONDS: sleep until SECONDS after the sampler started
	local ms=$((($(date +%s%N) - t0) / 1000000))
	local left=$(($1 * 1000 - ms))
	((left > 0)) && sleep "$(awk -v l="$left" 'BEGIN {print l / 1000}')"
	return 0
}

at 4
event "kill -9 node 3"
kill -KILL "${PNODE[2]}" "${RNODE[2]}"
echo $((2 * PER)) >"$tmp/truth"
stop_pid "${BENCH[p2]}"
stop_pid "${BENCH[r2]}"
at 5
event "its users reconnect to node 1"
clients p2b "$PORT" $((2 * PER))
clients r2b $((PORT + 3)) $((2 * PER))
ready p2b r2b
echo $((3 * PER)) >"$tmp/truth"

at 20
event "Redis restarts empty"
kill -KILL "${REDIS[redis-p]}" "${REDIS[redis-ref]}"
sleep 1
start_redis redis-p "$RPORT"
start_redis redis-ref $((RPORT + 1))

at 30
event "1 000 users leave"
echo $((2 * PER)) >"$tmp/truth"
stop_pid "${BENCH[p0]}"
stop_pid "${BENCH[r0]}"

at 40
touch "$tmp/stop"
wait "$sampler" || die "sampler failed: $(cat "$tmp/logs/sample.log")"
"$tmp/bin/failover" plot -in "$tmp/samples.csv" -events "$tmp/events.csv" -out "$OUT" \
	-title "online count, 3 nodes: presenced and INCR/DECR through kill -9 and a Redis restart"
last=$(tail -1 "$tmp/samples.csv")
say "wrote $OUT; last sample (t_ms,truth,presenced_redis,presenced_overview,reference_redis,reference_overview): $last"
