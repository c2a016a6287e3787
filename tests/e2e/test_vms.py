"""Hypervisor agent: real QEMU guests (TCG) through the libvirt daemon."""
import json
import re
import os
import sqlite3
import time

import pytest

import opsn
from opsn import wait_until

pytestmark = pytest.mark.skipif(
    not os.path.exists(os.path.join(opsn.IMAGE_DIR, ".stamp")),
    reason="no tiny image (run `make image`)")

BOOT = 90  # seconds: TCG boots take ~6 s, several at once take longer


def vm(controller, ref):
    st, doc, _ = controller.api("GET", f"/v1/vms/{ref}")
    return doc if st == 200 else None


def observed(controller, ref):
    v = vm(controller, ref)
    return v["observed"]["state"] if v else None


def console(controller, ref):
    return controller.opsnctl("vm", "console-log", ref).stdout


def create(controller, node, name, *extra, wait=True):
    args = ["vm", "create", "--node", node, "--name", name, "--image",
            "tiny", "--vcpus", "1", "--memory", "128M", "--disk", "256M",
            *extra]
    if wait:
        args += ["--wait", "--timeout", f"{BOOT}s"]
    return controller.opsnctl(*args)


def domain_of(controller, ref):
    return "opsn-" + vm(controller, ref)["id"]


@pytest.fixture
def tiny(controller):
    opsn.add_tiny_image(controller)
    return "tiny"


def test_vm_boots_and_its_console_shows_the_marker(controller, hypervisor,
                                                   tiny, bridge):
    a = hypervisor()
    wait_until(lambda: controller.node_state(a.name) == "ready", 20)
    t0 = time.monotonic()
    create(controller, a.name, "vm1", "--nic", bridge.name)
    assert observed(controller, "vm1") == "running"
    wait_until(lambda: "OPSN-GUEST-READY vm1" in console(controller, "vm1"),
               BOOT, interval=0.5, what="marker on the console")
    print(f"create to marker: {time.monotonic() - t0:.1f}s")
    dom = domain_of(controller, "vm1")
    assert opsn.domain_state(dom) == "running"
    assert opsn.domain_node(dom) == a.name
    # The NIC is on the bridge with an explicit tap name.
    xml = opsn.virsh("dumpxml", dom).stdout
    assert f"<source bridge='{bridge.name}'/>" in xml
    v = vm(controller, "vm1")
    assert v["observed"]["pid"] == opsn.domain_pid(dom)
    assert v["observed"]["generation"] == v["generation"]


def test_stop_start_and_delete(controller, hypervisor, tiny):
    a = hypervisor()
    create(controller, a.name, "vm2")
    dom = domain_of(controller, "vm2")
    pool_dir = os.path.join(os.path.dirname(a.dir), "pool-" + a.name)
    disk = os.path.join(pool_dir, vm(controller, "vm2")["id"] + ".qcow2")
    assert os.path.exists(disk)
    controller.opsnctl("vm", "stop", "vm2", "--wait", "--timeout", "60s")
    assert observed(controller, "vm2") == "shutoff"
    assert opsn.domain_state(dom) == "shut off"
    controller.opsnctl("vm", "start", "vm2", "--wait", "--timeout", "60s")
    assert opsn.domain_state(dom) == "running"
    wait_until(lambda: console(controller, "vm2").count(
        "OPSN-GUEST-READY vm2") >= 1, BOOT, interval=0.5, what="marker")
    controller.opsnctl("vm", "delete", "vm2", "--wait", "--timeout", "60s")
    assert dom not in opsn.domains()
    assert not os.path.exists(disk)
    assert vm(controller, "vm2") is None


def test_agent_restart_keeps_the_running_guest(controller, hypervisor,
                                               tiny):
    a = hypervisor()
    create(controller, a.name, "vm3")
    dom = domain_of(controller, "vm3")
    pid = opsn.domain_pid(dom)
    assert pid
    a.kill9()
    time.sleep(1)
    assert opsn.domain_pid(dom) == pid and os.path.exists(f"/proc/{pid}")
    i = a.argv.index("--join-token")
    del a.argv[i:i + 2]
    a.start()
    wait_until(lambda: controller.node_state(a.name) == "ready", 20)
    # Re-adopted, reported running, same QEMU process.
    wait_until(lambda: vm(controller, "vm3")["observed"]["pid"] == pid and
               observed(controller, "vm3") == "running", 20,
               what="re-adopted")
    assert opsn.domain_pid(dom) == pid
    assert opsn.domain_state(dom) == "running"


def test_domain_without_metadata_is_left_alone(controller, hypervisor, tiny,
                                              workdir):
    name = "opsn-handmade-" + os.urandom(3).hex()
    xml = os.path.join(workdir, "hand.xml")
    with open(xml, "w") as f:
        f.write(f"""<domain type='qemu'><name>{name}</name>
<memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64'>hvm</type></os></domain>""")
    opsn.virsh("define", xml)
    try:
        a = hypervisor(extra_args=["--resync-interval", "1s"])
        create(controller, a.name, "vm4")
        time.sleep(3)  # a few full resyncs
        assert name in opsn.domains()
        assert opsn.domain_state(name) == "shut off"
        controller.opsnctl("vm", "delete", "vm4", "--wait")
        assert name in opsn.domains()
    finally:
        opsn.virsh("undefine", name, check=False)


def test_bad_image_checksum_is_reported_and_nothing_starts(controller,
                                                           hypervisor, tiny):
    # Corrupt the stored disk behind the controller's back: the agent must
    # notice when it checks what it downloaded.
    db = sqlite3.connect(os.path.join(controller.data, "opsn.db"))
    sha = db.execute("SELECT sha256 FROM image_parts WHERE part = 'disk'"
                     ).fetchone()[0]
    path = os.path.join(controller.data, "images", sha)
    with open(path, "r+b") as f:
        f.seek(1000)
        f.write(b"corrupted!")
    a = hypervisor()
    r = create(controller, a.name, "vm5", wait=False)
    assert r.returncode == 0
    wait_until(lambda: observed(controller, "vm5") == "error", 60,
               what="error reported")
    err = vm(controller, "vm5")["observed"]["error"]
    assert "SHA-256" in err or "mismatch" in err, err
    r = controller.opsnctl("vm", "start", "vm5", "--wait", "--timeout", "10s",
                           check=False)
    assert r.returncode != 0
    assert not [d for d in opsn.domains() if opsn.domain_node(d) == a.name]


def test_two_agents_sharing_one_daemon_keep_to_their_own(controller,
                                                         hypervisor, tiny):
    a = hypervisor("hva", extra_args=["--resync-interval", "1s"])
    b = hypervisor("hvb", extra_args=["--resync-interval", "1s"])
    create(controller, a.name, "vma")
    create(controller, b.name, "vmb")
    da, db_ = domain_of(controller, "vma"), domain_of(controller, "vmb")
    pid_b = opsn.domain_pid(db_)
    controller.opsnctl("vm", "delete", "vma", "--wait")
    time.sleep(3)  # several resyncs of both agents
    assert da not in opsn.domains()
    assert opsn.domain_state(db_) == "running"
    assert opsn.domain_pid(db_) == pid_b
    assert opsn.domain_node(db_) == b.name
    assert observed(controller, "vmb") == "running"


def test_vm_api_refuses_bad_input(controller, tiny, hypervisor):
    a = hypervisor(start=False)
    st, doc, _ = controller.api("POST", "/v1/vms", body={
        "name": "Bad Name", "node": "x", "vcpus": 1, "memory_mib": 64,
        "disk_bytes": 1 << 30, "image": "tiny"})
    assert st == 400 and "name" in doc["error"]["message"]
    st, doc, _ = controller.api("POST", "/v1/vms", body={
        "name": "ok", "node": "nosuch", "vcpus": 1, "memory_mib": 64,
        "disk_bytes": 1 << 30, "image": "tiny"})
    assert st == 404 and "nosuch" in doc["error"]["message"]
    st, doc, _ = controller.api("POST", "/v1/vms", body={
        "name": "ok", "node": a.name, "vcpus": 0, "memory_mib": 64,
        "disk_bytes": 1 << 30, "image": "tiny"})
    assert st == 400 and "vcpus" in doc["error"]["message"]
    st, doc, _ = controller.api("POST", "/v1/vms", body={
        "name": "ok", "node": a.name, "vcpus": 1, "memory_mib": 64,
        "disk_bytes": 1 << 30, "image": "nosuch"})
    assert st == 400 and "nosuch" in doc["error"]["message"]
    st, doc, _ = controller.api("GET", "/v1/vms/nosuch")
    assert st == 404


def test_image_upload_is_checked(controller, workdir):
    p = os.path.join(workdir, "disk.raw")
    with open(p, "wb") as f:
        f.write(os.urandom(4096))
    r = controller.opsnctl("image", "add", "blob", "--file", p,
                           "--format", "raw")
    img = json.loads(controller.opsnctl("-o", "json", "image", "show",
                                        "blob").stdout)
    assert img["state"] == "ready" and img["disk"]["size"] == 4096
    # A declared checksum the bytes do not match is refused.
    st, doc, _ = controller.api("POST", "/v1/images", body={
        "name": "liar", "format": "raw",
        "disk": {"sha256": "0" * 64, "size": 4096}})
    assert st == 201
    with open(p, "rb") as f:
        data = f.read()
    st, doc, _ = controller.api("PUT", "/v1/images/liar/disk", body=data,
                                headers={"Content-Type":
                                         "application/octet-stream"})
    assert st == 400 and doc["error"]["code"] == "checksum_mismatch"
    st, doc, _ = controller.api("GET", "/v1/images/liar")
    assert doc["state"] == "uploading"
    # Agents only: a token without the permission cannot download.
    st, doc, _ = controller.api("GET", "/v1/images/blob/disk", token=None)
    assert st == 401
    assert r.returncode == 0


def test_resize_applies_while_stopped(controller, hypervisor, tiny):
    a = hypervisor()
    create(controller, a.name, "vm6")
    dom = domain_of(controller, "vm6")
    st, doc, _ = controller.api("PATCH", "/v1/vms/vm6",
                                body={"vcpus": 2, "memory_mib": 192})
    assert st == 200 and doc["vcpus"] == 2
    # Running: the guest keeps its size until it stops.
    info = opsn.virsh("dominfo", dom).stdout
    assert re.search(r"CPU\(s\):\s+1\b", info), info
    controller.opsnctl("vm", "stop", "vm6", "--wait", "--timeout", "60s")
    controller.opsnctl("vm", "start", "vm6", "--wait", "--timeout", "60s")
    info = opsn.virsh("dominfo", dom).stdout
    assert re.search(r"CPU\(s\):\s+2\b", info), info
    assert re.search(r"Max memory:\s+196608 KiB", info), info
