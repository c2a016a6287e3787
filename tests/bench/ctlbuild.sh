#!/bin/sh
# Build a benchmark program against the controller's own objects (every
# module but main.c, the embedded migrations, libopsn) with its flags.
# usage: ctlbuild.sh OUT SOURCE.c   (BUILD: the objects' tree, build/obj)
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 1
BUILD=${BUILD:-build/obj}
if [ ! -f "$BUILD/libopsn.a" ] || [ ! -f "$BUILD/gen/migrations.o" ]; then
	echo "ctlbuild: build the controller first (make)" >&2
	exit 1
fi
# shellcheck disable=SC2016 # make expands these
cflags=$(make -s --no-print-directory BUILD="$BUILD" \
    --eval 'bench-cflags: ; @echo $(ALL_CFLAGS)' bench-cflags)
# shellcheck disable=SC2016
libs=$(make -s --no-print-directory BUILD="$BUILD" \
    --eval 'bench-libs: ; @echo $(call pc_libs,$(PKG_CONTROLLER)) -lresolv -lm' \
    bench-libs)
objs=$(ls "$BUILD"/controller/*/*.o | grep -v '/main\.o$')
# shellcheck disable=SC2086 # flags are split on purpose
exec cc $cflags -Wno-missing-prototypes -o "$1" "$2" $objs \
    "$BUILD/gen/migrations.o" "$BUILD/libopsn.a" $libs
