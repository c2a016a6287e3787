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
        c = opsn.Controller(root, extra_conf="[log]\nlevel = warning\n")
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

        # The API keeps answering during the backup.
        lat, stop = [], [False]

        def probe():
            while not stop[0]:
                t = time.monotonic()
                c.api("GET", "/v1/health", token=None)
                lat.append(time.monotonic() - t)
                time.sleep(0.05)
        th = threading.Thread(target=probe, daemon=True)
        th.start()
        time.sleep(1)
        before = max(lat) if lat else 0
        out = os.path.join(root, "backup.tar")
        t0 = time.monotonic()
        r = c.opsnctl("-o", "json", "backup", "create", "--file", out)
        b_secs = time.monotonic() - t0
        stop[0] = True
        th.join()
        info = json.loads(r.stdout)
        say(f"database: {tenants} tenants, {db_mib:.0f} MiB")
        say(f"backup: {mib(out):.0f} MiB in {b_secs:.1f} s with opsnctl "
            f"({info['duration_ms'] / 1000:.1f} s on the controller's "
            f"thread pool, {db_mib / max(info['duration_ms'] / 1000, 0.001):.0f}"
            f" MiB/s); longest /v1/health meanwhile "
            f"{max(lat) * 1000:.0f} ms (before: {before * 1000:.0f} ms)")
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
