#!/usr/bin/env python3
"""Backup and restore at national scale (make bench, section backup).

A controller with every commune of the Etalab file imported and a month
of hourly usage for BENCH_BACKUP_SERVED communes (a VM, a mailbox and a
site each, the eleven metrics of the contract: what a month of metering
leaves in usage_hourly) takes a backup while an API client keeps asking
for /v1/health; then the backup is restored into a new folder. Prints the
database's size, the backup's size and time, the longest API answer
during it (the copy runs on the thread pool: the loop keeps answering),
and the restore's time. Figures only: it never fails on a time.

usage: backup.py COMMUNES.JSON   (OPSN_BIN: the programs, default bin)
"""
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
sys.path.insert(0, os.path.join(TOP, "tests", "e2e"))
import opsn  # noqa: E402

SERVED = int(os.environ.get("BENCH_BACKUP_SERVED", "2000"))
HOURS = int(os.environ.get("BENCH_BACKUP_HOURS", "744"))
MONTH = 1790805600		# 2026-10-01T00:00:00+02:00

METRICS = {
    "vm": ("vcpu_seconds", "memory_mib_seconds", "disk_mib_seconds",
           "disk_used_mib_seconds", "cpu_ns", "net_rx_bytes",
           "net_tx_bytes"),
    "mailbox": ("mailbox_seconds", "mailbox_mib_seconds"),
    "site": ("site_seconds", "site_mib_seconds"),
}


def say(*a):
    print("bench: backup:", *a, flush=True)


def mib(path):
    return os.path.getsize(path) / (1 << 20)


class Probe(threading.Thread):
    """GET /v1/health every 50 ms: the loop's responsiveness."""

    def __init__(self, c):
        super().__init__(daemon=True)
        self.c = c
        self.stop = False
        self.lat = []
        self.idle = 0

    def run(self):
        while not self.stop:
            t = time.monotonic()
            self.c.api("GET", "/v1/health", token=None)
            self.lat.append(time.monotonic() - t)
            time.sleep(0.05)

    def worst(self):
        """The longest answer since the last call."""
        if not self.idle and len(self.lat) > 3:
            self.idle = max(self.lat[:3])
        w, self.lat = (max(self.lat) if self.lat else 0), []
        return w


def download(c, path, f):
    import ssl
    import urllib.request
    req = urllib.request.Request(c.url + path)
    req.add_header("Authorization", "Bearer " + c.token())
    ctx = ssl.create_default_context(cafile=c.ca)
    with urllib.request.urlopen(req, context=ctx, timeout=600) as r:
        while True:
            b = r.read(1 << 20)
            if not b:
                return r.status
            f.write(b)


def fill_usage(db_path):
    db = sqlite3.connect(db_path)
    tenants = [t for (t,) in db.execute(
        "SELECT id FROM tenants WHERE kind = 'commune' ORDER BY id LIMIT ?",
        (SERVED,))]

    def rows():
        for t in tenants:
            for h in range(HOURS):
                hour = MONTH + 3600 * h
                for kind, metrics in METRICS.items():
                    res = f"{kind}-{t}"
                    for i, m in enumerate(metrics):
                        yield (t, hour, kind, res, m, 3600 * (i + 1))
    t0 = time.monotonic()
    db.execute("BEGIN")
    db.executemany("INSERT INTO usage_hourly (tenant_id, hour, kind, "
                   "resource, metric, quantity) VALUES (?, ?, ?, ?, ?, ?)",
                   rows())
    db.executemany("INSERT OR IGNORE INTO meter_resources (kind, resource, "
                   "tenant_id, first_seen) VALUES (?, ?, ?, ?)",
                   ((k, f"{k}-{t}", t, MONTH) for t in tenants
                    for k in METRICS))
    db.execute("COMMIT")
    n = db.execute("SELECT count(*) FROM usage_hourly").fetchone()[0]
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return n, time.monotonic() - t0


def main():
    communes = sys.argv[1]
    root = tempfile.mkdtemp(prefix="opsn-bench-backup-")
    os.chmod(root, 0o755)
    try:
        c = opsn.Controller(root, extra_conf="[log]\nlevel = warning\n"
                            "[api]\nrate = 0\n")
        c.argv.remove("-d")
        c.start()
        t0 = time.monotonic()
        c.opsnctl("tenant", "import", "--etalab", communes)
        say(f"imported the communes in {time.monotonic() - t0:.1f} s")
        c.stop()
        rows, secs = fill_usage(os.path.join(c.data, "opsn.db"))
        say(f"{rows} hourly usage rows ({SERVED} communes x 3 services x "
            f"{HOURS} h) written in {secs:.0f} s")
        c.start()
        db_mib = mib(os.path.join(c.data, "opsn.db"))
        tenants = sqlite3.connect(os.path.join(c.data, "opsn.db")).execute(
            "SELECT count(*) FROM tenants").fetchone()[0]

        say(f"database: {tenants} tenants, {db_mib:.0f} MiB")
        out = os.path.join(root, "backup.tar")
        probe = Probe(c)
        probe.start()
        # The copy, on the controller's thread pool.
        t0 = time.monotonic()
        st, info, _ = c.api("POST", "/v1/backups")
        copy = time.monotonic() - t0
        copy_lat = probe.worst()
        if st != 201:
            say(f"BROKEN: POST /v1/backups answered {st}: {info}")
            return 1
        # Its download, streamed by h2o.
        t0 = time.monotonic()
        with open(out, "wb") as f:
            st = download(c, f"/v1/backups/{info['name']}", f)
        fetch = time.monotonic() - t0
        fetch_lat = probe.worst()
        t0 = time.monotonic()
        c.api("DELETE", f"/v1/backups/{info['name']}")
        gone = time.monotonic() - t0
        gone_lat = probe.worst()
        probe.stop = True
        probe.join()
        say(f"backup: {mib(out):.0f} MiB (sha256 {info['sha256'][:12]}...) "
            f"in {copy:.1f} s on the controller's thread pool "
            f"({db_mib / copy:.0f} MiB/s); longest /v1/health meanwhile "
            f"{copy_lat * 1000:.0f} ms (idle: {probe.idle * 1000:.0f} ms)")
        say(f"download: {fetch:.1f} s ({mib(out) / fetch:.0f} MiB/s); longest "
            f"/v1/health meanwhile {fetch_lat * 1000:.0f} ms")
        say(f"delete: {gone * 1000:.0f} ms; longest /v1/health meanwhile "
            f"{gone_lat * 1000:.0f} ms")
        c.stop()
        t0 = time.monotonic()
        r = subprocess.run([os.path.join(opsn.BIN, "opsn-controller"),
                            "--restore", out, "--data-dir",
                            os.path.join(root, "restored")],
                           capture_output=True, text=True)
        r_secs = time.monotonic() - t0
        if r.returncode != 0:
            say("BROKEN: the restore failed: " + r.stderr)
            return 1
        say(f"restore: {r_secs:.1f} s (checksums, integrity_check, new "
            f"epoch)")
        return 0
    finally:
        opsn.rmtree(root)


if __name__ == "__main__":
    sys.exit(main())
