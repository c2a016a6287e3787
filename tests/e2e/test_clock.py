"""Clock jumps, for real: Debian's libfaketime moves the controller's and
an agent's wall clock an hour forward and back while they run (monotonic
clocks untouched, as a real step leaves them). No token expires early or
lives on, heartbeats keep the node ready, and every sample arrives once,
stamped with the time it was really taken.
"""
import glob
import os
import sqlite3
import time

import pytest

import opsn
from opsn import wait_until
from test_metering import check_one_for_one, drain, ledger

FAKETIME = (glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1") or [None])[0]
pytestmark = pytest.mark.skipif(FAKETIME is None,
                                reason="libfaketime not installed")


class Clock:
    """A process's wall clock, moved through libfaketime's file."""

    def __init__(self, workdir, name):
        self.path = os.path.join(workdir, name + ".faketime")
        self.set("+0")

    def set(self, offset):
        with open(self.path + ".tmp", "w") as f:
            f.write(offset + "\n")
        os.rename(self.path + ".tmp", self.path)

    def env(self):
        asan = os.environ.get("ASAN_OPTIONS", "")
        return {"LD_PRELOAD": FAKETIME, "FAKETIME_TIMESTAMP_FILE": self.path,
                "FAKETIME_CACHE_DURATION": "1",
                "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                # Under make check: libfaketime is loaded before ASan.
                "ASAN_OPTIONS": (asan + ":" if asan else "") +
                "verify_asan_link_order=0"}


def db(c):
    return sqlite3.connect(os.path.join(c.data, "opsn.db"), timeout=30)


def status(c, token):
    return c.api("GET", "/v1/nodes", token=token)[0]


def metric(c, name):
    text = c.api("GET", "/metrics")[1]
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_clock_steps_expire_nothing_lose_nothing(workdir, procs):
    ctl_clock = Clock(workdir, "controller")
    env = dict(ctl_clock.env(), OPSN_TEST_METER_ROLLUP_MS="500")
    c = opsn.Controller(workdir, env=env)
    procs.append(c)
    c.start()
    t_start = time.time()
    ag_clock = Clock(workdir, "agent")
    d = os.path.join(workdir, "agent-tick")
    os.makedirs(d, exist_ok=True)
    a = opsn.Agent(workdir, "tick", [c.agent_addr], token=c.join_token(),
                   role="web", env=dict(ag_clock.env(),
                                        OPSN_TEST_METER_INTERVAL_MS="200",
                                        OPSN_TEST_METER_SYNTHETIC="3",
                                        OPSN_TEST_METER_LEDGER=os.path.join(
                                            d, "ledger")))
    procs.append(a)
    a.start()
    wait_until(lambda: c.node_state("tick") == "ready", 20)

    # Two tokens: one valid for half an hour, one expired ten minutes ago.
    live = c.opsnctl("token", "create", "--name", "live", "--role",
                     "auditor").stdout.strip()
    dead = c.opsnctl("token", "create", "--name", "dead", "--role",
                     "auditor").stdout.strip()
    now = int(time.time())
    with db(c) as x:
        x.execute("UPDATE api_tokens SET expires_at = ? WHERE name = 'live'",
                  (now + 1800,))
        x.execute("UPDATE api_tokens SET expires_at = ? WHERE name = 'dead'",
                  (now - 600,))
    assert status(c, live) == 200 and status(c, dead) == 401

    # The controller's clock jumps an hour forward: the live token does
    # not expire, the node does not go unreachable (3 s timeout).
    ctl_clock.set("+1h")
    t_jump = time.monotonic()
    wait_until(lambda: "clock: the wall clock is +3600" in c.output(), 10,
               what="the step noticed")
    while time.monotonic() - t_jump < 4:
        assert status(c, live) == 200 and status(c, dead) == 401
        assert c.node_state("tick") == "ready"
        time.sleep(0.5)
    offset = metric(c, "opsn_clock_offset_seconds")
    assert 3590 < offset < 3610, offset
    assert metric(c, "opsn_node_heartbeat_age_seconds") < 2

    # An hour back: the expired token does not come back to life.
    ctl_clock.set("-1h")
    wait_until(lambda: "clock: the wall clock is -3600" in c.output(), 10,
               what="the step back noticed")
    t_jump = time.monotonic()
    while time.monotonic() - t_jump < 4:
        assert status(c, dead) == 401 and status(c, live) == 200
        assert c.node_state("tick") == "ready"
        time.sleep(0.5)
    ctl_clock.set("+0")
    wait_until(lambda: metric(c, "opsn_clock_offset_seconds") == 0, 10,
               what="back in step")

    # The agent's clock jumps forward, then back: its samples keep their
    # real times and their sequence.
    ag_clock.set("+1h")
    time.sleep(2.5)
    ag_clock.set("-1h")
    time.sleep(2.5)
    ag_clock.set("+0")
    time.sleep(1.5)
    assert c.node_state("tick") == "ready"
    drain([a], 30)
    t_end = time.time()
    check_one_for_one(c, [a])
    led = ledger(os.path.join(d, "ledger"))
    assert len(led) > 50
    rows = db(c).execute("SELECT resource, seq, ts_ms FROM samples ORDER BY "
                         "resource, seq").fetchall()
    last = {}
    for res, seq, ts in rows:
        assert t_start - 5 <= ts / 1000 <= t_end + 5, \
            f"sample {seq} stamped {ts / 1000 - time.time():+.0f} s away"
        assert ts > last.get(res, 0), f"{res}: stamps go back at {seq}"
        last[res] = ts
    assert "clock: the wall clock is" in a.output()
