"""The web console in a real browser (tests/browser, playwright-core and
Debian's chromium) against a real controller, a real mail agent and a
private Postfix + Dovecot pair.

One controller serves every journey of this module: it holds the whole of
France but département 31 (about 35,000 members, the national scale the
console must stay fast at), which an operator then imports through the
console. Each journey saves its screenshots under
build/test-output/console/JOURNEY and runs axe-core on every page it
visits; what the browser did is then checked where a user would notice it
(an IMAP login with the new password, the audit trail, the database).
"""
import calendar
import datetime
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time

import pytest

import mailstack
import opsn
from opsn import wait_until

BROWSER_DIR = os.path.join(opsn.TOP, "tests", "browser")
CHROMIUM = os.environ.get("OPSN_CHROMIUM", "/usr/bin/chromium")
NODE = shutil.which("node")
DATA = os.environ.get("OPSN_DATA_DIR") or os.path.join(opsn.TOP, "..",
                                                        "shared", "data")
COMMUNES = os.path.abspath(os.path.join(DATA, "communes.json"))
OUT = os.path.join(opsn.TOP, "build", "test-output", "console")

PASSWORD = "Correct horse 31001"
DOMAIN, OTHER_DOMAIN = "mairie-agassac.fr", "mairie-aignes.fr"
# A page of the console is drawn in under a second with 35,000 members.
PAGE_BUDGET_MS = 1000
MONTHS_FR = ["janvier", "février", "mars", "avril", "mai", "juin",
             "juillet", "août", "septembre", "octobre", "novembre",
             "décembre"]

pytestmark = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM) or NODE is None or
                       not os.path.isdir(os.path.join(
                           BROWSER_DIR, "node_modules", "playwright-core")),
                       reason="chromium, node or the browser tests' npm "
                       "packages are missing (ops/deps.sh)"),
    pytest.mark.skipif(not mailstack.have("postfix", "dovecot", "doveadm"),
                       reason="postfix or dovecot missing (ops/deps.sh)"),
]

# Etalab's fields for one commune, as opsnctl sends them.
def last_month():
    """The billing period before this one ("2026-11"), and its first and
    next day as UTC hours."""
    today = datetime.date.today()
    first = today.replace(day=1)
    prev = (first - datetime.timedelta(days=1)).replace(day=1)
    return prev, first


class World:
    """Everything the journeys share, set up once."""

    def __init__(self, root):
        self.root = root
        self.procs = []
        self.stack = None

    def start(self):
        self.stack = mailstack.MailStack()
        self.stack.start()
        self.c = opsn.Controller(self.root, extra_conf=(
            "[console]\ndir = %s\nrequire_totp = yes\n" %
            os.path.join(opsn.TOP, "console")))
        self.procs.append(self.c)
        self.c.start()
        self.agent = opsn.Agent(self.root, "mx1", [self.c.agent_addr],
                                token=self.c.join_token(), role="mail",
                                extra_args=self.stack.agent_args())
        self.procs.append(self.agent)
        self.agent.start()
        wait_until(lambda: self.c.node_state("mx1") == "ready", 20,
                   what="mx1 ready")
        self.wait_backend()
        self.members()
        # The national import holds the loop for seconds on a loaded
        # machine: with the tests' 500 ms heartbeats the agent may have
        # reconnected meanwhile. Wait for it to be ready again.
        self.wait_backend()
        self.mail()
        self.accounts()
        self.finance()

    def wait_backend(self):
        wait_until(lambda: any(b["name"] == "mx1" and b["ready"] for b in
                               self.ok("GET", "/v1/backends")["items"]),
                   30, what="mx1 a ready mail backend")

    def ok(self, method, path, body=None, **kw):
        st, doc, _ = self.c.api(method, path, body=body, **kw)
        assert st < 300, (method, path, st, doc)
        return doc

    def members(self):
        """France but département 31, and the two communes of 31 the
        other journeys use, all from Etalab's file when it is there."""
        self.have_data = os.path.exists(COMMUNES)
        keep = {"31001", "31002"}
        if self.have_data:
            with open(COMMUNES) as f:
                communes = json.load(f)
            entries = [e for e in communes
                       if e.get("type") == "commune-actuelle" and
                       (e.get("departement") != "31" or e["code"] in keep)]
            self.names = {e["code"]: e["nom"] for e in communes
                          if e.get("code") in keep and
                          e.get("type") == "commune-actuelle"}
            # Over the API's 1 MiB body: opsnctl sends it in parts.
            path = os.path.join(self.root, "communes.json")
            with open(path, "w") as f:
                json.dump(entries, f)
            t0 = time.monotonic()
            self.c.opsnctl("tenant", "import", "--etalab", path)
            self.preload = {"members": len(entries),
                            "seconds": round(time.monotonic() - t0, 1)}
        else:
            for insee, siren, name in (("31001", "213100019", "Agassac"),
                                       ("31002", "213100027", "Aignes")):
                self.ok("POST", "/v1/tenants", {
                    "kind": "commune", "name": name, "insee": insee,
                    "siren": siren, "population": 300})
            self.names = {"31001": "Agassac", "31002": "Aignes"}
            self.preload = {"members": 2}
        for insee in keep:
            self.ok("PATCH", "/v1/tenants/" + insee,
                    {"joined_on": "2015-01-01"})
        self.other_id = self.ok("GET", "/v1/tenants/31002")["id"]

    def mail(self):
        self.c.opsnctl("mail", "domain", "add", DOMAIN, "--tenant", "31001",
                       "--quota", "1G")
        self.c.opsnctl("mail", "domain", "add", OTHER_DOMAIN, "--tenant",
                       "31002", "--quota", "1G")
        self.reset_box = "secretariat@" + DOMAIN
        self.c.opsnctl("mail", "box", "add", self.reset_box, "--quota",
                       "100M", "--password-stdin", input=PASSWORD + "\n")
        self.c.opsnctl("mail", "box", "add", "accueil@" + OTHER_DOMAIN,
                       "--quota", "100M", "--password-stdin",
                       input=PASSWORD + "\n")

    def accounts(self):
        self.users = {}
        for key, name, role, tenant in (
                ("operator", "agent.exploitation", "operator", None),
                ("finance", "compta", "finance", None),
                ("member", "mairie-agassac", "operator", "31001"),
                ("throttled", "stagiaire", "operator", None)):
            body = {"name": name, "role": role, "password": PASSWORD}
            if tenant:
                body["tenant"] = tenant
            self.ok("POST", "/v1/users", body)
            self.users[key] = {"name": name, "password": PASSWORD}

    def finance(self):
        """The sample tariff, and last month's usage of the two communes
        (rows as metering's rollup writes them)."""
        self.c.opsnctl("tariff", "add", "--file",
                       os.path.join(opsn.TOP, "ops", "tariff.sample.ini"))
        prev, first = last_month()
        self.period = prev.strftime("%Y-%m")
        self.period_label = f"{MONTHS_FR[prev.month - 1]} {prev.year}"
        start = calendar.timegm(prev.timetuple()) - 7200
        end = calendar.timegm(first.timetuple()) - 7200
        ids = {i: self.ok("GET", "/v1/tenants/" + i)["id"]
               for i in ("31001", "31002")}
        rows = []
        for h in range(start, end, 3600):
            rows.append((ids["31001"], h, "vm", "vm-a", "vcpu_seconds", 7200))
            rows.append((ids["31001"], h, "vm", "vm-a", "memory_mib_seconds",
                         2048 * 3600))
            rows.append((ids["31002"], h, "site", "site-b", "site_seconds",
                         3600))
        db = sqlite3.connect(os.path.join(self.c.data, "opsn.db"),
                             timeout=30)
        with db:
            db.executemany("INSERT INTO usage_hourly (tenant_id, hour, kind, "
                           "resource, metric, quantity) VALUES (?, ?, ?, ?, "
                           "?, ?)", rows)
        db.close()

    def conf(self, **extra):
        d = {"url": self.c.url, "out": OUT, "users": self.users,
             "communes": COMMUNES, "departement": "31", "insee": "31001",
             "commune": self.names["31001"], "other_insee": "31002",
             "other_commune": self.names["31002"], "other_id": self.other_id,
             "domain": DOMAIN, "other_domain": OTHER_DOMAIN,
             "period": self.period, "period_label": self.period_label,
             "throttle_free": 5}
        d.update(extra)
        return d

    def journey(self, name, **extra):
        """Run one journey in the browser; its JSON report."""
        path = os.path.join(self.root, name + ".json")
        with open(path, "w") as f:
            json.dump(self.conf(**extra), f)
        env = dict(os.environ, OPSN_CONSOLE_CONF=path)
        r = subprocess.run([NODE, os.path.join(BROWSER_DIR, "run.mjs"), name],
                           capture_output=True, text=True, timeout=240,
                           env=env, cwd=BROWSER_DIR)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
        report = json.loads(lines[-1]) if lines else None
        if r.returncode != 0 or not report or not report.get("ok"):
            raise AssertionError(
                f"journey {name} failed (exit {r.returncode}):\n"
                f"{report.get('error') if report else r.stdout}\n"
                f"stderr: {r.stderr[-3000:]}\n"
                f"screenshots: {os.path.join(OUT, name)}")
        # Every page visited was checked by axe-core, without a violation.
        assert report["pages"] and all(p["violations"] == 0
                                       for p in report["pages"])
        print(f"\n{name}: {len(report['pages'])} pages checked by axe-core, "
              f"timings {report['timings']}")
        return report

    def stop(self):
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception:  # noqa: BLE001 - stop the others anyway
                pass
        if self.stack is not None:
            self.stack.cleanup()
        for p in self.procs:
            out = p.output() if os.path.exists(p.log) else ""
            for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                           "runtime error:"):
                assert marker not in out, f"{p.log}: sanitizer report"


@pytest.fixture(scope="module")
def world():
    root = tempfile.mkdtemp(prefix="opsn-console-")
    os.chmod(root, 0o755)
    os.makedirs(OUT, exist_ok=True)
    w = World(root)
    try:
        w.start()
        yield w
    finally:
        w.stop()
        opsn.rmtree(root)


@pytest.mark.skipif(not os.path.exists(COMMUNES), reason="no Etalab data")
def test_operator_imports_a_departement_and_finds_a_commune(world):
    r = world.journey("import-and-find")
    out = r["out"]
    assert out["read"].replace("\u202f", "") == "586"
    # The two communes loaded beforehand were already there, unchanged.
    assert int(out["created"].replace("\u202f", "")) >= 584
    st, doc, _ = world.c.api("GET", "/v1/tenants?q=31&limit=1000")
    assert st == 200 and len(doc["items"]) == 586
    t = r["timings"]
    print(f"preloaded {world.preload}; import of 586 through the console: "
          f"{t['import_ms']} ms")
    for page in ("members_ms", "member_ms", "dashboard_ms", "search_ms"):
        assert t[page] < PAGE_BUDGET_MS, (page, t)


def test_mailbox_created_with_the_keyboard_is_applied_by_the_backend(world):
    box = {"local": "urbanisme", "name": "Service urbanisme",
           "password": "Une phrase assez longue 2026"}
    r = world.journey("mailbox-applied", new_box=box)
    addr = r["out"]["address"]
    # The mail backend applied it: Dovecot takes the password.
    m = wait_until(lambda: world.stack.imap_login(addr, box["password"]), 15,
                   0.1, what="IMAP login of the new mailbox")
    m.logout()
    doc = world.ok("GET", "/v1/mail/mailboxes/" + addr)
    assert doc["name"] == "Service urbanisme"
    assert doc["quota_bytes"] == 100 << 20
    assert doc["live"]["state"] == "applied"
    creates = [a for a in world.ok("GET", "/v1/audit?limit=1000")["items"]
               if a["action"] == "mail.box.create" and
               a["token"] == "user:agent.exploitation"]
    assert creates, "the creation is in the audit trail under the account"


def test_finance_generates_closes_and_downloads_a_period(world):
    r = world.journey("finance-period")
    files = r["out"]["files"]
    with open(files["csv"], encoding="utf-8-sig") as f:
        csv_text = f.read()
    assert csv_text.startswith("statement;period;status;insee;siren;member")
    assert world.names["31001"] in csv_text and world.period in csv_text
    with open(files["json"]) as f:
        doc = json.load(f)
    assert doc["period"] == world.period and doc["status"] == "closed"
    # What was downloaded is what the API exports, checksum and all.
    st, exported, hdrs = world.c.api(
        "GET", f"/v1/statements?period={world.period}&format=json")
    assert st == 200 and exported["checksum"] == doc["checksum"]
    periods = world.ok("GET", "/v1/billing-periods")["items"]
    p = [x for x in periods if x["period"] == world.period][0]
    assert p["status"] == "closed" and p["statements"] >= 2
    euros = p["total"].replace(".", ",")
    assert euros in r["out"]["total"].replace("\u202f", "")


def test_member_admin_resets_a_password_and_sees_no_other_member(world):
    new = "Nouveau mot de passe 31001"
    r = world.journey("member-admin", reset_box={
        "address": world.reset_box, "password": new})
    m = wait_until(lambda: world.stack.imap_login(world.reset_box, new), 15,
                   0.1, what="IMAP login with the new password")
    m.logout()
    assert world.stack.imap_login(world.reset_box, PASSWORD) is None
    # The API said 404 for the other member's pages, as for anything
    # that does not exist.
    for label, text in r["out"]["refused"].items():
        assert "Page introuvable" in text, (label, text)


def test_wrong_password_is_refused_then_throttled(world):
    r = world.journey("login-throttled")
    refusals = r["out"]["refusals"]
    assert len(refusals) == 5
    assert all("wrong user name or password" in x for x in refusals)
    failed = [a for a in world.ok("GET", "/v1/audit?limit=1000")["items"]
              if a["action"] == "session.login_failed" and
              a["object"] == "user/stagiaire"]
    reasons = [a["summary"]["reason"] for a in failed]
    assert reasons.count("password") == 5 and "throttled" in reasons
    # Throttled for the API too, whoever asks with that name.
    st, doc, hdrs = world.c.api("POST", "/v1/session", {
        "user": "stagiaire", "password": PASSWORD}, token=None)
    assert st == 429 and doc["error"]["code"] == "throttled"
    assert int(hdrs["Retry-After"]) > 0


def test_new_admin_sets_a_password_by_link_and_a_second_factor(world):
    link = world.c.opsnctl("user", "add", "dsi", "--role", "admin",
                           "--email", "dsi@opsn.example").stdout.strip()
    assert link.startswith(world.c.url + "/setup#token=setup_"), link
    world.journey("account-setup", admin={
        "name": "dsi", "link": link, "password": "Une phrase de passe sûre"})
    u = world.ok("GET", "/v1/users/dsi")
    assert u["status"] == "active" and u["totp"] is True
    actions = [a["action"] for a in world.ok(
        "GET", "/v1/audit?limit=1000")["items"]
        if a["object"] == "user/dsi"]
    for a in ("user.create", "user.password_set", "user.totp_enable",
              "session.login"):
        assert a in actions, (a, actions)
    # The secret never reaches the audit trail.
    db = sqlite3.connect(os.path.join(world.c.data, "opsn.db"))
    secret = db.execute("SELECT totp_secret FROM users WHERE name = 'dsi'"
                        ).fetchone()[0]
    db.close()
    dump = json.dumps(world.ok("GET", "/v1/audit?limit=1000"))
    assert secret not in dump


def test_write_without_the_csrf_token_is_refused(world):
    r = world.journey("csrf-refused", csrf_name="Syndicat sans jeton",
                      csrf_name2="Syndicat avec jeton")
    assert r["out"]["without"] == 403
    names = [t["name"] for t in world.ok(
        "GET", "/v1/tenants?kind=other&limit=1000")["items"]]
    assert "Syndicat sans jeton" not in names
    assert "Syndicat avec jeton" in names
    actions = [a["action"] for a in world.ok(
        "GET", "/v1/audit?limit=1000")["items"]
        if a["token"] == "user:agent.exploitation"]
    assert "session.login" in actions and "session.logout" in actions


def test_every_string_in_french_and_english_and_every_module_preloaded():
    r = subprocess.run([NODE, os.path.join(BROWSER_DIR, "lint.mjs")],
                       capture_output=True, text=True, timeout=60,
                       cwd=BROWSER_DIR)
    assert r.returncode == 0, r.stdout + r.stderr
