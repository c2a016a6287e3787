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
#     files of the same sizes with the same certificate.
#
#  6. (sched) Placement against Ganeti's hail and hspace on the same
#     synthetic clusters (tests/bench/sched.sh): decisions/s, p99, the
#     cluster score after the same stream, VMs of one plan that fit.
#  7. (backup) Backup size and time, and restore time, with every commune
#     and a month of hourly usage (tests/bench/backup.py; knobs
#     BENCH_BACKUP_SERVED, BENCH_BACKUP_HOURS).
#
# A slow figure never fails the run; only something broken does (exit 1).
# BENCH_ONLY=tls,agents,boot,scale,api,metering,billing,sched,backup (comma
# list; default all) picks
# sections. Knobs: BENCH_TLS_SECONDS (10), BENCH_TLS_CONNS (16),
# BENCH_AGENTS (1000), BENCH_STEADY_SECONDS (60), BENCH_SETTLE_SECONDS (5),
# BENCH_BOOT_RUNS (3), BENCH_VMS (200), BENCH_VM_STEADY_SECONDS (30),
# BENCH_RESYNC_SECONDS (10), BENCH_WRK_ARGS ("-t2 -c16 -d10s"),
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

# start_controller DIR [CONF]: sets ctl_pid, ctl_url, ctl_agent_port.
# The benchmarks measure the server, not its per-token rate limit: CONF
# (default DIR/controller.conf) gets "[api] rate = 0".
start_controller() {
	dir=$1
	mkdir -p "$dir"
	set -- "$1" "${2:-$dir/controller.conf}"
	printf '\n[api]\nrate = 0\n' >>"$2"
	ctl_api_port=$(free_port)
	ctl_agent_port=$(free_port)
	ctl_url=https://127.0.0.1:$ctl_api_port
	ctl_data=$dir/data
	"$BIN/opsn-controller" -c "$2" --data-dir "$ctl_data" \
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

# wrk_run LABEL PID URL [MODE]: wrk against URL (tests/bench/wrk.lua in
# MODE get or post); PID (and its children) is the server. Sets w_rps,
# w_p50 and w_p99 (ms), w_cpu (server CPU %), w_n (requests).
wrk_run() {
	w_rps='' w_p99='' w_p50='' w_cpu='' w_n=''
	c0=$(tree_ticks "$2")
	t0=$(now)
	# shellcheck disable=SC2086 # WRK_ARGS is split on purpose
	bg "$tmp/wrk.out" env WRK_MODE="${4:-get}" \
	    WRK_TOKEN="$(cat "$ctl_data/admin.token")" WRK_TAG="p$$" \
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
	say "  $1: $(printf '%.0f' "$w_rps") requests/s, p50 $w_p50 ms," \
	    "p99 $w_p99 ms, server CPU $(printf '%.0f' "$w_cpu") %"
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
	if [ ! -f "$COMMUNES" ]; then
		problem "no communes file at $COMMUNES (set BENCH_COMMUNES)"
		return 1
	fi
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
	wrk_run "POST /v1/plans (opsn)" "$ctl_pid" "$ctl_url/v1/plans" post &&
	    a_post="$w_rps $w_p50 $w_p99 $w_cpu"
	wrk_run "GET /plan.json (nginx)" "$nginx_pid" \
	    "https://127.0.0.1:$nginx_port/plan.json" &&
	    n_small="$w_rps $w_p50 $w_p99 $w_cpu"
	stop_pid "$nginx_pid"
	nginx_pid=
	stop_controller
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
	api_row "POST /v1/plans, a new plan (opsn)" "${a_post:-}"
	api_row "nginx: static file, $api_small B" "${n_small:-}"
	printf '  opsn/nginx: GET %s x requests/s, %s x p99; POST %s x requests/s, %s x p99\n' \
	    "$(ratio 1 "${a_get:-}" "${n_get:-}")" \
	    "$(ratio 3 "${a_get:-}" "${n_get:-}")" \
	    "$(ratio 1 "${a_post:-}" "${n_small:-}")" \
	    "$(ratio 3 "${a_post:-}" "${n_small:-}")"
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
		tls | agents | boot | scale | api | metering | billing | sched | \
		    backup) ;;
		*) problem "BENCH_ONLY: unknown section '$s'" \
		    "(tls, agents, boot, scale, api, metering, billing, sched," \
		    "backup)" ;;
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
	# Their own scripts print their own figures (metering: ingest rate
	# next to a raw SQLite bulk insert; billing: a month of statements for
	# every commune next to a plain GROUP BY, ~13 GiB built once).
	if want metering; then
		BIN=$BIN BUILD=$BUILD PYTHON=$PYTHON tests/bench/metering.sh ||
		    problem "the metering bench broke"
	fi
	if want billing; then
		BUILD=$BUILD sh tests/bench/billing.sh ||
		    problem "the billing bench broke"
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
