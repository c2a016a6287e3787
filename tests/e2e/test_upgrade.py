"""Upgrades: a database of the first release (0.1.0) migrates to the
current schema with nothing lost; a migration that fails leaves the file
as it was; a newer database is refused; an agent one protocol version
older keeps working with a newer controller.

The 0.1.0 database is built here from the released migrations -- the
files the repository still has, checked against the SHA-256 sums recorded
when 0.1.0 was released (tests/upgrade/release-0.1.0.sha256: a released
migration never changes) -- the way the 0.1.0 controller applied them,
then filled with tests/upgrade/seed-0.1.0.sql.
"""
import hashlib
import os
import sqlite3
import subprocess
import time

import pytest

import opsn
from opsn import wait_until

UPGRADE = os.path.join(opsn.TOP, "tests", "upgrade")
ADMIN_TOKEN = "opsn_upgrade-test-admin-token"


def released_migrations():
    """[(path, sha256)] of the 0.1.0 migrations, in order."""
    out = []
    with open(os.path.join(UPGRADE, "release-0.1.0.sha256")) as f:
        for line in f:
            sha, path = line.split()
            out.append((os.path.join(opsn.TOP, path), sha))
    return out


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def audit_hash(row, prev):
    """core/audit.c's chain: fields joined by the unit separator."""
    rid, at, token, role, action, obj, summary, reqid = row
    h = hashlib.sha256(f"{rid}\x1f{at}".encode())
    for f in (token, role, action, obj, summary, reqid, prev):
        h.update(b"\x1f" + f.encode())
    return h.hexdigest()


def build_010(data_dir):
    """DATA_DIR/opsn.db as opsn 0.1.0 made and filled it."""
    os.makedirs(data_dir, exist_ok=True)
    path = os.path.join(data_dir, "opsn.db")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA foreign_keys = ON")
    for mig, _ in released_migrations():
        version = int(os.path.basename(mig).split("_")[0])
        with open(mig) as f:
            sql = f.read()
        # 0.1.0's store_migrate: each one with its version bump.
        db.executescript(f"BEGIN IMMEDIATE;\n{sql}\n"
                         f"PRAGMA user_version = {version};\nCOMMIT;")
    with open(os.path.join(UPGRADE, "seed-0.1.0.sql")) as f:
        seed = f.read().replace(
            "ADMIN_HASH", hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest())
    db.executescript("BEGIN;\n" + seed + "\nCOMMIT;")
    prev = ""
    db.execute("BEGIN")
    for row in db.execute("SELECT id, at, token, role, action, object, "
                          "summary, request_id FROM audit ORDER BY id"
                          ).fetchall():
        h = audit_hash(row, prev)
        db.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE id = ?",
                   (prev, h, row[0]))
        prev = h
    db.execute("UPDATE audit_head SET hash = ?", (prev,))
    db.execute("COMMIT")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 6
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    with open(os.path.join(data_dir, "admin.token"), "w") as f:
        f.write(ADMIN_TOKEN)
    return path


def snapshot(path):
    """{table: (columns, sorted rows)} of every table."""
    db = sqlite3.connect(path)
    out = {}
    for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = "
                           "'table' AND name NOT LIKE 'sqlite_%'"):
        cols = [r[1] for r in db.execute(f"PRAGMA table_info({t})")]
        rows = db.execute(f"SELECT {', '.join(cols)} FROM {t}").fetchall()
        out[t] = (cols, sorted(rows, key=repr))
    db.close()
    return out


def controller_on(workdir, data_dir, env=None):
    c = opsn.Controller(workdir, env=env)
    i = c.argv.index("--data-dir")
    c.argv[i + 1] = c.data = data_dir
    return c


def run_once(c, timeout=30):
    """Start the controller and wait for it to exit (it must refuse)."""
    env = dict(os.environ)
    env.update(c.env or {})
    return subprocess.run(c.argv, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_released_migrations_never_change():
    for path, sha in released_migrations():
        assert sha256_file(path) == sha, \
            f"{path} changed since it was released: add a migration instead"


def test_first_release_database_upgrades_with_nothing_lost(workdir, procs):
    data = os.path.join(workdir, "data-010")
    path = build_010(data)
    before = snapshot(path)
    c = controller_on(workdir, data)
    procs.append(c)
    c.start()
    assert "upgrading the schema from version 6 to" in c.output()
    # What an operator and finance see, through the API.
    tenants = {t["name"]: t for t in c.api("GET", "/v1/tenants?limit=100")
               [1]["items"]}
    assert tenants["Agassac"]["insee"] == "31001"
    assert tenants["Aignes"]["status"] == "suspended"
    assert "Communauté de communes Cœur de Garonne" in tenants
    r = c.opsnctl("audit", "verify")
    assert "intact: " in r.stdout, r.stdout
    st, doc, _ = c.api("GET", "/v1/usage?from=2026-10-01&to=2026-11-01"
                       "&tenant=31001")
    assert st == 200
    got = {i["metric"]: i["quantity"] for i in doc["items"]}
    assert got["vcpu_seconds"] == 7200 and got["mailbox_seconds"] == 3600
    st, doc, _ = c.api("GET", "/v1/statements/1")
    assert st == 200 and doc["total_cents"] == 1082
    st, doc, _ = c.api("GET", "/v1/vms/urbanisme")
    assert st == 200 and doc["desired"] == "running"
    c.stop()
    after = snapshot(path)
    db = sqlite3.connect(path)
    latest = max(int(f.split("_")[0]) for f in os.listdir(os.path.join(
        opsn.TOP, "controller", "core", "migrations")) if f.endswith(".sql"))
    assert db.execute("PRAGMA user_version").fetchone()[0] == latest
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # Every row of every 0.1.0 table is still there with the same values
    # (the controller may add rows: its start-up writes some).
    for t, (cols, rows) in before.items():
        assert t in after, f"table {t} is gone"
        acols, arows = after[t]
        if t == "usage_hourly":
            # Mailbox and site hours became days (migration 012): the
            # same quantities per member, resource and metric.
            rows = moved_to_days(cols, rows, after["usage_daily"])
        idx = [acols.index(col) for col in cols]
        kept = {tuple(r[i] for i in idx) for r in arows}
        lost = [r for r in rows if tuple(r) not in kept]
        assert not lost, f"{t}: rows lost or changed: {lost[:3]}"


def moved_to_days(cols, rows, daily):
    """The hourly rows that stay hourly (VMs'), after checking that the
    others' sums are the daily table's."""
    def sums(cs, rs):
        out = {}
        for r in rs:
            d = dict(zip(cs, r))
            if d["kind"] == "vm":
                continue
            k = (d["tenant_id"], d["kind"], d["resource"], d["metric"])
            out[k] = out.get(k, 0) + d["quantity"]
        return out
    hourly = sums(cols, rows)
    assert hourly, "the seed has mailbox hours to move"
    assert sums(*daily) == hourly
    return [r for r in rows if dict(zip(cols, r))["kind"] == "vm"]


def test_failing_migration_rolls_back_and_leaves_the_file_untouched(
        workdir, procs):
    data = os.path.join(workdir, "data-010")
    path = build_010(data)
    sha = sha256_file(path)
    latest = max(int(f.split("_")[0]) for f in os.listdir(os.path.join(
        opsn.TOP, "controller", "core", "migrations")) if f.endswith(".sql"))
    # The last migration fails after it ran: all of them roll back.
    c = controller_on(workdir, data,
                      env={"OPSN_TEST_MIGRATION_FAIL": str(latest)})
    r = run_once(c)
    assert r.returncode != 0
    assert "every migration was rolled back, the database is still at " \
        "schema version 6" in r.stderr, r.stderr
    assert sha256_file(path) == sha
    assert not os.path.exists(path + "-wal") or \
        os.path.getsize(path + "-wal") == 0
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 6
    db.close()
    # The same file then upgrades normally.
    c = controller_on(workdir, data)
    procs.append(c)
    c.start()
    assert c.api("GET", "/v1/tenants/31001")[0] == 200


def test_newer_database_is_refused_and_left_alone(workdir):
    data = os.path.join(workdir, "data-new")
    path = build_010(data)
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 999")
    db.close()
    sha = sha256_file(path)
    r = run_once(controller_on(workdir, data))
    assert r.returncode != 0
    assert "schema version 999, newer than this controller knows" in \
        r.stderr and "Downgrades are refused" in r.stderr, r.stderr
    assert sha256_file(path) == sha


def test_agent_one_protocol_version_older_keeps_working(workdir, procs):
    """A controller speaking versions 1-2 with an agent that speaks only
    1 (OPSN_TEST_PROTO_RANGE): HELLO, heartbeats past the unreachable
    timeout, metering delivered and acknowledged, a hypervisor's desired
    state applied and reported."""
    c = opsn.Controller(workdir, env={"OPSN_TEST_PROTO_RANGE": "1-2",
                                      "OPSN_TEST_METER_ROLLUP_MS": "500"})
    procs.append(c)
    c.start()
    old = {"OPSN_TEST_PROTO_RANGE": "1-1",
           "OPSN_TEST_METER_INTERVAL_MS": "200",
           "OPSN_TEST_METER_SYNTHETIC": "3"}
    w = opsn.Agent(workdir, "old-web", [c.agent_addr], token=c.join_token(),
                   role="web", env=old)
    procs.append(w)
    w.start()
    hv = opsn.Agent(workdir, "old-hv", [c.agent_addr],
                    token=c.join_token(), role="hypervisor",
                    extra_args=["--libvirt-uri", "test:///default",
                                "--virt-type", "qemu", "--pool-dir",
                                os.path.join(workdir, "pool-old-hv")],
                    env={"OPSN_TEST_PROTO_RANGE": "1-1"})
    procs.append(hv)
    hv.start()
    wait_until(lambda: c.node_state("old-web") == "ready" and
               c.node_state("old-hv") == "ready", 20, what="old agents")
    nodes = c.nodes()
    assert nodes["old-web"]["proto_version"] == 1
    assert nodes["old-hv"]["proto_version"] == 1
    opsn.add_tiny_image(c) if os.path.exists(os.path.join(
        opsn.IMAGE_DIR, ".stamp")) else pytest.skip("no tiny image")
    c.opsnctl("vm", "create", "--node", "old-hv", "--name", "v1", "--image",
              "tiny", "--vcpus", "1", "--memory", "128M", "--disk", "256M",
              "--stopped", "--wait", "--timeout", "60s")
    # Longer than the 3 s unreachable timeout: heartbeats keep it ready.
    time.sleep(4)
    assert c.node_state("old-web") == "ready"
    assert c.node_state("old-hv") == "ready"
    db = sqlite3.connect(os.path.join(c.data, "opsn.db"), timeout=30)
    n = db.execute("SELECT count(*) FROM samples s JOIN nodes n ON n.id = "
                   "s.node_id WHERE n.name = 'old-web'").fetchone()[0]
    assert n > 20
    wait_until(lambda: sqlite3.connect(os.path.join(
        w.data, "spool.db")).execute("SELECT count(*) FROM spool"
                                     ).fetchone()[0] < 10, 10,
               what="acknowledged")
    v = c.api("GET", "/v1/vms/v1")[1]
    assert v["observed"]["state"] == "shutoff"
    assert v["observed"]["generation"] == v["generation"]
