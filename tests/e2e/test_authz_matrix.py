"""Authorization matrix: every route x every role x {unbound, bound to
member A, bound to member B}, with the expected answer taken from
docs/security.md (its Roles and Routes tables), not from the code.

Calls the authorization lets through are sent with the test build's
X-Opsn-Test-Authorize-Only header: the router answers its decision
instead of running the handler, so that allowed writes change nothing and
every combination can be asked in one database. Refused calls are plain
refusals, and every refused write must leave the database byte for byte
unchanged (sqlite3's dump).
"""
import os
import re
import sqlite3
import time
import urllib.parse

import opsn

DOC = os.path.join(opsn.TOP, "docs", "security.md")
ROLES = ("admin", "operator", "finance", "auditor")
A, B = "31001", "31002"
PROBE = {"X-Opsn-Test-Authorize-Only": "1"}

# What each path parameter names in the fixture: member A's objects.
PARAMS = {
    "tenant": A, "vm": "vm-a", "hostname": "www.a.example.fr",
    "part": "disk", "id": None,  # A's statement id, set at run time
    # The web console's files: a file, and a page's address.
    "file": "index.html", "dir": "members", "sub": "31001",
    "period": "2026-10",
    "node": "n1", "group": "g1",
}
# {name} and {address} depend on the route.
NAMES = {
    "/v1/mail/domains/": "a.example.fr", "/v1/tokens/": "tok-a",
    "/v1/nodes/": "n1", "/v1/images/": "img", "/v1/backends/": "n1",
    "/v1/tariffs/": "standard", "/v1/users/": "user-a",
    "/v1/backups/": "none",
}
ADDRESSES = {"/v1/mail/mailboxes/": "x@a.example.fr",
             "/v1/mail/aliases/": "al@a.example.fr"}


def read_tables():
    """The Roles and Routes tables of docs/security.md."""
    text = open(DOC, encoding="utf-8").read()
    roles, routes = {}, []
    section = None
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
            continue
        if not line.startswith("| ") or line.startswith("| ---"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if section == "Roles" and cells[0] != "role":
            roles[cells[0]] = re.findall(r"`([^`]+)`", cells[1])
        elif section == "Routes" and cells[0] != "method":
            routes.append({"method": cells[0], "path": cells[1].strip("`"),
                           "perm": None if cells[2] == "—" else cells[2],
                           "scope": cells[3],
                           "member": None if cells[4] == "—" else cells[4]})
    return roles, routes


def perm_match(pat, perm):
    if pat == "*" or pat == perm:
        return True
    if pat.endswith(".*"):
        return perm.startswith(pat[:-1])
    if pat.startswith("*."):
        return perm.rsplit(".", 1)[-1] == pat[2:]
    return False


def role_may(roles, role, perm):
    return any(perm_match(p, perm) for p in roles.get(role, []))


def expected(roles, route, role, bound):
    """200 (allowed), 403 or 404, from the documented tables alone."""
    if route["scope"] == "public":
        return 200
    if not role_may(roles, role, route["perm"]):
        return 403
    if bound is None:
        return 200
    if route["scope"] == "platform":
        return 403
    if route["member"] is None:
        return 200
    return 200 if bound == A else 404


def fill(route, stmt_id):
    """The route's path with member A's objects, the query and body."""
    path = route["path"]
    for prefix, v in NAMES.items():
        if path.startswith(prefix):
            path = path.replace("{name}", v)
    for prefix, v in ADDRESSES.items():
        if path.startswith(prefix):
            path = path.replace("{address}", urllib.parse.quote(v))
    for k, v in PARAMS.items():
        path = path.replace("{%s}" % k, str(stmt_id if k == "id" else v))
    assert "{" not in path, path
    query, body = "", None
    member = route["member"] or ""
    if member == "query tenant":
        query = "?tenant=" + A
    elif member == "body tenant":
        body = {"tenant": A}
    elif member == "owner of address":
        body = {"address": "new@a.example.fr"}
    elif member == "owner of domain":
        body = {"domain": "a.example.fr"}
    if body is None and route["method"] in ("POST", "PUT", "PATCH"):
        body = {}
    return path + query, body


def dump(controller):
    with sqlite3.connect(os.path.join(controller.data, "opsn.db")) as db:
        return "\n".join(db.iterdump())


def add_fixture_rows(controller, ids):
    """Member A's and member B's objects, written while the controller is
    stopped (no agent runs in this test: only the router reads them)."""
    now = int(time.time())
    with sqlite3.connect(os.path.join(controller.data, "opsn.db")) as db:
        db.execute("INSERT INTO nodes (id, name, cert_serial, cert_fpr, "
                   "enrolled_at, state_since) VALUES (1, 'n1', '1', 'f', "
                   "?, ?)", (now, now))
        db.execute("INSERT INTO images (id, name, format, state, "
                   "created_at) VALUES (1, 'img', 'qcow2', 'ready', ?)",
                   (now,))
        db.execute("INSERT INTO billing_periods (period, first_day, end_day,"
                   " tz, start_utc, end_utc) VALUES ('2026-10', 20727, "
                   "20758, 'Europe/Paris', 0, 1)")
        for m, tid in (("a", ids[A]), ("b", ids[B])):
            dom = "%s.example.fr" % m
            db.execute("INSERT INTO vms (uuid, name, node_id, tenant_id, "
                       "vcpus, memory_mib, disk_bytes, image_id, "
                       "created_at) VALUES (?, ?, 1, ?, 1, 64, 1048576, 1, "
                       "?)", ("uuid-" + m, "vm-" + m, tid, now))
            cur = db.execute(
                "INSERT INTO mail_domains (name, tenant_id, node_id, "
                "dkim_selector, dkim_private_pem, dkim_public_b64, "
                "created_at) VALUES (?, ?, 1, 's', 'k', 'p', ?)",
                (dom, tid, now))
            did = cur.lastrowid
            db.execute("INSERT INTO mailboxes (id, address, domain_id, "
                       "password_hash, quota_bytes, created_at, updated_at)"
                       " VALUES (?, ?, ?, 'h', 1024, ?, ?)",
                       ("mb-" + m, "x@" + dom, did, now, now))
            db.execute("INSERT INTO aliases (id, address, domain_id, "
                       "targets, created_at) VALUES (?, ?, ?, '[]', ?)",
                       ("al-" + m, "al@" + dom, did, now))
            db.execute("INSERT INTO sites (id, hostname, tenant_id, "
                       "node_id, created_at, updated_at) VALUES (?, ?, ?, "
                       "1, ?, ?)", ("site-" + m, "www." + dom, tid, now,
                                    now))
            db.execute("INSERT INTO users (name, role, tenant_id, "
                       "created_at) VALUES (?, 'auditor', ?, ?)",
                       ("user-" + m, tid, now))
            db.execute("INSERT INTO statements (tenant_id, period, "
                       "first_day, end_day, tz, member_kind, member_name, "
                       "population, generated_at) VALUES (?, '2026-10', "
                       "20727, 20758, 'Europe/Paris', 'commune', ?, 1, ?)",
                       (tid, m, now))
        return db.execute("SELECT id FROM statements WHERE tenant_id = ?",
                          (ids[A],)).fetchone()[0]


def make_tokens(controller):
    toks = {}
    for role in ROLES:
        for bound in (None, A, B):
            name = "%s-%s" % (role, bound or "platform")
            body = {"name": name, "role": role}
            if bound:
                body["tenant"] = bound
            st, doc, _ = controller.api("POST", "/v1/tokens", body=body)
            assert st == 201, doc
            toks[(role, bound)] = doc["token"]
    # The objects {name} names under /v1/tokens/: A's and B's own tokens.
    for m, bound in (("a", A), ("b", B)):
        st, doc, _ = controller.api("POST", "/v1/tokens", body={
            "name": "tok-" + m, "role": "auditor", "tenant": bound})
        assert st == 201, doc
    return toks


def test_docs_route_table_is_the_servers(controller):
    roles, routes = read_tables()
    st, doc, _ = controller.api("GET", "/v1/openapi.json", token=None)
    served = {}
    for p, ops in doc["paths"].items():
        for m, op in ops.items():
            loc = op.get("x-member")
            if loc and loc.startswith("sql:"):
                loc = "owner of " + ", ".join(
                    sorted(set(re.findall(r":([a-z_]+)", loc[4:]))))
            elif loc:
                loc = loc.replace(":", " ")
            served[(m.upper(), p)] = (op.get("x-permission"), op["x-scope"],
                                      loc)
    documented = {(r["method"], r["path"]): (r["perm"], r["scope"],
                                             r["member"]) for r in routes}
    assert documented == served
    assert set(ROLES) <= set(roles)


def test_every_route_every_role_every_scope(controller):
    roles, routes = read_tables()
    for insee, name in ((A, "Agassac"), (B, "Aignes")):
        controller.opsnctl("tenant", "add", "--kind", "commune", "--name",
                           name, "--insee", insee)
    ids = {}
    for insee in (A, B):
        st, t, _ = controller.api("GET", "/v1/tenants/" + insee)
        ids[insee] = t["id"]
    controller.stop()
    stmt_id = add_fixture_rows(controller, ids)
    controller.start()
    toks = make_tokens(controller)
    before = dump(controller)

    checked, refusals, wrong = 0, {403: 0, 404: 0}, []
    for route in routes:
        path, body = fill(route, stmt_id)
        for role in ROLES:
            for bound in (None, A, B):
                want = expected(roles, route, role, bound)
                st, doc, _ = controller.api(route["method"], path,
                                            body=body,
                                            token=toks[(role, bound)],
                                            headers=PROBE)
                checked += 1
                ok = st == want
                if route["scope"] == "public":
                    # Anyone may call it: its handler answers (a login
                    # without a password gets its 400), never 401 or 403.
                    ok = st not in (401, 403) and st < 500
                if want == 200 and route["scope"] != "public":
                    ok = ok and doc == {"authorized": True}
                if not ok:
                    wrong.append((route["method"], path, role, bound, want,
                                  st, doc))
                    continue
                if want != 200:
                    refusals[want] += 1
                    if route["method"] != "GET":
                        assert dump(controller) == before, (
                            "a refused write changed the database",
                            route["method"], path, role, bound)
    assert not wrong, "\n".join(map(str, wrong[:20]))
    # Nothing changed at all: allowed calls only asked for the decision.
    assert dump(controller) == before
    print("authz matrix: %d routes x %d roles x 3 scopes = %d calls, "
          "%d refused with 403, %d with 404" % (
              len(routes), len(ROLES), checked, refusals[403],
              refusals[404]))
    assert checked == len(routes) * len(ROLES) * 3


def test_member_b_cannot_tell_a_s_objects_from_missing_ones(controller):
    """B's token gets the same 404 for A's mailbox as for no mailbox."""
    for insee, name in ((A, "Agassac"), (B, "Aignes")):
        controller.opsnctl("tenant", "add", "--kind", "commune", "--name",
                           name, "--insee", insee)
    ids = {i: controller.api("GET", "/v1/tenants/" + i)[1]["id"]
           for i in (A, B)}
    controller.stop()
    add_fixture_rows(controller, ids)
    controller.start()
    st, doc, _ = controller.api("POST", "/v1/tokens", body={
        "name": "b-op", "role": "operator", "tenant": B})
    tok = doc["token"]
    for a_obj, missing in (("/v1/mail/mailboxes/x@a.example.fr",
                            "/v1/mail/mailboxes/x@nowhere.example.fr"),
                           ("/v1/vms/vm-a", "/v1/vms/vm-z"),
                           ("/v1/tenants/" + A, "/v1/tenants/99999")):
        s1, d1, _ = controller.api("GET", a_obj, token=tok)
        s2, d2, _ = controller.api("GET", missing, token=tok)
        assert s1 == s2 == 404, (a_obj, d1, d2)
        assert d1["error"]["code"] == d2["error"]["code"] == "not_found"
    # And B's own objects answer for real (no probe).
    st, doc, _ = controller.api("GET", "/v1/mail/mailboxes/x@b.example.fr",
                                token=tok)
    assert st == 200 and doc["address"] == "x@b.example.fr", doc
    # A bound token lists its own member only, implied or named.
    st, doc, _ = controller.api("GET", "/v1/vms", token=tok)
    assert st == 200 and [v["name"] for v in doc["items"]] == ["vm-b"], doc
    st, doc, _ = controller.api("GET", "/v1/tenants", token=tok)
    assert [t["insee"] for t in doc["items"]] == [B]


def test_tokens_never_grow_their_powers(controller):
    controller.opsnctl("tenant", "add", "--kind", "commune", "--name",
                       "Agassac", "--insee", A)
    controller.opsnctl("tenant", "add", "--kind", "commune", "--name",
                       "Aignes", "--insee", B)
    st, doc, _ = controller.api("POST", "/v1/tokens", body={
        "name": "a-admin", "role": "admin", "tenant": A})
    a_admin = doc["token"]
    st, doc, _ = controller.api("POST", "/v1/tokens", body={
        "name": "plat-op", "role": "operator"})
    op = doc["token"]
    before = dump(controller)
    # A member's admin cannot make an unbound token, nor one for B.
    st, doc, _ = controller.api("POST", "/v1/tokens", token=a_admin, body={
        "name": "escape", "role": "admin", "tenant": B})
    assert st == 404, doc
    # Without a tenant, its own member is implied: the new token is bound.
    st, doc, _ = controller.api("POST", "/v1/tokens", token=a_admin, body={
        "name": "a-fin", "role": "finance"})
    assert st == 201 and doc["tenant"] is not None, doc
    before = dump(controller)
    # A member's admin cannot suspend or re-activate its member, change
    # its quotas, add a tariff or an adjustment, or enrol a hypervisor.
    for method, path, body in (
            ("POST", "/v1/tenants/%s/activate" % A, None),
            ("PATCH", "/v1/tenants/%s" % A, {"quota_vcpus": 999}),
            ("POST", "/v1/adjustments", {"tenant": A, "amount": "-99999.00",
                                         "reason": "x"}),
            ("POST", "/v1/tariffs", {"name": "x"}),
            ("POST", "/v1/node-tokens", {})):
        st, doc, _ = controller.api(method, path, body=body, token=a_admin)
        assert st == 403, (path, doc)
    assert dump(controller) == before
    # An operator makes no token at all, let alone an admin one.
    st, doc, _ = controller.api("POST", "/v1/tokens", token=op, body={
        "name": "up", "role": "admin"})
    assert st == 403, doc
    assert dump(controller) == before
