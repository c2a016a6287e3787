#!/bin/sh
# Install every Debian package that building, testing and running opsn need.
# Idempotent and non-interactive; run as root (sudo is used otherwise).
set -eu

PKGS="
build-essential pkg-config clang make
libuv1-dev libsqlite3-dev sqlite3 libssl-dev openssl libvirt-dev
libprotobuf-c-dev protobuf-c-compiler libh2o-dev libjansson-dev libinih-dev
libcurl4-openssl-dev libcmocka-dev libcrypt-dev libidn2-dev libzip-dev
python3 python3-pytest
libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils
linux-image-amd64 busybox-static cpio e2fsprogs kmod iproute2 bridge-utils
postfix postfix-sqlite dovecot-core dovecot-sqlite dovecot-imapd dovecot-lmtpd
nginx-light swaks procps wrk tzdata time strace
uacme opendkim opendkim-tools pebble knot knot-dnsutils sslscan python3-dkim
libnet-ssleay-perl python3-cryptography curl
chromium fonts-dejavu-core
libxml2-utils libreoffice-calc-nogui
python3-hypothesis
ganeti-htools
prometheus libfaketime nftables util-linux
"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	SUDO="sudo"
fi

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done

if [ -n "$missing" ]; then
	echo "deps: installing:$missing"
	# Packages such as nginx and dovecot would start their system daemons on
	# :80 and :143; opsn runs private instances, so refuse service starts
	# during the install unless a policy already exists.
	policy=/usr/sbin/policy-rc.d
	made_policy=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
		$SUDO chmod 755 "$policy"
		made_policy=1
	fi
	export DEBIAN_FRONTEND=noninteractive
	# postfix asks how it is used; a local-only install is what a backend
	# starts from, and opsn writes its own main.cf for private instances.
	echo "postfix postfix/main_mailer_type select Local only" | $SUDO debconf-set-selections
	echo "postfix postfix/mailname string localhost" | $SUDO debconf-set-selections
	$SUDO apt-get update -q
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
	if [ "$made_policy" = 1 ]; then
		$SUDO rm -f "$policy"
	fi
else
	echo "deps: all packages present"
fi

# The web console's browser tests: Node.js and npm (the machine's own when
# it has them; Debian's otherwise), then playwright-core and axe-core at
# the versions tests/browser/package-lock.json pins (npm ci). Debian's
# chromium above is the browser: npm downloads none.
browser_dir=$(cd "$(dirname "$0")/../tests/browser" && pwd)
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	echo "deps: installing nodejs npm"
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    --no-install-recommends nodejs npm
fi
lock_sum=$(sha256sum "$browser_dir/package-lock.json" | cut -d' ' -f1)
stamp="$browser_dir/node_modules/.opsn-lock"
if [ "$(cat "$stamp" 2>/dev/null)" != "$lock_sum" ]; then
	echo "deps: npm ci in tests/browser"
	(cd "$browser_dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 \
	    npm ci --no-audit --no-fund --loglevel=error)
	echo "$lock_sum" > "$stamp"
else
	echo "deps: npm packages of tests/browser present"
fi
