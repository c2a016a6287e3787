#!/bin/sh
# Placement side by side with Ganeti htools 3.0 (tests/bench/run.sh calls
# this; it runs alone too). For each size, gen_cluster.py writes one
# synthetic cluster (htools text) and a stream of new VMs; run_ref.sh runs
# hail (multi-allocate, --no-capacity-checks, plain disks) and our engine
# (tests/bench/place_bench.c, policy spread) on the same bytes and scores
# both final states with htscore.py and hinfo. Then:
#   - decisions/s and p99: ours over BENCH_SCHED_TIMED more decisions on
#     the final state; hail's rate from its multi-allocate run, its p99
#     over BENCH_SCHED_HAIL_RUNS single `allocate` calls, one process per
#     decision as Ganeti runs it;
#   - VMs of one plan (hspace's standard spec, 4 GiB / 2 vCPUs / 80 GiB)
#     that fit: hspace --no-capacity-checks against our capacity count,
#     up to BENCH_SCHED_HSPACE_NODES nodes (hspace takes minutes beyond).
# Figures only: a slow one never fails; a broken run exits 1.
# Knobs: BENCH_SCHED_SIZES ("20:300:400 200:4000:500 1000:15000:20", each
# NODES:VMS:STREAM), BENCH_SCHED_TIMED (10000), BENCH_SCHED_HAIL_RUNS
# (20), BENCH_SCHED_HSPACE_NODES (200), BENCH_HTOOLS (the folder of
# gen_cluster.py and run_ref.sh).
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 1
BUILD=${BUILD:-build/obj}
PYTHON=${PYTHON:-/usr/bin/python3}
OUT=build/bench
SIZES=${BENCH_SCHED_SIZES:-20:300:400 200:4000:500 1000:15000:20}
TIMED=${BENCH_SCHED_TIMED:-10000}
HAIL_RUNS=${BENCH_SCHED_HAIL_RUNS:-20}
HSPACE_NODES=${BENCH_SCHED_HSPACE_NODES:-200}
HT=${BENCH_HTOOLS:-$top/../shared/bench/htools}
HAIL=/usr/lib/ganeti/iallocators/hail
PLAN_MEM=4096 PLAN_CPU=2 PLAN_DISK=81920
tmp=$(mktemp -d "${TMPDIR:-/tmp}/opsn-sched-bench.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
broken=0
say() { echo "bench: $*"; }
problem() { echo "bench: BROKEN: $*" >&2; broken=1; }
now() { date +%s.%N; }
calc() { awk "BEGIN { v = ($1); printf \"%s\", v }"; }
kv() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }

for f in gen_cluster.py run_ref.sh htscore.py; do
	[ -f "$HT/$f" ] || { problem "no $HT/$f (set BENCH_HTOOLS)"; exit 1; }
done
for t in "$HAIL" /usr/bin/hspace /usr/bin/hinfo /usr/bin/time; do
	[ -x "$t" ] || { problem "$t is missing: run ops/deps.sh"; exit 1; }
done
mkdir -p "$OUT"
# shellcheck disable=SC2046
cc -std=gnu11 -O2 -g -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE \
    -Iinclude -Icontroller/compute -o "$OUT/place_bench" \
    tests/bench/place_bench.c controller/compute/place.c \
    "$BUILD/libopsn.a" $(pkg-config --libs openssl) -lm ||
    { problem "place_bench did not build"; exit 1; }

rows=$tmp/rows
: >"$rows"
for size in $SIZES; do
	IFS=: read -r nodes vms stream <<EOF
$size
EOF
	say "htools: $nodes nodes, $vms VMs, a stream of $stream new VMs"
	runs=$tmp/runs
	ref=$tmp/ref-$nodes.txt
	if ! RUNS=$runs OURS="$OUT/place_bench -t $TIMED" \
	    bash "$HT/run_ref.sh" "$nodes" "$vms" "$stream" 1 >"$ref" 2>&1; then
		problem "run_ref.sh $nodes $vms $stream failed"
		sed 's/^/  /' "$ref" >&2
		continue
	fi
	sed 's/^/  /' "$ref"
	P=$runs/n${nodes}_m${vms}_k${stream}_s1
	init=$(sed -n 's/^initial *Cluster score: //p' "$ref")
	hail_score=$(sed -n 's/^hail *final Cluster score: //p' "$ref")
	ours_score=$(sed -n 's/^ours *final Cluster score: //p' "$ref")
	oracle=$(sed -n 's/^oracle(ours) *Cluster score: //p' "$ref")
	hail_s=$(sed -n 's/^hail  time: \([0-9.]*\) s.*/\1/p' "$ref")
	hail_placed=$("$PYTHON" -c 'import json, sys
print(len(json.load(open(sys.argv[1]))["result"][0]))' "$P.hail.json")
	ours_placed=$(wc -l <"$P.ours.assign")
	timed=$(grep '^timed ' "$ref")
	ours_rate=$(kv per_s "$timed")
	ours_p99=$(kv p99_us "$timed")
	hail_rate=$(calc "$hail_s > 0 ? $hail_placed / $hail_s : 0")

	# hail as Ganeti runs it: one process per allocate request.
	hr=$HAIL_RUNS
	[ "$nodes" -ge 1000 ] && [ "$hr" -gt 3 ] && hr=3
	[ "$nodes" -ge 200 ] && [ "$nodes" -lt 1000 ] && [ "$hr" -gt 10 ] &&
	    hr=10
	: >"$tmp/lat"
	i=0
	while [ "$i" -lt "$hr" ]; do
		t0=$(now)
		"$HAIL" --no-capacity-checks -t "$P.txt" "$P.alloc.min.json" \
		    >"$tmp/one.json" 2>&1 || problem "hail allocate failed"
		calc "($(now) - $t0) * 1000" >>"$tmp/lat"
		echo >>"$tmp/lat"
		i=$((i + 1))
	done
	hail_p99=$(sort -n "$tmp/lat" | awk '{ v[NR] = $1 } END {
	    i = int(0.99 * (NR - 1) + 0.5) + 1; printf "%.0f", v[i] }')

	fit_ours=$("$OUT/place_bench" -c "$PLAN_MEM,$PLAN_CPU,$PLAN_DISK" \
	    "$P.txt")
	fit_hspace=-
	hspace_s=-
	if [ "$nodes" -le "$HSPACE_NODES" ]; then
		t0=$(now)
		spec=$PLAN_DISK,$PLAN_MEM,$PLAN_CPU
		hspace --no-capacity-checks -t "$P.txt" --standard-alloc="$spec" \
		    --tiered-alloc="$spec" --machine-readable \
		    >"$tmp/hspace.out" 2>&1 || problem "hspace failed"
		hspace_s=$(calc "$(now) - $t0" | awk '{ printf "%.1f", $1 }')
		fit_hspace=$(sed -n 's/^HTS_ALLOC_INSTANCES=//p' "$tmp/hspace.out")
		say "  hspace: $fit_hspace VMs of $PLAN_MEM MiB/$PLAN_CPU vCPUs/" \
		    "$PLAN_DISK MiB fit ($(sed -n 's/^HTS_ALLOC_FAIL_REASON=//p' \
		    "$tmp/hspace.out")), ${hspace_s} s; ours: $fit_ours"
	fi
	echo "$nodes $vms $stream $ours_rate $ours_p99 $hail_rate $hail_p99" \
	    "$init $ours_score $hail_score $oracle $ours_placed $hail_placed" \
	    "$fit_ours $fit_hspace $hr" >>"$rows"
	rm -rf "$runs"
done

echo
echo "Placement against Ganeti htools 3.0 (hail --no-capacity-checks, plain disks, seed 1), spread"
printf '  %-16s %12s %9s %12s %11s %8s\n' "cluster" "ours dec/s" \
    "ours p99" "hail dec/s" "hail p99" "faster"
while read -r n m k orate op99 hrate hp99 init os hs orc op hp fo fh hr; do
	printf '  %-16s %12.0f %6.0f us %12.1f %8s ms %7.0fx\n' \
	    "${n}n/${m} VMs" "$orate" "$op99" "$hrate" "$hp99" \
	    "$(calc "$hrate > 0 ? $orate / $hrate : 0")"
done <"$rows"
printf '  %-16s %9s %12s %12s %14s %14s\n' "" "stream" "score before" \
    "ours after" "hail after" "hinfo(ours)"
while read -r n m k orate op99 hrate hp99 init os hs orc op hp fo fh hr; do
	printf '  %-16s %4s/%-4s %12.4f %12.4f %14.4f %14.4f\n' \
	    "${n}n/${m} VMs" "$op" "$k" "$init" "$os" "$hs" "$orc"
done <"$rows"
printf '  %-16s %14s %14s\n' "" "fit: ours" "fit: hspace"
while read -r n m k orate op99 hrate hp99 init os hs orc op hp fo fh hr; do
	printf '  %-16s %14s %14s\n' "${n}n/${m} VMs" "$fo" "$fh"
done <"$rows"
echo "  (ours: p99 over $TIMED decisions on the final state; hail: rate from one"
echo "  multi-allocate over the stream, p99 over single allocate runs, one process"
echo "  per decision; fit: VMs of $PLAN_MEM MiB, $PLAN_CPU vCPUs, $PLAN_DISK MiB disk)"
exit "$broken"
