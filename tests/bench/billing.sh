#!/bin/sh
# Billing benchmark (see tests/bench/billing.c): one month of statements
# for every commune of the Etalab file, three services each, next to a
# plain SUM ... GROUP BY over the same rows. Builds against the
# controller's objects, so `make` first. The usage database is built on
# the first run (long: about 10^8 rows) and kept in build/bench.
# Knobs: BENCH_BILLING_COMMUNES (0: all), BENCH_BILLING_HOURS (0: the
# month), BENCH_BILLING_METRICS (billed|all), BENCH_BILLING_DIR.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 1
BUILD=${BUILD:-build/obj}
OUT=build/bench
DATA=${BENCH_COMMUNES_JSON:-$top/../shared/data/communes.json}

if [ ! -f "$BUILD/libopsn.a" ] || [ ! -f "$BUILD/gen/migrations.o" ]; then
	echo "bench: billing: BROKEN: build the controller first (make)" >&2
	exit 1
fi
if [ ! -f "$DATA" ]; then
	echo "bench: billing: no $DATA: skipped"
	exit 0
fi
mkdir -p "$OUT"
objs=$(ls "$BUILD"/controller/*/*.o | grep -v '/main\.o$')
# The controller's own flags and libraries, from the Makefile.
# shellcheck disable=SC2016 # make expands these
cflags=$(make -s --no-print-directory BUILD="$BUILD" \
    --eval 'bench-billing-cflags: ; @echo $(ALL_CFLAGS)' bench-billing-cflags)
# shellcheck disable=SC2016
libs=$(make -s --no-print-directory BUILD="$BUILD" \
    --eval 'bench-billing-libs: ; @echo $(call pc_libs,$(PKG_CONTROLLER)) -lm' \
    bench-billing-libs)
# shellcheck disable=SC2086 # flags are split on purpose
cc $cflags -Wno-missing-prototypes -Icontroller -o "$OUT/billing" \
    tests/bench/billing.c $objs "$BUILD/gen/migrations.o" \
    "$BUILD/libopsn.a" $libs || {
	echo "bench: billing: BROKEN: did not build" >&2
	exit 1
}
exec "$OUT/billing" "$DATA"
