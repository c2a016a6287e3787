#!/bin/sh
# Turn the numbered migration files into a C table (a build output).
# usage: embed-sql.sh OUT.c FILE.sql...
set -eu
out=$1
shift
{
	echo "/* Generated from controller/migrations by ops/embed-sql.sh. */"
	echo "#include <stddef.h>"
	echo "#include \"core/migrations.h\""
	echo "const struct migration migrations[] = {"
	for f in "$@"; do
		base=$(basename "$f" .sql)
		num=$(echo "$base" | sed 's/_.*//; s/^0*//')
		printf '\t{ %s, "%s",\n' "$num" "$base"
		sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/\t  "/' -e 's/$/\\n"/' "$f"
		printf '\t},\n'
	done
	echo "};"
	echo "const size_t nmigrations = sizeof(migrations) / sizeof(migrations[0]);"
} > "$out.tmp"
mv "$out.tmp" "$out"
