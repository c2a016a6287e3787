"""Billing end to end: tariffs from the sample files, statements of a
period with a tariff change inside it, exports finance reconciles, closed
statements that no route can change, corrections on the next statement,
and a finance token that reads and never writes.

Usage rows are written straight into metering's usage_hourly table (the
contract between metering and billing), as metering's rollup would.
Money is compared as Decimal, never as a binary fraction.
"""
import calendar
import csv
import hashlib
import io
import json
import os
import sqlite3
import subprocess
from decimal import Decimal

import opsn

OPS = os.path.join(opsn.TOP, "ops")

TARIFF_V1 = {
    "name": "standard",
    "deliberation": {"number": "2025-042", "date": "2025-12-10"},
    "effective_from": "2026-01-01", "effective_to": "2026-10-15",
    "bands": [{"name": "S", "max": 999}, {"name": "M", "max": 9999},
              {"name": "L"}],
    "rates": {"vm.vcpu_hours": "0.0150",
              "vm.memory_gib_hours": {"S": "0.0040", "M": "0.0050",
                                      "L": "0.0060"},
              "mailbox.mailbox_days": "0.0100",
              "site.site_days": "0.0333"},
    "allowances": {"mailbox.mailbox_days": "100"},
    "monthly_fee": {"S": "5.00", "M": "15.00", "L": "40.00"},
    "contribution_per_inhabitant": "0.365",
}


def siren(prefix):
    """A SIREN with a valid Luhn key from 8 digits."""
    return opsn.luhn_complete(prefix)


COMMUNES = [  # name, INSEE, population
    ("Agassac", "31001", 412),
    ("Muret", "31395", 3200),
    ("Colomiers", "31149", 39000),
]


def utc(y, mo, d, h=0):
    return calendar.timegm((y, mo, d, h, 0, 0))


def db(controller):
    c = sqlite3.connect(os.path.join(controller.data, "opsn.db"), timeout=30)
    c.execute("CREATE TABLE IF NOT EXISTS usage_hourly (tenant_id INTEGER, "
              "hour INTEGER NOT NULL, kind TEXT NOT NULL, resource TEXT NOT "
              "NULL, metric TEXT NOT NULL, quantity INTEGER NOT NULL, "
              "PRIMARY KEY (hour, kind, resource, metric)) WITHOUT ROWID")
    return c


def put_usage(controller, rows):
    with db(controller) as c:
        c.executemany("INSERT INTO usage_hourly (tenant_id, hour, kind, "
                      "resource, metric, quantity) VALUES (?, ?, ?, ?, ?, ?) "
                      "ON CONFLICT (hour, kind, resource, metric) DO UPDATE "
                      "SET quantity = excluded.quantity", rows)


def tenant_id(controller, insee):
    return json.loads(controller.opsnctl("-o", "json", "tenant", "show",
                                         insee).stdout)["id"]


def setup_members(controller, workdir):
    """Tariff v1 (to 15 Oct.), the sample (from 16 Oct.), three communes."""
    path = os.path.join(workdir, "v1.json")
    with open(path, "w") as f:
        json.dump(TARIFF_V1, f)
    controller.opsnctl("tariff", "add", "--file", path)
    controller.opsnctl("tariff", "add", "--file",
                       os.path.join(OPS, "tariff.sample.ini"))
    ids = {}
    for i, (name, insee, pop) in enumerate(COMMUNES):
        controller.opsnctl("tenant", "add", "--kind", "commune", "--name",
                           name, "--insee", insee, "--siren",
                           siren("2131%04d" % i), "--population", str(pop),
                           "--joined", "2015-01-01")
        ids[insee] = tenant_id(controller, insee)
    return ids


def october_usage(controller, ids):
    """A 2 vCPU VM for Agassac all October; Muret's site; 23:00Z on
    31 October (00:00 on 1 November in Paris) belongs to November."""
    rows = []
    start, end = utc(2026, 9, 30, 22), utc(2026, 10, 31, 23)
    for h in range(start, end, 3600):
        rows.append((ids["31001"], h, "vm", "a-vm", "vcpu_seconds", 7200))
        rows.append((ids["31001"], h, "vm", "a-vm", "memory_mib_seconds",
                     4096 * 3600))
        rows.append((ids["31395"], h, "site", "b-site", "site_seconds",
                     3600))
    rows.append((ids["31395"], end, "site", "b-site", "site_seconds", 3600))
    put_usage(controller, rows)


def api_ok(controller, method, path, body=None, token="admin"):
    st, doc, hdrs = controller.api(method, path, body=body, token=token)
    assert st < 300, (method, path, st, doc)
    return doc, hdrs


def canonical_checksum(doc):
    """What the controller hashes: the document without volatile fields,
    compact, keys sorted, UTF-8."""
    d = {k: v for k, v in doc.items()
         if k not in ("status", "revision", "generated_at", "closed_at",
                      "checksum")}
    text = json.dumps(d, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def period_checksum(docs):
    text = "".join("%d %s\n" % (d["id"], d["checksum"])
                   for d in sorted(docs, key=lambda d: d["id"]))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_tariff_files_and_overlaps(controller, workdir):
    r = controller.opsnctl("tariff", "add", "--file",
                           os.path.join(OPS, "tariff.sample.ini"))
    assert "deliberation 2026-031 (2026-09-24)" in r.stdout
    # The JSON sample is the same tariff: same days, refused.
    r = controller.opsnctl("tariff", "add", "--file",
                           os.path.join(OPS, "tariff.sample.json"),
                           check=False)
    assert r.returncode != 0 and "overlaps" in r.stderr
    # End version 1, then the JSON sample from 2027 is version 2.
    controller.opsnctl("tariff", "end", "standard", "1", "--on",
                       "2026-12-31")
    with open(os.path.join(OPS, "tariff.sample.json")) as f:
        doc = json.load(f)
    doc["effective_from"] = "2027-01-01"
    doc["deliberation"] = {"number": "2026-077", "date": "2026-12-10"}
    path = os.path.join(workdir, "v2.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    controller.opsnctl("tariff", "add", "--file", path)
    t, _ = api_ok(controller, "GET", "/v1/tariffs/standard")
    assert [(v["version"], v["effective_from"], v["effective_to"])
            for v in t["versions"]] == [(1, "2026-10-16", "2026-12-31"),
                                        (2, "2027-01-01", None)]
    # The INI and JSON samples say the same thing.
    assert t["versions"][0]["rates"] == t["versions"][1]["rates"]
    assert t["default"] is True
    # Money as a JSON number is refused, and so is a fraction of a
    # micro-euro.
    bad = dict(doc, effective_from="2030-01-01",
               rates={"vm.vcpu_hours": 0.018})
    st, err, _ = controller.api("POST", "/v1/tariffs", body=bad)
    assert st == 400 and "string" in err["error"]["message"]
    bad["rates"] = {"vm.vcpu_hours": "0.0000001"}
    st, err, _ = controller.api("POST", "/v1/tariffs", body=bad)
    assert st == 400
    r = controller.opsnctl("tariff", "list")
    assert "2026-031 (2026-09-24)" in r.stdout


def test_october_statements_exports_close_and_corrections(controller,
                                                          workdir):
    ids = setup_members(controller, workdir)
    october_usage(controller, ids)
    r = controller.opsnctl("-o", "json", "statement", "generate",
                           "--period", "2026-10")
    gen = json.loads(r.stdout)
    assert gen["statements"] == 3 and gen["tz"] == "Europe/Paris"

    # Agassac: 360 hours under v1 (1-15 Oct.), 385 under v2 (DST ends on
    # the 25th): vCPU 720 x 0.015 = 10.80 and 770 x 0.018 = 13.86; memory
    # 1440 GiB-h x 0.004 = 5.76 and 1540 x 0.0045 = 6.93; fee 5 x 15/31 =
    # 2.42 and 6 x 16/31 = 3.10; contribution 412 x 0.365 x 15/365 = 6.18
    # and 412 x 0.73 x 16/365 = 13.18.
    sid = {d["insee"]: d["id"] for d in api_ok(
        controller, "GET", "/v1/statements?period=2026-10")[0]["items"]}
    a, _ = api_ok(controller, "GET", "/v1/statements/%d" % sid["31001"])
    got = [(ln["metric"], ln["tariff"]["version"], ln["quantity"],
            ln["amount"]) for ln in a["lines"]]
    assert got == [
        ("vm.vcpu_hours", 1, "720", "10.80"),
        ("vm.memory_gib_hours", 1, "1440", "5.76"),
        ("fee.monthly", 1, "0.4839", "2.42"),
        ("contribution", 1, "16.9315", "6.18"),
        ("vm.vcpu_hours", 2, "770", "13.86"),
        ("vm.memory_gib_hours", 2, "1540", "6.93"),
        ("fee.monthly", 2, "0.5161", "3.10"),
        ("contribution", 2, "18.0603", "13.18"),
    ]
    assert a["total"] == "62.23"
    assert a["lines"][0]["deliberation"] == {"number": "2025-042",
                                             "date": "2025-12-10"}
    assert a["lines"][4]["deliberation"] == {"number": "2026-031",
                                             "date": "2026-09-24"}
    # Muret's site: 15 and 16.0417 site-days; the 23:00Z hour of 31
    # October is November's.
    b, _ = api_ok(controller, "GET", "/v1/statements/%d" % sid["31395"])
    sites = [ln for ln in b["lines"] if ln["metric"] == "site.site_days"]
    assert [s["quantity"] for s in sites] == ["15", "16.0417"]
    assert [s["amount"] for s in sites] == ["0.50", "0.53"]

    # Exports: CSV lines, CSV summary, JSON, through opsnctl and the API.
    out_csv = os.path.join(workdir, "lines.csv")
    r = controller.opsnctl("statement", "export", "--period", "2026-10",
                           "--format", "csv", "--file", out_csv)
    checksum = r.stderr.split("checksum ")[1].strip()
    raw = open(out_csv, "rb").read()
    assert raw.startswith(b"\xef\xbb\xbf")
    st, text, hdrs = controller.api("GET", "/v1/statements?period=2026-10"
                                    "&format=csv")
    assert st == 200 and hdrs["X-Opsn-Checksum"] == checksum
    assert hdrs["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig")),
                               delimiter=";"))
    assert {r["insee"] for r in rows} == {"31001", "31395", "31149"}
    assert all(r["siren"] and r["deliberation"] for r in rows)
    line_sum = sum(Decimal(r["amount"].replace(",", ".")) for r in rows)
    out_sum = os.path.join(workdir, "summary.csv")
    controller.opsnctl("statement", "export", "--period", "2026-10",
                       "--format", "csv", "--summary", "--sep", ",",
                       "--decimal", "point", "--file", out_sum)
    summary = list(csv.DictReader(open(out_sum, encoding="utf-8-sig")))
    assert len(summary) == 3
    assert sum(Decimal(r["total"]) for r in summary) == line_sum
    r = controller.opsnctl("statement", "export", "--period", "2026-10",
                           "--format", "json")
    exp = json.loads(r.stdout)
    assert exp["checksum"] == checksum and exp["count"] == 3
    # Finance can recompute every checksum from the JSON documents.
    for d in exp["statements"]:
        assert canonical_checksum(d) == d["checksum"]
    assert period_checksum(exp["statements"]) == checksum
    assert sum(Decimal(d["total"]) for d in exp["statements"]) == line_sum

    # Close, then try every route that writes.
    r = controller.opsnctl("-o", "json", "statement", "close", "--period",
                           "2026-10")
    assert json.loads(r.stdout)["checksum"] == checksum
    before = {i: api_ok(controller, "GET", "/v1/statements/%d" % i)[0]
              for i in sid.values()}
    attempts = [
        ("POST", "/v1/statements/generate", {"period": "2026-10"}, 409),
        ("POST", "/v1/statements/close", {"period": "2026-10"}, 409),
        ("POST", "/v1/statements/generate", {"period": "2026-Q4"}, 409),
        ("DELETE", "/v1/statements/%d" % sid["31001"], None, 405),
        ("PATCH", "/v1/statements/%d" % sid["31001"], {"total": "0"}, 405),
        ("PUT", "/v1/statements/%d" % sid["31001"], {}, 405),
        ("POST", "/v1/statements/%d" % sid["31001"], {}, 405),
        ("POST", "/v1/tariffs/standard/end",
         {"version": 2, "effective_to": "2026-10-20"}, 409),
        ("PATCH", "/v1/tenants/31001", {"population": 1, "name": "X"}, 200),
        ("POST", "/v1/tenants/31001/tariff", {"tariff": None}, 200),
        ("POST", "/v1/adjustments", {"tenant": "31395", "amount": "-12.50",
                                     "reason": "site down on 3 October",
                                     "period": "2026-10"}, 201),
    ]
    for method, path, body, want in attempts:
        st, doc, _ = controller.api(method, path, body=body)
        assert st == want, (method, path, st, doc)
        if st == 409:
            assert "closed" in doc["error"]["message"] or \
                "overlaps" in doc["error"]["message"], doc
    # Late usage for October: 10 more hours of Agassac's VM after the 16th.
    put_usage(controller, [(ids["31001"], utc(2026, 10, 20, h), "vm",
                            "a-vm2", "vcpu_seconds", 3600)
                           for h in range(10)])
    for i, doc in before.items():
        assert api_ok(controller, "GET", "/v1/statements/%d" % i)[0] == doc
    st, _, hdrs = controller.api("GET", "/v1/statements?period=2026-10"
                                 "&format=csv")
    assert hdrs["X-Opsn-Checksum"] == checksum
    assert open(out_csv, "rb").read() == raw

    # November: the adjustment and the late usage, each saying what they
    # correct.
    controller.opsnctl("statement", "generate", "--period", "2026-11")
    nov = {d["insee"]: d["id"] for d in api_ok(
        controller, "GET", "/v1/statements?period=2026-11")[0]["items"]}
    b, _ = api_ok(controller, "GET", "/v1/statements/%d" % nov["31395"])
    adj = [ln for ln in b["lines"] if ln["type"] == "adjustment"]
    assert len(adj) == 1 and adj[0]["amount"] == "-12.50"
    assert adj[0]["reason"] == "site down on 3 October"
    assert adj[0]["corrects_period"] == "2026-10"
    a, _ = api_ok(controller, "GET", "/v1/statements/%d" % nov["31001"])
    late = [ln for ln in a["lines"] if ln["type"] == "late_usage"]
    # 10 vCPU-h under v2 at 0.018 = 0.18.
    assert [(ln["metric"], ln["quantity"], ln["amount"],
             ln["corrects_period"]) for ln in late] == \
        [("vm.vcpu_hours", "10", "0.18", "2026-10")]
    r = controller.opsnctl("-o", "json", "adjustment", "list", "--tenant",
                           "31395")
    assert json.loads(r.stdout)["items"][0]["state"] == "on_draft"
    r = controller.opsnctl("statement", "show", str(nov["31395"]))
    assert "adjustment" in r.stdout and "-12.50" in r.stdout


def test_finance_token_exports_and_cannot_change_anything(controller,
                                                          workdir):
    ids = setup_members(controller, workdir)
    october_usage(controller, ids)
    controller.opsnctl("statement", "generate", "--period", "2026-10")
    fin = controller.opsnctl("token", "create", "--name", "finance",
                             "--role", "finance").stdout.strip()
    dbfile = os.path.join(controller.data, "opsn.db")

    def dump():
        return subprocess.run(["sqlite3", dbfile, ".dump"],
                              capture_output=True, text=True,
                              check=True).stdout
    reads = ["/v1/statements?period=2026-10&format=csv",
             "/v1/statements?period=2026-10&format=csv&summary=1",
             "/v1/statements?period=2026-10&format=json",
             "/v1/statements?period=2026-10", "/v1/billing-periods",
             "/v1/adjustments"]
    for path in reads:
        st, doc, _ = controller.api("GET", path, token=fin)
        assert st == 200, (path, st, doc)
    env = {"OPSN_TOKEN": fin}
    r = controller.opsnctl("statement", "export", "--period", "2026-10",
                           "--format", "csv", env=env)
    assert r.stdout.startswith("\ufeffstatement;")
    before = dump()
    writes = [
        ("POST", "/v1/statements/generate", {"period": "2026-10"}),
        ("POST", "/v1/statements/close", {"period": "2026-10"}),
        ("POST", "/v1/adjustments", {"tenant": "31001", "amount": "1.00",
                                     "reason": "x"}),
        ("POST", "/v1/tariffs", TARIFF_V1),
        ("POST", "/v1/tariffs/standard/default", None),
        ("POST", "/v1/tariffs/standard/end",
         {"version": 2, "effective_to": "2027-01-01"}),
        ("POST", "/v1/tenants/31001/tariff", {"tariff": "standard"}),
    ]
    for method, path, body in writes:
        st, doc, _ = controller.api(method, path, body=body, token=fin)
        assert st == 403, (method, path, st, doc)
        assert "lacks permission" in doc["error"]["message"]
    for args in (["statement", "generate", "--period", "2026-10"],
                 ["statement", "close", "--period", "2026-10"],
                 ["adjustment", "add", "--tenant", "31001", "--amount",
                  "-1", "--reason", "x"]):
        r = controller.opsnctl(*args, env=env, check=False)
        assert r.returncode != 0 and "403" in r.stderr
    assert dump() == before
