#!/bin/sh
# No path of a developer's machine in the tree: a clean clone elsewhere
# must find everything relative to itself (../shared beside the repo, or
# a variable).
set -u
cd "$(dirname "$0")/../.." || exit 1
hits=$(git grep -n -E '(^|[^A-Za-z0-9_.])/(work|farm|home/[a-z][a-z0-9_-]*|Users)/' \
    -- . ':!tests/lint/abs_paths.sh' 2>/dev/null)
if [ -n "$hits" ]; then
	echo "$hits"
	echo "absolute paths of a machine in the tree (see above)"
	exit 1
fi
echo "no absolute path of a developer's machine in the tree"
