"""Websites served by a real nginx from the server blocks a web agent writes.

One private nginx per module (mailstack.WebStack); each test has its own
controller and web agent and drives them through opsnctl, then asks nginx
for each host name as a browser would.
"""
import json
import os

import pytest

import mailstack
from opsn import wait_until

pytestmark = pytest.mark.skipif(not mailstack.have("nginx"),
                                reason="nginx not installed (ops/deps.sh)")

# A valid DNS name (labels of 63, 253 characters at most) that is longer
# than nginx's server_names_hash_bucket_size allows: nginx -t refuses it.
LONG_HOST = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 50]) + ".fr"


@pytest.fixture
def backend(controller, make_agent, web):
    for name, insee, siren in (("Agassac", "31001", "213100019"),
                               ("Aignes", "31002", "213100027")):
        controller.opsnctl("tenant", "add", "--kind", "commune", "--name",
                           name, "--insee", insee, "--siren", siren,
                           "--population", "100")
    a = make_agent("www1", role="web", extra_args=web.agent_args())
    wait_until(lambda: controller.node_state("www1") == "ready", 20,
               what="www1 ready")
    return a


def site(controller, host):
    return json.loads(controller.opsnctl("-o", "json", "site", "show",
                                         host).stdout)


def settled(controller, host):
    """Wait for the backend's answer about the site's last change."""
    def done():
        s = site(controller, host)["live"]
        return s if s["state"] in ("applied", "error") else None
    return wait_until(done, 15, 0.05, what=f"{host} reported")


def serves(web, host, status, text, path="/"):
    """Wait until nginx answers host with status and a body holding text
    (a reload takes effect a few milliseconds after it is asked)."""
    def ok():
        st, body = web.get(host, path)
        return st == status and text in body
    wait_until(ok, 10, 0.05, what=f"{host} -> {status} {text!r}")


def test_two_sites_answer_each_host_with_their_own_page(controller, backend,
                                                        web):
    controller.opsnctl("site", "add", "www.mairie-agassac.fr", "--tenant",
                       "31001", "--alias", "mairie-agassac.fr")
    controller.opsnctl("site", "add", "www.aignes.fr", "--tenant", "31002")
    for h in ("www.mairie-agassac.fr", "www.aignes.fr"):
        assert settled(controller, h)["state"] == "applied"
    # Each gets its placeholder page, named after it; the alias too.
    serves(web, "www.mairie-agassac.fr", 200, "<h1>www.mairie-agassac.fr")
    serves(web, "mairie-agassac.fr", 200, "<h1>www.mairie-agassac.fr")
    serves(web, "www.aignes.fr", 200, "<h1>www.aignes.fr")
    assert "agassac" not in web.get("www.aignes.fr")[1]
    # What the commune publishes is served as is, and nginx's workers
    # (nobody) can read it.
    docroot = os.path.join(web.web_root, "www.aignes.fr", "htdocs")
    with open(os.path.join(docroot, "horaires.html"), "w") as f:
        f.write("Mairie ouverte le mardi\n")
    os.chmod(os.path.join(docroot, "horaires.html"), 0o644)
    assert web.get("www.aignes.fr", "/horaires.html") == (
        200, "Mairie ouverte le mardi\n")
    assert web.get("www.mairie-agassac.fr", "/horaires.html")[0] == 404
    assert web.get("unknown.example.org")[0] == 404
    # Suspended: every page of it says so with a 503, its files are kept.
    # A change reported applied is what nginx serves from then on: the
    # backend waits until no worker of the configuration before still
    # takes connections (a reload leaves them running for some tens of
    # milliseconds). Asked at once, each time, with no waiting.
    for _ in range(4):
        controller.opsnctl("site", "suspend", "www.aignes.fr")
        assert settled(controller, "www.aignes.fr")["state"] == "applied"
        for path in ("/horaires.html", "/index.html", "/x/y"):
            st, body = web.get("www.aignes.fr", path)
            assert st == 503 and "suspendu" in body, (path, st, body)
        assert "Retry-After" in web.get("www.aignes.fr", headers=True)[2]
        assert os.path.exists(os.path.join(docroot, "horaires.html"))
        controller.opsnctl("site", "activate", "www.aignes.fr")
        assert settled(controller, "www.aignes.fr")["state"] == "applied"
        assert web.get("www.aignes.fr", "/horaires.html") == (
            200, "Mairie ouverte le mardi\n")
    controller.opsnctl("site", "suspend", "www.aignes.fr")
    assert settled(controller, "www.aignes.fr")["state"] == "applied"
    assert web.get("www.aignes.fr")[0] == 503
    assert web.get("www.mairie-agassac.fr")[0] == 200


def test_invalid_host_name_is_refused_by_the_api(controller, backend, web):
    for bad in ("-mairie.fr", "mairie_agassac.fr", "mairie..fr", "mairie",
                "a" * 64 + ".fr", "mairie.fr/x", "mairie agassac.fr",
                "mairie.123", "x" * 250 + ".fr", "mairie.fr;include"):
        st, doc, _ = controller.api("POST", "/v1/sites", {
            "hostname": bad, "tenant": "31001"})
        assert st == 400, (bad, st, doc)
        assert doc["error"]["code"], doc
    st, doc, _ = controller.api("POST", "/v1/sites", {
        "hostname": "www.mairie-agassac.fr", "tenant": "31001",
        "aliases": ["bad_alias.fr"]})
    assert st == 400, doc
    r = controller.opsnctl("site", "add", "mairie_agassac.fr", "--tenant",
                           "31001", check=False)
    assert r.returncode != 0 and "HTTP 400" in r.stderr, r.stderr
    listing = json.loads(controller.opsnctl("-o", "json", "site",
                                            "list").stdout)
    items = listing["items"] if isinstance(listing, dict) else listing
    assert items == []
    assert [f for f in os.listdir(web.confd) if not f.startswith(".")] == []


def test_configuration_nginx_refuses_never_replaces_the_running_one(
        controller, backend, web):
    controller.opsnctl("site", "add", "www.mairie-agassac.fr", "--tenant",
                       "31001")
    assert settled(controller, "www.mairie-agassac.fr")["state"] == "applied"
    serves(web, "www.mairie-agassac.fr", 200, "<h1>www.mairie-agassac.fr")
    before = sorted(os.listdir(web.confd))
    # Valid for DNS and for the API, refused by nginx -t.
    controller.opsnctl("site", "add", LONG_HOST, "--tenant", "31002")
    live = settled(controller, LONG_HOST)
    assert live["state"] == "error", live
    assert "server_names_hash" in live["message"], live
    # The refused block never went live; the running sites still answer.
    assert sorted(os.listdir(web.confd)) == before
    serves(web, "www.mairie-agassac.fr", 200, "<h1>www.mairie-agassac.fr")
    assert web.get(LONG_HOST)[0] == 404
    failed = controller.opsnctl("changes", "--failed").stdout
    assert LONG_HOST[:20] in failed and "server_names_hash" in failed
    # A good change after a refused one still goes live.
    controller.opsnctl("site", "add", "www.aignes.fr", "--tenant", "31002")
    assert settled(controller, "www.aignes.fr")["state"] == "applied"
    serves(web, "www.aignes.fr", 200, "<h1>www.aignes.fr")
    assert site(controller, LONG_HOST)["live"]["state"] == "error"
