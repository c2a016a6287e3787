"""The tiny guest image (ops/images/build-tiny.sh) boots under plain QEMU.

`make image` builds build/images/tiny before the tests; without its .stamp
these tests are skipped. QEMU runs with TCG (no KVM here), the serial console
goes to a file, and every disk write lands in a temporary qcow2 overlay.
"""
import gzip
import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import time

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
IMAGE = os.environ.get("OPSN_IMAGE_DIR",
                       os.path.join(TOP, "build", "images", "tiny"))
FILES = ("vmlinuz", "initrd.img", "disk.qcow2")
BOOT_TIMEOUT = 60.0

pytestmark = pytest.mark.skipif(
    not os.path.exists(os.path.join(IMAGE, ".stamp")),
    reason=f"no tiny image: {IMAGE}/.stamp missing (run `make image`)")


def _qemu_img():
    return shutil.which("qemu-img") or "/usr/bin/qemu-img"


def _qemu():
    return shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"


class Guest:
    """One QEMU process; stop() always kills it (and its process group)."""

    def __init__(self, workdir, name, disk=True):
        self.workdir = workdir
        self.console = os.path.join(workdir, "console.log")
        self.qemu_log = os.path.join(workdir, "qemu.log")
        self.proc = None
        self.started = None
        with open(os.path.join(IMAGE, "cmdline")) as f:
            cmdline = f.read().strip()
        self.argv = [
            _qemu(), "-machine", "q35,accel=tcg", "-m", "256",
            "-nographic", "-no-reboot", "-monitor", "none", "-nic", "none",
            "-kernel", os.path.join(IMAGE, "vmlinuz"),
            "-initrd", os.path.join(IMAGE, "initrd.img"),
            "-append", f"{cmdline} opsn.name={name}",
            "-serial", f"file:{self.console}",
        ]
        if disk:
            overlay = os.path.join(workdir, "overlay.qcow2")
            subprocess.run(
                [_qemu_img(), "create", "-q", "-f", "qcow2", "-F", "qcow2",
                 "-b", os.path.join(IMAGE, "disk.qcow2"), overlay],
                check=True, timeout=30)
            self.argv += ["-drive", f"file={overlay},if=virtio,format=qcow2"]

    def start(self):
        self.started = time.monotonic()
        with open(self.qemu_log, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)

    def output(self):
        try:
            with open(self.console, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for(self, *markers, fail_on=(), timeout=BOOT_TIMEOUT):
        """Wait until every marker is a line of the console; return secs.
        A line in fail_on ends the wait at once with a failure."""
        def line(m):
            return re.compile(r"^" + re.escape(m) + r"\r?$", re.M)
        pats = [line(m) for m in markers]
        bad = [line(m) for m in fail_on]
        deadline = self.started + timeout
        while True:
            out = self.output()
            if all(p.search(out) for p in pats):
                return time.monotonic() - self.started
            if "Kernel panic" in out:
                pytest.fail(f"guest panicked:\n{out[-3000:]}")
            for p in bad:
                if p.search(out):
                    pytest.fail(f"guest printed {p.pattern!r}:\n"
                                f"{out[-3000:]}")
            if self.proc.poll() is not None:
                with open(self.qemu_log, errors="replace") as f:
                    qlog = f.read()[-2000:]
                pytest.fail(f"qemu exited with {self.proc.returncode}:\n"
                            f"{qlog}\nconsole:\n{out[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {markers} within {timeout:.0f} s; "
                            f"console:\n{out[-3000:]}")
            time.sleep(0.1)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)


@pytest.fixture
def guest(workdir):
    made = []

    def make(name, disk=True):
        g = Guest(workdir, name, disk=disk)
        made.append(g)
        g.start()
        return g
    yield make
    for g in made:
        g.stop()


def test_image_files_are_complete_and_world_readable():
    st = os.stat(IMAGE)
    assert st.st_mode & 0o005 == 0o005, "image folder not world-traversable"
    sums = {}
    with open(os.path.join(IMAGE, "SHA256SUMS")) as f:
        for line in f:
            digest, name = line.split()
            sums[name.lstrip("*")] = digest
    assert sorted(sums) == sorted(FILES)
    for name in FILES + ("cmdline", "SHA256SUMS"):
        p = os.path.join(IMAGE, name)
        assert stat.S_IMODE(os.stat(p).st_mode) & 0o004, f"{name} not o+r"
        if name in sums:
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            assert h.hexdigest() == sums[name], f"{name}: checksum differs"
    with open(os.path.join(IMAGE, "cmdline")) as f:
        assert "console=ttyS0" in f.read().split()
    with gzip.open(os.path.join(IMAGE, "initrd.img")) as f:
        assert f.read(6) == b"070701", "initrd is not a gzip'd newc cpio"
    info = subprocess.run(
        [_qemu_img(), "info", "--output=json",
         os.path.join(IMAGE, "disk.qcow2")],
        check=True, capture_output=True, text=True, timeout=30).stdout
    assert '"format": "qcow2"' in info
    assert "backing-filename" not in info, "base disk must not have a backing"


def test_boots_to_ready_and_mounts_overlay_disk(guest):
    g = guest("imgtest")
    secs = g.wait_for("OPSN-GUEST-READY imgtest", "OPSN-DISK-MOUNTED",
                      fail_on=("OPSN-DISK-MISSING",))
    print(f"tiny image: markers after {secs:.1f} s")
    assert re.search(r"^OPSN-BOOT-COUNT 1\r?$", g.output(), re.M), \
        "a fresh overlay should count boot 1"
    assert "OPSN-DISK-MISSING" not in g.output()


def test_boots_without_disk_and_reports_it_missing(guest):
    g = guest("nodisk", disk=False)
    g.wait_for("OPSN-GUEST-READY nodisk", "OPSN-DISK-MISSING",
               fail_on=("OPSN-DISK-MOUNTED",))
    assert "OPSN-DISK-MOUNTED" not in g.output()
