#!/bin/sh
# Make sure the libvirt daemon answers on qemu:///system, starting virtlogd
# and libvirtd when they are not running (containers have no systemd).
set -eu
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if virsh -c qemu:///system version >/dev/null 2>&1; then
	exit 0
fi
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	$SUDO systemctl start virtlogd libvirtd || true
else
	$SUDO mkdir -p /var/log/libvirt /var/run/libvirt /var/lib/libvirt
	pgrep -x virtlogd >/dev/null || $SUDO virtlogd -d
	pgrep -x libvirtd >/dev/null || $SUDO libvirtd -d
fi
i=0
while ! virsh -c qemu:///system version >/dev/null 2>&1; do
	i=$((i + 1))
	if [ "$i" -gt 100 ]; then
		echo "libvirt-up: libvirtd does not answer on qemu:///system" >&2
		exit 1
	fi
	sleep 0.2
done
