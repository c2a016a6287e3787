"""Sites over HTTPS: certificates by ACME from a real CA (Pebble), checked
by a real nginx, host names resolved by a real DNS server (Knot).

Pebble validates each HTTP-01 challenge by fetching
http://HOST/.well-known/acme-challenge/TOKEN from the private nginx (its
httpPort is nginx's port), HOST being resolved through Knot; the agent
drives Debian's uacme; curl checks what a browser trusting Pebble's root
would see. Pebble's certificates live 24 s here, so that renewal (at two
thirds of the lifetime) happens within a test.
"""
import datetime
import glob
import json
import os
import socket
import ssl
import subprocess
import time

import pytest
from cryptography import x509

import tlsstack
from opsn import free_port, wait_until

pytestmark = pytest.mark.skipif(
    not tlsstack.have("nginx", "pebble", "knotd", "/usr/bin/uacme", "curl",
                      "sslscan"),
    reason="nginx, pebble, knot, uacme, curl or sslscan not installed "
           "(ops/deps.sh)")

AGASSAC = "www.mairie-agassac.fr"
ZONE = """
www.mairie-agassac A 127.0.0.1
mairie-agassac CNAME web1.hebergeur.fr.
web1.hebergeur A 127.0.0.1
www.aignes A 127.0.0.2
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
    p = tlsstack.Pebble(web.port, knot, validity=24)
    try:
        p.start()
        yield p
    finally:
        p.cleanup()


@pytest.fixture
def root(pebble, workdir):
    """Pebble's root, as a browser trusting it would have it."""
    path = os.path.join(workdir, "pebble-root.pem")
    with open(path, "w") as f:
        f.write(pebble.roots())
    return path


def start_backend(controller, make_agent, web, acme_args):
    for name, insee, siren in (("Agassac", "31001", "213100019"),
                               ("Aignes", "31002", "213100027")):
        controller.opsnctl("tenant", "add", "--kind", "commune", "--name",
                           name, "--insee", insee, "--siren", siren,
                           "--population", "100")
    a = make_agent("www1", role="web", extra_args=web.agent_args() +
                   acme_args)
    wait_until(lambda: controller.node_state("www1") == "ready", 20,
               what="www1 ready")
    return a


@pytest.fixture
def backend(controller, make_agent, web, pebble):
    return start_backend(controller, make_agent, web, pebble.agent_args())


def site(controller, host):
    return json.loads(controller.opsnctl("-o", "json", "site", "show",
                                         host).stdout)


def cert_state(controller, host, state):
    """Wait until the site's certificate is in state; return it."""
    def reached():
        c = site(controller, host)["certificate"]
        return c if c["state"] == state else None
    return wait_until(reached, 40, 0.2, what=f"{host} certificate {state}")


def curl(web, host, path="/", root=None, https=True):
    """(status, body or redirect target) as curl gets it, or (None, why)."""
    port = web.tls_port if https else web.port
    scheme = "https" if https else "http"
    argv = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code} %{redirect_url}",
            "--max-time", "5", "--resolve", f"{host}:{port}:127.0.0.1",
            f"{scheme}://{host}:{port}{path}"]
    if root:
        argv[1:1] = ["--cacert", root]
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        return None, r.stderr
    body, _, status = r.stdout.rpartition("\n")
    code, _, location = status.partition(" ")
    return int(code), body if int(code) < 300 else location


def served(web, host):
    """The certificate nginx presents for host (SNI)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", web.tls_port), 5) as s:
        with ctx.wrap_socket(s, server_hostname=host) as t:
            return x509.load_der_x509_certificate(t.getpeercert(True))


def when(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc)


def test_site_gets_a_certificate_served_over_https_and_renewed(
        controller, backend, web, root, workdir):
    controller.opsnctl("site", "add", AGASSAC, "--tenant", "31001",
                       "--alias", "mairie-agassac.fr")
    first = cert_state(controller, AGASSAC, "valid")
    assert first["source"] == "acme"
    assert first["issuer"].startswith("Pebble Intermediate CA"), first
    shown = controller.opsnctl("site", "show", AGASSAC).stdout
    assert "valid until" in shown and "by Pebble Intermediate CA" in shown
    # The issued chain, as a browser trusting Pebble's root checks it,
    # for the host name and the alias (a CNAME in the zone).
    for h in (AGASSAC, "mairie-agassac.fr"):
        wait_until(lambda: curl(web, h, root=root)[0] == 200, 10, 0.1,
                   what=f"https://{h}/ with pebble's chain")
    assert "<h1>www.mairie-agassac.fr" in curl(web, AGASSAC, root=root)[1]
    # Plain HTTP goes to HTTPS, except ACME's challenges. (Waited for: the
    # certificate is "valid" once issued, and the backend installs it and
    # reloads nginx just after; new workers already answer HTTPS while the
    # old ones may still take one more plain connection.)
    wait_until(lambda: curl(web, AGASSAC, "/a/b?c=1", https=False) ==
               (301, f"https://{AGASSAC}:{web.tls_port}/a/b?c=1"), 10, 0.05,
               what="plain HTTP sent to HTTPS")
    code, _ = curl(web, AGASSAC, "/.well-known/acme-challenge/x",
                   https=False)
    assert code == 404
    # The key stays on the backend, readable by root only.
    keys = glob.glob(os.path.join(backend.data, "tls", "**", "key.pem"),
                     recursive=True)
    assert keys and all(os.stat(k).st_mode & 0o777 in (0o600, 0o400)
                        for k in keys), keys
    # Only TLS 1.2 with ECDHE and AEAD suites, and TLS 1.3.
    tlsstack.assert_anssi(web.tls_port, sni=AGASSAC)
    # Renewal at two thirds of the lifetime: a new certificate, served.
    renewed = wait_until(
        lambda: (lambda c: c if c["state"] == "valid" and
                 c["not_after"] != first["not_after"] else None)(
            site(controller, AGASSAC)["certificate"]), 30, 0.2,
        what="a renewed certificate")
    wait_until(lambda: served(web, AGASSAC).not_valid_after.replace(
        tzinfo=datetime.timezone.utc) == when(renewed["not_after"]), 10,
        0.1, what="nginx serving the renewed certificate")
    assert curl(web, AGASSAC, root=root)[0] == 200


def test_failed_issuance_is_reported_retried_and_never_breaks_the_site(
        controller, backend, web):
    # Not in the zone: Pebble cannot resolve it, and refuses.
    controller.opsnctl("site", "add", "www.absent.fr", "--tenant", "31001")
    failed = cert_state(controller, "www.absent.fr", "failed")
    assert "absent" in failed["message"], failed
    assert failed["next_attempt"] is not None
    shown = controller.opsnctl("site", "show", "www.absent.fr").stdout
    assert "failed:" in shown and "next try" in shown
    # The site still answers over plain HTTP, without a redirect.
    assert curl(web, "www.absent.fr", https=False)[0] == 200
    # Retried with backoff (1 s, then 2, then 4: at most 4 here), never in
    # a loop: a handful of tries in 10 s.
    state = glob.glob(os.path.join(backend.data, "tls", "state", "site-*"))
    assert len(state) == 1
    time.sleep(10)
    tries = int(open(state[0]).read().split()[0])
    assert 2 <= tries <= 6, tries
    assert backend.alive()
    assert curl(web, "www.absent.fr", https=False)[0] == 200


def test_unreachable_ca_is_reported_and_the_site_keeps_serving(
        controller, make_agent, web):
    dead = f"https://127.0.0.1:{free_port()}/dir"
    a = start_backend(controller, make_agent, web, [
        "--acme-directory", dead, "--acme-retry-min", "30s"])
    controller.opsnctl("site", "add", AGASSAC, "--tenant", "31001")
    failed = cert_state(controller, AGASSAC, "failed")
    assert "directory" in failed["message"], failed
    assert curl(web, AGASSAC, https=False)[0] == 200
    assert a.alive()


def test_member_certificate_is_checked_and_its_key_stays_on_the_backend(
        controller, backend, web, workdir):
    ca = tlsstack.CA("Syndicat test CA")
    d = os.path.join(workdir, "member")
    os.makedirs(d)
    controller.opsnctl("site", "add", AGASSAC, "--tenant", "31001",
                       "--alias", "mairie-agassac.fr")
    names = [AGASSAC, "mairie-agassac.fr"]
    good, good_key = ca.write(d, "good", names)
    wrong, wrong_key = ca.write(d, "wrong", ["www.aignes.fr"])
    expired, expired_key = ca.write(
        d, "expired", names,
        not_before=datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc),
        not_after=datetime.datetime(2021, 1, 1, tzinfo=datetime.timezone.utc))
    before = site(controller, AGASSAC)
    for cert, key, why in ((wrong, wrong_key, "does not cover"),
                           (good, wrong_key, "not the certificate's"),
                           (expired, expired_key, "expired")):
        r = controller.opsnctl("site", "cert", "set", AGASSAC, "--cert",
                               cert, "--key", key, check=False)
        assert r.returncode != 0 and why in r.stderr, r.stderr
        assert site(controller, AGASSAC)["tls"] == before["tls"]
    r = controller.opsnctl("-o", "json", "site", "cert", "set", AGASSAC,
                           "--cert", good, "--key", good_key)
    assert json.loads(r.stdout)["tls"] == "manual"
    c = cert_state(controller, AGASSAC, "valid")
    assert (c["source"], c["issuer"]) == ("manual", "Syndicat test CA")
    capath = os.path.join(d, "ca.pem")
    with open(capath, "w") as f:
        f.write(ca.pem)
    wait_until(lambda: curl(web, "mairie-agassac.fr", root=capath)[0] ==
               200, 10, 0.1, what="the member's certificate served")
    # The key went to the backend (0600) and nowhere in the controller:
    # not its database, its log or its audit trail.
    with open(good_key) as f:
        secret = f.read().splitlines()[2].encode()
    kept = glob.glob(os.path.join(backend.data, "tls", "manual", "*", "*",
                                  "key.pem"))
    assert len(kept) == 1 and os.stat(kept[0]).st_mode & 0o777 == 0o600
    assert secret in open(kept[0], "rb").read()
    for path in glob.glob(os.path.join(controller.dir, "**", "*"),
                          recursive=True):
        if os.path.isfile(path):
            assert secret not in open(path, "rb").read(), path
    audit = controller.opsnctl("-o", "json", "audit", "list").stdout
    assert "site.certificate" in audit and secret.decode() not in audit
    # Back to ACME: Pebble's certificate again.
    controller.opsnctl("site", "cert", "acme", AGASSAC)
    wait_until(lambda: site(controller, AGASSAC)["certificate"]["source"] ==
               "acme" and site(controller, AGASSAC)["certificate"][
                   "state"] == "valid", 40, 0.2, what="back to ACME")


def test_site_check_compares_the_published_names(controller, backend, knot):
    controller.opsnctl("backend", "set", "www1", "--mail-hostname",
                       "web1.hebergeur.fr")
    controller.opsnctl("site", "add", AGASSAC, "--tenant", "31001",
                       "--alias", "mairie-agassac.fr", "--alias",
                       "absent.mairie-agassac.fr")
    controller.opsnctl("site", "add", "www.aignes.fr", "--tenant", "31002")
    r = controller.opsnctl("-o", "json", "site", "check", AGASSAC,
                           "--resolver", knot.addr(), check=False)
    doc = json.loads(r.stdout or r.stderr)
    assert r.returncode == 1 and not doc["ok"]
    got = {rec["name"]: (rec["status"], rec["found"])
           for rec in doc["records"]}
    assert got == {
        AGASSAC: ("ok", ["127.0.0.1"]),
        "mairie-agassac.fr": ("ok", ["web1.hebergeur.fr."]),
        "absent.mairie-agassac.fr": ("missing", []),
    }, got
    r = controller.opsnctl("site", "check", "www.aignes.fr", "--resolver",
                           knot.addr(), check=False)
    assert r.returncode == 1
    assert "different" in r.stdout and "127.0.0.2" in r.stdout, r.stdout
    assert "web1.hebergeur.fr" in r.stdout
