#!/bin/sh
# Run every test: the cmocka unit binaries, then the pytest end-to-end
# suite. Ends with one line "N passed, N failed"; exits non-zero on any
# failure. BUILD and BIN say where `make` put the test build (build/test
# by default); RELEASE_BIN, where the release programs of `make` are.
set -u

BUILD=${BUILD:-build/test}
BIN=${BIN:-build/test/bin}
PYTHON=${PYTHON:-/usr/bin/python3}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

passed=0
failed=0
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# A lint counts as one test: lint WHAT COMMAND... (its last line says why).
lint() {
	what=$1
	shift
	if "$@" >"$out/lint.log" 2>&1; then
		passed=$((passed + 1))
		echo "lint: $(tail -n 1 "$out/lint.log")"
	else
		failed=$((failed + 1))
		echo "lint: $what FAILED"
		sed 's/^/    /' "$out/lint.log"
	fi
}

# The controller's module graph: no cycle, no private header crossed.
# shellcheck disable=SC2086 # the compiler and its flags, split
[ -n "${MODULE_CC:-}" ] &&
	lint "module graph" "$PYTHON" tests/lint/module_graph.py $MODULE_CC
# No path of a developer's machine, no conflict marker in the tree.
lint "tree" tests/lint/tree.sh
# Test-only switches: in the test build's programs, never in the release's.
[ -n "${RELEASE_BIN:-}" ] &&
	lint "test switches" tests/lint/test_switches.sh "$RELEASE_BIN" "$BIN"

for t in "$BUILD"/tests/test_*; do
	[ -x "$t" ] || continue
	name=$(basename "$t")
	"$t" >"$out/$name.log" 2>&1
	rc=$?
	ok=$(grep -c '^\[       OK \]' "$out/$name.log")
	bad=$(grep -c '^\[  FAILED  \] [a-z_]' "$out/$name.log")
	if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
		# Crashed or a setup failed: count the binary as one failure.
		bad=1
	fi
	passed=$((passed + ok))
	failed=$((failed + bad))
	if [ "$bad" -gt 0 ]; then
		echo "unit: $name: $ok passed, $bad failed"
		sed 's/^/    /' "$out/$name.log" | grep -v '^    \[ *\(RUN\|OK\) ' | tail -n 40
	else
		echo "unit: $name: $ok passed"
	fi
done

if [ "${OPSN_SKIP_E2E:-0}" != 1 ]; then
	OPSN_BIN="$top/$BIN" "$PYTHON" -m pytest tests/e2e -p no:cacheprovider \
	    -q -rfE --junitxml="$out/e2e.xml" ${PYTEST_ARGS:-}
	rc=$?
	if [ -f "$out/e2e.xml" ]; then
		set -- $("$PYTHON" - "$out/e2e.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root)
t = f = s = 0
for su in suites:
    t += int(su.get("tests", 0))
    f += int(su.get("failures", 0)) + int(su.get("errors", 0))
    s += int(su.get("skipped", 0))
print(t - f - s, f)
PY
)
		passed=$((passed + $1))
		failed=$((failed + $2))
	elif [ "$rc" -ne 0 ]; then
		failed=$((failed + 1))
	fi
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ] && [ "$failed" -eq 0 ]; then
		failed=1
	fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
