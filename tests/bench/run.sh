#!/bin/sh
# `make bench`: benchmarks against real processes on loopback, each figure
# next to a reference measured in the same run.
#
#  1. Full TLS 1.3 handshakes per second (and per server CPU-second) on the
#     controller's agent port, against `openssl s_server` with the same
#     ECDSA P-256 key and certificate.
#  2. Controller RSS and CPU with BENCH_AGENTS simulated agents sending a
#     heartbeat every 10 s, against the same controller with no agent.
#  3. (boot) Time from `opsnctl vm create --wait` to the guest's marker line
#     in `opsnctl vm console-log`, against `virsh define && virsh start` of
#     the same domain XML (real QEMU, TCG; tests/bench/vms.py boot).
#  4. (scale) The hypervisor agent's RSS and CPU with BENCH_VMS VMs on
#     libvirt's test driver, against the same agent with none, and the time
#     of one full resync (tests/bench/vms.py scale).
#  5. (api) HTTPS keep-alive requests/s and p99 with wrk: GET
#     /v1/tenants?limit=100 with every commune imported (~35,000 tenants)
#     and small POST /v1/plans, against a private nginx serving static
#     files of the same sizes with the same certificate; the POSTs also
#     against one-row-per-transaction inserts with synchronous=FULL into
#     the same database file (tests/bench/sqlref.c), and both again on a
#     disk whose flush is BENCH_FLUSH_MS slower (strace delays the fsyncs).
#  6. (usage, billing) National scale through the API: every commune,
#     2,000 VMs, 100,000 mailboxes, 1,000 sites, October and November 2026
#     of usage (built once into build/bench/national-v2, ~6 GiB; October
#     closed, late October usage for 100 members): a month of one member's
#     usage (wrk, a random member per request) against nginx serving the
#     same bytes; the month's usage CSV for every member against a plain
#     scan of the month's rows; November's statements (POST
#     /v1/statements/generate) against SUM ... GROUP BY over its rows.
#  7. (backend) A mail backend with BENCH_BACKEND_MAILBOXES (250,000)
#     mailboxes on real Postfix and Dovecot: bytes and time of one changed
#     mailbox (a delta) and of a full resync, next to the whole state that
#     protocol 1 sends at every change (tests/bench/backend.py).
#  8. (sim) The scale simulation: 2,500 simulated hypervisors with 50,000
#     VMs, 35,000 members, 100,000 mailboxes on 4 simulated mail backends,
#     all over TLS to the real controller, samples every BENCH_SIM_SAMPLES
#     seconds (60; 0: none): the controller's RSS and CPU at steady state
#     next to the same controller with no agent, API list p99 under that
#     load, and the time until every agent is ready and in step after a
#     controller restart (data set built once into build/bench/sim-v2;
#     every run starts from it as built).
#  9. (sched) Placement against Ganeti's hail and hspace on the same
#     synthetic clusters (tests/bench/sched.sh): decisions/s, p99, the
#     cluster score after the same stream, VMs of one plan that fit.
# 10. (backup) Backup size and time, and restore time, with every commune
#     and a month of hourly usage (tests/bench/backup.py; knobs
#     BENCH_BACKUP_SERVED, BENCH_BACKUP_HOURS).
#
# A slow figure never fails the run; only something broken does (exit 1).
# BENCH_ONLY=tls,agents,boot,scale,api,metering,usage,billing,backend,sim,
# sched,backup (comma list; default all) picks
# sections. Knobs: BENCH_TLS_SECONDS (10), BENCH_TLS_CONNS (16),
# BENCH_AGENTS (1000), BENCH_STEADY_SECONDS (60), BENCH_SETTLE_SECONDS (5),
# BENCH_BOOT_RUNS (3), BENCH_VMS (200), BENCH_VM_STEADY_SECONDS (30),
# BENCH_RESYNC_SECONDS (10), BENCH_WRK_ARGS ("-t2 -c16 -d10s"),
# BENCH_FLUSH_MS (2: the POSTs and their reference again with every
# fsync and fdatasync that much slower, through strace; 0: not),
# BENCH_COMMUNES (default: ../shared/data/communes.json beside the
# repository).
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
ONLY=${BENCH_ONLY:-all}
case $BIN in
/*) abs_bin=$BIN ;;
*) abs_bin=$top/$BIN ;;
esac
WRK_ARGS=${BENCH_WRK_ARGS:--t2 -c16 -d10s}
FLUSH_MS=${BENCH_FLUSH_MS:-2}
COMMUNES=${BENCH_COMMUNES:-$top/../shared/data/communes.json}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/opsn-bench.XXXXXX") || exit 1
broken=0
ctl_pid=
srv_pid=
sim_pid=
bg_pid=
nginx_pid=

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
	stop_pid "$bg_pid"
	stop_pid "$nginx_pid"
	stop_pid "$sim_pid"
	stop_pid "$srv_pid"
	stop_pid "$ctl_pid"
	stop_pid "${ctl_wrap_pid:-}"
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo "bench: interrupted" >&2; exit 1' INT TERM HUP

# want SECTION: whether BENCH_ONLY selects it.
want() {
	case ",$ONLY," in
	*,all,* | *",$1,"*) return 0 ;;
	esac
	return 1
}

# bg OUT CMD...: run CMD in the background (so that the traps can stop it)
# with its stdout to OUT (- for ours), and wait for it; returns its exit
# code.
bg() {
	bg_out=$1
	shift
	if [ "$bg_out" = - ]; then
		"$@" </dev/null &
	else
		"$@" >"$bg_out" </dev/null &
	fi
	bg_pid=$!
	wait "$bg_pid"
	bg_rc=$?
	bg_pid=
	return "$bg_rc"
}

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

# start_controller DIR [CONF]: sets ctl_pid, ctl_url, ctl_agent_port
# (AGENT_PORT set: that one, for agents to come back after a restart).
# The benchmarks measure the server, not its per-token rate limit: CONF
# (default DIR/controller.conf) gets "[api] rate = 0".
start_controller() {
	dir=$1
	mkdir -p "$dir"
	set -- "$1" "${2:-$dir/controller.conf}"
	printf '\n[api]\nrate = 0\n' >>"$2"
	ctl_api_port=$(free_port)
	ctl_agent_port=${AGENT_PORT:-$(free_port)}
	ctl_url=https://127.0.0.1:$ctl_api_port
	# Absolute: nginx, started elsewhere, reads its certificate there.
	ctl_data=$(cd "$dir" && pwd)/data
	# shellcheck disable=SC2086 # CTL_WRAP is a command line: split it
	${CTL_WRAP:-} "$BIN/opsn-controller" -c "$2" --data-dir "$ctl_data" \
	    --api-listen "127.0.0.1:$ctl_api_port" \
	    --agent-listen "127.0.0.1:$ctl_agent_port" \
	    --log-file "$dir/controller.log" </dev/null >"$dir/stderr.log" 2>&1 &
	ctl_pid=$!
	ctl_wrap_pid=
	i=0
	if [ -n "${CTL_WRAP:-}" ]; then
		# The controller under the wrapper: its CPU is the server's,
		# and stopping it ends the wrapper.
		ctl_wrap_pid=$ctl_pid
		until ctl_pid=$(pgrep -x -P "$ctl_wrap_pid" opsn-controller); do
			i=$((i + 1))
			if [ "$i" -gt 100 ] || ! alive "$ctl_wrap_pid"; then
				problem "the controller did not start under" \
				    "$CTL_WRAP"
				tail_log "$dir/stderr.log"
				return 1
			fi
			sleep 0.1
		done
		i=0
	fi
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
	stop_pid "${ctl_wrap_pid:-}"
	ctl_pid='' ctl_wrap_pid=''
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
	say "building $OUT/sqlref and $OUT/national"
	# shellcheck disable=SC2046,SC2086
	cc $cflags $(pkg-config --cflags sqlite3) -o "$OUT/sqlref" \
	    tests/bench/sqlref.c $(pkg-config --libs sqlite3) || return 1
	# Against the controller's own objects (store, calendar, migrations).
	BUILD=$BUILD sh tests/bench/ctlbuild.sh "$OUT/national" \
	    tests/bench/national.c || return 1
	say "building $OUT/resyncshim.so"
	# shellcheck disable=SC2086
	cc $cflags -shared -fPIC -o "$OUT/resyncshim.so" \
	    tests/bench/resyncshim.c -ldl || return 1
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

bench_boot() {
	say "3. VM create to the guest's marker: opsn against virsh," \
	    "${BENCH_BOOT_RUNS:-3} runs each"
	if [ ! -f build/images/tiny/.stamp ]; then
		problem "no tiny guest image: run make image"
		return 1
	fi
	bg - env OPSN_BIN="$abs_bin" "$PYTHON" tests/bench/vms.py boot \
	    "$tmp/boot.txt" ||
	    problem "the VM boot benchmark failed"
}

bench_scale() {
	say "4. hypervisor agent with ${BENCH_VMS:-200} VMs on libvirt's test" \
	    "driver"
	if [ ! -f build/images/tiny/.stamp ]; then
		problem "no tiny guest image: run make image"
		return 1
	fi
	bg - env OPSN_BIN="$abs_bin" "$PYTHON" tests/bench/vms.py scale \
	    "$tmp/scale.txt" ||
	    problem "the agent scale benchmark failed"
}

# opsnctl_as_admin ARGS...: opsnctl against the running controller.
# shellcheck disable=SC2317 # called through bg
opsnctl_as_admin() {
	HOME=$tmp OPSN_URL=$ctl_url OPSN_CA=$ctl_data/ca.pem \
	    OPSN_TOKEN=$(cat "$ctl_data/admin.token") "$BIN/opsnctl" "$@"
}

# curl_api PATH OUT [BODY]: GET (or POST BODY) PATH with the admin token.
curl_api() {
	ca_path=$1 ca_out=$2
	if [ $# -ge 3 ]; then
		set -- -H 'Content-Type: application/json' -d "$3"
	else
		set --
	fi
	curl -sS -f --cacert "$ctl_data/ca.pem" \
	    -H "Authorization: Bearer $(cat "$ctl_data/admin.token")" \
	    "$@" -o "$ca_out" "$ctl_url$ca_path"
}

# CPU ticks of a process and its direct children (nginx's worker).
tree_ticks() {
	tt=$(ticks "$1")
	for kid in $(ps -o pid= --ppid "$1" 2>/dev/null); do
		tt=$((tt + $(ticks "$kid" 2>/dev/null || echo 0)))
	done
	echo "$tt"
}

# children_cpu: sets k_cpu, the CPU seconds (user + system) of this
# shell's children that ended, from times, in this shell (not in $(...),
# whose children would be counted instead).
children_cpu() {
	times >"$tmp/times"
	k_cpu=$(awk 'NR == 2 { gsub(/[ms]/, " ")
	    print 60 * $1 + $2 + 60 * $3 + $4 }' "$tmp/times")
}

# wrk_run LABEL PID URL [MODE]: wrk against URL (tests/bench/wrk.lua in
# MODE get or post); PID (and its children) is the server. Sets w_rps,
# w_p50 and w_p99 (ms), w_cpu (server CPU %), w_n (requests), and the
# CPU a request cost the server and wrk (w_srv_us, w_cli_us).
wrk_run() {
	w_rps='' w_p99='' w_p50='' w_cpu='' w_n='' w_srv_us='' w_cli_us=''
	children_cpu
	k0=$k_cpu
	c0=$(tree_ticks "$2")
	t0=$(now)
	# shellcheck disable=SC2086 # WRK_ARGS is split on purpose
	bg "$tmp/wrk.out" env WRK_MODE="${4:-get}" \
	    WRK_TOKEN="$(cat "$ctl_data/admin.token")" WRK_TAG="p$$-$(date +%s%N)" \
	    wrk $WRK_ARGS --latency -s tests/bench/wrk.lua "$3"
	rc=$?
	t1=$(now)
	c1=$(tree_ticks "$2")
	line=$(grep '^WRK ' "$tmp/wrk.out")
	if [ "$rc" -ne 0 ] || [ -z "$line" ]; then
		problem "wrk against $3 failed"
		sed 's/^/  /' "$tmp/wrk.out" >&2
		return 1
	fi
	w_n=$(kv requests "$line")
	w_rps=$(calc "$w_n / ($(kv duration_us "$line") / 1000000)")
	w_p99=$(calc "$(kv p99_us "$line") / 1000")
	w_p50=$(calc "$(kv p50_us "$line") / 1000")
	w_cpu=$(calc "100 * ($c1 - $c0) / $HZ / ($t1 - $t0)")
	w_srv_us=$(calc "1000000 * ($c1 - $c0) / $HZ / $w_n")
	children_cpu
	w_cli_us=$(calc "1000000 * ($k_cpu - $k0) / $w_n")
	say "  $1: $(printf '%.0f' "$w_rps") requests/s, p50 $w_p50 ms," \
	    "p99 $w_p99 ms, server CPU $(printf '%.0f' "$w_cpu") %;" \
	    "CPU a request: server $(printf '%.0f' "$w_srv_us") us," \
	    "wrk $(printf '%.0f' "$w_cli_us") us"
	if [ "$(kv errors "$line")" != 0 ] || [ "$(kv status "$line")" != 0 ] ||
	    [ "$(kv timeouts "$line")" != 0 ]; then
		problem "$1: errors in wrk's answers: $line"
	fi
}

# start_nginx DIR: a private nginx (1 worker) on a free loopback port with
# the controller's certificate, web root DIR/www. Sets nginx_pid/_port.
start_nginx() {
	nd=$1
	nginx_port=$(free_port)
	mkdir -p "$nd/www" "$nd/tmp"
	# The worker runs as nobody: the web root must be reachable.
	chmod 755 "$tmp" "$(dirname "$nd")" "$nd" "$nd/www"
	{
		echo "worker_processes 1;"
		echo "pid $nd/nginx.pid;"
		echo "error_log $nd/error.log;"
		echo "events { worker_connections 1024; }"
		echo "http {"
		echo "	access_log off;"
		for t in client_body proxy fastcgi uwsgi scgi; do
			echo "	${t}_temp_path $nd/tmp/$t;"
		done
		echo "	keepalive_requests 100000000;"
		echo "	keepalive_timeout 75s;"
		echo "	server {"
		echo "		listen 127.0.0.1:$nginx_port ssl;"
		echo "		ssl_certificate $ctl_data/server.pem;"
		echo "		ssl_certificate_key $ctl_data/server-key.pem;"
		echo "		ssl_protocols TLSv1.3;"
		echo "		root $nd/www;"
		echo "		default_type application/json;"
		echo "	}"
		echo "}"
	} >"$nd/nginx.conf"
	nginx -p "$nd" -c "$nd/nginx.conf" -e "$nd/error.log" \
	    -g 'daemon off;' </dev/null >"$nd/stdout.log" 2>&1 &
	nginx_pid=$!
	i=0
	until listening "$nginx_port"; do
		i=$((i + 1))
		if [ "$i" -gt 100 ] || ! alive "$nginx_pid"; then
			problem "nginx did not start"
			tail_log "$nd/stdout.log"
			tail_log "$nd/error.log"
			return 1
		fi
		sleep 0.1
	done
}

bench_api() {
	say "5. API over HTTPS keep-alive (wrk $WRK_ARGS) against nginx"
	dir=$tmp/api
	mkdir -p "$dir"
	need_communes || return 1
	start_controller "$dir" || return 1
	say "  importing every commune from $COMMUNES"
	t0=$(now)
	if ! bg "$dir/import.out" opsnctl_as_admin tenant import \
	    --etalab "$COMMUNES"; then
		problem "opsnctl tenant import failed"
		tail_log "$dir/import.out"
		return 1
	fi
	api_import="$(tail -n 1 "$dir/import.out") in $(calc "$(now) - $t0" |
	    awk '{ printf "%.1f", $1 }') s"
	say "  $api_import"
	start_nginx "$dir/nginx" || return 1
	www=$dir/nginx/www
	# nginx serves the very bytes of the page, and of a POST's answer.
	if ! curl_api "/v1/tenants?limit=100" "$www/tenants.json"; then
		problem "GET /v1/tenants?limit=100 failed"
		return 1
	fi
	if ! curl_api /v1/plans "$www/plan.json" '{"name":"bench-probe",'\
'"vcpus":1,"memory_mib":512,"disk_bytes":2147483648}'; then
		problem "POST /v1/plans failed"
		return 1
	fi
	chmod 644 "$www/tenants.json" "$www/plan.json"
	api_page=$(wc -c <"$www/tenants.json")
	api_small=$(wc -c <"$www/plan.json")
	api_items=$("$PYTHON" -c 'import json, sys
print(len(json.load(open(sys.argv[1]))["items"]))' "$www/tenants.json")
	say "  tenants page: $api_items items, $api_page bytes;" \
	    "POST /v1/plans answer: $api_small bytes"

	wrk_run "GET /v1/tenants?limit=100 (opsn)" "$ctl_pid" \
	    "$ctl_url/v1/tenants?limit=100" &&
	    a_get="$w_rps $w_p50 $w_p99 $w_cpu"
	wrk_run "GET /tenants.json (nginx)" "$nginx_pid" \
	    "https://127.0.0.1:$nginx_port/tenants.json" &&
	    n_get="$w_rps $w_p50 $w_p99 $w_cpu"
	# The same page again is served from the controller's kept pages; a
	# page at a random cursor each time is written from its rows.
	WRK_PATH="/v1/tenants?limit=100&cursor="
	WRK_TENANTS=34800
	export WRK_PATH WRK_TENANTS
	wrk_run "GET /v1/tenants?limit=100&cursor=random (opsn)" \
	    "$ctl_pid" "$ctl_url/" usage && a_rnd="$w_rps $w_p50 $w_p99 $w_cpu"
	unset WRK_PATH WRK_TENANTS
	wrk_run "POST /v1/plans (opsn)" "$ctl_pid" "$ctl_url/v1/plans" post &&
	    a_post="$w_rps $w_p50 $w_p99 $w_cpu" &&
	    a_post_cpu="$w_srv_us $w_cli_us"
	wrk_run "GET /plan.json (nginx)" "$nginx_pid" \
	    "https://127.0.0.1:$nginx_port/plan.json" &&
	    n_small="$w_rps $w_p50 $w_p99 $w_cpu"
	api_commits=$(api_commits)
	stop_pid "$nginx_pid"
	nginx_pid=
	stop_controller
	# The same file, one row a transaction, synchronous=FULL.
	if sqlref_run; then
		s_ref=$r_ref
		say "  reference, one row a transaction (FULL) into the same" \
		    "file: $r_rate commits/s, p99 $r_p99 ms"
	else
		problem "the SQLite reference failed"
	fi
	if [ "$FLUSH_MS" -gt 0 ]; then
		api_slow_flush "$dir"
	fi
}

# api_slow_flush DIR: the POSTs and their reference again on a disk whose
# flush takes FLUSH_MS more (a SATA disk without a write cache, a network
# volume): strace delays every fsync and fdatasync of either side by the
# same amount, in the same database file.
api_slow_flush() {
	if ! command -v strace >/dev/null; then
		problem "strace is missing (ops/deps.sh installs it)"
		return 1
	fi
	slow="strace -f --seccomp-bpf -qq -o /dev/null -e trace=fsync,fdatasync
	    -e inject=fsync,fdatasync:delay_exit=$((FLUSH_MS * 1000))"
	say "  again with $FLUSH_MS ms more a flush (strace delays every fsync" \
	    "and fdatasync, both sides)"
	# A configuration of its own: start_controller adds to it.
	CTL_WRAP=$slow start_controller "$1" "$1/slow.conf" || return 1
	wrk_run "POST /v1/plans, slow flush (opsn)" "$ctl_pid" \
	    "$ctl_url/v1/plans" post && a_spost="$w_rps $w_p50 $w_p99 $w_cpu"
	api_scommits=$(api_commits)
	stop_controller
	# shellcheck disable=SC2086 # $slow is a command line
	if sqlref_run $slow; then
		s_sref=$r_ref
		say "  reference with the slow flush: $r_rate commits/s, p99" \
		    "$r_p99 ms"
	else
		problem "the SQLite reference with the slow flush failed"
	fi
}

# sqlref_run [WRAPPER...]: the SQLite reference into the controller's
# database file for as long as wrk runs, under WRAPPER if given. Sets
# r_rate (commits/s), r_p99 (ms) and r_ref (a summary row's figures).
sqlref_run() {
	bg "$tmp/sqlref.out" "$@" "$OUT/sqlref" -d \
	    "$(echo "$WRK_ARGS" | sed -n 's/.*-d *\([0-9]*\)s.*/\1/p')" \
	    "$ctl_data/opsn.db" || return 1
	line=$(cat "$tmp/sqlref.out")
	r_rate=$(kv commits_per_s "$line")
	r_p99=$(calc "$(kv p99_us "$line") / 1000")
	r_ref="$r_rate 0 $r_p99 0"
}

# api_commits: the store's writes and commits so far, from /metrics.
api_commits() {
	curl_api /metrics - | awk '
	    /^opsn_store_commits_total / { c = $2 }
	    /^opsn_store_writes_total / { w = $2 }
	    END { if (c > 0) printf "%d writes in %d commits (%.1f a commit)",
	    w, c, w / c }'
}

# The national data set, built once: the communes through the API, a
# tariff, usage written as the rollups keep it (tests/bench/national.c),
# October generated and closed through the API, then late October usage.
NATIONAL=$OUT/national-v2
NAT_TARIFF='{"name":"national","default":true,"deliberation":{"number":
"2025-100","date":"2025-12-01"},"effective_from":"2026-01-01",
"effective_to":null,"monthly_fee":{"S":"6.00","M":"18.00","L":"45.00"},
"contribution_per_inhabitant":"0.73","bands":[{"name":"S","max":999},
{"name":"M","max":9999},{"name":"L"}],"rates":{"vm.vcpu_hours":"0.0180",
"vm.memory_gib_hours":{"S":"0.0045","M":"0.0055","L":"0.0065"},
"vm.disk_gib_hours":"0.00012","vm.net_tx_gib":"0.01",
"mailbox.mailbox_days":"0.0120","mailbox.storage_gib_hours":"0.00005",
"site.site_days":"0.0333"},"allowances":{"mailbox.mailbox_days":"100"}}'

# need_communes: the Etalab communes file is there, or say so.
need_communes() {
	[ -f "$COMMUNES" ] && return 0
	problem "no communes file at $COMMUNES (set BENCH_COMMUNES)"
	return 1
}

national_build() {
	[ -f "$NATIONAL/.built" ] && return 0
	need_communes || return 1
	say "  building the national data set in $NATIONAL (once; long)"
	rm -rf "$NATIONAL"
	start_controller "$NATIONAL" || return 1
	if ! bg "$NATIONAL/import.out" opsnctl_as_admin tenant import \
	    --etalab "$COMMUNES" || ! curl_api /v1/tariffs "$NATIONAL/t.json" \
	    "$(echo "$NAT_TARIFF" | tr -d '\n')"; then
		problem "importing the communes or the tariff failed"
		return 1
	fi
	stop_controller
	bg - "$OUT/national" usage "$ctl_data/opsn.db" || {
		problem "writing the national usage failed"
		return 1
	}
	start_controller "$NATIONAL" || return 1
	if ! curl_api /v1/statements/generate "$NATIONAL/oct.json" \
	    '{"period":"2026-10"}' || ! curl_api /v1/statements/close \
	    "$NATIONAL/close.json" '{"period":"2026-10"}'; then
		problem "October's statements failed"
		return 1
	fi
	stop_controller
	bg - "$OUT/national" late -n 100 "$ctl_data/opsn.db" || return 1
	touch "$NATIONAL/.built"
}

# time_api OUT PATH [BODY]: seconds one call takes (curl's own clock).
time_api() {
	curl -sS -f --cacert "$ctl_data/ca.pem" -w '%{time_total}' \
	    -H "Authorization: Bearer $(cat "$ctl_data/admin.token")" \
	    ${3:+-H 'Content-Type: application/json' -d "$3"} \
	    -o "$1" "$ctl_url$2"
}

bench_national() {
	say "6. national scale through the API: usage and statements"
	national_build || return 1
	start_controller "$NATIONAL" || return 1
	nat_members=$(sqlite3 "$ctl_data/opsn.db" "SELECT count(*) FROM tenants")
	start_nginx "$tmp/natnginx" || return 1
	www=$tmp/natnginx/www
	month='from=2026-11-01&to=2026-12-01'
	if ! curl_api "/v1/usage?$month&tenant=1" "$www/usage.json"; then
		problem "GET /v1/usage failed"
		return 1
	fi
	chmod 644 "$www/usage.json"
	nat_one=$(wc -c <"$www/usage.json")
	if want usage; then
		WRK_PATH="/v1/usage?$month&tenant="
		WRK_TENANTS=$nat_members
		export WRK_PATH WRK_TENANTS
		wrk_run "a member's month of usage (opsn)" "$ctl_pid" \
		    "$ctl_url/" "usage" && u_one="$w_rps $w_p50 $w_p99 $w_cpu"
		wrk_run "GET /usage.json (nginx)" "$nginx_pid" \
		    "https://127.0.0.1:$nginx_port/usage.json" &&
		    n_one="$w_rps $w_p50 $w_p99 $w_cpu"
		for k in 1 2 3; do
			t=$(time_api "$tmp/usage.csv" "/v1/usage?$month&format=csv") ||
			    { problem "the usage CSV failed"; break; }
			u_csv="${u_csv:-} $t"
		done
		u_csv_bytes=$(wc -c <"$tmp/usage.csv")
		u_csv_rows=$(($(wc -l <"$tmp/usage.csv") - 1))
	fi
	if want billing; then
		for k in 1 2; do
			t=$(time_api "$tmp/gen.json" /v1/statements/generate \
			    '{"period":"2026-11"}') ||
			    { problem "generating November failed"; break; }
			b_gen="${b_gen:-} $t"
		done
		b_doc=$(cat "$tmp/gen.json")
	fi
	stop_pid "$nginx_pid"
	nginx_pid=
	stop_controller
	# References on the same rows, the controller stopped.
	lo=$(sqlite3 "$ctl_data/opsn.db" "SELECT min(day) FROM usage_calendar \
	    WHERE month = (SELECT month FROM usage_calendar WHERE day > \
	    1793487600 - 3600 ORDER BY day LIMIT 1)")
	hi=$(sqlite3 "$ctl_data/opsn.db" "SELECT min(day) FROM usage_calendar \
	    WHERE month > $lo AND day = month")
	t0=$(now)
	nat_rows=$(sqlite3 "$ctl_data/opsn.db" "SELECT (SELECT count(*) FROM \
	    usage_hourly WHERE hour >= $lo AND hour < $hi) + (SELECT count(*) \
	    FROM usage_daily WHERE day >= $lo AND day < $hi)")
	r_scan=$(calc "$(now) - $t0")
	t0=$(now)
	sqlite3 "$ctl_data/opsn.db" "SELECT count(*) FROM (SELECT tenant_id, \
	    kind, metric, sum(quantity) FROM (SELECT tenant_id, kind, metric, \
	    quantity FROM usage_hourly WHERE hour >= $lo AND hour < $hi UNION \
	    ALL SELECT tenant_id, kind, metric, quantity FROM usage_daily WHERE \
	    day >= $lo AND day < $hi) GROUP BY tenant_id, kind, metric)" \
	    >/dev/null
	r_group=$(calc "$(now) - $t0")
}

summary_national() {
	echo
	printf 'National scale through the API (%s members, 2,000 VMs, 100,000 mailboxes,\n' \
	    "${nat_members:-?}"
	printf '1,000 sites; November 2026: %s usage rows), client and servers on %s CPUs\n' \
	    "${nat_rows:-?}" "$(nproc)"
	if [ -n "${u_one:-}" ]; then
		printf '  %-36s %10s %8s %8s %12s\n' "" requests/s "p50 ms" \
		    "p99 ms" "server CPU %"
		api_row "a member's month (opsn, $nat_one B)" "${u_one:-}"
		api_row "nginx: static file, $nat_one B" "${n_one:-}"
		printf '  opsn/nginx: %s x requests/s, %s x p99\n' \
		    "$(ratio 1 "${u_one:-}" "${n_one:-}")" \
		    "$(ratio 3 "${u_one:-}" "${n_one:-}")"
	fi
	if [ -n "${u_csv:-}" ]; then
		printf '  usage CSV of the month for every member (%s rows, %s B):%s s\n' \
		    "${u_csv_rows:-?}" "${u_csv_bytes:-?}" "$u_csv"
	fi
	if [ -n "${b_gen:-}" ]; then
		printf '  POST /v1/statements/generate 2026-11 (every member, late October\n'
		printf '  usage for 100 of them):%s s\n' "$b_gen"
		printf '  %s\n' "$(echo "${b_doc:-}" | "$PYTHON" -c 'import json, sys
d = json.load(sys.stdin)
print("%d statements, %d lines, %d late-usage lines, total %s EUR, "
      "usage read in %d ms" % (d["statements"], d["lines"],
      d["late_usage_lines"], d["total"], d["usage_ms"]))' 2>/dev/null)"
	fi
	printf '  references on the same rows: scan of the month (count) %.2f s;\n' \
	    "${r_scan:-0}"
	printf '  SUM(quantity) GROUP BY member, class, metric over the month %.2f s\n' \
	    "${r_group:-0}"
}

# ---- 8. the scale simulation ---------------------------------------------

SIM=$OUT/sim-v2
SIM_HV=2500
SIM_MX=4
SIM_AGENTS=$((SIM_HV + SIM_MX))
SIM_SAMPLES=${BENCH_SIM_SAMPLES:-60}

sim_conf() {
	printf '[controller]\nheartbeat_interval = 10s\nunreachable_timeout = 30s\n' \
	    >"$SIM/controller.conf"
}

# The data set: members through the API, agents enrolled once (their keys
# kept in $SIM/ids), then 50,000 VMs and 100,000 mailboxes written into the
# database as the controller keeps them.
sim_build() {
	# Every run starts from the database as built (pristine.db): the
	# samples of the runs before would otherwise pile up (1.4 GB after
	# a dozen runs) and slow each run down more than the last.
	if [ -f "$SIM/.built" ] && [ -f "$SIM/pristine.db" ]; then
		rm -f "$SIM/data/opsn.db-wal" "$SIM/data/opsn.db-shm"
		cp "$SIM/pristine.db" "$SIM/data/opsn.db" && return 0
		problem "restoring $SIM/data/opsn.db from pristine.db failed"
		return 1
	fi
	need_communes || return 1
	say "  building the simulation's data set in $SIM (once)"
	rm -rf "$SIM"
	mkdir -p "$SIM/ids"
	sim_conf
	start_controller "$SIM" "$SIM/controller.conf" || return 1
	if ! bg "$SIM/import.out" opsnctl_as_admin tenant import \
	    --etalab "$COMMUNES" || ! OPSN_TOKEN_FILE=$ctl_data/admin.token \
	    "$PYTHON" tests/bench/api.py "$ctl_url" "$ctl_data/ca.pem" tokens \
	    "$SIM_AGENTS" "$SIM/tokens"; then
		problem "importing the communes or the join tokens failed"
		return 1
	fi
	if ! bg "$SIM/enrol.out" "$OUT/simagents" -S -E -i "$SIM/ids" \
	    -t "$SIM/tokens" -m "$SIM_MX" -n "$SIM_AGENTS" \
	    -a "$ctl_data/ca.pem" "127.0.0.1:$ctl_agent_port"; then
		problem "enrolling the simulated agents failed"
		tail_log "$SIM/enrol.out"
		return 1
	fi
	stop_controller
	sqlite3 "$ctl_data/opsn.db" <<-'EOF' || { problem "writing the VMs and mailboxes failed"; return 1; }
	BEGIN;
	INSERT INTO images (id, name, format, state, created_at)
	    VALUES (1, 'sim', 'qcow2', 'ready', 0);
	INSERT INTO image_parts VALUES (1, 'disk', printf('%064d', 0), 1048576, 1);
	INSERT INTO plans (id, name, vcpus, memory_mib, disk_bytes, created_at)
	    VALUES (1, 'sim', 2, 2048, 21474836480, 0);
	WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c
	    WHERE i < 49999)
	INSERT INTO vms (uuid, name, node_id, tenant_id, plan_id, vcpus,
	    memory_mib, disk_bytes, image_id, generation, created_at)
	SELECT printf('5e1f%04x-0b1e-4c0a-9d2e-%012x', i % 65536, i),
	    'vm' || i, (SELECT id FROM nodes WHERE name = printf('hv%04d',
	    i / 20)), (i * 7) % (SELECT count(*) FROM tenants) + 1, 1, 2, 2048,
	    21474836480, 1, 1, 0 FROM c;
	UPDATE nodes SET generation = 1 WHERE name LIKE 'hv%';
	INSERT INTO services_backends (node_id, generation, journal_from)
	    SELECT id, 1, 2 FROM nodes WHERE name LIKE 'mx%';
	WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c
	    WHERE i < 99)
	INSERT INTO mail_domains (id, name, tenant_id, node_id, dkim_selector,
	    dkim_private_pem, dkim_public_b64, state, generation,
	    applied_generation, created_at)
	SELECT i + 1, printf('mairie-%d.fr', i), (i * 349) %
	    (SELECT count(*) FROM tenants) + 1, (SELECT id FROM nodes WHERE
	    name = printf('mx%d', i % 4)), 'opsn', 'sim', 'sim', 'applied', 1,
	    1, 0 FROM c;
	WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c
	    WHERE i < 99999)
	INSERT INTO mailboxes (id, address, domain_id, password_hash,
	    quota_bytes, state, generation, applied_generation, created_at,
	    updated_at)
	SELECT printf('%08x-5e1f-4b0b-8c0c-%012x', i, i),
	    printf('agent%d@mairie-%d.fr', i, i % 100), i % 100 + 1,
	    '{SHA512-CRYPT}$6$sim$sim', 104857600, 'applied', 1, 1, 0, 0
	    FROM c;
	COMMIT;
	EOF
	if ! sqlite3 "$ctl_data/opsn.db" ".backup '$SIM/pristine.db'"; then
		problem "keeping the simulation's data set as built failed"
		return 1
	fi
	touch "$SIM/.built"
}

# sim_wait_step N TIMEOUT: wait for the Nth "all in step" line of the
# simulator; sets sim_step (seconds waited) or fails.
sim_wait_step() {
	sw_t0=$(now)
	sw_i=0
	while [ "$(grep -c 'in step at' "$tmp/sim.out")" -lt "$1" ]; do
		sw_i=$((sw_i + 1))
		if [ "$sw_i" -gt "$(($2 * 10))" ] || ! alive "$sim_pid"; then
			problem "the agents were not all in step after $2 s" \
			    "(ready: $(ready_nodes))"
			tail_log "$tmp/sim.out"
			return 1
		fi
		sleep 0.1
	done
	sim_step=$(calc "$(now) - $sw_t0")
}

bench_sim() {
	say "8. scale simulation: $SIM_HV hypervisors (50,000 VMs), $SIM_MX" \
	    "mail backends (100,000 mailboxes), every commune"
	sim_build || return 1
	sim_conf
	start_controller "$SIM" "$SIM/controller.conf" || return 1
	say "  reference: no agent, settle ${SETTLE} s, measure ${STEADY} s"
	sleep "$SETTLE"
	measure "$ctl_pid" "$STEADY"
	sim_idle_rss=$m_rss sim_idle_cpu=$m_cpu
	"$OUT/simagents" -S -i "$SIM/ids" -m "$SIM_MX" -n "$SIM_AGENTS" \
	    -s "$SIM_SAMPLES" -a "$ctl_data/ca.pem" \
	    "127.0.0.1:$ctl_agent_port" </dev/null >"$tmp/sim.out" 2>&1 &
	sim_pid=$!
	sim_wait_step 1 600 || return 1
	sim_first=$sim_step
	say "  every agent connected and in step in $sim_first s"
	say "  loaded: settle ${SETTLE} s, measure ${STEADY} s"
	sleep "$SETTLE"
	measure "$ctl_pid" "$STEADY"
	sim_rss=$m_rss sim_cpu=$m_cpu
	sim_hv_ok=$(sqlite3 "$ctl_data/opsn.db" "SELECT count(*) FROM nodes \
	    WHERE name LIKE 'hv%' AND generation = applied_generation")
	wrk_run "GET /v1/tenants?limit=100 under load" "$ctl_pid" \
	    "$ctl_url/v1/tenants?limit=100" && sim_t="$w_rps $w_p50 $w_p99 $w_cpu"
	wrk_run "GET /v1/vms?limit=100 under load" "$ctl_pid" \
	    "$ctl_url/v1/vms?limit=100" && sim_v="$w_rps $w_p50 $w_p99 $w_cpu"
	say "  restarting the controller"
	stop_controller
	# On the same agent port: the agents reconnect where they were.
	AGENT_PORT=$ctl_agent_port start_controller "$SIM" \
	    "$SIM/controller.conf" || return 1
	sim_wait_step 2 600 || return 1
	sim_restart=$sim_step
	say "  every agent back and in step in $sim_restart s after the start"
	stop_pid "$sim_pid"
	sim_pid=
	sim_line=$(grep '^agents=' "$tmp/sim.out")
	stop_controller
}

summary_sim() {
	echo
	printf 'Scale simulation: %s hypervisors with 50,000 VMs, %s mail backends with\n' \
	    "$SIM_HV" "$SIM_MX"
	printf '100,000 mailboxes, every commune; TLS to the real controller; samples every %s s\n' \
	    "$SIM_SAMPLES"
	if [ -z "${sim_rss:-}" ]; then
		echo "  (no result: see the errors above)"
		return
	fi
	printf '  %-34s %10s %8s\n' "" "RSS MiB" "CPU %"
	printf '  %-34s %10.1f %8.2f\n' "reference: no agent" \
	    "$(calc "$sim_idle_rss / 1024")" "$sim_idle_cpu"
	printf '  %-34s %10.1f %8.2f\n' "$SIM_AGENTS agents, steady state" \
	    "$(calc "$sim_rss / 1024")" "$sim_cpu"
	printf '  hypervisors in step (generation applied): %s of %s\n' \
	    "${sim_hv_ok:-?}" "$SIM_HV"
	printf '  %-34s %10s %8s %8s %12s\n' "" requests/s "p50 ms" "p99 ms" \
	    "server CPU %"
	api_row "GET /v1/tenants?limit=100" "${sim_t:-}"
	api_row "GET /v1/vms?limit=100" "${sim_v:-}"
	printf '  every agent connected and in step: %.1f s from an empty start;\n' \
	    "${sim_first:-0}"
	printf '  %.1f s after a controller restart\n' "${sim_restart:-0}"
	printf '  simulator: %s\n' "${sim_line:-}"
}

summary_file() {
	echo
	if [ -s "$1" ]; then
		cat "$1"
	else
		echo "$2: (no result: see the errors above)"
	fi
}

# ratio FIELD A B: field FIELD of A over the same of B, 2 decimals, or -.
ratio() {
	a=$(echo "$2" | awk -v f="$1" '{ print $f }')
	b=$(echo "$3" | awk -v f="$1" '{ print $f }')
	if [ -n "$a" ] && [ -n "$b" ]; then
		calc "$b > 0 ? $a / $b : 0" | awk '{ printf "%.2f", $1 }'
	else
		printf -- -
	fi
}

api_row() {
	if [ -n "$2" ]; then
		# shellcheck disable=SC2086 # four figures
		printf '  %-36s %10.0f %8.2f %8.2f %12.0f\n' "$1" $2
	else
		printf '  %-36s %10s\n' "$1" "(failed)"
	fi
}

summary_api() {
	echo
	printf 'API over HTTPS keep-alive: wrk %s --latency, client and servers on %s CPUs\n' \
	    "$WRK_ARGS" "$(nproc)"
	if [ -z "${api_page:-}" ]; then
		echo "  (no result: see the errors above)"
		return
	fi
	printf '  %s\n' "$api_import"
	printf '  %-36s %10s %8s %8s %12s\n' "" requests/s "p50 ms" "p99 ms" \
	    "server CPU %"
	api_row "GET /v1/tenants?limit=100 (opsn)" "${a_get:-}"
	api_row "nginx: static file, $api_page B" "${n_get:-}"
	api_row "GET a random page (not kept)" "${a_rnd:-}"
	api_row "POST /v1/plans, a new plan (opsn)" "${a_post:-}"
	api_row "nginx: static file, $api_small B" "${n_small:-}"
	api_row "SQLite: a row a transaction, FULL" "${s_ref:-}"
	printf '  opsn/nginx: GET %s x requests/s, %s x p99; POST %s x requests/s, %s x p99\n' \
	    "$(ratio 1 "${a_get:-}" "${n_get:-}")" \
	    "$(ratio 3 "${a_get:-}" "${n_get:-}")" \
	    "$(ratio 1 "${a_post:-}" "${n_small:-}")" \
	    "$(ratio 3 "${a_post:-}" "${n_small:-}")"
	printf '  a random page (written from its rows)/nginx: %s x requests/s, %s x p99\n' \
	    "$(ratio 1 "${a_rnd:-}" "${n_get:-}")" \
	    "$(ratio 3 "${a_rnd:-}" "${n_get:-}")"
	printf '  POST/SQLite commits: %s x the rate (same database file, same run); %s\n' \
	    "$(ratio 1 "${a_post:-}" "${s_ref:-}")" "${api_commits:-}"
	if [ "$FLUSH_MS" -gt 0 ]; then
		printf '  with %s ms more a flush (every fsync and fdatasync of both sides):\n' \
		    "$FLUSH_MS"
		api_row "POST /v1/plans, a new plan (opsn)" "${a_spost:-}"
		api_row "SQLite: a row a transaction, FULL" "${s_sref:-}"
		printf '  POST/SQLite commits: %s x the rate; %s\n' \
		    "$(ratio 1 "${a_spost:-}" "${s_sref:-}")" \
		    "${api_scommits:-}"
	fi
	# What the CPUs allow: wrk runs on the same ones as the server.
	if [ -n "${a_post_cpu:-}" ]; then
		# shellcheck disable=SC2086 # two figures
		set -- $a_post_cpu
		printf '  CPU a POST: server %.0f us, wrk %.0f us; %s CPUs shared by both\n' \
		    "$1" "$2" "$(nproc)"
		cap=$(calc "$(nproc) * 1000000 / ($1 + $2)")
		printf '  allow at most %.0f POSTs/s at these costs (%s x the SQLite reference)\n' \
		    "$cap" "$(ratio 1 "$cap 0 0 0" "${s_ref:-}")"
	fi
	printf '  (%s tenants/page; nginx: 1 worker, TLS 1.3, the controller'"'"'s key and certificate,\n' \
	    "$api_items"
	printf '  the same bytes as the API'"'"'s answers; the POST row is compared with the small file)\n'
}

summary() {
	echo
	echo "==================== opsn bench summary ===================="
	want tls && summary_tls
	want agents && summary_agents
	want boot && summary_file "$tmp/boot.txt" "VM create to the guest's marker"
	want scale && summary_file "$tmp/scale.txt" \
	    "Hypervisor agent with VMs on the test driver"
	want api && summary_api
	{ want usage || want billing; } && summary_national
	want backend && summary_file "$tmp/backend.txt" \
	    "A mail backend with many mailboxes"
	want sim && summary_sim
	echo "============================================================"
}

summary_tls() {
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
}

summary_agents() {
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
}

need=$((AGENTS + 512))
# dash has ulimit -n and -H, though POSIX does not promise them.
# shellcheck disable=SC3045
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
	ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)" ||
	    say "cannot raise the open file limit to $need"
fi

case ",$ONLY," in
*,all,*) ;;
*)
	for s in $(echo "$ONLY" | tr ',' ' '); do
		case $s in
		tls | agents | boot | scale | api | metering | usage | billing | \
		    backend | sim | sched | backup) ;;
		*) problem "BENCH_ONLY: unknown section '$s'" \
		    "(tls, agents, boot, scale, api, metering, usage," \
		    "billing, backend, sim, sched, backup)" ;;
		esac
	done
	;;
esac

if [ "$broken" -eq 0 ] && build; then
	if want tls; then
		bench_tls
		stop_pid "$srv_pid"
		srv_pid=
		stop_controller
	fi
	if want agents; then
		bench_agents
		stop_pid "$sim_pid"
		sim_pid=
		stop_controller
	fi
	want boot && bench_boot
	want scale && bench_scale
	if want api; then
		bench_api
		stop_pid "$nginx_pid"
		nginx_pid=
		stop_controller
	fi
	# Its own script prints its own figures (ingest rate next to a raw
	# SQLite bulk insert, the rollup next to the rate samples arrive at).
	if want metering; then
		BIN=$BIN BUILD=$BUILD PYTHON=$PYTHON tests/bench/metering.sh ||
		    problem "the metering bench broke"
	fi
	if want backend; then
		say "7. a mail backend with ${BENCH_BACKEND_MAILBOXES:-250000}" \
		    "mailboxes"
		bg - env OPSN_BIN="$abs_bin" "$PYTHON" -W ignore \
		    tests/bench/backend.py "$tmp/backend.txt" \
		    "${BENCH_BACKEND_MAILBOXES:-250000}" ||
		    problem "the backend benchmark failed"
	fi
	if want sim; then
		need=$((SIM_AGENTS * 2 + 1024))
		# shellcheck disable=SC3045
		[ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ] &&
		    { ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)"; }
		bench_sim
		stop_pid "$sim_pid"
		sim_pid=
		stop_controller
	fi
	if want usage || want billing; then
		bench_national
		stop_pid "$nginx_pid"
		nginx_pid=
		stop_controller
	fi
	if want sched; then
		BUILD=$BUILD PYTHON=$PYTHON sh tests/bench/sched.sh ||
		    problem "the placement bench broke"
	fi
	# Backup and restore with every commune and a month of usage.
	if want backup; then
		if [ -f "$COMMUNES" ]; then
			OPSN_BIN=$abs_bin "$PYTHON" tests/bench/backup.py \
			    "$COMMUNES" || problem "the backup bench broke"
		else
			say "backup: no $COMMUNES: skipped"
		fi
	fi
elif [ "$broken" -eq 0 ]; then
	problem "the benchmark programs did not build"
fi
summary
exit "$broken"
