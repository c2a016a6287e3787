"""Metering end to end: real guests, crashes, and a cut-off agent.

The durability tests use the agent's test source (OPSN_TEST_METER_SYNTHETIC:
made-up VMs, so that a stream of samples needs no guest); everything after
the source -- spool, sequence numbers, acks, dedup, commit, rollup -- is the
real path. The source writes a ledger of what it committed to its spool.
"""
import datetime
import os
import socket
import sqlite3
import threading
import time
import zoneinfo

import pytest

import opsn
from opsn import wait_until

INTERVAL_MS = 250


def db(controller):
    c = sqlite3.connect(os.path.join(controller.data, "opsn.db"), timeout=30)
    return c


def node_id(controller, name):
    return db(controller).execute("SELECT id FROM nodes WHERE name = ?",
                                  (name,)).fetchone()[0]


def ledger(path):
    """{seq: (ts_ms, resource)} from a test source's ledger."""
    out = {}
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                out[int(parts[0])] = (int(parts[1]), parts[2])
    return out


def spool_count(agent):
    p = os.path.join(agent.data, "spool.db")
    try:
        c = sqlite3.connect(p, timeout=30)
        return c.execute("SELECT count(*) FROM spool").fetchone()[0]
    except sqlite3.Error:
        return -1


def synthetic_env(agent_dir, n=10, interval=INTERVAL_MS):
    return {"OPSN_TEST_METER_INTERVAL_MS": str(interval),
            "OPSN_TEST_METER_SYNTHETIC": str(n),
            "OPSN_TEST_METER_LEDGER": os.path.join(agent_dir, "ledger")}


@pytest.fixture(autouse=True)
def fast_rollups(monkeypatch):
    """Before any controller starts: roll up every half second."""
    monkeypatch.setenv("OPSN_TEST_METER_ROLLUP_MS", "500")


@pytest.fixture
def mcontroller(controller):
    return controller


def make_synthetic_agent(workdir, procs, controller, name, addr=None, n=10):
    d = os.path.join(workdir, "agent-" + name)
    os.makedirs(d, exist_ok=True)
    a = opsn.Agent(workdir, name, [addr or controller.agent_addr],
                   token=controller.join_token(), role="web",
                   env=synthetic_env(d, n))
    procs.append(a)
    a.start()
    return a


def drop_token(a):
    if "--join-token" in a.argv:
        i = a.argv.index("--join-token")
        del a.argv[i:i + 2]


def drain(agents, timeout=60):
    """Stop producing, keep delivering: restart each agent without its
    test source and wait until every spool is empty."""
    for a in agents:
        a.stop()
        drop_token(a)
        a.env["OPSN_TEST_METER_SYNTHETIC"] = "0"
        a.start()
    wait_until(lambda: all(spool_count(a) == 0 for a in agents), timeout,
               interval=0.5, what="spools drained")


def check_one_for_one(controller, agents, may_miss_ledger=()):
    """Every committed sample is in the controller once, none made up."""
    c = db(controller)
    for a in agents:
        nid = node_id(controller, a.name)
        got = dict(c.execute("SELECT seq, ts_ms FROM samples WHERE "
                             "node_id = ?", (nid,)).fetchall())
        led = ledger(os.path.join(a.dir, "ledger"))
        assert led, f"{a.name} produced nothing"
        missing = set(led) - set(got)
        assert not missing, f"{a.name}: {len(missing)} samples lost, " \
            f"e.g. {sorted(missing)[:5]}"
        for seq, (ts, _) in led.items():
            assert got[seq] == ts, f"{a.name}: seq {seq} has another time"
        # The spool numbers samples without a hole: a hole would be a loss.
        lo, hi = min(got), max(got)
        assert len(got) == hi - lo + 1, f"{a.name}: holes in {lo}..{hi}"
        # Samples the ledger lacks can only be a tick cut between its
        # spool commit and its ledger write: by the kill -9 (may_miss_ledger,
        # anywhere) or by the final stop (at most the last tick).
        extra = set(got) - set(led)
        if a.name not in may_miss_ledger:
            assert not extra or (min(extra) > max(led) and
                                 len(extra) <= 10), \
                f"{a.name}: {len(extra)} samples not produced"
        else:
            assert len(extra) <= 10 * 2, f"{a.name}: {len(extra)} extra"
        dups = c.execute("SELECT count(*) - count(DISTINCT seq) FROM samples "
                         "WHERE node_id = ?", (nid,)).fetchone()[0]
        assert dups == 0


def test_kill9_controller_and_agent_lose_and_double_nothing(
        workdir, procs, mcontroller):
    c = mcontroller
    agents = [make_synthetic_agent(workdir, procs, c, f"m{i}")
              for i in range(3)]
    wait_until(lambda: all(c.node_state(a.name) == "ready" for a in agents),
               20, what="agents ready")
    for round_ in range(5):
        time.sleep(1.5)
        c.kill9()
        if round_ == 2:
            agents[1].kill9()
            drop_token(agents[1])
            agents[1].start()
        time.sleep(0.7)
        c.start()
    time.sleep(1.5)
    drain(agents)
    check_one_for_one(c, agents, may_miss_ledger=(agents[1].name,))
    # The rollup saw them all, and the counters say so.
    wait_until(lambda: db(c).execute(
        "SELECT (SELECT max(id) FROM samples) = rolled_id FROM meter_state"
    ).fetchone()[0] == 1, 20, what="rolled up")
    st, text, _ = c.api("GET", "/metrics")
    assert st == 200 and "opsn_meter_spool_samples{node=\"m0\"} 0" in text


class Proxy:
    """A TCP relay the test can cut (blackhole: nothing passes)."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.port = self.srv.getsockname()[1]
        self.cut = False
        self.socks = []
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _pump(self, a, b):
        try:
            while not self.stop:
                data = a.recv(65536)
                if not data:
                    break
                while self.cut and not self.stop:
                    time.sleep(0.05)      # blackhole: hold it, never deliver
                if self.stop:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass

    def _accept(self):
        while not self.stop:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.target)
            except OSError:
                c.close()
                continue
            self.socks += [c, u]
            threading.Thread(target=self._pump, args=(c, u),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c),
                             daemon=True).start()

    def close(self):
        self.stop = True
        self.srv.close()
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


def expected_vcpu_seconds(samples, interval_ms):
    """{hour: vcpu_seconds} for one synthetic VM (1 vCPU, always running),
    the way docs/metering.md says: each sample holds until the next one,
    for at most twice the interval, split at hour boundaries."""
    ts = sorted(samples)
    acc = {}
    for a, b in zip(ts, ts[1:]):
        end = a + min(b - a, 2 * interval_ms)
        while a < end:
            h = a // 3600000 * 3600
            e = min(end, (h + 3600) * 1000)
            acc[h] = acc.get(h, 0) + (e - a)
            a = e
    return {h: (ms + 500) // 1000 for h, ms in acc.items()}


def test_cut_off_agent_delivers_everything_into_the_right_hours(
        workdir, procs, mcontroller):
    c = mcontroller
    proxy = Proxy(c.agent_port)
    try:
        a = make_synthetic_agent(workdir, procs, c, "cut",
                                 addr=f"127.0.0.1:{proxy.port}", n=2)
        wait_until(lambda: c.node_state(a.name) == "ready", 20)
        time.sleep(2)
        proxy.cut = True
        wait_until(lambda: c.node_state(a.name) == "unreachable", 20,
                   what="agent cut off")
        time.sleep(4)
        assert spool_count(a) > 10, "samples must pile up in the spool"
        proxy.cut = False
        time.sleep(3)
        drain([a])
    finally:
        proxy.close()
    check_one_for_one(c, [a])
    wait_until(lambda: db(c).execute(
        "SELECT (SELECT max(id) FROM samples) = rolled_id FROM meter_state"
    ).fetchone()[0] == 1, 20, what="rolled up")
    led = ledger(os.path.join(a.dir, "ledger"))
    cx = db(c)
    for res in sorted({r for _, r in led.values()}):
        want = expected_vcpu_seconds([t for t, r in led.values() if r == res],
                                     INTERVAL_MS)
        got = dict(cx.execute("SELECT hour, quantity FROM usage_hourly WHERE "
                              "resource = ? AND metric = 'vcpu_seconds'",
                              (res,)).fetchall())
        assert got == want, f"{res}: hours {got} != {want}"


BOOT = 90


@pytest.mark.skipif(not os.path.exists(os.path.join(opsn.IMAGE_DIR,
                                                    ".stamp")),
                    reason="no tiny image (run `make image`)")
def test_real_vm_usage_matches_its_running_time(controller, hypervisor):
    c = controller
    opsn.add_tiny_image(c)
    a = hypervisor(env={"OPSN_TEST_METER_INTERVAL_MS": "1000"})
    t_call = time.monotonic()
    c.opsnctl("vm", "create", "--node", a.name, "--name", "mvm", "--image",
              "tiny", "--vcpus", "1", "--memory", "128M", "--disk", "256M",
              "--wait", "--timeout", f"{BOOT}s")
    t_up = time.monotonic()
    uuid = c.api("GET", "/v1/vms/mvm")[1]["id"]
    time.sleep(15)
    t_stop_call = time.monotonic()
    c.opsnctl("vm", "stop", "mvm", "--wait", "--timeout", "60s")
    t_stopped = time.monotonic()
    time.sleep(6)       # stopped: disk accrues, vCPU does not

    def usage():
        rows = db(c).execute("SELECT metric, sum(quantity) FROM usage_hourly "
                             "WHERE resource = ? GROUP BY metric",
                             (uuid,)).fetchall()
        return dict(rows)
    # Let the last samples arrive and roll up.
    time.sleep(3)
    u1 = usage()
    lo = t_stop_call - t_up - 1.0          # surely running this long
    hi = t_stopped - t_call + 1.0          # at most this long
    assert lo <= u1["vcpu_seconds"] <= hi, (u1, lo, hi)
    assert lo <= u1["memory_mib_seconds"] / 128 <= hi, (u1, lo, hi)
    # The disk is still allocated: 256 MiB for every second it stays.
    # Wait for two more seconds of it (however loaded the machine is)...
    wait_until(lambda: usage()["disk_mib_seconds"] -
               u1["disk_mib_seconds"] >= 2 * 256, 60,
               what="two more seconds of disk")
    u2 = usage()
    t2 = time.monotonic()
    # ...never more in all than the VM has existed (one sample's slack),
    existed = t2 - t_call + 1.0
    assert u2["disk_mib_seconds"] / 256 <= existed, (u2, existed)
    # and nothing more for vCPU or memory while it is stopped.
    assert u2["vcpu_seconds"] == u1["vcpu_seconds"]
    assert u2["memory_mib_seconds"] == u1["memory_mib_seconds"]
    assert u2.get("cpu_ns", 0) > 0
    # The CSV a finance officer opens in LibreOffice (fr): BOM, ';', ','.
    day = 86400
    r = c.opsnctl("usage", "--from", time.strftime(
                  "%Y-%m-%d", time.gmtime(time.time() - day)), "--to",
                  time.strftime("%Y-%m-%d", time.gmtime(time.time() + 2 * day)),
                  "--group", "resource", "--format", "csv")
    assert r.stdout.startswith("\ufefftenant_id;")
    line = next(x for x in r.stdout.splitlines()
                if uuid in x and "vcpu_seconds" in x)
    assert line.endswith(";vCPU-hour") and "," in line.split(";")[-2]


def test_usage_answers_the_same_from_monthly_totals_and_from_hours(
        workdir, procs, mcontroller):
    """A month asked whole comes from the monthly totals; a day range from
    the hours: both give what the hourly rows hold, metric by metric."""
    c = mcontroller
    a = make_synthetic_agent(workdir, procs, c, "tot", n=3)
    wait_until(lambda: c.node_state(a.name) == "ready", 20)
    wait_until(lambda: db(c).execute(
        "SELECT count(*) FROM usage_hourly").fetchone()[0] > 0, 20,
        what="usage rolled up")
    a.stop()
    wait_until(lambda: db(c).execute(
        "SELECT (SELECT max(id) FROM samples) = rolled_id FROM meter_state"
    ).fetchone()[0] == 1, 20, what="rolled up")
    cx = db(c)
    want = {(k, m): q for k, m, q in cx.execute(
        "SELECT kind, metric, sum(quantity) FROM usage_hourly "
        "GROUP BY kind, metric")}
    assert want
    # Both totals and hours see the same rows.
    monthly = {(k, m): q for k, m, q in cx.execute(
        "SELECT kind, metric, sum(quantity) FROM usage_monthly "
        "GROUP BY kind, metric")}
    assert monthly == want
    # Dates are local midnights in the operator's zone (Paris).
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    now = datetime.datetime.now(paris)
    first = now.strftime("%Y-%m-01")
    nxt = (now.year + (now.month == 12), now.month % 12 + 1)
    last = "%04d-%02d-01" % nxt
    day = (now - datetime.timedelta(days=1)).strftime("%Y-%m-%d")
    tomorrow = (now + datetime.timedelta(days=1)).strftime("%Y-%m-%d")
    prev = (now - datetime.timedelta(days=40)).strftime("%Y-%m-%d")
    for frm, to in ((first, last), (day, tomorrow), (prev, tomorrow)):
        st, doc, _ = c.api("GET", f"/v1/usage?from={frm}&to={to}"
                           "&tenant=platform")
        assert st == 200, doc
        got = {(i["kind"], i["metric"]): i["quantity"] for i in doc["items"]}
        assert got == want, (frm, to)
