"""Sites over HTTPS: certificates by ACME from a real CA (Pebble), checked
by a real nginx, host names resolved by a real DNS server (Knot).

Pebble validates each HTTP-01 challenge by fetching
http://HOST/.well-known/acme-challenge/TOKEN from the private nginx (its
httpPort is nginx's port), HOST being resolved through Knot; the agent
drives Debian's uacme; curl checks what a browser trusting Pebble's root
would see.
"""
import os
import subprocess

import pytest

import tlsstack
from opsn import wait_until

pytestmark = pytest.mark.skipif(
    not tlsstack.have("nginx", "pebble", "knotd", "/usr/bin/uacme", "curl"),
    reason="nginx, pebble, knot, uacme or curl not installed (ops/deps.sh)")

ZONE = """
www.mairie-agassac A 127.0.0.1
mairie-agassac A 127.0.0.1
www.aignes A 127.0.0.1
"""


@pytest.fixture(scope="module")
def knot():
    k = tlsstack.Knot()
    try:
        k.start({"fr": ZONE})
        yield k
    finally:
        k.cleanup()


@pytest.fixture(scope="module")
def pebble(web, knot):
    # Short-lived certificates: renewal (at two thirds) within a test.
    p = tlsstack.Pebble(web.port, knot, validity=24)
    try:
        p.start()
        yield p
    finally:
        p.cleanup()


@pytest.fixture
def backend(controller, make_agent, web, pebble, workdir):
    controller.opsnctl("tenant", "add", "--kind", "commune", "--name",
                       "Agassac", "--insee", "31001", "--siren",
                       "213100019", "--population", "100")
    a = make_agent("www1", role="web",
                   extra_args=web.agent_args() + pebble.agent_args())
    wait_until(lambda: controller.node_state("www1") == "ready", 20,
               what="www1 ready")
    return a


def curl(web, host, path="/", root=None, https=True, extra=()):
    port = web.tls_port if https else web.port
    scheme = "https" if https else "http"
    argv = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code} %{redirect_url}",
            "--max-time", "5", "--resolve", f"{host}:{port}:127.0.0.1",
            f"{scheme}://{host}:{port}{path}"]
    if root:
        argv[1:1] = ["--cacert", root]
    r = subprocess.run(argv + list(extra), capture_output=True, text=True)
    if r.returncode != 0:
        return None, r.stderr
    body, _, status = r.stdout.rpartition("\n")
    code, _, location = status.partition(" ")
    return int(code), body if int(code) < 300 else location


def test_site_gets_a_certificate_and_is_served_over_https(controller,
                                                          backend, web,
                                                          pebble, workdir):
    root = os.path.join(workdir, "pebble-root.pem")
    with open(root, "w") as f:
        f.write(pebble.roots())
    controller.opsnctl("site", "add", "www.mairie-agassac.fr", "--tenant",
                       "31001", "--alias", "mairie-agassac.fr")
    for h in ("www.mairie-agassac.fr", "mairie-agassac.fr"):
        wait_until(lambda: (curl(web, h, root=root)[0] == 200), 30, 0.2,
                   what=f"https://{h}/ with pebble's chain")
    code, body = curl(web, "www.mairie-agassac.fr", root=root)
    assert "<h1>www.mairie-agassac.fr" in body
    # Plain HTTP goes to HTTPS, but not the ACME challenges.
    code, where = curl(web, "www.mairie-agassac.fr", "/a/b?c=1",
                       https=False)
    assert code == 301
    assert where == f"https://www.mairie-agassac.fr:{web.tls_port}/a/b?c=1"
    code, _ = curl(web, "www.mairie-agassac.fr",
                   "/.well-known/acme-challenge/nothing", https=False)
    assert code == 404
