"""Scheduling on three real hypervisor agents (libvirt, qemu:///system):
spread and pack, the filters and their refusals, anti-affinity, tags,
concurrent creates; then drains that move real guests, and a fenced
evacuation after an agent dies."""
import concurrent.futures
import json
import os
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
