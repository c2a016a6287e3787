#!/usr/bin/env python3
"""make soak: 200 simulated hypervisor agents, API traffic and random
kill -9 of the controller and of agents for 10 minutes, then a checker
that reads the whole history.

  - every sample an agent committed to its spool is in the controller's
    database exactly once, none made up (tests/soak/soakagents.c keeps
    its whole spool as the ledger);
  - no VM ever runs on two nodes at once (checked every 20 s and at the
    end, from the agents' own records of what they run);
  - the controller's resident memory is flat: its last minute no more
    than 5 % over its second minute (of the incarnation that ran last,
    the controller being killed in the first minutes only). The traffic
    makes its 200 VMs and members in the first minute, then churns the
    VMs at that size (each deletion followed by a creation: before, a
    creation whenever the count dipped under 200 let it drift up, 258
    at the end of a run), as a platform in service does.

Environment: SOAK_MINUTES (10), SOAK_AGENTS (200), SOAK_PROCS (10),
OPSN_BIN (bin), SOAK_AGENTS_BIN (build/soak/soakagents). Prints figures
and ends with one line "soak: passed" or "soak: FAILED (reasons)".
"""
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
sys.path.insert(0, os.path.join(TOP, "tests", "e2e"))
import opsn  # noqa: E402
from opsn import wait_until  # noqa: E402

MINUTES = float(os.environ.get("SOAK_MINUTES", "10"))
AGENTS = int(os.environ.get("SOAK_AGENTS", "200"))
PROCS = int(os.environ.get("SOAK_PROCS", "10"))
SIM = os.environ.get("SOAK_AGENTS_BIN",
                     os.path.join(TOP, "build", "soak", "soakagents"))
VMS = 200		# VMs and members the traffic makes, then keeps
MEMBERS = 200
CTL_KILLS = int(os.environ.get("SOAK_CTL_KILLS", "3"))
CTL_KILL_WINDOW = (60, 240)	# seconds: then the last incarnation runs on


def say(*a):
    print(*a, flush=True)


def rss_kib(pid, field="VmRSS"):
    """A memory figure of /proc/PID/status, KiB (VmRSS: resident)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class Sims:
    """The soakagents processes, each with its own state folder."""

    def __init__(self, root, c):
        self.c = c
        self.procs = []
        per = AGENTS // PROCS
        tokens = [c.join_token() for _ in range(AGENTS)]
        for i in range(PROCS):
            d = os.path.join(root, f"sim{i:02d}")
            os.makedirs(d)
            tf = os.path.join(d, "tokens")
            with open(tf, "w") as f:
                f.write("\n".join(tokens[i * per:(i + 1) * per]) + "\n")
            argv = [SIM, "-d", d, "-a", c.ca, "-p", f"soak{i:02d}x", "-n",
                    str(per), "-t", tf, c.agent_addr]
            self.procs.append(opsn.Proc(argv, os.path.join(d, "log")))
        self.dirs = [os.path.join(root, f"sim{i:02d}") for i in range(PROCS)]

    def start(self):
        for p in self.procs:
            p.start()

    def stop(self):
        for p in self.procs:
            p.stop()

    def dbs(self):
        for d in self.dirs:
            yield sqlite3.connect(f"file:{d}/state.db?mode=ro", uri=True,
                                  timeout=30)


def two_copies(sims):
    """VMs that run on more than one node, from the agents' records."""
    where = {}
    for db in sims.dbs():
        for agent, uuid in db.execute("SELECT agent, uuid FROM vms WHERE "
                                      "running = 1"):
            where.setdefault(uuid, []).append(agent)
        db.close()
    return {u: a for u, a in where.items() if len(a) > 1}


class Traffic(threading.Thread):
    """What operators and finance do meanwhile, through the API."""

    def __init__(self, c, nodes):
        super().__init__(daemon=True)
        self.c = c
        self.nodes = nodes
        self.stop = False
        self.calls = 0
        self.errors = {}
        self.vms = []
        self.n = 0

    def call(self, method, path, body=None):
        try:
            st, doc, _ = self.c.api(method, path, body)
        except Exception as e:  # noqa: BLE001 - the controller may be down
            st, doc = type(e).__name__, None
        self.calls += 1
        if not isinstance(st, int) or st >= 500:
            self.errors[st] = self.errors.get(st, 0) + 1
        return st, doc

    def create(self):
        self.n += 1
        st, doc = self.call("POST", "/v1/vms", {
            "name": f"s{self.n}", "node": random.choice(self.nodes),
            "image": "tiny", "vcpus": 1, "memory_mib": 128,
            "disk_bytes": 1 << 30})
        if st == 201:
            self.vms.append(doc["id"])

    def run(self):
        members = 0
        while not self.stop:
            r = random.random()
            # Grow to a working size in the first minute, then churn at
            # that size: one VM deleted, another made.
            if len(self.vms) < VMS and r < 0.6:
                self.create()
            elif r < 0.05 and self.vms:
                v = self.vms.pop(random.randrange(len(self.vms)))
                self.call("DELETE", f"/v1/vms/{v}")
                self.create()
            elif r < 0.30 and self.vms:
                v = random.choice(self.vms)
                self.call("POST", f"/v1/vms/{v}/" +
                          random.choice(("stop", "start")))
            elif r < 0.45 and members < MEMBERS:
                st, _ = self.call("POST", "/v1/tenants", {
                    "kind": "other", "name": f"soak member {members}"})
                members += st == 201
            elif r < 0.45:
                self.call("GET", "/v1/tenants?limit=100")
            elif r < 0.60:
                self.call("GET", "/v1/vms?limit=100")
            elif r < 0.75:
                self.call("GET", "/v1/nodes?limit=100")
            elif r < 0.85:
                day = time.strftime("%Y-%m-%d", time.gmtime())
                tomorrow = time.strftime("%Y-%m-%d",
                                         time.gmtime(time.time() + 86400))
                self.call("GET", f"/v1/usage?from={day}&to={tomorrow}"
                          "&group=resource")
            else:
                self.call("GET", "/metrics")
            time.sleep(random.uniform(0.02, 0.1))


def reports_refused(c):
    """Reports the controller refused as not its senders' (by kind)."""
    st, text, _ = c.api("GET", "/metrics")
    out = {}
    for line in (text if st == 200 else "").splitlines():
        if line.startswith("opsn_agent_reports_rejected_total{"):
            kind = line.split('kind="', 1)[1].split('"', 1)[0]
            out[kind] = out.get(kind, 0) + int(float(line.rsplit(" ", 1)[1]))
    return out


def check_samples(c, sims):
    """Every spooled sample once in the controller, none made up."""
    ctl = sqlite3.connect(os.path.join(c.data, "opsn.db"), timeout=60)
    ids = dict(ctl.execute("SELECT name, id FROM nodes"))
    problems = []
    total = 0
    for db in sims.dbs():
        agents = [a for (a,) in db.execute("SELECT name FROM agents")]
        for a in agents:
            mine = set(db.execute("SELECT seq, ts_ms, resource FROM spool "
                                  "WHERE agent = ?", (a,)))
            theirs = ctl.execute("SELECT seq, ts_ms, resource FROM samples "
                                 "WHERE node_id = ?", (ids[a],)).fetchall()
            if len(theirs) != len(set(theirs)):
                problems.append(f"{a}: samples doubled")
            theirs = set(theirs)
            lost = mine - theirs
            made = theirs - mine
            acked_lost = [s for (s,) in db.execute(
                "SELECT seq FROM spool WHERE agent = ? AND acked = 1", (a,))
                if s in {x[0] for x in lost}]
            if acked_lost:
                problems.append(f"{a}: {len(acked_lost)} acknowledged "
                                f"samples lost")
            if lost:
                problems.append(f"{a}: {len(lost)} samples never arrived")
            if made:
                problems.append(f"{a}: {len(made)} samples made up")
            total += len(mine)
        db.close()
    return total, problems


def main():
    root = tempfile.mkdtemp(prefix="opsn-soak-")
    os.chmod(root, 0o755)
    say(f"soak: {AGENTS} agents in {PROCS} processes, {MINUTES:g} minutes, "
        f"in {root}")
    c = opsn.Controller(root, extra_conf=(
        "unreachable_timeout = 10s\nheartbeat_interval = 2s\n"
        "[metering]\nrollup_interval = 10s\n"
        # The traffic is one token's: not a client to throttle.
        "[api]\nrate = 0\n"))
    c.start()
    opsn.add_tiny_image(c)
    sims = Sims(root, c)
    t0 = time.monotonic()
    sims.start()
    names = [f"soak{i:02d}x{j:03d}" for i in range(PROCS)
             for j in range(AGENTS // PROCS)]
    wait_until(lambda: sum(n["state"] == "ready" for n in c.nodes().values())
               >= len(names), 300, interval=2, what="every agent ready")
    say(f"soak: {len(names)} agents enrolled and ready in "
        f"{time.monotonic() - t0:.0f} s")

    traffic = Traffic(c, names)
    traffic.start()
    start = time.monotonic()
    end = start + MINUTES * 60
    ctl_kills = sorted(random.uniform(*CTL_KILL_WINDOW)
                       for _ in range(CTL_KILLS))
    rss = []		# (seconds since start, pid, VmRSS KiB, RssAnon KiB)
    agent_kills = ctl_done = 0
    copies = {}
    next_agent_kill = start + random.uniform(10, 25)
    next_copy_check = start + 20
    next_rss = start
    while time.monotonic() < end:
        now = time.monotonic()
        if ctl_kills and now - start >= ctl_kills[0]:
            ctl_kills.pop(0)
            c.kill9()
            time.sleep(random.uniform(0.5, 2))
            c.start()
            ctl_done += 1
            say(f"soak: {now - start:5.0f} s: controller killed and "
                f"restarted")
        if now >= next_agent_kill:
            p = random.choice(sims.procs)
            p.kill9()
            time.sleep(random.uniform(0.5, 3))
            p.start()
            agent_kills += 1
            next_agent_kill = time.monotonic() + random.uniform(10, 25)
        if now >= next_copy_check:
            copies.update(two_copies(sims))
            next_copy_check = now + 20
        if now >= next_rss and c.alive():
            k = rss_kib(c.p.pid)
            if k:
                # RssAnon: the heap, without the files mapped (SQLite's
                # WAL index, the program and its libraries).
                rss.append((now - start, c.p.pid, k,
                            rss_kib(c.p.pid, "RssAnon")))
            next_rss = now + 5
        time.sleep(0.2)
    traffic.stop = True
    traffic.join(30)
    say(f"soak: {MINUTES:g} minutes done: {ctl_done} controller kills, "
        f"{agent_kills} agent process kills, {traffic.calls} API calls "
        f"({sum(traffic.errors.values())} failed: {traffic.errors})")

    # Settle: every agent connected, every spool delivered.
    def settled():
        ctl = sqlite3.connect(os.path.join(c.data, "opsn.db"), timeout=60)
        have = ctl.execute("SELECT count(*) FROM samples").fetchone()[0]
        spooled = 0
        for db in sims.dbs():
            spooled += db.execute("SELECT count(*) FROM spool").fetchone()[0]
            db.close()
        return have >= spooled
    sims_stop_at = time.monotonic()
    wait_until(lambda: sum(n["state"] == "ready"
                           for n in c.nodes().values()) >= len(names),
               120, interval=2, what="every agent back")
    # Stop sampling, keep delivering: what is spooled must all arrive.
    sims.stop()
    for p in sims.procs:
        p.argv.insert(1, "-s")
    sims.start()
    try:
        wait_until(settled, 180, interval=2, what="spools delivered")
    except AssertionError as e:
        say(f"soak: {e}")
    sims.stop()
    say(f"soak: settled in {time.monotonic() - sims_stop_at:.0f} s")
    copies.update(two_copies(sims))
    refused = reports_refused(c)
    pid_last = c.p.pid if c.p else None
    c.stop()

    total, problems = check_samples(c, sims)
    if copies:
        problems.append(f"VMs running on two nodes: {copies}")
    last = [(t, k) for t, pid, k, _ in rss if pid == pid_last]
    if last:
        born = last[0][0]
        second = [k for t, k in last if 60 <= t - born < 120]
        final = [k for t, k in last if t >= last[-1][0] - 60]
        by_minute = {}
        for t, k in last:
            m = int((t - born) // 60) + 1
            by_minute[m] = max(by_minute.get(m, 0), k)
        say("soak: controller RSS by minute (MiB, highest): " + ", ".join(
            f"{m}: {k / 1024:.1f}" for m, k in sorted(by_minute.items())))
        if second and final:
            # The same figure of both minutes: their highest. RSS swings
            # within a minute (the heap's free pages go back to the
            # system every minute); a peak against a mean would count
            # that swing as growth.
            base = max(second)
            growth = (max(final) - base) / base * 100
            mean = (statistics.mean(final) / statistics.mean(second)
                    - 1) * 100
            say(f"soak: controller RSS at most {base / 1024:.1f} MiB in its "
                f"second minute, {max(final) / 1024:.1f} MiB in its last "
                f"({growth:+.1f} %; means {mean:+.1f} %), incarnation of "
                f"{last[-1][0] - born:.0f} s")
            if growth > 5:
                problems.append(f"controller RSS grew {growth:.1f} %")
        else:
            problems.append("the last controller ran too briefly to judge "
                            "its memory")
    say(f"soak: {total} samples checked, "
        f"{len(traffic.vms)} VMs at the end, reports refused by the "
        f"controller: {refused or 'none'}")
    with open(os.path.join(root, "soak.json"), "w") as f:
        json.dump({"rss": rss, "problems": problems}, f)
    if problems:
        for p in problems[:30]:
            say(f"soak:   {p}")
        say(f"soak: FAILED ({len(problems)} problems; logs in {root})")
        return 1
    say("soak: passed")
    opsn.rmtree(root)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    sys.exit(main())
