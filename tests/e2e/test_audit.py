"""Trust in the records: the audit chain anchored by signed checkpoints.

Whoever can write the database can recompute the hash chain; these tests
do exactly that, as an attacker would, and expect `audit verify` (in the
controller, and offline from an export) to see it.
"""
import hashlib
import json
import os
import sqlite3
import stat

import opsn
from opsn import wait_until


def chain_hash(row, prev):
    """The controller's record hash (lib/trail.c), recomputed."""
    rid, at, token, role, action, obj, summary, reqid = row
    text = f"{rid}\x1f{at}" + "".join(
        "\x1f" + f for f in (token, role, action, obj, summary, reqid, prev))
    return hashlib.sha256(text.encode()).hexdigest()


def rewrite(controller, target, summary):
    """Change a record and recompute the whole chain and its head."""
    with sqlite3.connect(os.path.join(controller.data, "opsn.db")) as db:
        rows = db.execute("SELECT id, at, token, role, action, object, "
                          "summary, request_id FROM audit ORDER BY id"
                          ).fetchall()
        prev = ""
        for row in rows:
            row = list(row)
            if row[0] == target:
                row[6] = summary
            h = chain_hash(row, prev)
            db.execute("UPDATE audit SET summary = ?, prev_hash = ?, "
                       "hash = ? WHERE id = ?", (row[6], prev, h, row[0]))
            prev = h
        db.execute("UPDATE audit_head SET count = ?, hash = ?",
                   (len(rows), prev))


def changes(controller, n=3):
    controller.opsnctl("tenant", "add", "--kind", "commune", "--name",
                       "Agassac", "--insee", "31001", "--population", "115")
    for i in range(n - 1):
        controller.opsnctl("tenant", "set", "31001", "--population",
                           str(116 + i))


def verify(controller, *args):
    r = controller.opsnctl("-o", "json", "audit", "verify", *args,
                           check=False)
    return r.returncode, json.loads(r.stdout) if r.stdout else r.stderr


def test_a_chain_rewritten_with_recomputed_hashes_is_detected(controller,
                                                              workdir):
    changes(controller)
    r = controller.opsnctl("audit", "checkpoint")
    assert "signs 3 records" in r.stdout
    rc, doc = verify(controller)
    assert rc == 0 and doc["ok"] and doc["checkpoints"] >= 1, doc
    assert doc["anchored"] == 3
    before = os.path.join(workdir, "before.json")
    controller.opsnctl("audit", "export", "--file", before)

    # Population 116 becomes 9: the chain alone still holds.
    rewrite(controller, 2, '{"population":9}')
    rc, doc = verify(controller)
    assert rc != 0 and not doc["ok"]
    assert "rewritten" in doc["reason"] and doc["first_bad"] == 1, doc
    r = controller.opsnctl("audit", "verify", check=False)
    assert r.returncode != 0 and "BROKEN" in r.stdout

    # Offline, from an export, with nothing but the CA certificate.
    after = os.path.join(workdir, "after.json")
    controller.opsnctl("audit", "export", "--file", after)
    env = {"OPSN_URL": "", "OPSN_TOKEN": ""}
    r = controller.opsnctl("audit", "verify", "--file", after, "--ca",
                           controller.ca, check=False, env=env)
    assert r.returncode != 0 and "rewritten" in r.stdout, r.stdout + r.stderr
    r = controller.opsnctl("audit", "verify", "--file", before, "--ca",
                           controller.ca, env=env)
    assert "intact: 3 records" in r.stdout

    # Deleting the checkpoints does not help: the anchor file keeps one.
    with sqlite3.connect(os.path.join(controller.data, "opsn.db")) as db:
        db.execute("DELETE FROM audit_checkpoints")
    rc, doc = verify(controller)
    assert rc != 0 and "rewritten" in doc["reason"], doc


def test_checkpoints_are_signed_with_a_key_outside_the_database(
        controller, workdir):
    changes(controller, 2)
    controller.opsnctl("audit", "checkpoint")
    key = os.path.join(controller.data, "audit-key.pem")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    with open(key) as f:
        pem = f.read()
    body = "".join(pem.splitlines()[1:-1])
    with sqlite3.connect(os.path.join(controller.data, "opsn.db")) as db:
        dump = "\n".join(db.iterdump())
    assert body[:40] not in dump
    # A checkpoint forged over a rewritten chain does not verify.
    rewrite(controller, 1, '{"name":"forged"}')
    with sqlite3.connect(os.path.join(controller.data, "opsn.db")) as db:
        cnt, h = db.execute("SELECT count, hash FROM audit_head").fetchone()
        sig = db.execute("SELECT sig FROM audit_checkpoints").fetchone()[0]
        db.execute("DELETE FROM audit_checkpoints")
        db.execute("INSERT INTO audit_checkpoints (at, count, hash, sig) "
                   "VALUES (1, ?, ?, ?)", (cnt, h, sig))
    os.unlink(os.path.join(controller.data, "audit-anchor.json"))
    rc, doc = verify(controller)
    assert rc != 0 and "not signed" in doc["reason"], doc
    # Another CA does not vouch for the signer of an export.
    other = opsn.Controller(workdir, "other")
    other.start()
    try:
        out = os.path.join(workdir, "x.json")
        controller.opsnctl("audit", "export", "--file", out)
        r = controller.opsnctl("audit", "verify", "--file", out, "--ca",
                               other.ca, check=False)
        assert r.returncode != 0 and "does not verify" in r.stderr
    finally:
        other.stop()


def test_a_cut_tail_is_detected(controller):
    changes(controller, 3)
    controller.opsnctl("audit", "checkpoint")
    with sqlite3.connect(os.path.join(controller.data, "opsn.db")) as db:
        db.execute("DELETE FROM audit WHERE id = 3")
        h = db.execute("SELECT hash FROM audit WHERE id = 2").fetchone()[0]
        db.execute("UPDATE audit_head SET count = 2, hash = ?", (h,))
    rc, doc = verify(controller)
    assert rc != 0 and "deleted" in doc["reason"] and doc["first_bad"] == 3


def test_the_head_is_signed_at_regular_checkpoints(workdir, procs):
    c = opsn.Controller(workdir, extra_conf="[audit]\n"
                        "checkpoint_interval = 1s\n")
    procs.append(c)
    c.start()
    changes(c, 2)
    wait_until(lambda: verify(c)[1]["anchored"] == 2, 10,
               what="a checkpoint of the two records")
    assert "audit: checkpoint" in c.output()
    with open(os.path.join(c.data, "audit-anchor.json")) as f:
        assert json.load(f)["count"] == 2
