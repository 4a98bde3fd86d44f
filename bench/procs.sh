# procs.sh is sourced by the bench scripts that start servers (compare.sh,
# failover.sh): every process they start is listed in $tmp/pids with its
# start time (field 22 of /proc/PID/stat), which stop_pid checks so as never
# to signal a PID the system reused. (redis-server rewrites its command
# line, so that cannot be the check.) The sourcing script sets $tmp and
# creates $tmp/pids first.

start_time() { [[ -r /proc/$1/stat ]] && sed 's/^.*) //' "/proc/$1/stat" | awk '{print $20}'; }
started() { echo "$1 $(start_time "$1")" >>"$tmp/pids"; }
ours() { # ours PID: PID is still the process started() recorded
	local st
	st=$(awk -v p="$1" '$1 == p {print $2}' "$tmp/pids" | tail -1)
	[[ -n $st && $(start_time "$1" 2>/dev/null) == "$st" ]] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null
}
stop_pid() { # stop_pid PID [SIGNAL]: SIGTERM (or SIGNAL), then SIGKILL after 10 s
	local pid=$1 sig=${2:-TERM}
	ours "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
	kill "-$sig" "$pid" 2>/dev/null || true
	for _ in $(seq 100); do
		ours "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
# stop_all stops every process started() recorded, the last started first.
stop_all() {
	local pid
	while read -r pid _; do stop_pid "$pid"; done < <(tac "$tmp/pids")
}
