#!/usr/bin/env bash
# store.sh runs `presenced bench store` (the in-process simulation of issue
# 8: USERS online over NODES nodes, no sockets) against servers it starts
# itself and prints each run's table, then one line per run:
#
#   1. one redis-server, PRESENCE_SHARDS=1
#   2. a 3-master Redis Cluster (redis-cli --cluster create), PRESENCE_SHARDS=1
#   3. the same Cluster, PRESENCE_SHARDS=$SHARDS (16)
#
#   bench/store.sh                         1 000 000 users over 100 nodes (about 3 minutes)
#   USERS=200000 NODES=20 REAP=50000 bench/store.sh
#   RUNS="cluster-sharded" bench/store.sh  only some of: single cluster cluster-sharded
#   BATCH=8000 bench/store.sh              connects per Apply (default 1 000)
#
# Loopback only, ports from RPORT (26800): RPORT for the single server,
# RPORT+1..3 for the Cluster. No persistence. It stops everything it starts
# by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

RPORT=${RPORT:-26800}
USERS=${USERS:-1000000}
NODES=${NODES:-100}
REAP=${REAP:-100000}
SHARDS=${SHARDS:-16}
RUNS=${RUNS:-single cluster cluster-sharded}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/presenced-store.XXXXXX")
: >"$tmp/pids"
. bench/procs.sh
cleanup() {
	trap - EXIT INT TERM
	stop_all
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE
die() { echo "store: $*" >&2; exit 1; }
say() { echo "store: $*" >&2; }
wait_ping() { # wait_ping PORT
	for _ in $(seq 100); do
		[[ $(redis-cli -p "$1" ping 2>/dev/null) == PONG ]] && return 0
		sleep 0.05
	done
	die "redis-server on $1 does not answer"
}
command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)"

go build -o "$tmp/presenced" ./cmd/presenced

redis() { # redis PORT [ARGS...]: an empty redis-server without persistence
	local port=$1
	shift
	mkdir -p "$tmp/r$port"
	(cd "$tmp/r$port" && exec redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no "$@" >log 2>&1) &
	started $!
	wait_ping "$port"
}

bench() { # bench NAME ARGS...
	local name=$1
	shift
	say "$name: $(uptime | sed 's/.*load/load/')"
	"$tmp/presenced" bench store --users "$USERS" --nodes "$NODES" --reap-users "$REAP" ${BATCH:+--batch "$BATCH"} "$@" 2>"$tmp/$name.log" | tee "$tmp/$name.out"
	grep '^summary' "$tmp/$name.out" | sed "s/^summary/$name/" >>"$tmp/summary"
}

: >"$tmp/summary"
for run in $RUNS; do
	case $run in
	single)
		redis "$RPORT"
		bench single --redis-url "redis://127.0.0.1:$RPORT"
		;;
	cluster | cluster-sharded)
		if [[ ! -e $tmp/cluster ]]; then
			seeds=()
			for i in 1 2 3; do
				redis $((RPORT + i)) --cluster-enabled yes --cluster-config-file nodes.conf
				seeds+=("127.0.0.1:$((RPORT + i))")
			done
			redis-cli --cluster create "${seeds[@]}" --cluster-replicas 0 --cluster-yes >"$tmp/cluster" 2>&1 || { cat "$tmp/cluster" >&2; die "cluster create failed"; }
			for _ in $(seq 100); do
				[[ $(redis-cli -p $((RPORT + 1)) cluster info | tr -d '\r' | grep cluster_state) == cluster_state:ok ]] && break
				sleep 0.1
			done
		fi
		addrs=$(IFS=,; echo "${seeds[*]}")
		if [[ $run == cluster ]]; then
			bench cluster --cluster "$addrs"
		else
			bench cluster-sharded --cluster "$addrs" --shards "$SHARDS"
		fi
		;;
	*) die "unknown run $run (single, cluster, cluster-sharded)" ;;
	esac
done
echo
cat "$tmp/summary"
