"""Disks that fill up and storage that fails, injected for real.

- The controller's data folder on a small tmpfs the test fills: writes
  are refused with 507 and the reason, reads go on, metering batches stay
  unacknowledged (agents keep them); when space comes back everything
  resumes, every sample is there once, PRAGMA integrity_check says ok.
- An agent's data folder full: the samples it cannot store are counted
  and reported to the controller, the agent goes on.
- The test build's failing VFS (core/faultvfs.c) makes the controller's
  writes and fsyncs fail: nothing is acknowledged that was not committed,
  and it recovers without a restart.
"""
import os
import sqlite3
import subprocess
import time

import pytest

import opsn
from opsn import wait_until
from test_metering import check_one_for_one, drain, spool_count

INTERVAL_MS = 200

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="mounting a tmpfs needs root")


class Tmpfs:
    """A size-limited tmpfs mounted for one test."""

    def __init__(self, path, size):
        self.path = path
        os.makedirs(path, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=755",
                        "tmpfs", path], check=True)
        self.filler = None

    def avail(self):
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave=0):
        """A file that leaves about `leave` bytes free."""
        self.filler = os.path.join(self.path, "filler")
        with open(self.filler, "ab") as f:
            chunk = b"\0" * (1 << 16)
            try:
                while self.avail() > leave + len(chunk):
                    f.write(chunk)
                    f.flush()
                while self.avail() > leave:
                    f.write(b"\0" * 4096)
                    f.flush()
            except OSError:
                pass

    def free(self):
        if self.filler:
            os.unlink(self.filler)
            self.filler = None

    def remove(self):
        subprocess.run(["umount", "-l", self.path], capture_output=True)


@pytest.fixture
def tmpfs(workdir):
    made = []

    def make(name, size):
        t = Tmpfs(os.path.join(workdir, name), size)
        made.append(t)
        return t
    yield make
    for t in made:
        t.remove()


def synthetic(workdir, procs, c, name, n=5, data=None):
    d = os.path.join(workdir, "agent-" + name)
    os.makedirs(d, exist_ok=True)
    a = opsn.Agent(workdir, name, [c.agent_addr], token=c.join_token(),
                   role="web", data=data,
                   env={"OPSN_TEST_METER_INTERVAL_MS": str(INTERVAL_MS),
                        "OPSN_TEST_METER_SYNTHETIC": str(n),
                        "OPSN_TEST_METER_LEDGER": os.path.join(d, "ledger")})
    procs.append(a)
    a.start()
    return a


def start_with_meters(procs, c, prefix):
    """Start the controller and two agents of the test source."""
    procs.append(c)
    c.start()
    agents = [synthetic(os.path.dirname(c.dir), procs, c, f"{prefix}{i}")
              for i in range(2)]
    wait_until(lambda: all(c.node_state(a.name) == "ready"
                           for a in agents), 20)
    return agents


def samples(c):
    db = sqlite3.connect(os.path.join(c.data, "opsn.db"), timeout=30)
    return db.execute("SELECT count(*) FROM samples").fetchone()[0]


def integrity(c):
    db = sqlite3.connect(os.path.join(c.data, "opsn.db"), timeout=30)
    return db.execute("PRAGMA integrity_check").fetchone()[0]


def add_member(c, name):
    return c.api("POST", "/v1/tenants", {"kind": "other", "name": name})


def test_controller_disk_full_refuses_writes_and_resumes(workdir, procs,
                                                         tmpfs):
    fs = tmpfs("ctl-fs", "48m")
    c = opsn.Controller(workdir, extra_conf="min_free_mib = 8\n")
    i = c.argv.index("--data-dir")
    c.argv[i + 1] = c.data = os.path.join(fs.path, "data")
    agents = start_with_meters(procs, c, "d")
    assert add_member(c, "before")[0] == 201
    time.sleep(1)
    pid = c.p.pid

    fs.fill(leave=4 << 20)		# under the 8 MiB kept free
    st, doc, _ = add_member(c, "refused")
    assert st == 507, doc
    assert doc["error"]["code"] == "insufficient_storage"
    assert "disk is full" in doc["error"]["message"] and \
        "MiB left" in doc["error"]["message"]
    # Reads go on: the API, the node list, the metrics.
    assert c.api("GET", "/v1/tenants")[0] == 200
    assert c.node_state(agents[0].name) == "ready"
    st, text, _ = c.api("GET", "/metrics")
    assert st == 200 and "opsn_data_dir_avail_bytes" in text
    # Samples are not acknowledged: they wait in the agents' spools.
    n0 = samples(c)
    time.sleep(2.5)
    assert samples(c) == n0
    assert all(spool_count(a) >= 10 for a in agents)
    assert c.api("GET", "/v1/tenants?limit=1000")[1]["items"][-1][
        "name"] != "refused"

    fs.free()
    wait_until(lambda: add_member(c, "after")[0] == 201, 10,
               what="writes accepted again")
    wait_until(lambda: samples(c) > n0 + 20, 30, what="samples resume")
    assert c.p.pid == pid and c.alive()
    drain(agents)
    check_one_for_one(c, agents)
    assert integrity(c) == "ok"
    names = {t["name"] for t in c.api("GET", "/v1/tenants?limit=1000")[1][
        "items"]}
    assert {"before", "after"} <= names and "refused" not in names


def test_agent_disk_full_counts_what_it_loses(workdir, procs, controller,
                                              tmpfs):
    c = controller
    fs = tmpfs("agent-fs", "3m")
    a = synthetic(workdir, procs, c, "full", n=20,
                  data=os.path.join(fs.path, "data"))
    wait_until(lambda: c.node_state("full") == "ready", 20)
    time.sleep(1)
    pid = a.p.pid
    fs.fill(leave=0)
    wait_until(lambda: "samples lost" in a.output(), 20,
               what="the agent notices")
    time.sleep(1)
    fs.free()

    def dropped():
        text = c.api("GET", "/metrics")[1]
        for line in text.splitlines():
            if line.startswith('opsn_meter_spool_dropped_total{node="full"}'):
                return float(line.rsplit(" ", 1)[1])
        return 0
    # Counted, reported to the controller, and the agent goes on.
    lost = wait_until(dropped, 20, what="the loss reported")
    assert lost >= 20 and lost % 20 == 0, lost
    assert a.p.pid == pid and a.alive()
    n0 = samples(c)
    wait_until(lambda: samples(c) > n0 + 40, 20, what="samples resume")
    assert c.node_state("full") == "ready"


def test_failing_storage_acknowledges_nothing_uncommitted(workdir, procs):
    ctl = os.path.join(workdir, "faults")
    with open(ctl, "w") as f:
        f.write("")

    def fault(mode):
        with open(ctl + ".tmp", "w") as f:
            f.write(mode + "\n")
        os.rename(ctl + ".tmp", ctl)

    c = opsn.Controller(workdir, env={"OPSN_TEST_FAULT_FILE": ctl,
                                      "OPSN_TEST_METER_ROLLUP_MS": "500"})
    agents = start_with_meters(procs, c, "f")
    assert add_member(c, "m0")[0] == 201
    time.sleep(1)
    pid = c.p.pid
    for i, mode in enumerate(("fsync", "write", "full")):
        fault(mode)
        wait_until(lambda: f"storage faults: {mode}" in c.output(), 10,
                   what=mode)
        n0 = samples(c)
        time.sleep(1.5)
        # Writes fail with a reason, reads answer.
        st, doc, _ = add_member(c, f"failed-{mode}")
        assert st in (500, 507), (mode, st, doc)
        assert c.api("GET", "/v1/tenants")[0] == 200
        assert samples(c) == n0, f"{mode}: samples committed"
        fault("")
        wait_until(lambda: add_member(c, f"m{i + 1}")[0] == 201, 15,
                   what=f"writes after {mode}")
        wait_until(lambda: samples(c) > n0, 30,
                   what=f"samples after {mode}")
    assert c.p.pid == pid, "the controller restarted"
    drain(agents)
    # Acknowledged means committed: every sample is there, once.
    check_one_for_one(c, agents)
    assert integrity(c) == "ok"
    names = {t["name"] for t in c.api("GET", "/v1/tenants?limit=1000")[1][
        "items"]}
    assert {"m0", "m1", "m2", "m3"} <= names
    assert not any(n.startswith("failed-") for n in names)
    st, text, _ = c.api("GET", "/metrics")
    fails = [line for line in text.splitlines()
             if line.startswith("opsn_meter_commit_failures_total ")]
    assert fails and float(fails[0].split()[1]) > 0
