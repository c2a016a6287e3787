#!/bin/sh
# Run each libFuzzer target for a bounded time: run.sh DIR SECONDS NAME...
# Each starts from its seeds (tests/fuzz/corpus-NAME) and the corpus kept
# from earlier runs (build/fuzz/corpus-NAME); a crash, leak or sanitizer
# report stops the run, leaves the input in build/fuzz/ and fails.
set -u
dir=$1
secs=$2
shift 2
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
failed=0
for name in "$@"; do
	corpus=build/fuzz/corpus-$name
	seeds=tests/fuzz/corpus-$name
	mkdir -p "$corpus" "$seeds"
	dict=
	[ -f "tests/fuzz/$name.dict" ] && dict="-dict=tests/fuzz/$name.dict"
	log=build/fuzz/$name.log
	# shellcheck disable=SC2086 # dict is one optional argument
	"$dir/$name" -max_total_time="$secs" -max_len=65536 -timeout=10 \
	    -rss_limit_mb=2048 -print_final_stats=1 \
	    -artifact_prefix="build/fuzz/$name-" $dict \
	    "$corpus" "$seeds" >"$log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
	if [ "$rc" -ne 0 ]; then
		failed=$((failed + 1))
		echo "fuzz: $name: FAILED after ${runs:-?} runs (log $log)"
		grep -A 30 -m 1 'ERROR:\|runtime error\|==ERROR\|answered' \
		    "$log" | sed 's/^/    /'
	else
		echo "fuzz: $name: ${runs:-?} runs in ${secs}s" \
		    "(${speed:-?}/s, $cov), no finding"
	fi
done
[ "$failed" -eq 0 ]
