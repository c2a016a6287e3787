#!/bin/sh
# The OPSN_TEST_* switches (and X-Opsn-Test-* headers) are compiled only
# into test builds: the release programs must not even hold their names,
# the test build's must (or this check would prove nothing).
# usage: test_switches.sh RELEASE_BIN TEST_BIN
set -u
rel=$1
tst=$2
bad=0
for p in opsn-controller opsn-agent; do
	if [ ! -f "$rel/$p" ] || [ ! -f "$tst/$p" ]; then
		echo "$p: missing from $rel or $tst"
		bad=1
		continue
	fi
	# Environment variables and header names alike (X-Opsn-Test-...).
	names=$(grep -a -o -i 'opsn[_-]test[_-][a-z_-]*' "$rel/$p" | sort -u)
	if [ -n "$names" ]; then
		echo "$rel/$p holds test switches:" $names
		bad=1
	fi
	if ! grep -a -q 'OPSN_TEST_PROTO_RANGE' "$tst/$p"; then
		echo "$tst/$p lacks OPSN_TEST_PROTO_RANGE: not a test build?"
		bad=1
	fi
done
[ $bad -eq 0 ] && echo "release programs in $rel hold no OPSN_TEST_ switch"
exit $bad
