#!/bin/sh
# Build the tiny opsn guest image (for tests and demos) into OUTDIR from the
# Debian packages on this machine: linux-image-amd64, busybox-static, cpio,
# e2fsprogs, qemu-utils (and xz-utils / zstd only for compressed modules).
#
#   ops/images/build-tiny.sh OUTDIR        e.g. build/images/tiny
#
# Outputs (all world-readable: QEMU runs as libvirt-qemu):
#   vmlinuz      the newest installed Debian kernel (/boot/vmlinuz-*)
#   initrd.img   gzip'd newc cpio: static busybox, virtio + ext4 modules of
#                THAT kernel version, and an /init that prints
#                "OPSN-GUEST-READY <name>" (name from opsn.name=) on ttyS0
#   disk.qcow2   64 MiB ext4 (label opsn), a backing file for overlays
#   cmdline      the default kernel command line (append opsn.name=NAME)
#   SHA256SUMS   of vmlinuz, initrd.img, disk.qcow2
#   .stamp       written last; the script does nothing when .stamp is newer
#                than this script, the kernel and busybox (FORCE=1 rebuilds)
#
# Environment: KVER=VERSION picks a kernel other than the newest one;
# BUSYBOX=PATH another static busybox.
set -eu

die() { echo "build-tiny: $*" >&2; exit 1; }

[ $# -eq 1 ] && [ -n "$1" ] || die "usage: $0 OUTDIR"
OUT=$1
SELF=$0
BUSYBOX=${BUSYBOX:-/bin/busybox}
CMDLINE="console=ttyS0 panic=-1 quiet"
DISK_MB=64

# Modules the guest loads, in this order (dependencies from modules.dep are
# added in front of each one). crc32c_generic is not a modules.dep
# dependency of ext4, but ext4 asks the crypto API for "crc32c" at mount
# time and the guest has no modprobe. button + evdev let busybox acpid see
# the ACPI power button (virsh shutdown).
MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev
virtio_pci failover net_failover virtio_net virtio_blk virtio_balloon
crc32c_generic crc16 mbcache jbd2 ext4 button evdev"
# The ones the guest cannot do without (the others are best effort).
REQUIRED="virtio_pci virtio_blk virtio_net ext4 crc32c_generic"

# ---- the kernel -----------------------------------------------------------
if [ -n "${KVER:-}" ]; then
	KERNEL=/boot/vmlinuz-$KVER
else
	KERNEL=$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
	[ -n "$KERNEL" ] || die "no /boot/vmlinuz-* (install linux-image-amd64)"
	KVER=${KERNEL#/boot/vmlinuz-}
fi
[ -r "$KERNEL" ] || die "$KERNEL is missing or unreadable"
MODDIR=/lib/modules/$KVER
[ -r "$MODDIR/modules.dep" ] || die "$MODDIR/modules.dep missing"
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing (install busybox-static)"
# A static binary has no PT_INTERP (3) program header (64-bit ELF, LE).
has_interp() {
	u() { od -An -t u"$2" -j "$1" -N "$2" "$3" | tr -d ' '; }
	phoff=$(u 32 8 "$1") phsz=$(u 54 2 "$1") phnum=$(u 56 2 "$1")
	i=0
	while [ "$i" -lt "$phnum" ]; do
		[ "$(u $((phoff + i * phsz)) 4 "$1")" = 3 ] && return 0
		i=$((i + 1))
	done
	return 1
}
if has_interp "$BUSYBOX"; then
	die "$BUSYBOX is dynamically linked (install busybox-static)"
fi
for t in cpio gzip mkfs.ext4 qemu-img sha256sum; do
	command -v $t >/dev/null 2>&1 || die "$t not found"
done

# ---- up to date? ----------------------------------------------------------
uptodate() {
	[ "${FORCE:-0}" = 1 ] && return 1
	[ -f "$OUT/.stamp" ] || return 1
	for f in vmlinuz initrd.img disk.qcow2 cmdline SHA256SUMS; do
		[ -s "$OUT/$f" ] || return 1
	done
	for f in "$SELF" "$KERNEL" "$BUSYBOX"; do
		[ "$OUT/.stamp" -nt "$f" ] || return 1
	done
	# A stamp made for another kernel version is stale too.
	[ "$(cat "$OUT/.stamp")" = "$KVER" ] || return 1
}
if uptodate; then
	echo "build-tiny: $OUT is up to date ($KVER)"
	exit 0
fi

umask 022
mkdir -p "$OUT"
chmod 755 "$OUT"
# One build at a time per OUTDIR.
if command -v flock >/dev/null 2>&1; then
	exec 9>"$OUT/.lock"
	flock 9
	if uptodate; then
		echo "build-tiny: $OUT is up to date ($KVER)"
		exit 0
	fi
fi

STAGE=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
trap 'exit 130' INT TERM HUP
ROOT=$STAGE/root
mkdir -p "$ROOT"

# ---- modules --------------------------------------------------------------
# Path (relative to MODDIR) of module $1 from modules.dep, "-" and "_" alike.
modpath() {
	awk -F: -v m="$1" '
		{ p = $1; n = p; sub(/.*\//, "", n); sub(/\.ko(\.(xz|zst|gz))?$/, "", n)
		  gsub(/-/, "_", n) }
		n == m { print p; exit }' "$MODDIR/modules.dep"
}
deps_of() {
	awk -F: -v p="$1" '$1 == p { print $2; exit }' "$MODDIR/modules.dep"
}
builtin() {
	m=$(echo "$1" | tr - _)
	tr - _ <"$MODDIR/modules.builtin" | grep -qE "/$m\.ko$"
}

ORDER=$STAGE/order		# module paths, dependencies first
: >"$ORDER"
visit() {
	grep -qxF "$1" "$ORDER" && return 0
	# modules.dep lists every (transitive) dependency; visiting them
	# depth-first puts each after its own dependencies.
	for d in $(deps_of "$1"); do
		visit "$d"
	done
	echo "$1" >>"$ORDER"
}
for m in $MODULES; do
	p=$(modpath "$m")
	if [ -n "$p" ]; then
		visit "$p"
	elif builtin "$m"; then
		echo "build-tiny: $m is built into $KVER"
	else
		case " $REQUIRED " in
		*" $m "*) die "module $m not found in $MODDIR" ;;
		esac
		echo "build-tiny: warning: module $m not found, skipped" >&2
	fi
done

mkdir -p "$ROOT/lib/modules"
: >"$ROOT/etc.modules"
while read -r p; do
	n=${p##*/}
	case $n in
	*.ko) cp "$MODDIR/$p" "$ROOT/lib/modules/$n" ;;
	*.ko.xz) command -v xz >/dev/null || die "xz needed (install xz-utils)"
		xz -dc "$MODDIR/$p" >"$ROOT/lib/modules/${n%.xz}"; n=${n%.xz} ;;
	*.ko.zst) command -v zstd >/dev/null || die "zstd needed (install zstd)"
		zstd -qdc "$MODDIR/$p" >"$ROOT/lib/modules/${n%.zst}"; n=${n%.zst} ;;
	*.ko.gz) gzip -dc "$MODDIR/$p" >"$ROOT/lib/modules/${n%.gz}"; n=${n%.gz} ;;
	*) die "unexpected module file $p" ;;
	esac
	echo "${n%.ko}" >>"$ROOT/etc.modules"
done <"$ORDER"

# ---- initramfs tree -------------------------------------------------------
mkdir -p "$ROOT/bin" "$ROOT/sbin" "$ROOT/usr/bin" "$ROOT/usr/sbin" \
	"$ROOT/etc/acpi/PWRF" "$ROOT/etc/acpi/PWRB" "$ROOT/proc" "$ROOT/sys" \
	"$ROOT/dev" "$ROOT/mnt" "$ROOT/run" "$ROOT/tmp" "$ROOT/var/log" \
	"$ROOT/root"
chmod 1777 "$ROOT/tmp"
mv "$ROOT/etc.modules" "$ROOT/etc/modules"
cp "$BUSYBOX" "$ROOT/bin/busybox"
chmod 755 "$ROOT/bin/busybox"
# Applet symlinks at build time (busybox --list-full gives bin/ls, ...).
"$BUSYBOX" --list-full | while read -r a; do
	case $a in bin/busybox|"") continue ;; esac
	[ -e "$ROOT/$a" ] || [ -L "$ROOT/$a" ] || ln -s /bin/busybox "$ROOT/$a"
done
[ -L "$ROOT/bin/sh" ] || ln -s /bin/busybox "$ROOT/bin/sh"

cat >"$ROOT/init" <<'EOF'
#!/bin/sh
# opsn tiny guest. Sets the machine up, prints the markers on ttyS0, then
# hands PID 1 to busybox init (a shell on the console, ACPI power-off).
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts 2>/dev/null

say() {
	if [ -c /dev/ttyS0 ]; then
		printf '%s\n' "$*" >/dev/ttyS0
	else
		printf '%s\n' "$*"
	fi
}

while read -r m; do
	[ -d "/sys/module/$m" ] || insmod "/lib/modules/$m.ko" ||
		echo "opsn-init: insmod $m failed"
done </etc/modules

set -f
name=unknown
ip=
gw=
for a in $(cat /proc/cmdline); do
	case $a in
	opsn.name=*) name=${a#opsn.name=} ;;
	opsn.ip=*) ip=${a#opsn.ip=} ;;
	opsn.gw=*) gw=${a#opsn.gw=} ;;
	esac
done
set +f
[ -n "$name" ] || name=unknown
hostname "$name" 2>/dev/null

say ""
say "OPSN-GUEST-READY $name"

# The first virtio disk: is there a virtio block device (id 2) at all?
vblk=0
for d in /sys/bus/virtio/devices/*; do
	[ "$(cat "$d/device" 2>/dev/null)" = 0x0002 ] && vblk=1
done
if [ "$vblk" = 1 ]; then
	i=0
	while [ ! -b /dev/vda ] && [ "$i" -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
fi
mounted=0
if [ -b /dev/vda ] && mount -t ext4 /dev/vda /mnt; then
	n=$(cat /mnt/opsn-boot-count 2>/dev/null)
	case $n in '' | *[!0-9]*) n=0 ;; esac
	n=$((n + 1))
	if echo "$n" >/mnt/opsn-boot-count.tmp &&
	    mv /mnt/opsn-boot-count.tmp /mnt/opsn-boot-count && sync; then
		mounted=1
		say "OPSN-BOOT-COUNT $n"
	fi
fi
if [ "$mounted" = 1 ]; then
	say "OPSN-DISK-MOUNTED"
else
	say "OPSN-DISK-MISSING"
fi

ip link set lo up 2>/dev/null
if [ -e /sys/class/net/eth0 ]; then
	ip link set eth0 up
	[ -n "$ip" ] && ip addr add "$ip" dev eth0
	[ -n "$gw" ] && ip route add default via "$gw"
fi

# virsh shutdown -> ACPI power button -> acpid -> poweroff -> init.
acpid -c /etc/acpi -l /var/log/acpid.log 2>/dev/null

exec /bin/busybox init
EOF
chmod 755 "$ROOT/init"

cat >"$ROOT/etc/inittab" <<'EOF'
::respawn:/bin/cttyhack /bin/sh -l
::ctrlaltdel:/bin/busybox poweroff
::shutdown:/etc/opsn-shutdown
EOF
cat >"$ROOT/etc/opsn-shutdown" <<'EOF'
#!/bin/sh
sync
umount /mnt 2>/dev/null
sync
if [ -c /dev/ttyS0 ]; then printf '\nOPSN-GUEST-POWEROFF\n' >/dev/ttyS0; fi
EOF
printf '#!/bin/sh\nexec /bin/busybox poweroff\n' >"$ROOT/etc/acpi/PWRF/00000080"
cp "$ROOT/etc/acpi/PWRF/00000080" "$ROOT/etc/acpi/PWRB/00000080"
chmod 755 "$ROOT/etc/opsn-shutdown" "$ROOT/etc/acpi/PWRF/00000080" \
	"$ROOT/etc/acpi/PWRB/00000080"
echo "export PS1='\h:\w# '" >"$ROOT/etc/profile"
echo "root:x:0:0:root:/root:/bin/sh" >"$ROOT/etc/passwd"
echo "root:x:0:" >"$ROOT/etc/group"

(cd "$ROOT" && find . | LC_ALL=C sort |
	cpio --quiet -o -H newc -R 0:0 --reproducible) | gzip -9 -n \
	>"$STAGE/initrd.img"

# ---- disk -----------------------------------------------------------------
rm -f "$STAGE/disk.raw"
truncate -s ${DISK_MB}M "$STAGE/disk.raw"
mkfs.ext4 -F -q -L opsn -m 0 -E root_owner=0:0 "$STAGE/disk.raw"
qemu-img convert -q -f raw -O qcow2 "$STAGE/disk.raw" "$STAGE/disk.qcow2"
rm -f "$STAGE/disk.raw"

cp "$KERNEL" "$STAGE/vmlinuz"
echo "$CMDLINE" >"$STAGE/cmdline"
(cd "$STAGE" && sha256sum vmlinuz initrd.img disk.qcow2 >SHA256SUMS)
chmod 644 "$STAGE/vmlinuz" "$STAGE/initrd.img" "$STAGE/disk.qcow2" \
	"$STAGE/cmdline" "$STAGE/SHA256SUMS"
sync "$STAGE"/* 2>/dev/null || sync

# ---- install: no stamp while the files are being replaced ----------------
rm -f "$OUT/.stamp"
for f in vmlinuz initrd.img disk.qcow2 cmdline SHA256SUMS; do
	mv -f "$STAGE/$f" "$OUT/$f"
done
echo "$KVER" >"$STAGE/.stamp"
chmod 644 "$STAGE/.stamp"
mv -f "$STAGE/.stamp" "$OUT/.stamp"
echo "build-tiny: built $OUT ($KVER, initrd $(wc -c <"$OUT/initrd.img") bytes)"
