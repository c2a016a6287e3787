#!/bin/sh
# What a clean clone must never hold: a path of a developer's machine (a
# clone elsewhere finds everything relative to itself: ../shared beside
# the repository, or a variable), a merge's conflict markers, or an
# unchecked statement in the controller.
set -u
cd "$(dirname "$0")/../.." || exit 1
bad=0
hits=$(git grep -n -E '(^|[^A-Za-z0-9_.])/(work|farm|home/[a-z][a-z0-9_-]*|Users)/' \
    -- . ':!tests/lint/tree.sh' 2>/dev/null)
if [ -n "$hits" ]; then
	echo "$hits"
	echo "absolute paths of a machine in the tree (above)"
	bad=1
fi
hits=$(git grep -n -E '^(<<<<<<< |>>>>>>> |=======$)' -- . \
    ':!tests/lint/tree.sh' 2>/dev/null)
if [ -n "$hits" ]; then
	echo "$hits"
	echo "conflict markers left by a merge in the tree (above)"
	bad=1
fi
# Every statement the controller runs goes through store_step(), which
# logs a failure and dooms the write's transaction (core/store.c).
hits=$(git grep -n -E '\bsqlite3_step\(' -- 'controller/*.c' \
    ':!controller/core/store.c' 2>/dev/null)
if [ -n "$hits" ]; then
	echo "$hits"
	echo "sqlite3_step() called outside core/store.c: use store_step()"
	bad=1
fi
[ $bad -eq 0 ] && echo "no machine path, conflict marker or unchecked statement"
exit $bad
