#!/bin/sh
# `make stop`: stop what `make run` started.
set -u
RUN=${OPSN_RUN_DIR:-$(cd "$(dirname "$0")/.." && pwd)/run}
for p in agent controller; do
	f="$RUN/$p.pid"
	if [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then
		kill "$(cat "$f")" && echo "stop: stopped the $p"
	fi
	rm -f "$f"
done
