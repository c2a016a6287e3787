"""Scheduling on three real hypervisor agents (libvirt, qemu:///system):
spread and pack, the filters and their refusals, anti-affinity, tags,
concurrent creates; then drains that move real guests, and a fenced
evacuation after an agent dies, and the disk server refusing strangers."""
import concurrent.futures
import json
import os
import re
import socket
import ssl
import struct
import subprocess
import time

import pytest

import opsn
from opsn import wait_until

pytestmark = pytest.mark.skipif(
    not os.path.exists(os.path.join(opsn.IMAGE_DIR, ".stamp")),
    reason="no tiny image (run `make image`)")

BOOT = 90


@pytest.fixture
def tiny(controller):
    opsn.add_tiny_image(controller)
    return "tiny"


@pytest.fixture
def three(controller, hypervisor, tiny):
    """Three hypervisors on the shared libvirt daemon."""
    return [hypervisor(n).name for n in ("sa", "sb", "sc")]


def vm(controller, ref):
    st, doc, _ = controller.api("GET", f"/v1/vms/{ref}")
    return doc if st == 200 else None


def create(controller, name, *extra, check=True):
    return controller.opsnctl("vm", "create", "--name", name, "--image",
                              "tiny", "--vcpus", "1", "--memory", "64M",
                              "--disk", "256M", "--stopped", *extra,
                              check=check)


def node_of(controller, name):
    return vm(controller, name)["node"]


def placement(controller, node):
    st, doc, _ = controller.api("GET", f"/v1/nodes/{node}/placement")
    assert st == 200, doc
    return doc


def test_spread_puts_vms_apart_and_pack_fills_one_node(controller, three):
    for i in range(3):
        create(controller, f"s{i}")
    assert sorted(node_of(controller, f"s{i}") for i in range(3)) == \
        sorted(three)
    for i in range(3):
        create(controller, f"p{i}", "--policy", "pack")
    packed = {node_of(controller, f"p{i}") for i in range(3)}
    assert len(packed) == 1, packed
    (full,) = packed
    assert placement(controller, full)["allocated"]["vms"] == 4
    # The operator sees it per node, and the agents hold the domains.
    out = controller.opsnctl("node", "show", full).stdout
    assert "4 VMs" in out and "ratios:" in out and "cpu 4.0" in out
    wait_until(lambda: all(vm(controller, f"p{i}")["observed"]["state"] ==
                           "shutoff" for i in range(3)), 60,
               what="stopped VMs defined")
    for i in range(3):
        dom = "opsn-" + vm(controller, f"p{i}")["id"]
        assert opsn.domain_node(dom) == full
    # pack as the cluster's policy: a create without --policy fills the
    # fullest node; --policy spread still overrides it.
    controller.stop()
    with open(controller.conf, "a") as f:
        f.write("[scheduler]\npolicy = pack\n")
    controller.start()
    wait_until(lambda: all(controller.nodes()[n]["connected"]
                           for n in three), 20, what="agents back")
    create(controller, "q0")
    assert node_of(controller, "q0") == full
    create(controller, "q1", "--policy", "spread")
    assert node_of(controller, "q1") != full


def test_refusals_name_each_filter(controller, three):
    a, b, c = three
    controller.opsnctl("node", "cordon", b)
    assert controller.node_state(b) == "cordoned"
    r = controller.opsnctl("vm", "create", "--name", "huge", "--image",
                           "tiny", "--vcpus", "1", "--memory", "4096G",
                           "--disk", "1G", check=False)
    assert r.returncode != 0
    assert "2 nodes lacked memory, 1 was cordoned" in r.stderr, r.stderr
    assert vm(controller, "huge") is None  # nothing stored
    # Tags: only c has zone=x.
    controller.opsnctl("node", "set", c, "--tags", "zone=x,ssd")
    create(controller, "tagged", "--require", "zone=x")
    assert node_of(controller, "tagged") == c
    r = create(controller, "nowhere", "--require", "zone=y", check=False)
    assert "2 nodes lacked tag zone=y, 1 was cordoned" in r.stderr, r.stderr
    # Hard anti-affinity: never two on one node.
    controller.opsnctl("group", "add", "web", "--policy", "anti-affinity")
    create(controller, "web1", "--group", "web")
    create(controller, "web2", "--group", "web")
    assert {node_of(controller, "web1"), node_of(controller, "web2")} == \
        {a, c}
    r = create(controller, "web3", "--group", "web", check=False)
    assert ("2 nodes already held a VM of group web, 1 was cordoned"
            in r.stderr), r.stderr
    controller.opsnctl("node", "uncordon", b)
    create(controller, "web3", "--group", "web")
    assert node_of(controller, "web3") == b
    # Soft anti-affinity gives way once every node has a member.
    controller.opsnctl("group", "add", "db", "--policy",
                       "soft-anti-affinity")
    for i in range(4):
        create(controller, f"db{i}", "--group", "db")
    nodes = [node_of(controller, f"db{i}") for i in range(4)]
    assert len(set(nodes[:3])) == 3 and nodes[3] in three
    # Host reserve: a keeps (nearly) all its memory for itself.
    mem = placement(controller, a)["capacity"]["memory_mib"]
    controller.opsnctl("node", "set", a, "--reserve-memory",
                       f"{mem - 32}M", "--cpu-ratio", "8")
    p = placement(controller, a)
    assert p["capacity"]["memory_mib"] == 32 and p["cpu_ratio"] == "8.0"
    r = create(controller, "reserved", "--node", a, check=False)
    assert r.returncode != 0 and "1 node lacked memory" in r.stderr
    r = controller.opsnctl("group", "delete", "web", check=False)
    assert r.returncode != 0 and "still has 3 VMs" in r.stderr


def test_concurrent_creates_never_overcommit(controller, three):
    # 2 CPUs per node here; ratio 2.0: 4 vCPUs per node, 12 in all.
    cpus = controller.nodes()[three[0]]["cpus"]
    for n in three:
        controller.opsnctl("node", "set", n, "--cpu-ratio", "2.0")
    per_node = 2 * cpus

    def one(i):
        return controller.api("POST", "/v1/vms", body={
            "name": f"c{i}", "image": "tiny", "vcpus": 1,
            "memory_mib": 16, "disk_bytes": 1 << 20, "power": "stopped"})

    with concurrent.futures.ThreadPoolExecutor(32) as ex:
        res = list(ex.map(one, range(32)))
    made = [d for st, d, _ in res if st == 201]
    refused = [d for st, d, _ in res if st == 409]
    assert len(made) == 3 * per_node, [r[:2] for r in res]
    assert len(refused) == 32 - len(made)
    assert all("lacked vCPUs" in d["error"]["message"] for d in refused)
    for n in three:
        p = placement(controller, n)
        assert p["allocated"]["vcpus"] == per_node == \
            p["capacity"]["vcpus"], p
    st, doc, _ = controller.api("GET", "/v1/cluster/capacity")
    assert doc["empty_nodes"] == []
    # A restarted controller rebuilds the same claims from its store.
    before = {n: placement(controller, n)["allocated"] for n in three}
    controller.stop()
    controller.start()
    assert {n: placement(controller, n)["allocated"] for n in three} == \
        before
    wait_until(lambda: all(controller.nodes()[n]["connected"]
                           for n in three), 20, what="agents back")
    r = create(controller, "one-more", check=False)
    assert r.returncode != 0 and "3 nodes lacked vCPUs" in r.stderr


def test_capacity_and_rebalance_move_stopped_vms_one_at_a_time(controller,
                                                              three):
    controller.opsnctl("plan", "add", "small", "--vcpus", "1", "--memory",
                       "64M", "--disk", "256M")
    for i in range(6):
        create(controller, f"r{i}", "--policy", "pack")
    (full,) = {node_of(controller, f"r{i}") for i in range(6)}
    wait_until(lambda: all(vm(controller, f"r{i}")["observed"]["state"] ==
                           "shutoff" for i in range(6)), 60,
               what="six stopped VMs defined")
    out = controller.opsnctl("cluster", "capacity", "--plan", "small").stdout
    assert "plan small:" in out and "more fit" in out
    assert "N+1: losing" in out and "would all fit elsewhere" in out
    empty = sorted(n for n in three if n != full)
    assert f"empty nodes (could be powered down): {' '.join(empty)}" in out
    dry = controller.opsnctl("cluster", "rebalance", "--dry-run").stdout
    moves = [ln for ln in dry.splitlines() if ln.startswith("move ")]
    assert len(moves) == 4 and all(f" from {full} to " in m for m in moves)
    before, after = [float(x) for x in dry.split("score ")[1].split(
        " with")[0].split(" -> ")]
    assert after < before and "dry run: nothing moved" in dry
    assert {node_of(controller, f"r{i}") for i in range(6)} == {full}
    controller.opsnctl("cluster", "rebalance")
    wait_until(lambda: sorted(placement(controller, n)["allocated"]["vms"]
                              for n in three) == [2, 2, 2], 180,
               interval=0.5, what="two VMs per node")
    wait_until(lambda: all(not vm(controller, f"r{i}")["migration"] and
                           vm(controller, f"r{i}")["observed"]["state"] ==
                           "shutoff" for i in range(6)), 60,
               what="migrations done")
    for i in range(6):
        v = vm(controller, f"r{i}")
        assert opsn.domain_node("opsn-" + v["id"]) == v["node"]
    st, doc, _ = controller.api("POST", "/v1/cluster/rebalance",
                                body={"dry_run": True})
    assert doc["moves"] == [] and doc["score_after"]["total"] <= before


def refused_reports(controller, node):
    """How many of node's reports the controller refused, of any kind
    (VM states, console bytes, samples: /metrics)."""
    st, text, _ = controller.api("GET", "/metrics")
    assert st == 200
    line = f'opsn_agent_reports_rejected_total{{node="{node}",'
    return sum(int(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
               if ln.startswith(line))


def console(controller, ref):
    return controller.opsnctl("vm", "console-log", ref).stdout


def boot(controller, name, node):
    controller.opsnctl("vm", "create", "--name", name, "--image", "tiny",
                       "--vcpus", "1", "--memory", "128M", "--disk", "256M",
                       "--node", node, "--wait", "--timeout", f"{BOOT}s")
    wait_until(lambda: "OPSN-BOOT-COUNT 1" in console(controller, name),
               BOOT, interval=0.5, what=f"{name} booted")


def pool_disk(workdir, node, vm_id):
    return os.path.join(workdir, "pool-" + node, vm_id + ".qcow2")


def test_drain_moves_a_real_guest_with_its_disk(controller, hypervisor,
                                                tiny, workdir):
    # The source's disk server corrupts one byte and drops the connection
    # once, mid-copy: the target resumes where it stopped, finds that the
    # checksum does not match, and starts over.
    a = hypervisor("da", env={"OPSN_TEST_DISK_CUT": "300000",
                              "OPSN_TEST_DISK_FLIP": "100000"}).name
    b = hypervisor("db").name
    c = hypervisor("dc").name
    boot(controller, "mover", a)
    vid = vm(controller, "mover")["id"]
    old_disk = pool_disk(workdir, a, vid)
    assert os.path.exists(old_disk)
    # Drain in the background; watch the VM while it moves.
    drain = subprocess.Popen(
        [os.path.join(opsn.BIN, "opsnctl"), "node", "drain", a, "--wait",
         "--timeout", "60s"], env={**os.environ, **controller.ctl_env()},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = set()
    shown = ""
    while drain.poll() is None:
        m = vm(controller, "mover")["migration"]
        if m:
            seen.add(m["state"])
            if not shown:
                shown = controller.opsnctl("vm", "show", "mover").stdout
        time.sleep(0.2)
    out, err = drain.communicate()
    assert drain.returncode == 0, err
    assert f"node {a}: drained" in out
    assert "stopping" in seen or "copying" in seen, seen
    assert "migrating" in shown and "% to" in shown, shown
    v = vm(controller, "mover")
    assert v["node"] in (b, c) and v["migration"] is None
    assert v["observed"]["state"] == "running"
    # The same disk boots on the new node: the guest counts a second boot.
    wait_until(lambda: "OPSN-BOOT-COUNT 2" in console(controller, "mover"),
               BOOT, interval=0.5, what="second boot on the new node")
    dom = "opsn-" + vid
    assert opsn.domain_node(dom) == v["node"]
    assert opsn.domain_state(dom) == "running"
    wait_until(lambda: not os.path.exists(old_disk), 30,
               what="the source's copy deleted")
    assert os.path.exists(pool_disk(workdir, v["node"], vid))
    # The source reports its copy deleted: taken as the migration's end,
    # never refused as a report about another node's VM.
    wait_until(lambda: f"{vid}: the copy its migration left on {a} is gone"
               in controller.output(), 30, what="the source's report")
    assert [refused_reports(controller, n) for n in (a, b, c)] == [0] * 3
    assert controller.node_state(a) == "cordoned"
    assert placement(controller, a)["allocated"]["vms"] == 0
    agent_log = open(os.path.join(workdir, "agent-" + v["node"],
                                  "agent.log")).read()
    assert "disk from" in agent_log and "complete and checked" in agent_log
    # The resumed copy: the first connection was cut.
    assert "connection to" in agent_log, agent_log[-2000:]
    # The corrupted byte was caught and the copy made again.
    assert "SHA-256 does not match the source's (try 1 of 3)" in agent_log
    assert agent_log.count("complete and checked") == 1


def test_a_drain_that_cannot_fit_is_refused_whole(controller, three):
    a, b, c = three
    create(controller, "big", "--node", a, "--memory", "512M")
    for n in (b, c):
        mem = placement(controller, n)["capacity"]["memory_mib"]
        controller.opsnctl("node", "set", n, "--reserve-memory",
                           f"{mem - 256}M")
    r = controller.opsnctl("node", "drain", a, check=False)
    assert r.returncode != 0
    assert f"cannot drain {a}: VM big" in r.stderr, r.stderr
    assert "fits on no other node: 2 nodes lacked memory" in r.stderr
    assert node_of(controller, "big") == a
    assert controller.node_state(a) == "ready"


def test_evacuate_rebuilds_elsewhere_and_the_old_node_never_starts_it(
        controller, hypervisor, tiny, workdir):
    a = hypervisor("ea").name
    bh = hypervisor("eb")
    b = bh.name
    c = hypervisor("ec").name
    boot(controller, "victim", b)
    vid = vm(controller, "victim")["id"]
    dom = "opsn-" + vid
    old_disk = pool_disk(workdir, b, vid)
    # The node dies: its agent first, then its guests (power lost). The
    # test agents share one libvirt daemon, so the dead host's domain
    # definition goes too (another host would keep its own); its disk
    # stays in its pool.
    bh.kill9()
    opsn.virsh("destroy", dom, check=False)
    opsn.virsh("undefine", dom, check=False)
    wait_until(lambda: controller.node_state(b) == "unreachable", 20,
               what="node unreachable")
    assert vm(controller, "victim")["observed"]["state"] == "unknown"
    r = controller.opsnctl("node", "evacuate", b, check=False)
    assert r.returncode != 0 and "--fenced is required" in r.stderr
    r = controller.opsnctl("node", "evacuate", b, "--fenced")
    assert "vm victim: rebuilt on" in r.stdout
    assert f"the local disks of {b} are lost" in r.stderr
    v = vm(controller, "victim")
    assert v["node"] in (a, c)
    wait_until(lambda: vm(controller, "victim")["observed"]["state"] ==
               "running", BOOT, what="rebuilt guest running")
    # Rebuilt from its image: a first boot again.
    wait_until(lambda: "OPSN-GUEST-READY victim" in
               console(controller, "victim"), BOOT, interval=0.5,
               what="marker on the new node")
    assert opsn.domain_node(dom) == v["node"]
    pid = opsn.domain_pid(dom)
    assert controller.node_state(b) == "fenced"
    # The old node comes back: told that its VM moved, it removes its
    # copy and starts nothing.
    i = bh.argv.index("--join-token")
    del bh.argv[i:i + 2]
    before = len(bh.output())
    bh.start()
    wait_until(lambda: controller.nodes()[b]["connected"], 20,
               what="old node connected")
    wait_until(lambda: not os.path.exists(old_disk), 30,
               what="the old copy removed")
    # Its report of the copy deleted ends the controller's record of it,
    # and nothing it said about its old VM was refused.
    wait_until(lambda: f"{vid}: the copy left on {b} is gone" in
               controller.output(), 30, what="the old node's report")
    assert [refused_reports(controller, n) for n in (a, b, c)] == [0] * 3
    log = bh.output()[before:]
    assert "removing its copy here, never starting it" in log
    assert f"hv: VM {vid}: start" not in log and \
        f"hv: VM {vid}: create_disk" not in log
    assert not [d for d in opsn.domains() if opsn.domain_node(d) == b]
    assert opsn.domain_pid(dom) == pid
    assert controller.node_state(b) == "fenced"  # out until uncordoned
    controller.opsnctl("node", "uncordon", b)
    assert controller.node_state(b) == "ready"


def disk_get(port, vm_id, token, cert=None):
    """Ask an agent's disk server for a VM's disk (MSG_DISK_GET), as the
    target of a migration does; returns the first frame's (type, status,
    payload), or None when the server closes without one. The server's
    certificate is not checked here (a node certificate is for clients
    too, which Python's client refuses): this is about what the server
    accepts."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(*cert)

    def field(n, b):
        return bytes([n << 3 | 2, len(b)]) + b

    body = field(1, vm_id.encode()) + field(2, token.encode())
    hdr = struct.pack(">IHHII", len(body), 1, 192, 1, 0)
    try:
        with socket.create_connection(("127.0.0.1", port), 5) as raw, \
                ctx.wrap_socket(raw) as s:
            s.settimeout(10)
            s.sendall(hdr + body)
            got = b""
            while len(got) < 16 or len(got) < 16 + struct.unpack(
                    ">I", got[:4])[0]:
                chunk = s.recv(4096)
                if not chunk:
                    return None
                got += chunk
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return None
    n, _, typ, _, status = struct.unpack(">IHHII", got[:16])
    return typ, status, got[16:16 + n]


def test_the_disk_server_serves_no_stranger(controller, hypervisor, tiny,
                                            workdir):
    ah = hypervisor("ka")
    bh = hypervisor("kb")
    create(controller, "kept", "--node", ah.name)
    vid = vm(controller, "kept")["id"]
    wait_until(lambda: vm(controller, "kept")["observed"]["state"] ==
               "shutoff", 60, what="a stopped VM on the source")
    port = int(wait_until(lambda: re.search(
        r"migrate: disk server on \S+ \(port (\d+)\)", ah.output()), 20,
        what="the disk server's port").group(1))
    mine = (os.path.join(bh.data, "cert.pem"),
            os.path.join(bh.data, "key.pem"))
    # No client certificate: no frame, whatever is asked.
    assert disk_get(port, vid, "x") is None
    # A certificate of another CA, named as the node: refused too.
    d = os.path.join(workdir, "stranger")
    os.makedirs(d)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-subj", f"/CN={bh.name}", "-days", "1",
                    "-keyout", os.path.join(d, "key.pem"),
                    "-out", os.path.join(d, "cert.pem")],
                   check=True, capture_output=True)
    assert disk_get(port, vid, "x", cert=(
        os.path.join(d, "cert.pem"), os.path.join(d, "key.pem"))) is None
    wait_until(lambda: ah.output().count("disk server connection closed: "
                                         "TLS handshake failed") == 2, 10,
               what="both handshakes refused by the disk server")
    # A node of the cluster, with no transfer expected: denied by name.
    typ, status, body = disk_get(port, vid, "x", cert=mine)
    assert (typ, status) == (1, 4) and b"not_expected" in body, body
    wait_until(lambda: f"migrate: {bh.name} asked for {vid}: no transfer"
               in ah.output(), 10, what="the refusal logged")
    # The disk is still there and nothing was sent.
    assert os.path.exists(pool_disk(workdir, ah.name, vid))
