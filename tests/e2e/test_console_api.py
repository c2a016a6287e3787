"""Console accounts and sessions through the API, as the console's pages
use it (no browser: tests/e2e/test_console.py has the browser's journeys).

A session is a cookie the controller made; every write made with it needs
its CSRF token; it ends at logout, when idle, after its lifetime, when its
account's password changes or the account is disabled; a session bound to
a member is authorized exactly as a token bound to it.
"""
import time

import pytest

import opsn

PASSWORD = "Correct horse 31001"
COOKIE = "__Host-opsn_session"


@pytest.fixture
def console(workdir, procs):
    """A controller whose sessions end after 2 s idle, 5 s in all (test
    builds only), with two communes and an operator account."""
    c = opsn.Controller(workdir, env={"OPSN_TEST_CONSOLE_TIMEOUTS": "2,5"})
    procs.append(c)
    c.start()
    for insee, siren, name in (("31001", "213100019", "Agassac"),
                               ("31002", "213100027", "Aignes")):
        st, doc, _ = c.api("POST", "/v1/tenants", {
            "kind": "commune", "name": name, "insee": insee, "siren": siren})
        assert st == 201, doc
    add_user(c, "agent", "operator")
    return c


def add_user(c, name, role, tenant=None):
    body = {"name": name, "role": role, "password": PASSWORD}
    if tenant:
        body["tenant"] = tenant
    st, doc, _ = c.api("POST", "/v1/users", body)
    assert st == 201, doc
    return doc


def login(c, name, password=PASSWORD):
    """(status, session document, the cookie's value, its Set-Cookie)."""
    st, doc, hdrs = c.api("POST", "/v1/session", {"user": name,
                                                  "password": password},
                          token=None)
    raw = hdrs.get("Set-Cookie") or ""
    value = raw.split(";")[0].split("=", 1)[1] if raw.startswith(
        COOKIE + "=") else None
    return st, doc, value, raw


def call(c, method, path, cookie, body=None, csrf=None, headers=None):
    h = {"Cookie": f"{COOKIE}={cookie}"}
    if csrf:
        h["X-CSRF-Token"] = csrf
    h.update(headers or {})
    return c.api(method, path, body=body, token=None, headers=h)


def test_session_cookie_csrf_and_logout(console):
    st, doc, cookie, raw = login(console, "agent")
    assert st == 201, doc
    attrs = [a.strip() for a in raw.split(";")]
    assert {"Path=/", "Secure", "HttpOnly", "SameSite=Strict"} <= set(attrs)
    assert cookie and len(cookie) >= 40
    assert doc["user"] == "agent" and doc["role"] == "operator"
    assert "POST /v1/tenants" in doc["allowed"]
    assert "POST /v1/tokens" not in doc["allowed"]  # operators make none
    csrf = doc["csrf_token"]
    st, me, _ = call(console, "GET", "/v1/session", cookie)
    assert st == 200 and me["csrf_token"] == csrf
    body = {"kind": "other", "name": "Syndicat des eaux"}
    st, err, _ = call(console, "POST", "/v1/tenants", cookie, body)
    assert st == 403 and err["error"]["code"] == "csrf"
    st, err, _ = call(console, "POST", "/v1/tenants", cookie, body,
                      csrf="0" * 40)
    assert st == 403 and err["error"]["code"] == "csrf"
    st, err, _ = call(console, "POST", "/v1/tenants", cookie, body,
                      csrf=csrf, headers={"Origin": "https://evil.example"})
    assert st == 403 and err["error"]["code"] == "csrf"
    st, t, _ = call(console, "POST", "/v1/tenants", cookie, body, csrf=csrf)
    assert st == 201, t
    # The audit trail names the account, not a token.
    st, audit, _ = console.api("GET", "/v1/audit?limit=1000")
    rec = [a for a in audit["items"] if a["action"] == "tenant.create" and
           a["object"] == "tenant/%d" % t["id"]][0]
    assert rec["token"] == "user:agent" and rec["role"] == "operator"
    # Logout: the cookie is cleared and refused from now on.
    st, _, hdrs = call(console, "DELETE", "/v1/session", cookie, csrf=csrf)
    assert st == 200 and "Max-Age=0" in hdrs.get("Set-Cookie")
    st, err, _ = call(console, "GET", "/v1/session", cookie)
    assert st == 401 and err["error"]["code"] == "session_ended"
    # A bearer token has no session to show.
    st, err, _ = console.api("GET", "/v1/session")
    assert st == 400 and err["error"]["code"] == "no_session"


def test_session_ends_when_idle_and_after_its_lifetime(console):
    st, doc, cookie, _ = login(console, "agent")
    if doc["idle_timeout"] != 2:
        pytest.skip("a release build: OPSN_TEST_CONSOLE_TIMEOUTS is off")
    # Any call is activity (polling would keep the session alive until its
    # 5 s lifetime): left alone past its idle timeout, it has ended.
    assert call(console, "GET", "/v1/session", cookie)[0] == 200
    time.sleep(doc["idle_timeout"] + 1.2)
    assert call(console, "GET", "/v1/session", cookie)[0] == 401
    # Busy all along, it still ends 5 s after its login.
    st, doc, cookie, _ = login(console, "agent")
    seen = []
    for _ in range(40):
        seen.append(call(console, "GET", "/v1/tenants?limit=1", cookie)[0])
        if seen[-1] == 401:
            break
        time.sleep(0.5)
    assert seen[-1] == 401 and seen.count(200) >= 6, seen


def test_password_change_and_disable_end_the_other_sessions(console):
    _, a, ca, _ = login(console, "agent")
    _, b, cb, _ = login(console, "agent")
    st, err, _ = call(console, "POST", "/v1/session/password", ca,
                      {"current": "wrong password!", "password":
                       "Un nouveau mot de passe"}, csrf=a["csrf_token"])
    assert st == 403
    st, err, _ = call(console, "POST", "/v1/session/password", ca,
                      {"current": PASSWORD, "password": "court"},
                      csrf=a["csrf_token"])
    assert st == 400 and err["error"]["code"] == "weak_password"
    st, ok, _ = call(console, "POST", "/v1/session/password", ca,
                     {"current": PASSWORD, "password":
                      "Un nouveau mot de passe"}, csrf=a["csrf_token"])
    assert st == 200, ok
    assert call(console, "GET", "/v1/session", ca)[0] == 200
    assert call(console, "GET", "/v1/session", cb)[0] == 401
    assert login(console, "agent")[0] == 401
    assert login(console, "agent", "Un nouveau mot de passe")[0] == 201
    # Disabled: every session ends, and no login.
    st, _, _ = console.api("POST", "/v1/users/agent/disable")
    assert st == 200
    assert call(console, "GET", "/v1/session", ca)[0] == 401
    assert login(console, "agent", "Un nouveau mot de passe")[0] == 401


def test_member_session_is_authorized_as_a_member_token(console):
    add_user(console, "mairie", "operator", "31001")
    st, doc, cookie, _ = login(console, "mairie")
    assert st == 201 and doc["tenant"]["insee"] == "31001"
    assert "PATCH /v1/tenants/{tenant}" not in doc["allowed"]
    assert "GET /v1/nodes" not in doc["allowed"]
    assert call(console, "GET", "/v1/tenants/31001", cookie)[0] == 200
    st, err, _ = call(console, "GET", "/v1/tenants/31002", cookie)
    assert st == 404
    st, err, _ = call(console, "GET", "/v1/nodes", cookie)
    assert st == 403
    st, lst, _ = call(console, "GET", "/v1/tenants", cookie)
    assert [t["insee"] for t in lst["items"]] == ["31001"]
    # Its accounts: its own member's only, never one that may do more.
    st, err, _ = call(console, "POST", "/v1/users", cookie, {
        "name": "x", "role": "operator"}, csrf=doc["csrf_token"])
    assert st == 403      # users.write is not an operator's
    add_user(console, "adm31", "admin", "31001")
    _, adoc, acookie, _ = login(console, "adm31")
    st, u, _ = call(console, "POST", "/v1/users", acookie, {
        "name": "secr", "role": "auditor"}, csrf=adoc["csrf_token"])
    assert st == 201 and u["tenant"]["insee"] == "31001", u
    st, err, _ = call(console, "POST", "/v1/users", acookie, {
        "name": "secr2", "role": "auditor", "tenant": "31002"},
        csrf=adoc["csrf_token"])
    assert st == 404
    st, err, _ = call(console, "POST", "/v1/users/agent/disable", acookie,
                      csrf=adoc["csrf_token"])
    assert st == 404      # another member's (here: the platform's) account


def test_one_time_link_and_unknown_names(console):
    r = console.opsnctl("user", "add", "jeanne", "--role", "finance")
    link = r.stdout.strip()
    assert link.startswith(console.url + "/setup#token=setup_")
    token = link.split("token=", 1)[1]
    st, doc, _ = console.api("POST", "/v1/password-setup", {
        "token": token, "password": "court"}, token=None)
    assert st == 400 and doc["error"]["code"] == "weak_password"
    st, doc, _ = console.api("POST", "/v1/password-setup", {
        "token": token, "password": "La phrase de Jeanne"}, token=None)
    assert st == 200 and doc["user"] == "jeanne"
    st, doc, _ = console.api("POST", "/v1/password-setup", {
        "token": token, "password": "Une autre phrase encore"}, token=None)
    assert st == 400 and doc["error"]["code"] == "bad_link"
    assert login(console, "jeanne", "La phrase de Jeanne")[0] == 201
    # An unknown name and a wrong password look the same.
    st1, d1, _, _ = login(console, "personne", "La phrase de Jeanne")
    st2, d2, _, _ = login(console, "jeanne", "pas la bonne phrase")
    assert (st1, d1) == (st2, d2) == (401, {"error": {
        "code": "bad_credentials", "message":
        "wrong user name or password"}})
    users = console.opsnctl("user", "list").stdout
    assert "jeanne" in users and "active" in users


def test_one_address_is_throttled_across_names(console):
    for i in range(20):
        st, _, _, _ = login(console, f"nom{i}", "mauvais mot de passe")
        assert st == 401
    st, doc, _, _ = login(console, "agent")
    assert st == 429 and doc["error"]["code"] == "throttled"
    st, audit, _ = console.api("GET", "/v1/audit?limit=1000")
    failures = [a for a in audit["items"]
                if a["action"] == "session.login_failed"]
    assert len(failures) == 21
    assert failures[-1]["summary"]["reason"] == "throttled"
    assert failures[-1]["summary"]["address"] == "127.0.0.1"
