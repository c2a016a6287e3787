#!/bin/sh
# Metering figures (tests/bench/run.sh calls this; it runs alone too):
#  1. samples/s ingested end to end (TLS, decode, placement check, dedup,
#     FULL commit, ack) from simulated web backends reporting the sites
#     placed on them, next to a raw SQLite bulk insert into the same table
#     in the same run (the physical limit);
#  2. the time to roll up and sum a month of usage for BENCH_METER_TENANTS
#     tenants, BENCH_METER_VMS VMs and BENCH_METER_MAILBOXES mailboxes.
# Figures only: a slow one never fails; a broken run exits 1.
# Knobs: BENCH_METER_AGENTS (3), BENCH_METER_SECONDS (20),
# BENCH_METER_BATCH (500), BENCH_METER_WINDOW (4), BENCH_METER_VMS (2000),
# BENCH_METER_MAILBOXES (100000), BENCH_METER_TENANTS (35000),
# BENCH_METER_SCALE (10: month rows of mailboxes at 1/10, extrapolated).
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 1
BIN=${BIN:-bin}
BUILD=${BUILD:-build/obj}
PYTHON=${PYTHON:-/usr/bin/python3}
OUT=build/bench
AGENTS=${BENCH_METER_AGENTS:-3}
SECONDS_=${BENCH_METER_SECONDS:-20}
BATCH=${BENCH_METER_BATCH:-500}
WINDOW=${BENCH_METER_WINDOW:-4}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/opsn-meter-bench.XXXXXX") || exit 1
ctl_pid=
broken=0
trap '[ -n "$ctl_pid" ] && kill "$ctl_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
say() { echo "bench: $*"; }
problem() { echo "bench: BROKEN: $*" >&2; broken=1; }
free_port() {
	"$PYTHON" -c 'import socket; s = socket.socket(); '\
's.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

mkdir -p "$OUT"
# shellcheck disable=SC2046
cc -std=gnu11 -O2 -g -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE \
    -Iinclude -I"$BUILD/proto" -Icontroller \
    $(pkg-config --cflags libuv openssl libprotobuf-c sqlite3) \
    -o "$OUT/metering_bench" tests/bench/metering_bench.c \
    "$BUILD/controller/metering/rollup.o" \
    "$BUILD/controller/core/calendar.o" "$BUILD/controller/core/store.o" \
    "$BUILD/gen/migrations.o" "$BUILD/libopsn.a" \
    $(pkg-config --libs libuv openssl libprotobuf-c sqlite3 jansson inih) \
    -lm || { problem "metering_bench did not build"; exit 1; }

say "metering 1. ingest: $AGENTS simulated agents, batches of $BATCH, $WINDOW ahead, ${SECONDS_} s"
api=$(free_port); agt=$(free_port)
# The join tokens come from one token: no per-token rate limit here.
printf '[api]\nrate = 0\n' >"$tmp/controller.conf"
"$BIN/opsn-controller" -c "$tmp/controller.conf" --data-dir "$tmp/ctl" \
    --api-listen "127.0.0.1:$api" \
    --agent-listen "127.0.0.1:$agt" --log-file "$tmp/controller.log" \
    </dev/null >"$tmp/ctl.err" 2>&1 &
ctl_pid=$!
i=0
until "$PYTHON" tests/bench/api.py "https://127.0.0.1:$api" \
    "$tmp/ctl/ca.pem" health >/dev/null 2>&1; do
	i=$((i + 1)); [ $i -gt 200 ] && { problem "no controller"; exit 1; }
	sleep 0.1
done
OPSN_TOKEN_FILE=$tmp/ctl/admin.token "$PYTHON" tests/bench/api.py \
    "https://127.0.0.1:$api" "$tmp/ctl/ca.pem" tokens "$AGENTS" "$tmp/tokens"
# Enrol real agents once for their certificates; the simulator uses them.
dirs=
n=0
while read -r tok; do
	n=$((n + 1))
	d=$tmp/agent-mb$n/data
	mkdir -p "$d"
	"$BIN/opsn-agent" --data-dir "$d" --name "mb$n" --role web \
	    --controller "127.0.0.1:$agt" --join-token "$tok" \
	    --log-file "$tmp/agent-mb$n.log" </dev/null >/dev/null 2>&1 &
	pid=$!
	i=0
	while [ ! -f "$d/cert.pem" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	# Its HELLO gives the node its role: wait for it to be ready.
	while [ "$("$PYTHON" tests/bench/api.py "https://127.0.0.1:$api" \
	    "$tmp/ctl/ca.pem" health 2>/dev/null)" != "$n" ] &&
	    [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
	kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
	cp "$tmp/ctl/ca.pem" "$d/ca.pem" 2>/dev/null || true
	# Samples are taken only for what is placed on the node: 100 sites.
	OPSN_TOKEN_FILE=$tmp/ctl/admin.token "$PYTHON" tests/bench/api.py \
	    "https://127.0.0.1:$api" "$tmp/ctl/ca.pem" sites "mb$n" 100 \
	    "$d/sites" || problem "no sites on mb$n"
	dirs="$dirs $d"
done <"$tmp/tokens"
# shellcheck disable=SC2086
ingest=$("$OUT/metering_bench" ingest -d "$SECONDS_" -b "$BATCH" -w "$WINDOW" \
    "127.0.0.1:$agt" $dirs) || problem "ingest run failed"
echo "  $ingest"
kill "$ctl_pid"; wait "$ctl_pid" 2>/dev/null; ctl_pid=
rate=$(echo "$ingest" | tr ' ' '\n' | sed -n 's/^samples_per_s=//p')
got=$(echo "$ingest" | tr ' ' '\n' | sed -n 's/^samples=//p')
[ -n "$got" ] && [ "$got" -gt 0 ] || { problem "nothing ingested"; got=200000; }
raw=$("$OUT/metering_bench" raw -n "$got" controller/core/migrations/005_metering.sql \
    "$tmp/raw.db") || problem "raw reference failed"
echo "  $raw"
rawrate=$(echo "$raw" | tr ' ' '\n' | sed -n 's/^rows_per_s=//p')

say "metering 2. a month of usage"
month=$("$OUT/metering_bench" month -v "${BENCH_METER_VMS:-2000}" \
    -m "${BENCH_METER_MAILBOXES:-100000}" -t "${BENCH_METER_TENANTS:-35000}" \
    -s "${BENCH_METER_SCALE:-10}" controller/core/migrations/005_metering.sql \
    "$tmp/month.db") || problem "month run failed"

echo
echo "==================== opsn metering bench ===================="
printf '  ingest end to end: %s samples/s (%s agents)\n' "${rate:-?}" "$AGENTS"
printf '  raw SQLite bulk insert, same table, one FULL transaction: %s rows/s\n' "${rawrate:-?}"
[ -n "${rate:-}" ] && [ -n "${rawrate:-}" ] && awk "BEGIN { printf \"  ratio ingest/raw: %.2f\n\", $rate / $rawrate }"
echo "$month" | sed 's/^/  /'
echo "============================================================="
exit "$broken"
