"""VM benchmarks for tests/bench/run.sh (issue 3).

    vms.py boot OUT    time to the guest's marker line: `opsnctl vm create
                       --wait` then `opsnctl vm console-log`, next to
                       `virsh define && virsh start` of the same domain XML
                       (real QEMU, TCG, through the libvirt daemon)
    vms.py scale OUT   the hypervisor agent's RSS and CPU with BENCH_VMS VMs
                       on libvirt's test driver, next to the same agent with
                       none, and the time of one full resync

Progress goes to stdout ("bench: ..."); the figures for the summary are
written to OUT. Exit 0 when the figures were taken, 1 when something was
broken; a slow figure never fails. Everything started or made here
(processes, domains, volumes, pools, files) is removed on the way out,
also on SIGTERM/SIGINT/SIGHUP.

Knobs: BENCH_BOOT_RUNS (3), BENCH_VMS (200), BENCH_VM_STEADY_SECONDS (30),
BENCH_RESYNC_SECONDS (10).
"""
import http.client
import json
import os
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "e2e"))
import opsn  # noqa: E402

OUTDIR = os.path.join(TOP, "build", "bench")
HZ = os.sysconf("SC_CLK_TCK")
BOOT_TIMEOUT = 90


def say(msg):
    print(f"bench: {msg}", flush=True)


def broken(msg):
    print(f"bench: BROKEN: {msg}", file=sys.stderr, flush=True)


def _stop(signum, frame):
    raise SystemExit(f"bench: interrupted (signal {signum})")


def mono():
    return time.monotonic()


def ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def measure(pid, seconds):
    """CPU % over seconds and RSS (KiB) at the end."""
    t0, c0 = mono(), ticks(pid)
    time.sleep(seconds)
    c1, t1 = ticks(pid), mono()
    return 100.0 * (c1 - c0) / HZ / (t1 - t0), rss_kib(pid)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def quiet_controller(root, name="controller"):
    """A controller as in the e2e tests, with the default heartbeat."""
    c = opsn.Controller(root, name=name)
    with open(c.conf, "w") as f:
        f.write("[controller]\nheartbeat_interval = 10s\n"
                "unreachable_timeout = 30s\n")
    return c


class Api:
    """One kept-alive HTTPS connection to the controller."""

    def __init__(self, c):
        ctx = ssl.create_default_context(cafile=c.ca)
        self.conn = http.client.HTTPSConnection("127.0.0.1", c.api_port,
                                                context=ctx, timeout=60)
        self.token = c.token()

    def call(self, method, path, body=None):
        headers = {"Authorization": "Bearer " + self.token}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=data, headers=headers)
        r = self.conn.getresponse()
        raw = r.read()
        return r.status, json.loads(raw) if raw else None

    def vms(self, node):
        out, cursor = [], None
        while True:
            q = f"/v1/vms?node={node}&limit=1000"
            if cursor:
                q += f"&cursor={cursor}"
            st, doc = self.call("GET", q)
            if st != 200:
                raise AssertionError(f"GET /v1/vms answered {st}: {doc}")
            out += doc["items"]
            cursor = doc.get("next_cursor")
            if not cursor:
                return out


# ---- boot: opsn versus virsh on the same XML -------------------------------

class Boot:
    def __init__(self, root, runs):
        self.root = root
        self.runs = runs
        self.tag = os.urandom(2).hex()
        self.node = f"bench-{self.tag}"
        self.virsh_doms = []
        self.files = os.path.join(root, "virsh")
        os.makedirs(self.files)
        os.chmod(self.files, 0o755)
        self.c = None
        self.a = None

    def console(self, vm):
        return self.c.opsnctl("vm", "console-log", vm, check=False).stdout

    def opsn_run(self, vm):
        """Seconds to --wait returning, to the marker in virtlogd's file,
        and to the marker in `opsnctl vm console-log`."""
        marker = f"OPSN-GUEST-READY {vm}"
        t0 = mono()
        self.c.opsnctl("vm", "create", "--node", self.node, "--name", vm,
                       "--image", "tiny", "--vcpus", "1", "--memory", "128M",
                       "--disk", "256M", "--wait", "--timeout",
                       f"{BOOT_TIMEOUT}s")
        t_wait = mono() - t0
        st, v, _ = self.c.api("GET", f"/v1/vms/{vm}")
        log = os.path.join(self.root, "pool", "console", v["id"] + ".log")
        t_file = t_ctl = None
        while t_ctl is None:
            if mono() - t0 > BOOT_TIMEOUT:
                raise AssertionError(f"no marker from {vm} in "
                                     f"{BOOT_TIMEOUT}s")
            if t_file is None and os.path.exists(log):
                with open(log, errors="replace") as f:
                    if marker in f.read():
                        t_file = mono() - t0
            if marker in self.console(vm):
                t_ctl = mono() - t0
            else:
                time.sleep(0.05)
        if t_file is None:
            t_file = t_ctl
        return t_wait, t_file, t_ctl, v["id"]

    def opsn_delete(self, vm):
        self.c.opsnctl("vm", "delete", vm, "--wait", "--timeout", "60s")

    def reference_xml(self, vm_id):
        """The opsn domain's XML, for virsh: metadata out; name, UUID,
        overlay, serial log and the guest's name changed."""
        xml = opsn.virsh("dumpxml", "--inactive", f"opsn-{vm_id}").stdout
        xml = re.sub(r"\s*<metadata>.*?</metadata>", "", xml, flags=re.S)
        m = re.search(r"<label>\+?(\d+):\+?(\d+)</label>", xml)
        self.owner = (int(m.group(1)), int(m.group(2))) if m else None
        m = re.search(r"<disk type='file' device='disk'>.*?<source file='"
                      r"([^']+)'", xml, flags=re.S)
        if not m:
            raise AssertionError("no disk in the opsn domain XML")
        info = json.loads(subprocess.run(
            ["qemu-img", "info", "-U", "--output=json", m.group(1)],
            check=True, capture_output=True, text=True).stdout)
        self.base = info.get("full-backing-filename") or \
            info.get("backing-filename")
        if not self.base:
            raise AssertionError(f"{m.group(1)} has no backing file")
        return xml

    def virsh_run(self, template, i):
        name = f"bench-virsh-{self.tag}-{i}"
        vm = f"vr{i}"
        marker = f"OPSN-GUEST-READY {vm}"
        ovl = os.path.join(self.files, f"{name}.qcow2")
        log = os.path.join(self.files, f"{name}.log")
        t = mono()
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F",
                        "qcow2", "-b", self.base, ovl, "256M"], check=True)
        if self.owner:
            os.chown(ovl, *self.owner)
        t_ovl = mono() - t
        xml = re.sub(r"<name>[^<]*</name>", f"<name>{name}</name>",
                     template, count=1)
        xml = re.sub(r"<uuid>[^<]*</uuid>", f"<uuid>{uuid.uuid4()}</uuid>",
                     xml, count=1)
        xml = re.sub(r"opsn\.name=\S+?(?=[\s<])", f"opsn.name={vm}", xml)
        # The disk's own source (the first <source file=> in <disk>).
        xml = re.sub(r"(<disk type='file' device='disk'>.*?<source file=')"
                     r"[^']*'", lambda m: m.group(1) + ovl + "'", xml,
                     count=1, flags=re.S)
        xml = re.sub(r"<log file='[^']*'", f"<log file='{log}'", xml)
        path = os.path.join(self.files, f"{name}.xml")
        with open(path, "w") as f:
            f.write(xml)
        t0 = mono()
        self.virsh_doms.append(name)
        opsn.virsh("define", path)
        opsn.virsh("start", name)
        t_start = mono() - t0
        while True:
            if mono() - t0 > BOOT_TIMEOUT:
                raise AssertionError(f"no marker from {name} in "
                                     f"{BOOT_TIMEOUT}s")
            if os.path.exists(log):
                with open(log, errors="replace") as f:
                    if marker in f.read():
                        return t_start, mono() - t0, t_ovl
            time.sleep(0.05)

    def virsh_delete(self, name):
        opsn.virsh("destroy", name, check=False)
        opsn.virsh("undefine", name, check=False)

    def run(self, out):
        opsn.libvirt_up()
        self.c = opsn.Controller(self.root)
        self.c.start()
        opsn.add_tiny_image(self.c)
        self.a = opsn.Agent(self.root, self.node, [self.c.agent_addr],
                            token=self.c.join_token(), role="hypervisor",
                            extra_args=["--virt-type", "qemu", "--pool-dir",
                                        os.path.join(self.root, "pool")])
        self.a.start()
        opsn.wait_until(lambda: self.c.node_state(self.node) == "ready", 20,
                        what="the agent ready")
        say("  warm-up VM (fetches the image into the agent's cache)")
        w_wait, w_file, w_ctl, w_id = self.opsn_run("warm")
        template = self.reference_xml(w_id)
        self.opsn_delete("warm")
        rows = {"opsn": [], "virsh": []}
        for i in range(1, self.runs + 1):
            # Alternate the order; one guest at a time on the machine.
            for kind in (("opsn", "virsh") if i % 2 else ("virsh", "opsn")):
                if kind == "opsn":
                    t_wait, t_file, t_ctl, _ = self.opsn_run(f"b{i}")
                    self.opsn_delete(f"b{i}")
                    rows["opsn"].append((t_wait, t_file, t_ctl))
                    say(f"  run {i} opsnctl vm create --wait: {t_wait:.2f} s, "
                        f"marker in the serial log {t_file:.2f} s, in "
                        f"console-log {t_ctl:.2f} s")
                else:
                    t_start, t_mark, t_ovl = self.virsh_run(template, i)
                    self.virsh_delete(self.virsh_doms[-1])
                    rows["virsh"].append((t_start, t_mark, t_ovl))
                    say(f"  run {i} virsh define && start: {t_start:.2f} s, "
                        f"marker in the serial log {t_mark:.2f} s "
                        f"(overlay made before: {1000 * t_ovl:.0f} ms)")
        o = rows["opsn"]
        v = rows["virsh"]
        lo = med([r[1] for r in o])
        lv = med([r[1] for r in v])
        with open(out, "w") as f:
            f.write("VM create to the guest's marker line (real QEMU, TCG, "
                    "1 vCPU, 128 MiB), one guest at a time,\n"
                    f"{self.runs} runs each, alternating; seconds from the "
                    "command's start\n")
            f.write(f"  {'':40} {'median':>7}   runs\n")
            for label, xs in (
                    ("opsnctl vm create --wait returned", [r[0] for r in o]),
                    ("  marker in the serial log", [r[1] for r in o]),
                    ("  marker in opsnctl vm console-log", [r[2] for r in o]),
                    ("virsh define && virsh start returned",
                     [r[0] for r in v]),
                    ("  marker in the serial log", [r[1] for r in v])):
                f.write(f"  {label:40} {med(xs):7.2f}   "
                        + " ".join(f"{x:.2f}" for x in xs) + "\n")
            f.write(f"  ratio opsn/virsh to the marker: "
                    f"{lo / lv:.2f} (serial log), "
                    f"{med([r[2] for r in o]) / lv:.2f} (console-log)\n")
            f.write(f"  first VM (image fetched into the agent's cache): "
                    f"returned {w_wait:.2f} s, marker {w_file:.2f} s (log), "
                    f"{w_ctl:.2f} s (console-log)\n")
            f.write("  virsh: the opsn domain's XML (dumpxml --inactive) "
                    "minus the opsn metadata, new name,\n  UUID and serial "
                    "log, a fresh overlay made before the clock starts "
                    f"({1000 * med([r[2] for r in v]):.0f} ms);\n  the agent "
                    "reads the serial log every 1 s (HV_TICK_MS) for "
                    "console-log\n")

    def cleanup(self):
        for d in self.virsh_doms:
            self.virsh_delete(d)
        for p in (self.a, self.c):
            if p is not None:
                try:
                    p.stop()
                except Exception as e:  # noqa: BLE001 - go on cleaning
                    broken(f"stopping {p.argv[0]}: {e}")
        opsn.cleanup_nodes([self.node])


# ---- scale: the agent with N VMs on the test driver ------------------------

def shim_events(path):
    ev = []
    if not os.path.exists(path):
        return ev
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) == 4:
                ev.append((p[0], int(p[1]), int(p[2]), int(p[3])))
    return ev


def resyncs(events, after_ns, before_ns):
    """Full resyncs that started in [after_ns, before_ns): (wall ms from
    virConnectListAllDomains to the full report's SSL_write, scan ms,
    process CPU ms over that span, report bytes)."""
    out = []
    i = 0
    while i < len(events):
        kind, t, cpu, _ = events[i]
        if kind != "scan_start" or not after_ns <= t < before_ns:
            i += 1
            continue
        done = rep = None
        j = i + 1
        while j < len(events) and rep is None:
            k2 = events[j][0]
            if k2 == "scan_start":
                break
            if k2 == "scan_done" and done is None:
                done = events[j]
            elif k2 == "observed" and done is not None:
                rep = events[j]
            j += 1
        if done and rep:
            out.append(((rep[1] - t) / 1e6, (done[1] - t) / 1e6,
                        (rep[2] - cpu) / 1e6, rep[3]))
        i = j if j > i + 1 else i + 1
    return out


class Scale:
    def __init__(self, root, n, steady, resync):
        self.root = root
        self.n = n
        self.steady = steady
        self.resync = resync
        self.node = f"bench-t-{os.urandom(2).hex()}"
        self.c = None
        self.a = None

    def run(self, out):
        shim = os.path.join(OUTDIR, "resyncshim.so")
        shim_log = os.path.join(self.root, "shim.log")
        self.c = quiet_controller(self.root)
        self.c.start()
        opsn.add_tiny_image(self.c)
        self.a = opsn.Agent(
            self.root, self.node, [self.c.agent_addr],
            token=self.c.join_token(), role="hypervisor",
            extra_args=["--libvirt-uri", "test:///default", "--virt-type",
                        "qemu", "--pool-dir", os.path.join(self.root, "pool"),
                        "--resync-interval", f"{self.resync}s"],
            env={"LD_PRELOAD": shim, "OPSN_BENCH_SHIM_LOG": shim_log})
        self.a.start()
        opsn.wait_until(lambda: self.c.node_state(self.node) == "ready", 20,
                        what="the agent ready")
        pid = self.a.p.pid
        api = Api(self.c)
        say(f"  reference: the agent with no VM, settle 3 s, measure "
            f"{self.steady} s")
        time.sleep(3)
        t_ref0 = time.monotonic_ns()
        idle_cpu, idle_rss = measure(pid, self.steady)
        t_ref1 = time.monotonic_ns()

        # The test driver's guests take nothing real: let the scheduler
        # overcommit this node as far as it goes.
        st, doc = api.call("PATCH", f"/v1/nodes/{self.node}/placement", {
            "cpu_ratio": "100", "memory_ratio": "100", "disk_ratio": "100"})
        if st != 200:
            raise AssertionError(f"PATCH placement answered {st}: {doc}")
        say(f"  creating {self.n} VMs on {self.node} through the API")
        t0 = mono()
        for i in range(self.n):
            st, doc = api.call("POST", "/v1/vms", {
                "name": f"t{i}", "node": self.node, "image": "tiny",
                "vcpus": 1, "memory_mib": 128, "disk_bytes": 256 << 20})
            if st != 201:
                raise AssertionError(f"POST /v1/vms answered {st}: {doc}")
        t_created = mono() - t0
        running = 0
        states = {}
        while running < self.n:
            if mono() - t0 > 300:
                raise AssertionError(f"only {running} of {self.n} VMs "
                                     f"running after 300 s: {states}")
            time.sleep(0.5)
            vms = api.vms(self.node)
            states = {}
            for v in vms:
                s = (v.get("observed") or {}).get("state") or "none"
                states[s] = states.get(s, 0) + 1
            running = states.get("running", 0)
        t_running = mono() - t0
        say(f"  {self.n} VMs created in {t_created:.1f} s, all running "
            f"after {t_running:.1f} s")
        # Let one resync and the post-creation churn pass.
        time.sleep(self.resync + 2)
        say(f"  loaded: measure {self.steady} s")
        t_load0 = time.monotonic_ns()
        load_cpu, load_rss = measure(pid, self.steady)
        t_load1 = time.monotonic_ns()
        alive = self.a.alive()
        ev = shim_events(shim_log)
        ref = resyncs(ev, t_ref0, t_ref1)
        load = resyncs(ev, t_load0, t_load1)
        if not alive:
            broken("the agent exited during the measure")
        with open(out, "w") as f:
            f.write(f"Hypervisor agent on libvirt's test driver "
                    f"(test:///default, in the agent's process), resync "
                    f"every {self.resync} s,\n{self.steady} s steady state "
                    f"each\n")
            f.write(f"  {'':22} {'VMs':>5} {'RSS MiB':>8} {'CPU %':>7} "
                    f"{'resyncs':>8} {'resync ms':>10} {'scan ms':>8} "
                    f"{'CPU ms':>7} {'report B':>9}\n")

            def row(label, n, rss, cpu, rs):
                if rs:
                    extra = (f"{len(rs):>8} {med([r[0] for r in rs]):>10.2f} "
                             f"{med([r[1] for r in rs]):>8.2f} "
                             f"{med([r[2] for r in rs]):>7.2f} "
                             f"{int(med([r[3] for r in rs])):>9}")
                else:
                    extra = f"{0:>8} {'-':>10} {'-':>8} {'-':>7} {'-':>9}"
                f.write(f"  {label:22} {n:>5} {rss / 1024:>8.1f} "
                        f"{cpu:>7.3f} {extra}\n")
            row("reference (no VM)", 0, idle_rss, idle_cpu, ref)
            row("loaded", self.n, load_rss, load_cpu, load)
            f.write(f"  per VM: {(load_rss - idle_rss) / self.n:.1f} KiB RSS "
                    f"(agent + libvirt's in-process test driver); "
                    f"{self.n} creates through the API\n  in "
                    f"{t_created:.1f} s, all observed running after "
                    f"{t_running:.1f} s\n")
            f.write("  resync: median, from virConnectListAllDomains to the "
                    "full observed-state frame handed to\n  SSL_write "
                    "(LD_PRELOAD tests/bench/resyncshim.c); scan = the "
                    "libvirt part on the thread pool;\n  CPU = the agent's "
                    "process CPU over that span\n")
        if not load:
            broken("no full resync seen while loaded")
            return 1
        return 0

    def cleanup(self):
        for p in (self.a, self.c):
            if p is not None:
                try:
                    p.stop()
                except Exception as e:  # noqa: BLE001 - go on cleaning
                    broken(f"stopping {p.argv[0]}: {e}")


def main(argv):
    if len(argv) != 3 or argv[1] not in ("boot", "scale"):
        sys.exit(__doc__)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _stop)
    root = tempfile.mkdtemp(prefix=f"opsn-bench-{argv[1]}.")
    os.chmod(root, 0o755)  # QEMU (libvirt-qemu) reads the pool below
    job = None
    rc = 1
    try:
        if argv[1] == "boot":
            job = Boot(root, int(os.environ.get("BENCH_BOOT_RUNS", "3")))
            job.run(argv[2])
            rc = 0
        else:
            job = Scale(root, int(os.environ.get("BENCH_VMS", "200")),
                        float(os.environ.get("BENCH_VM_STEADY_SECONDS",
                                             "30")),
                        int(os.environ.get("BENCH_RESYNC_SECONDS", "10")))
            rc = job.run(argv[2])
    except (Exception, SystemExit, KeyboardInterrupt) as e:  # noqa: BLE001
        broken(f"{argv[1]}: {e}")
        for log in ("controller/controller.log",):
            p = os.path.join(root, log)
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    sys.stderr.write(f"---- last lines of {log} ----\n"
                                     + "".join(f.readlines()[-15:]))
        if job is not None and job.a is not None and \
                os.path.exists(job.a.log):
            with open(job.a.log, errors="replace") as f:
                sys.stderr.write("---- last lines of agent.log ----\n"
                                 + "".join(f.readlines()[-15:]))
        rc = 1
    finally:
        # Ignore further signals while cleaning up.
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(s, signal.SIG_IGN)
        if job is not None:
            job.cleanup()
        shutil.rmtree(root, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
