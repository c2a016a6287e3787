"""A switch cuts a rack off: network partitions, injected for real.

Each hypervisor agent runs in a network namespace of its own, joined to
the controller by a veth pair on a bridge (the controller listens on the
bridge's address). The cut is an nftables rule inside one agent's
namespace that drops everything, as a dead switch port does: no error,
only silence. During the cut the guests keep running, the controller
shows the node unreachable and its VMs unknown, and the API answers;
after it heals the node is back in step, no guest restarted, and every
metering sample is there exactly once.
"""
import os
import random
import subprocess
import time

import pytest

import opsn
from opsn import wait_until
from test_metering import drop_token, ledger, spool_count

HAVE_IMAGE = os.path.exists(os.path.join(opsn.IMAGE_DIR, ".stamp"))
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root"),
    pytest.mark.skipif(not HAVE_IMAGE, reason="no tiny image"),
]


def sh(*args, ns=None, check=True):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}: {r.stderr}")
    return r


class Rack:
    """A bridge with the controller's address, and one namespace per
    node plugged into it by a veth pair."""

    def __init__(self):
        tag = os.urandom(2).hex()
        self.net = f"10.{random.randint(200, 250)}.{random.randint(0, 250)}"
        self.addr = self.net + ".1"
        self.bridge = "opsnp" + tag
        self.tag = tag
        self.spaces = []
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", self.addr + "/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")

    def plug(self, i):
        ns = f"opsn-{self.tag}-{i}"
        host, peer = f"vh{self.tag}{i}", f"vp{self.tag}{i}"
        sh("ip", "netns", "add", ns)
        self.spaces.append((ns, host))
        sh("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
        sh("ip", "link", "set", peer, "netns", ns)
        sh("ip", "link", "set", host, "master", self.bridge)
        sh("ip", "link", "set", host, "up")
        sh("ip", "addr", "add", f"{self.net}.{10 + i}/24", "dev", peer,
           ns=ns)
        sh("ip", "link", "set", peer, "up", ns=ns)
        sh("ip", "link", "set", "lo", "up", ns=ns)
        return ns

    def cut(self, ns):
        """Drop every packet in and out of the namespace (nftables)."""
        sh("nft", "add table inet cut; add chain inet cut in { type filter "
           "hook input priority 0; policy drop; }; add chain inet cut out "
           "{ type filter hook output priority 0; policy drop; }", ns=ns)

    def heal(self, ns):
        sh("nft", "delete table inet cut", ns=ns)

    def remove(self):
        for ns, host in self.spaces:
            sh("ip", "link", "del", host, check=False)
            sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", self.bridge, check=False)


@pytest.fixture
def rack():
    r = Rack()
    yield r
    r.remove()


def vm(c, ref):
    return c.api("GET", f"/v1/vms/{ref}")[1]


def applied(c, node):
    """The node's agent applied the controller's last generation."""
    import sqlite3
    db = sqlite3.connect(os.path.join(c.data, "opsn.db"), timeout=30)
    g, a = db.execute("SELECT generation, applied_generation FROM nodes "
                      "WHERE name = ?", (node,)).fetchone()
    return g == a


def delivered(c, agents):
    import sqlite3
    db = sqlite3.connect(os.path.join(c.data, "opsn.db"), timeout=30)
    for a in agents:
        have = {r[0] for r in db.execute(
            "SELECT s.seq FROM samples s JOIN nodes n ON n.id = s.node_id "
            "WHERE n.name = ?", (a.name,))}
        if not set(ledger(os.path.join(a.dir, "ledger"))) <= have:
            return False
    return True


def every_sample_once(c, agents):
    """Each node's samples (its real guest's and its test source's) are
    numbered without a hole, once each, and the test source's are exactly
    those its ledger says it committed to its spool."""
    import sqlite3
    db = sqlite3.connect(os.path.join(c.data, "opsn.db"), timeout=30)
    for a in agents:
        rows = db.execute("SELECT s.seq, s.ts_ms, s.resource FROM samples s "
                          "JOIN nodes n ON n.id = s.node_id WHERE n.name = "
                          "?", (a.name,)).fetchall()
        seqs = [r[0] for r in rows]
        assert len(seqs) == len(set(seqs))
        assert len(seqs) == max(seqs) - min(seqs) + 1, f"{a.name}: a hole"
        got = {r[0]: r[1] for r in rows if r[2].startswith("synthetic-")}
        led = ledger(os.path.join(a.dir, "ledger"))
        missing = set(led) - set(got)
        assert not missing, f"{a.name}: {len(missing)} samples lost"
        assert all(got[s] == led[s][0] for s in led)
        extra = set(got) - set(led)
        assert not extra or min(extra) > max(led), f"{a.name}: made up"
        assert any(not r[2].startswith("synthetic-") for r in rows), \
            f"{a.name}: its guest was not metered"


def test_partition_keeps_guests_and_samples(workdir, procs, libvirt, rack):
    port = opsn.free_port()
    c = opsn.Controller(workdir, extra_conf=(
        f"server_names = {rack.addr},localhost,127.0.0.1\n"
        f"api_url = https://{rack.addr}:{port}\n"),
        env={"OPSN_TEST_METER_ROLLUP_MS": "500"})
    c.api_port = port
    i = c.argv.index("--api-listen")
    c.argv[i + 1] = f"0.0.0.0:{port}"
    i = c.argv.index("--agent-listen")
    c.argv[i + 1] = f"{rack.addr}:{c.agent_port}"
    procs.append(c)
    c.start()
    opsn.add_tiny_image(c)
    names, agents = [], []
    try:
        for i in range(2):
            ns = rack.plug(i)
            name = f"rack{i}-{rack.tag}"
            names.append(name)
            d = os.path.join(workdir, "agent-" + name)
            os.makedirs(d, exist_ok=True)
            a = opsn.Agent(
                workdir, name, [f"{rack.addr}:{c.agent_port}"],
                token=c.join_token(), role="hypervisor",
                extra_args=["--virt-type", "qemu", "--pool-dir",
                            os.path.join(workdir, "pool-" + name)],
                env={"OPSN_TEST_METER_INTERVAL_MS": "250",
                     "OPSN_TEST_METER_SYNTHETIC": "4",
                     "OPSN_TEST_METER_LEDGER": os.path.join(d, "ledger")})
            a.argv = ["ip", "netns", "exec", ns] + a.argv
            a.ns = ns
            procs.append(a)
            a.start()
            agents.append(a)
        for a in agents:
            wait_until(lambda: c.node_state(a.name) == "ready", 20,
                       what=f"{a.name} ready")
        for i, a in enumerate(agents):
            c.opsnctl("vm", "create", "--node", a.name, "--name", f"g{i}",
                      "--image", "tiny", "--vcpus", "1", "--memory", "128M",
                      "--disk", "256M", "--wait", "--timeout", "90s")
        doms = {f"g{i}": "opsn-" + vm(c, f"g{i}")["id"] for i in range(2)}
        pids = {g: opsn.domain_pid(d) for g, d in doms.items()}
        assert all(pids.values())

        # The cut: node 0 falls silent.
        cut, kept = agents[0], agents[1]
        rack.cut(cut.ns)
        t_cut = time.monotonic()
        wait_until(lambda: c.node_state(cut.name) == "unreachable", 30,
                   interval=0.1, what="unreachable")
        t_seen = time.monotonic() - t_cut
        assert vm(c, "g0")["observed"]["state"] == "unknown"
        assert vm(c, "g0")["observed"]["last_state"] == "running"
        # The API and the other node carry on; the guests run.
        assert c.node_state(kept.name) == "ready"
        assert vm(c, "g1")["observed"]["state"] == "running"
        assert c.opsnctl("tenant", "add", "--kind", "other", "--name",
                         "during the cut").returncode == 0
        time.sleep(2)
        for g, d in doms.items():
            assert opsn.domain_pid(d) == pids[g]
            assert opsn.domain_state(d) == "running"
        assert spool_count(cut) > 8, "the cut node keeps its samples"

        rack.heal(cut.ns)
        t_heal = time.monotonic()
        wait_until(lambda: c.node_state(cut.name) == "ready" and
                   applied(c, cut.name) and
                   vm(c, "g0")["observed"]["state"] == "running", 30,
                   interval=0.1, what="back in step")
        t_back = time.monotonic() - t_heal
        restarted = sum(opsn.domain_pid(d) != pids[g]
                        for g, d in doms.items())
        print(f"\npartition: seen after {t_seen:.1f} s (unreachable_timeout "
              f"3 s), back in step {t_back:.1f} s after it healed, guests "
              f"restarted: {restarted}")
        assert restarted == 0
        assert vm(c, "g0")["observed"]["pid"] == pids["g0"]

        # Every sample once: stop producing, let the spools drain.
        for a in agents:
            a.stop()
            drop_token(a)
            a.env["OPSN_TEST_METER_SYNTHETIC"] = "0"
            a.start()
        # Their guests keep sampling: wait for what the ledgers committed.
        wait_until(lambda: delivered(c, agents), 60, interval=0.5,
                   what="spools delivered")
        every_sample_once(c, agents)
        for g, d in doms.items():
            assert opsn.domain_pid(d) == pids[g], f"{g} restarted"
    finally:
        for p in procs:
            p.stop()
        opsn.cleanup_nodes(names)
