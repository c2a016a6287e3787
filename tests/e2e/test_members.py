"""Members (tenants), VMs for members, roles and tokens, the audit trail."""
import csv
import json
import glob
import os
import re
import sqlite3
import subprocess

import pytest

import opsn
from opsn import wait_until

DATA = os.path.join(opsn.TOP, "..", "shared", "data")
COMMUNES = os.path.abspath(os.path.join(DATA, "communes.json"))
EPCI = os.path.abspath(os.path.join(DATA, "epci.json"))


def dump(controller):
    """The whole database as SQL text, to compare before and after."""
    return subprocess.run(["sqlite3", os.path.join(controller.data,
                                                   "opsn.db"), ".dump"],
                          capture_output=True, text=True, check=True).stdout


def add_commune(controller, name="Agassac", insee="31001",
                siren="213100019", pop=115):
    return controller.opsnctl("tenant", "add", "--kind", "commune", "--name",
                              name, "--insee", insee, "--siren", siren,
                              "--population", str(pop))


def token(controller, name, role, tenant=None):
    args = ["token", "create", "--name", name, "--role", role]
    if tenant:
        args += ["--tenant", tenant]
    return controller.opsnctl(*args).stdout.strip()


@pytest.mark.skipif(not os.path.exists(COMMUNES), reason="no Etalab data")
def test_import_haute_garonne_twice_changes_nothing(controller):
    r = controller.opsnctl("-o", "json", "tenant", "import", "--etalab",
                           COMMUNES, "--departement", "31")
    first = json.loads(r.stdout)
    assert first["total"] == 586 and first["created"] == 586
    before = dump(controller)
    r = controller.opsnctl("-o", "json", "tenant", "import", "--etalab",
                           COMMUNES, "--departement", "31")
    second = json.loads(r.stdout)
    assert second["created"] == 0 and second["updated"] == 0
    assert second["unchanged"] == 586
    assert dump(controller) == before
    r = controller.opsnctl("tenant", "import", "--etalab", COMMUNES,
                           "--departement", "31")
    assert "nothing changed" in r.stdout
    # Agassac is named by INSEE code and by SIREN alike.
    a = json.loads(controller.opsnctl("-o", "json", "tenant", "show",
                                      "31001").stdout)
    b = json.loads(controller.opsnctl("-o", "json", "tenant", "show",
                                      a["siren"]).stdout)
    assert a["id"] == b["id"] and a["name"] == "Agassac"
    # EPCIs of 31 link their member communes.
    r = controller.opsnctl("-o", "json", "tenant", "import", "--etalab-epci",
                           EPCI, "--departement", "31")
    epcis = json.loads(r.stdout)
    assert epcis["created"] > 10 and epcis["linked"] >= 500
    a = json.loads(controller.opsnctl("-o", "json", "tenant", "show",
                                      "31001").stdout)
    assert a["parent"] is not None


def test_csv_with_a_bad_siren_imports_nothing_and_names_the_line(
        controller, workdir):
    path = os.path.join(workdir, "members.csv")
    rows = [("31001", "213100019", "Agassac", "115", "commune"),
            ("31002", "213100027", "Aignes", "283", "commune"),
            ("31003", "213100035", "Aigrefeuille", "1322", "commune"),
            ("31004", "213100043", "Ayguesvives", "3048", "commune"),
            ("31005", "213100050", "Alan", "294", "commune")]
    bad = list(rows)
    bad[3] = ("31004", "213100044", "Ayguesvives", "3048", "commune")
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter=";")
        w.writerow(["insee", "siren", "name", "population", "kind"])
        w.writerows(bad)
    before = dump(controller)
    r = controller.opsnctl("tenant", "import", "--csv", path, check=False)
    assert r.returncode != 0
    assert "line 5" in r.stderr and "siren" in r.stderr, r.stderr
    assert dump(controller) == before
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter=";")
        w.writerow(["insee", "siren", "name", "population", "kind"])
        w.writerows(rows)
    r = controller.opsnctl("-o", "json", "tenant", "import", "--csv", path)
    assert json.loads(r.stdout)["created"] == 5


def test_vm_for_a_commune_boots_and_quota_refuses(controller, hypervisor,
                                                  bridge):
    add_commune(controller)
    opsn.add_tiny_image(controller)
    controller.opsnctl("plan", "add", "small", "--vcpus", "1", "--memory",
                       "128M", "--disk", "256M")
    a = hypervisor()
    wait_until(lambda: controller.node_state(a.name) == "ready", 20)
    controller.opsnctl("tenant", "set", "31001", "--quota-vcpus", "1",
                       "--quota-vms", "1")
    # No --node: placed on the ready hypervisor.
    controller.opsnctl("vm", "create", "--tenant", "31001", "--name", "web1",
                       "--plan", "small", "--image", "tiny", "--nic",
                       bridge.name, "--wait", "--timeout", "90s")
    v = json.loads(controller.opsnctl("-o", "json", "vm", "show",
                                      "web1").stdout)
    assert v["node"] == a.name and v["tenant"] == "31001"
    wait_until(lambda: "OPSN-GUEST-READY web1" in controller.opsnctl(
        "vm", "console-log", "web1").stdout, 90, interval=0.5,
        what="guest marker")
    before = dump(controller)
    r = controller.opsnctl("vm", "create", "--tenant", "31001", "--name",
                           "web2", "--plan", "small", "--image", "tiny",
                           check=False)
    assert r.returncode != 0
    assert "quota" in r.stderr and "uses 1" in r.stderr, r.stderr
    assert dump(controller) == before
    # A withdrawn member keeps its VM record but gets nothing new.
    controller.opsnctl("tenant", "set", "31001", "--quota-vms", "none",
                       "--quota-vcpus", "none")
    controller.opsnctl("tenant", "withdraw", "31001")
    r = controller.opsnctl("vm", "create", "--tenant", "31001", "--name",
                           "web3", "--plan", "small", "--image", "tiny",
                           check=False)
    assert r.returncode != 0 and "withdrawn" in r.stderr
    assert json.loads(controller.opsnctl("-o", "json", "tenant", "show",
                                         "31001").stdout)["status"] == \
        "withdrawn"


def test_stale_etag_gets_412(controller):
    add_commune(controller)
    st, doc, hdrs = controller.api("GET", "/v1/tenants/31001")
    etag = hdrs["ETag"]
    st, doc, h2 = controller.api("PATCH", "/v1/tenants/31001",
                                 body={"population": 120},
                                 headers={"If-Match": etag})
    assert st == 200 and h2["ETag"] != etag
    before = dump(controller)
    st, doc, _ = controller.api("PATCH", "/v1/tenants/31001",
                                body={"population": 130},
                                headers={"If-Match": etag})
    assert st == 412 and doc["error"]["code"] == "stale"
    assert dump(controller) == before


def test_a_listed_page_follows_every_change(controller):
    """Pages of GET /v1/tenants are kept while nothing changes: a change
    through the API, a refused one, and one made by another connection
    (an operator's sqlite3) all show on the next listing."""
    add_commune(controller)

    def names():
        st, doc, _ = controller.api("GET", "/v1/tenants?limit=10")
        assert st == 200
        return [t["name"] for t in doc["items"]]

    first = names()
    assert names() == first
    st, doc, _ = controller.api("GET", "/v1/tenants/31001")
    st, _, _ = controller.api("PATCH", "/v1/tenants/31001",
                              body={"name": "Agassac-le-Neuf"})
    assert st == 200
    assert "Agassac-le-Neuf" in names()
    st, _, _ = controller.api("PATCH", "/v1/tenants/31001",
                              body={"quota_vcpus": -5})
    assert st == 400
    assert "Agassac-le-Neuf" in names()
    db = os.path.join(controller.data, "opsn.db")
    with sqlite3.connect(db) as c:
        c.execute("UPDATE tenants SET name = 'Agassac-sur-Louge' "
                  "WHERE insee = '31001'")
    assert "Agassac-sur-Louge" in names()
    st, _, _ = controller.api("POST", "/v1/tenants",
                              body={"kind": "other", "name": "Syndicat X"})
    assert st == 201
    assert "Syndicat X" in names()


# (method, path, body, permission group)
ROUTES = [
    ("GET", "/v1/tenants", None, "read"),
    ("GET", "/v1/tenants/31001", None, "read"),
    ("POST", "/v1/tenants", {"kind": "other", "name": "X{n}"}, "write"),
    ("PATCH", "/v1/tenants/31001", {"population": 116}, "write"),
    ("GET", "/v1/nodes", None, "ops-read"),
    ("POST", "/v1/node-tokens", {}, "write"),
    ("GET", "/v1/vms", None, "ops-read"),
    ("GET", "/v1/images", None, "ops-read"),
    ("POST", "/v1/plans", {"name": "p{n}", "vcpus": 1, "memory_mib": 64,
                           "disk_bytes": 1 << 30}, "write"),
    ("GET", "/v1/plans", None, "ops-read"),
    ("GET", "/v1/tokens", None, "ops-read"),
    ("POST", "/v1/tokens", {"name": "t{n}", "role": "auditor"}, "tokens"),
    ("GET", "/v1/audit", None, "audit"),
    ("GET", "/v1/audit/verify", None, "audit"),
]
ALLOWED = {
    "admin": {"read", "write", "ops-read", "tokens", "audit"},
    "operator": {"read", "write", "ops-read", "audit"},
    "auditor": {"read", "ops-read", "audit"},
    "finance": {"read"},
}


def test_each_role_is_allowed_and_denied_across_routes(controller):
    add_commune(controller)
    toks = {role: token(controller, "t-" + role, role) for role in ALLOWED}
    n = 0
    for role, tok in toks.items():
        for method, path, body, group in ROUTES:
            n += 1
            if body is not None:
                body = json.loads(json.dumps(body).replace("{n}", str(n)))
            st, doc, _ = controller.api(method, path, body=body, token=tok)
            if group in ALLOWED[role]:
                assert st < 400, (role, method, path, st, doc)
            else:
                assert st == 403, (role, method, path, st, doc)
                assert "lacks permission" in doc["error"]["message"]


def test_tenant_scoped_token_sees_only_its_tenant(controller):
    add_commune(controller)
    add_commune(controller, "Aignes", "31002", "213100027", 283)
    tok = token(controller, "agassac-admin", "operator", tenant="31001")
    st, doc, _ = controller.api("GET", "/v1/tenants", token=tok)
    assert st == 200 and [t["insee"] for t in doc["items"]] == ["31001"]
    st, doc, _ = controller.api("GET", "/v1/tenants/31002", token=tok)
    assert st == 404
    # Revoked: refused.
    controller.opsnctl("token", "revoke", "agassac-admin")
    st, doc, _ = controller.api("GET", "/v1/tenants", token=tok)
    assert st == 401


def test_audit_verify_detects_an_edited_row(controller):
    add_commune(controller)
    controller.opsnctl("tenant", "set", "31001", "--population", "117")
    controller.opsnctl("tenant", "suspend", "31001")
    r = controller.opsnctl("audit", "verify")
    assert r.returncode == 0 and "intact" in r.stdout
    rows = json.loads(controller.opsnctl("-o", "json", "audit", "list",
                                         "--object", "tenant/1").stdout)
    items = rows["items"] if isinstance(rows, dict) else rows
    assert [i["action"] for i in items] == ["tenant.create", "tenant.update",
                                            "tenant.status"]
    assert all(i["token"] == "admin" and i["request_id"] for i in items)
    subprocess.run(["sqlite3", os.path.join(controller.data, "opsn.db"),
                    "UPDATE audit SET summary = '{\"population\":1}' "
                    "WHERE action = 'tenant.update'"], check=True)
    r = controller.opsnctl("audit", "verify", check=False)
    assert r.returncode != 0 and "BROKEN" in r.stdout + r.stderr


def test_audit_never_holds_secrets(controller):
    tok = token(controller, "fin", "finance")
    jt = controller.join_token()
    with sqlite3.connect(os.path.join(controller.data, "opsn.db")) as db:
        text = "\n".join(str(r) for r in db.execute("SELECT * FROM audit"))
    assert tok not in text and jt.split("-")[-1] not in text
    assert "token.create" in text and "node.token" in text


def test_openapi_lists_exactly_the_server_routes(controller):
    st, doc, _ = controller.api("GET", "/v1/openapi.json", token=None)
    assert st == 200 and doc["openapi"].startswith("3.")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items()
                  for m in ops}
    # Every route table in the controller's sources: the core one and
    # each subsystem's (services, metering, billing).
    routes = set()
    cdir = os.path.join(opsn.TOP, "controller")
    for f in sorted(glob.glob(os.path.join(cdir, "**", "*.c"),
                              recursive=True)):
        src = open(f).read()
        for m in re.finditer(r"_routes\[[A-Z_]*\] = \{", src):
            table = src[m.end():]
            table = table[:table.index("};")]
            routes |= set(re.findall(r'\{\s*"([A-Z]+)",\s*"(/[^"]*)"',
                                     table))
    routes.add(("GET", "/v1/openapi.json"))
    assert documented == routes
    # And each documented route exists on the server: a GET without
    # parameters answers, at worst asking for what it lacks.
    for method, path in sorted(routes):
        if method != "GET" or "{" in path:
            continue
        st, body, _ = controller.api(method, path)
        assert st in (200, 400), (path, st, body)
        if st == 400:
            assert body["error"]["code"] != "not_found"


BAD = [
    # (method, path, body, expected status, words in the message)
    ("POST", "/v1/tenants", b"{not json", 400, "line"),
    ("POST", "/v1/tenants", b"[1,2]", 400, "object"),
    ("POST", "/v1/tenants", b"", 400, ""),
    ("POST", "/v1/tenants", {"kind": "commune"}, 400, "name"),
    ("POST", "/v1/tenants", {"kind": "planet", "name": "X"}, 400, "kind"),
    ("POST", "/v1/tenants", {"kind": "commune", "name": "X"}, 400, "INSEE"),
    ("POST", "/v1/tenants", {"kind": "commune", "name": "X",
                             "insee": "3100"}, 400, "insee"),
    ("POST", "/v1/tenants", {"kind": "commune", "name": "X",
                             "insee": "ABCDE"}, 400, "insee"),
    ("POST", "/v1/tenants", {"kind": "commune", "name": "X",
                             "insee": "31009", "siren": "213100018"}, 400,
     "siren"),
    ("POST", "/v1/tenants", {"kind": "commune", "name": "X",
                             "insee": "31009", "siren": "21310001"}, 400,
     "siren"),
    ("POST", "/v1/tenants", {"kind": "other", "name": "X",
                             "population": -1}, 400, "population"),
    ("POST", "/v1/tenants", {"kind": "other", "name": "X",
                             "population": "many"}, 400, "population"),
    ("POST", "/v1/tenants", {"kind": "other", "name": "X",
                             "population": 10 ** 12}, 400, "population"),
    ("POST", "/v1/plans", {"name": "a/b", "vcpus": 1, "memory_mib": 64,
                           "disk_bytes": 1 << 30}, 400, "name"),
    ("POST", "/v1/tenants", {"kind": "other", "name": "a\u0007b"}, 400,
     "name"),
    ("POST", "/v1/tenants", {"kind": "other", "name": "x" * 500}, 400,
     "name"),
    ("POST", "/v1/tenants", {"kind": "other", "name": ""}, 400, "name"),
    ("POST", "/v1/tenants", {"kind": "other", "name": 12}, 400, "name"),
    ("POST", "/v1/tenants", {"kind": "other", "name": "X", "colour": "red"},
     400, "colour"),
    ("POST", "/v1/tenants", {"kind": "other", "name": "X",
                             "email": "not-an-address"}, 400, "email"),
    ("POST", "/v1/tenants", {"kind": "other", "name": "X",
                             "parent": "99999"}, 400, "parent"),
    ("POST", "/v1/tenants", {"kind": "other", "name": "X",
                             "joined_on": "2026-13-45"}, 400, "joined_on"),
    ("POST", "/v1/tenants", {"kind": "commune", "name": "Twin",
                             "insee": "31001", "siren": "213100027"}, 409,
     "31001"),
    ("PATCH", "/v1/tenants/31001", {"kind": "epci"}, 400, "kind"),
    ("PATCH", "/v1/tenants/31001", {"quota_vcpus": -5}, 400, "quota"),
    ("PATCH", "/v1/tenants/31001", {"parent": "31001"}, 400, "parent"),
    ("PATCH", "/v1/tenants/99998", {"population": 1}, 404, "99998"),
    ("GET", "/v1/tenants/no%2Fsuch", None, 400, ""),
    ("GET", "/v1/tenants?limit=0", None, 400, "limit"),
    ("GET", "/v1/tenants?kind=planet", None, 400, "kind"),
    ("POST", "/v1/plans", {"name": "huge", "vcpus": 100000,
                           "memory_mib": 64, "disk_bytes": 1 << 30}, 400,
     "vcpus"),
    ("POST", "/v1/plans", {"name": "neg", "vcpus": 1, "memory_mib": -64,
                           "disk_bytes": 1 << 30}, 400, "memory_mib"),
    ("POST", "/v1/vms", {"name": "v", "tenant": "99999", "vcpus": 1,
                         "memory_mib": 64, "disk_bytes": 1 << 30,
                         "image": "tiny"}, 400, "tenant"),
    ("POST", "/v1/vms", {"name": "v/1", "vcpus": 1, "memory_mib": 64,
                         "disk_bytes": 1 << 30, "image": "tiny"}, 400,
     "name"),
    ("POST", "/v1/vms", {"name": "v", "vcpus": 1, "memory_mib": 64,
                         "disk_bytes": 1 << 30, "image": "nosuch"}, 400,
     "nosuch"),
    ("POST", "/v1/tokens", {"name": "x", "role": "god"}, 400, "role"),
    ("POST", "/v1/tokens", {"name": "x", "role": "admin", "ttl": "soon"},
     400, "ttl"),
    ("POST", "/v1/tenants/import", {"source": "etalab", "records": [
        {"kind": "commune", "name": "A", "insee": "31001",
         "siren": "213100019"},
        {"where": "entry 2", "kind": "commune", "name": "B",
         "insee": "3100X"}]}, 400, "entry 2"),
]


def test_bad_inputs_get_4xx_and_change_nothing(controller):
    add_commune(controller)
    before = dump(controller)
    for method, path, body, status, words in BAD:
        st, doc, _ = controller.api(method, path, body=body)
        assert st == status, (method, path, body if not isinstance(
            body, bytes) else body[:40], st, doc)
        assert isinstance(doc, dict) and doc["error"]["message"], doc
        assert words.lower() in doc["error"]["message"].lower(), (path, doc)
    assert len(BAD) >= 30
    assert dump(controller) == before


def test_a_failed_write_rolls_back_and_answers_500_with_its_request_id(
        controller):
    """A statement that fails inside a change (here a trigger refusing
    the status update, as a full disk or a corrupt page would) rolls the
    whole change back and answers 500 naming the request: never a
    success that stored nothing, or half of it."""
    add_commune(controller)
    db = os.path.join(controller.data, "opsn.db")
    with sqlite3.connect(db) as c:
        c.execute("CREATE TRIGGER fail_status BEFORE UPDATE OF status ON "
                  "tenants BEGIN SELECT RAISE(FAIL, 'disk on fire'); END")
    audit_before = sqlite3.connect(db).execute(
        "SELECT count(*) FROM audit").fetchone()[0]
    st, doc, hdrs = controller.api("POST", "/v1/tenants/31001/suspend")
    assert st == 500, doc
    rid = hdrs["X-Request-Id"]
    assert doc["error"]["request_id"] == rid
    assert rid in controller.output()
    c = sqlite3.connect(db)
    assert c.execute("SELECT status FROM tenants").fetchone()[0] == "active"
    assert c.execute("SELECT count(*) FROM audit").fetchone()[0] == \
        audit_before
    c.execute("DROP TRIGGER fail_status")
    c.commit()
    st, doc, _ = controller.api("POST", "/v1/tenants/31001/suspend")
    assert st == 200 and doc["status"] == "suspended"
