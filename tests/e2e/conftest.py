"""pytest fixtures: programs run in a temporary folder and always stop."""
import os
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import opsn  # noqa: E402


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:")


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="opsn-e2e-")
    os.chmod(d, 0o755)
    yield d
    opsn.rmtree(d)


@pytest.fixture
def procs():
    """Every process registered here is stopped after the test."""
    started = []
    yield started
    for p in reversed(started):
        try:
            p.stop()
        except Exception:  # noqa: BLE001 - stop the others anyway
            pass
    # Under `make check` the programs carry ASan and UBSan: any report in
    # a log is a failure, even if the test itself passed.
    for p in started:
        out = p.output() if os.path.exists(p.log) else ""
        for marker in SANITIZER_MARKERS:
            if marker in out:
                i = out.index(marker)
                pytest.fail(f"{p.log}: sanitizer report:\n"
                            f"{out[max(0, i - 200):i + 3000]}")


@pytest.fixture
def controller(workdir, procs):
    c = opsn.Controller(workdir)
    procs.append(c)
    c.start()
    return c


@pytest.fixture
def make_agent(workdir, procs, controller):
    """Enrol and start an agent against the controller fixture."""
    def make(name, role="web", start=True, **kw):
        kw.setdefault("token", controller.join_token())
        a = opsn.Agent(workdir, name, [controller.agent_addr], role=role,
                       **kw)
        procs.append(a)
        if start:
            a.start()
        return a
    return make


def pytest_runtest_makereport(item, call):
    """On failure, show the tail of every log in the test's folder."""
    if call.when != "call" or call.excinfo is None:
        return
    d = item.funcargs.get("workdir") if hasattr(item, "funcargs") else None
    if not d or not os.path.isdir(d):
        return
    for root, _, files in os.walk(d):
        for f in files:
            if f.endswith(".log"):
                p = os.path.join(root, f)
                with open(p, errors="replace") as fh:
                    tail = fh.read()[-3000:]
                sys.stderr.write(f"\n----- {p} -----\n{tail}\n")


@pytest.fixture(scope="module")
def stack(request):
    """A private Postfix + Dovecot (+ OpenDKIM) pair for a module's tests
    (mailstack.MailStack); its logs are shown when one of them failed."""
    import mailstack
    s = mailstack.MailStack()
    failed = request.session.testsfailed
    try:
        s.start()
        yield s
    finally:
        if request.session.testsfailed != failed:
            s.dump_logs()
        s.cleanup()


@pytest.fixture(scope="module")
def web():
    """A private nginx for a module's tests (mailstack.WebStack)."""
    import mailstack
    w = mailstack.WebStack()
    try:
        w.start()
        yield w
    finally:
        w.cleanup()


@pytest.fixture(scope="session")
def libvirt():
    """The libvirt daemon (and virtlogd), started when not running."""
    opsn.libvirt_up()
    return opsn.LIBVIRT_URI


@pytest.fixture
def bridge():
    b = opsn.Bridge()
    yield b
    b.remove()


@pytest.fixture
def hypervisor(workdir, procs, controller, libvirt):
    """Start hypervisor agents (unique node names) and clean up after them:
    every domain, volume and pool that names one of them is removed, even
    when the test fails."""
    made = []
    tag = os.urandom(2).hex()

    def make(base="hv", start=True, extra_args=(), **kw):
        name = f"{base}-{tag}"
        kw.setdefault("token", controller.join_token())
        a = opsn.Agent(workdir, name, [controller.agent_addr],
                       role="hypervisor",
                       extra_args=["--virt-type", "qemu",
                                   "--pool-dir",
                                   os.path.join(workdir, "pool-" + name),
                                   *extra_args], **kw)
        procs.append(a)
        made.append(name)
        if start:
            a.start()
            opsn.wait_until(lambda: controller.node_state(name) == "ready",
                            20, what=f"{name} ready")
        return a
    yield make
    for p in procs:
        p.stop()
    opsn.cleanup_nodes(made)
