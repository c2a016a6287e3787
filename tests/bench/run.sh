#!/bin/sh
# `make bench`: benchmarks against real processes on loopback, each figure
# next to a reference measured in the same run.
#
#  1. Full TLS 1.3 handshakes per second (and per server CPU-second) on the
#     controller's agent port, against `openssl s_server` with the same
#     ECDSA P-256 key and certificate.
#  2. Controller RSS and CPU with BENCH_AGENTS simulated agents sending a
#     heartbeat every 10 s, against the same controller with no agent.
#
# A slow figure never fails the run; only something broken does (exit 1).
# Knobs: BENCH_TLS_SECONDS (10), BENCH_TLS_CONNS (16), BENCH_AGENTS (1000),
# BENCH_STEADY_SECONDS (60), BENCH_SETTLE_SECONDS (5).
set -u

top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 1
BIN=${BIN:-bin}
BUILD=${BUILD:-build/obj}
PYTHON=${PYTHON:-/usr/bin/python3}
OUT=build/bench
TLS_SECONDS=${BENCH_TLS_SECONDS:-10}
TLS_CONNS=${BENCH_TLS_CONNS:-16}
AGENTS=${BENCH_AGENTS:-1000}
STEADY=${BENCH_STEADY_SECONDS:-60}
SETTLE=${BENCH_SETTLE_SECONDS:-5}
HZ=$(getconf CLK_TCK)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/opsn-bench.XXXXXX") || exit 1
broken=0
ctl_pid=
srv_pid=
sim_pid=

say() { echo "bench: $*"; }
problem() { echo "bench: BROKEN: $*" >&2; broken=1; }

# A pid is running when it exists and is not a zombie waiting for `wait`.
alive() {
	[ -n "$1" ] && [ -r "/proc/$1/stat" ] &&
	    ! awk '{ sub(/^.*\) /, ""); exit $1 == "Z" ? 0 : 1 }' \
	    "/proc/$1/stat" 2>/dev/null
}

# Stop one process we started: TERM, up to 10 s, then KILL.
stop_pid() {
	[ -n "$1" ] || return 0
	kill "$1" 2>/dev/null
	i=0
	while alive "$1" && [ "$i" -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	if alive "$1"; then
		echo "bench: pid $1 ignored SIGTERM; killing it" >&2
		kill -9 "$1" 2>/dev/null
	fi
	wait "$1" 2>/dev/null
	return 0
}

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	stop_pid "$sim_pid"
	stop_pid "$srv_pid"
	stop_pid "$ctl_pid"
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo "bench: interrupted" >&2; exit 1' INT TERM HUP

# Utime + stime of a process, in clock ticks.
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
now() { date +%s.%N; }
# calc EXPR: floating point arithmetic with awk.
calc() { awk "BEGIN { v = ($1); printf \"%s\", v }"; }
# kv KEY LINE: the value of KEY=VALUE in a line of figures.
kv() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }

free_port() {
	"$PYTHON" -c 'import socket; s = socket.socket(); '\
's.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

listening() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }

tail_log() {
	[ -f "$1" ] || return 0
	echo "---- last lines of $(basename "$1") ----" >&2
	tail -n 20 "$1" >&2
}

# start_controller DIR [CONF]: sets ctl_pid, ctl_url, ctl_agent_port.
start_controller() {
	dir=$1
	mkdir -p "$dir"
	ctl_api_port=$(free_port)
	ctl_agent_port=$(free_port)
	ctl_url=https://127.0.0.1:$ctl_api_port
	ctl_data=$dir/data
	"$BIN/opsn-controller" ${2:+-c "$2"} --data-dir "$ctl_data" \
	    --api-listen "127.0.0.1:$ctl_api_port" \
	    --agent-listen "127.0.0.1:$ctl_agent_port" \
	    --log-file "$dir/controller.log" </dev/null >"$dir/stderr.log" 2>&1 &
	ctl_pid=$!
	i=0
	until "$PYTHON" tests/bench/api.py "$ctl_url" "$ctl_data/ca.pem" \
	    health >/dev/null 2>&1; do
		i=$((i + 1))
		if [ "$i" -gt 200 ] || ! alive "$ctl_pid"; then
			problem "the controller did not start"
			tail_log "$dir/stderr.log"
			tail_log "$dir/controller.log"
			return 1
		fi
		sleep 0.1
	done
}

stop_controller() {
	stop_pid "$ctl_pid"
	ctl_pid=
}

ready_nodes() {
	"$PYTHON" tests/bench/api.py "$ctl_url" "$ctl_data/ca.pem" health \
	    2>/dev/null || echo 0
}

# measure PID SECONDS: CPU % and RSS (KiB, at the end) over SECONDS.
measure() {
	m_t0=$(now)
	m_c0=$(ticks "$1")
	sleep "$2"
	m_c1=$(ticks "$1")
	m_t1=$(now)
	m_rss=$(rss_kib "$1")
	m_cpu=$(calc "100 * ($m_c1 - $m_c0) / $HZ / ($m_t1 - $m_t0)")
}

build() {
	mkdir -p "$OUT"
	cflags="-std=gnu11 -O2 -g -Wall -Wextra -Wno-unused-parameter -Wshadow \
	    -Wpointer-arith -Wmissing-prototypes -Wstrict-prototypes -D_GNU_SOURCE"
	if [ ! -f "$BUILD/libopsn.a" ]; then
		problem "$BUILD/libopsn.a is missing: run make first"
		return 1
	fi
	say "building $OUT/tlsload and $OUT/simagents"
	# shellcheck disable=SC2046,SC2086 # flags are split on purpose
	cc $cflags $(pkg-config --cflags openssl) -o "$OUT/tlsload" \
	    tests/bench/tlsload.c $(pkg-config --libs openssl) || return 1
	# shellcheck disable=SC2046,SC2086
	cc $cflags -Iinclude -I"$BUILD/proto" \
	    $(pkg-config --cflags libuv openssl libprotobuf-c) \
	    -o "$OUT/simagents" tests/bench/simagents.c "$BUILD/libopsn.a" \
	    $(pkg-config --libs libuv openssl libprotobuf-c sqlite3 jansson \
	    inih) -lm || return 1
}

# tls_run PID PORT: tlsload against PORT, the server's CPU from PID.
# Sets t_rate, t_cpu (server CPU seconds), t_per_cpu, t_client, t_line.
tls_run() {
	c0=$(ticks "$1")
	t_line=$("$OUT/tlsload" -c "$TLS_CONNS" -d "$TLS_SECONDS" 127.0.0.1 \
	    "$2" 2>"$tmp/tlsload.err")
	rc=$?
	c1=$(ticks "$1")
	cat "$tmp/tlsload.err" >&2
	if [ "$rc" -ne 0 ] || [ -z "$t_line" ]; then
		problem "tlsload against port $2 failed"
		t_line=
		return 1
	fi
	say "  $t_line"
	t_rate=$(kv rate "$t_line")
	t_client=$(kv client_cpu_pct "$t_line")
	t_cpu=$(calc "($c1 - $c0) / $HZ")
	t_per_cpu=$(calc "$t_cpu > 0 ? $(kv handshakes "$t_line") / $t_cpu : 0")
	if [ "$(kv failed "$t_line")" != 0 ] ||
	    [ "$(kv timeouts "$t_line")" != 0 ]; then
		problem "some handshakes against port $2 failed"
	fi
}

bench_tls() {
	say "1. TLS 1.3 handshakes: $TLS_CONNS connections for ${TLS_SECONDS} s each"
	start_controller "$tmp/tls" || return 1
	say "  opsn-controller on 127.0.0.1:$ctl_agent_port"
	tls_run "$ctl_pid" "$ctl_agent_port"
	ctl_line=$t_line ctl_rate=${t_rate:-} ctl_cpu=${t_cpu:-}
	ctl_per=${t_per_cpu:-} ctl_client=${t_client:-}
	stop_controller

	port=$(free_port)
	# Like the controller: ask for a client certificate (none comes) and
	# send the CA after the server certificate.
	openssl s_server -quiet -tls1_3 -accept "127.0.0.1:$port" \
	    -cert "$ctl_data/server.pem" -key "$ctl_data/server-key.pem" \
	    -cert_chain "$ctl_data/ca.pem" -verify 1 -www \
	    </dev/null >"$tmp/s_server.log" 2>&1 &
	srv_pid=$!
	i=0
	until listening "$port"; do
		i=$((i + 1))
		if [ "$i" -gt 100 ] || ! alive "$srv_pid"; then
			problem "openssl s_server did not start"
			tail_log "$tmp/s_server.log"
			return 1
		fi
		sleep 0.1
	done
	say "  openssl s_server on 127.0.0.1:$port"
	tls_run "$srv_pid" "$port"
	ssl_line=$t_line ssl_rate=${t_rate:-} ssl_cpu=${t_cpu:-}
	ssl_per=${t_per_cpu:-} ssl_client=${t_client:-}
	stop_pid "$srv_pid"
	srv_pid=
}

bench_agents() {
	say "2. controller with $AGENTS simulated agents, ${STEADY} s steady state"
	dir=$tmp/agents
	mkdir -p "$dir"
	printf '[controller]\nheartbeat_interval = 10s\nunreachable_timeout = 30s\n' \
	    >"$dir/controller.conf"
	start_controller "$dir" "$dir/controller.conf" || return 1

	say "  reference: no agent, settle ${SETTLE} s, measure ${STEADY} s"
	sleep "$SETTLE"
	measure "$ctl_pid" "$STEADY"
	idle_rss=$m_rss idle_cpu=$m_cpu

	say "  creating $AGENTS join tokens"
	if ! OPSN_TOKEN_FILE=$ctl_data/admin.token "$PYTHON" \
	    tests/bench/api.py "$ctl_url" "$ctl_data/ca.pem" tokens \
	    "$AGENTS" "$dir/tokens"; then
		problem "could not create join tokens"
		return 1
	fi

	say "  enrolling and connecting $AGENTS agents"
	t0=$(now)
	"$OUT/simagents" -n "$AGENTS" -t "$dir/tokens" -a "$ctl_data/ca.pem" \
	    "127.0.0.1:$ctl_agent_port" </dev/null >"$dir/simagents.log" 2>&1 &
	sim_pid=$!
	i=0
	ready=0
	while [ "$ready" -lt "$AGENTS" ]; do
		i=$((i + 1))
		if [ "$i" -gt 300 ] || ! alive "$sim_pid"; then
			problem "only $ready of $AGENTS agents became ready"
			tail_log "$dir/simagents.log"
			tail_log "$dir/controller.log"
			return 1
		fi
		sleep 1
		ready=$(ready_nodes)
	done
	up_seconds=$(calc "$(now) - $t0")
	sed 's/^/  /' "$dir/simagents.log"

	say "  loaded: settle ${SETTLE} s, measure ${STEADY} s"
	sleep "$SETTLE"
	measure "$ctl_pid" "$STEADY"
	load_rss=$m_rss load_cpu=$m_cpu
	ready_end=$(ready_nodes)
	[ "$ready_end" -eq "$AGENTS" ] ||
	    problem "$ready_end of $AGENTS agents ready at the end"

	stop_pid "$sim_pid"
	sim_pid=
	sim_line=$(grep '^agents=' "$dir/simagents.log")
	if [ -z "$sim_line" ] || [ "$(kv lost "$sim_line")" != 0 ] ||
	    [ "$(kv errors "$sim_line")" != 0 ]; then
		problem "simulated agents lost connections or got errors"
		tail_log "$dir/simagents.log"
	fi
	stop_controller
}

summary() {
	echo
	echo "==================== opsn bench summary ===================="
	printf 'TLS 1.3 full handshakes (no resumption), ECDSA P-256 server key,\n'
	printf '%s client connections for %s s, client and server on %s CPUs\n' \
	    "$TLS_CONNS" "$TLS_SECONDS" "$(nproc)"
	if [ -n "${ctl_line:-}" ] && [ -n "${ssl_line:-}" ]; then
		printf '  %-18s %12s %14s %18s %13s\n' server handshakes/s \
		    "server CPU s" "per server CPU-s" "client CPU %"
		printf '  %-18s %12.0f %14.2f %18.0f %13s\n' opsn-controller \
		    "$ctl_rate" "$ctl_cpu" "$ctl_per" "$ctl_client"
		printf '  %-18s %12.0f %14.2f %18.0f %13s\n' "openssl s_server" \
		    "$ssl_rate" "$ssl_cpu" "$ssl_per" "$ssl_client"
		printf '  ratio controller/openssl: %s in handshakes/s, %s per server CPU-second\n' \
		    "$(calc "$ssl_rate > 0 ? $ctl_rate / $ssl_rate : 0" | \
		    awk '{ printf "%.2f", $1 }')" \
		    "$(calc "$ssl_per > 0 ? $ctl_per / $ssl_per : 0" | \
		    awk '{ printf "%.2f", $1 }')"
	else
		echo "  (no result: see the errors above)"
	fi
	echo
	printf 'Controller with simulated agents, heartbeat every 10 s, %s s steady state\n' \
	    "$STEADY"
	if [ -n "${load_rss:-}" ]; then
		printf '  %-22s %8s %10s %8s\n' "" agents "RSS MiB" "CPU %"
		printf '  %-22s %8s %10.1f %8.2f\n' "reference (no agent)" 0 \
		    "$(calc "$idle_rss / 1024")" "$idle_cpu"
		printf '  %-22s %8s %10.1f %8.2f\n' "connected agents" \
		    "$ready_end" "$(calc "$load_rss / 1024")" "$load_cpu"
		printf '  per agent: %.1f KiB RSS; all %s enrolled and ready in %.1f s\n' \
		    "$(calc "($load_rss - $idle_rss) / $AGENTS")" "$AGENTS" \
		    "$up_seconds"
		printf '  simulator: %s\n' "$sim_line"
	else
		echo "  (no result: see the errors above)"
	fi
	echo "============================================================"
}

need=$((AGENTS + 512))
# dash has ulimit -n and -H, though POSIX does not promise them.
# shellcheck disable=SC3045
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
	ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)" ||
	    say "cannot raise the open file limit to $need"
fi

if build; then
	bench_tls
	stop_pid "$srv_pid"
	srv_pid=
	stop_controller
	bench_agents
else
	problem "the benchmark programs did not build"
fi
summary
exit "$broken"
