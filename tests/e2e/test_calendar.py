"""One calendar for usage days and billing periods: [operator] tz.

An OPSN in La Réunion (UTC+4, no summer time): 20:00Z on 31 October is
already 1 November there, for the usage API and for statements alike.
"""
import calendar
import json
import os
import sqlite3
import subprocess

import opsn

TARIFF = {"name": "reunion", "default": True,
          "deliberation": {"number": "2026-12", "date": "2026-09-01"},
          "effective_from": "2026-10-01", "currency": "EUR",
          "rates": {"vm.vcpu_hours": "1.00"}}


def utc(y, m, d, h):
    return calendar.timegm((y, m, d, h, 0, 0))


def test_usage_days_and_periods_follow_the_operator_zone(workdir, procs):
    c = opsn.Controller(workdir, extra_conf="[operator]\n"
                        "tz = Indian/Reunion\n")
    procs.append(c)
    c.start()
    path = os.path.join(workdir, "t.json")
    with open(path, "w") as f:
        json.dump(TARIFF, f)
    c.opsnctl("tariff", "add", "--file", path)
    c.opsnctl("tenant", "add", "--kind", "commune", "--name", "Saint-Denis",
              "--insee", "97411", "--population", "150000", "--joined",
              "2015-01-01")
    tid = json.loads(c.opsnctl("-o", "json", "tenant", "show",
                               "97411").stdout)["id"]
    # One vCPU-hour at 23:00 local on 31 October, one at 00:00 on
    # 1 November (19:00Z and 20:00Z).
    with sqlite3.connect(os.path.join(c.data, "opsn.db")) as db:
        db.executemany(
            "INSERT INTO usage_hourly (tenant_id, hour, kind, resource, "
            "metric, quantity) VALUES (?, ?, 'vm', 'v', 'vcpu_seconds', "
            "3600)", [(tid, utc(2026, 10, 31, 19)),
                      (tid, utc(2026, 10, 31, 20))])
    st, doc, _ = c.api("GET", "/v1/usage?tenant=97411&from=2026-10-01"
                       "&to=2026-12-01&group=month")
    assert st == 200, doc
    assert doc["timezone"] == "Indian/Reunion"
    months = {i["period"]: i["quantity"] for i in doc["items"]
              if i["metric"] == "vcpu_seconds"}
    assert months == {"2026-10": 3600, "2026-11": 3600}, doc

    st, gen, _ = c.api("POST", "/v1/statements/generate",
                       body={"period": "2026-10"})
    assert st < 300 and gen["tz"] == "Indian/Reunion", gen
    st, doc, _ = c.api("GET", "/v1/statements?period=2026-10")
    (s,) = doc["items"]
    st, s, _ = c.api("GET", "/v1/statements/%d" % s["id"])
    vcpu = [ln for ln in s["lines"] if ln["metric"] == "vm.vcpu_hours"]
    # October in La Réunion holds the 23:00 hour, not the midnight one.
    assert sum(int(ln["amount_cents"]) for ln in vcpu) == 100, s


def test_an_unknown_zone_stops_the_controller(workdir):
    r = subprocess.run([os.path.join(opsn.BIN, "opsn-controller"),
                        "--tz", "Mars/Olympus", "--data-dir",
                        os.path.join(workdir, "data"), "--api-listen",
                        "127.0.0.1:%d" % opsn.free_port(), "--agent-listen",
                        "127.0.0.1:%d" % opsn.free_port()],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "Mars/Olympus" in r.stdout + r.stderr
