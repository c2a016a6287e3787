"""Mail domains, mailboxes, aliases and sites through opsnctl and the API,
without real mail or web daemons: backends are nodes that say they have
role mail or web but are not connected, so every change stays pending in
the provisioning journal. The real-daemon tests are test_services_*.py."""
import json
import os
import sqlite3
import subprocess

import pytest

import opsn
from opsn import wait_until

PASSWORD = "Tr0ub4dor&3-horse"
NEW_PASSWORD = "correct-Battery-staple-9"
CSV_PASSWORD = "Csv-Imported-Secret-77"
# A yescrypt hash as a migration from another system brings it.
YESCRYPT = ("{CRYPT}$y$j9T$F5Jx5fExrKuPp53xLKQ..1$"
            "X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7")
DOMAIN = "mairie-agassac.fr"


def db_path(controller):
    return os.path.join(controller.data, "opsn.db")


def dump(controller):
    """The whole database as SQL text, to compare before and after."""
    return subprocess.run(["sqlite3", db_path(controller), ".dump"],
                          capture_output=True, text=True,
                          check=True).stdout


def add_backends(controller, *nodes):
    """Register nodes as backends (name, roles) as if their agents had
    said hello once, then restart the controller so that it loads them.
    They are not connected: nothing they are sent is ever applied."""
    controller.stop()
    db = sqlite3.connect(db_path(controller))
    with db:
        for name, roles in nodes:
            db.execute("INSERT INTO nodes (name, state, roles, cert_serial, "
                       "cert_fpr, enrolled_at, state_since, hostname) VALUES "
                       "(?, 'unreachable', ?, '', '', 0, 0, ?)",
                       (name, roles, name + ".opsn.example"))
    db.close()
    controller.start()


def ctl_json(controller, *args):
    return json.loads(controller.opsnctl("-o", "json", *args).stdout)


def setup_member(controller, quota="1G"):
    """Agassac, a mail backend mx1, a web backend web1, and its domain."""
    controller.opsnctl("tenant", "add", "--kind", "commune", "--name",
                       "Agassac", "--insee", "31001", "--siren", "213100019")
    add_backends(controller, ("mx1", "mail"), ("web1", "web"))
    args = ["mail", "domain", "add", DOMAIN, "--tenant", "31001",
            "--backend", "mx1"]
    if quota:
        args += ["--quota", quota]
    return ctl_json(controller, *args)


def add_box(controller, local, quota="100M", password=PASSWORD, check=True):
    return controller.opsnctl("mail", "box", "add", f"{local}@{DOMAIN}",
                              "--name", local.title(), "--quota", quota,
                              "--password-stdin", input=password + "\n",
                              check=check)


def test_domain_quota_refusal_changes_nothing(controller):
    setup_member(controller, quota="1G")
    add_box(controller, "secretariat", quota="800M")
    before = dump(controller)
    r = add_box(controller, "compta", quota="300M", check=False)
    assert r.returncode != 0
    # Both numbers: what was asked and what the domain has.
    assert "314572800" in r.stderr and "1073741824" in r.stderr, r.stderr
    assert "quota_exceeded" in r.stderr
    assert dump(controller) == before
    # Growing a mailbox past the domain's quota is refused the same way.
    r = controller.opsnctl("mail", "box", "set", f"secretariat@{DOMAIN}",
                           "--quota", "2G", check=False)
    assert r.returncode != 0 and "2147483648" in r.stderr, r.stderr
    assert dump(controller) == before
    # What fits is fine.
    add_box(controller, "compta", quota="200M")
    d = ctl_json(controller, "mail", "domain", "show", DOMAIN)
    assert d["allocated_bytes"] == 1000 << 20 and d["mailboxes"] == 2


def test_passwords_never_appear_except_as_hashes(controller, workdir):
    setup_member(controller)
    add_box(controller, "secretariat")
    controller.opsnctl("mail", "box", "passwd", f"secretariat@{DOMAIN}",
                       "--password-stdin", input=NEW_PASSWORD + "\n")
    controller.opsnctl("mail", "box", "add", f"migre@{DOMAIN}", "--quota",
                       "50M", "--password-hash", YESCRYPT)
    csv_file = os.path.join(workdir, "staff.csv")
    with open(csv_file, "w") as f:
        f.write("address;name;quota;password\n"
                f"accueil@{DOMAIN};Accueil;100M;{CSV_PASSWORD}\n")
    controller.opsnctl("mail", "box", "import", "--domain", DOMAIN, "--csv",
                       csv_file)
    text = dump(controller)
    for secret in (PASSWORD, NEW_PASSWORD, CSV_PASSWORD):
        assert secret not in text
    db = sqlite3.connect(db_path(controller))
    hashes = dict(db.execute("SELECT address, password_hash FROM mailboxes"))
    db.close()
    assert hashes[f"secretariat@{DOMAIN}"].startswith("{SHA512-CRYPT}$6$")
    assert hashes[f"accueil@{DOMAIN}"].startswith("{SHA512-CRYPT}$6$")
    assert hashes[f"migre@{DOMAIN}"] == YESCRYPT
    # Not in any answer, as a password or as a hash.
    answers = [controller.opsnctl("-o", "json", "mail", "box", "list").stdout]
    for local in ("secretariat", "migre", "accueil"):
        answers.append(controller.opsnctl("-o", "json", "mail", "box", "show",
                                          f"{local}@{DOMAIN}").stdout)
    status, raw, _ = controller.api("GET", "/v1/mail/mailboxes?limit=1000")
    answers.append(json.dumps(raw))
    for a in answers:
        assert "password" not in a and "$6$" not in a and "$y$" not in a
    # Not in the audit trail, which still says what happened.
    db = sqlite3.connect(db_path(controller))
    audit = "\n".join(r[0] + " " + r[1] for r in db.execute(
        "SELECT action, summary FROM audit"))
    db.close()
    for secret in (PASSWORD, NEW_PASSWORD, CSV_PASSWORD, YESCRYPT, "$6$"):
        assert secret not in audit
    assert "mail.box.password" in audit and "mail.box.import" in audit
    # Not in the controller's log either (it runs with -d: debug).
    log = controller.output()
    for secret in (PASSWORD, NEW_PASSWORD, CSV_PASSWORD, "$6$"):
        assert secret not in log
    # Weak or malformed hashes are refused.
    for weak in ("{MD5-CRYPT}$1$abc$0123456789", "{PLAIN}secret",
                 "{SHA512-CRYPT}$6$salt$short"):
        r = controller.opsnctl("mail", "box", "add", f"weak@{DOMAIN}",
                               "--quota", "10M", "--password-hash", weak,
                               check=False)
        assert r.returncode != 0 and "weak_hash" in r.stderr, r.stderr
    # A password too short never reaches the database.
    r = add_box(controller, "court", password="abc", check=False)
    assert r.returncode != 0 and "8 to 1024" in r.stderr


def test_invalid_host_names_are_refused_idn_is_punycode(controller):
    setup_member(controller)
    before = dump(controller)
    for bad in ("bad_name.fr", "x-.fr", "localhost", "a..fr", "10.0.0.1",
                "x" * 64 + ".fr"):
        r = controller.opsnctl("mail", "domain", "add", bad, "--tenant",
                               "31001", "--backend", "mx1", check=False)
        assert r.returncode != 0 and "bad_field" in r.stderr, (bad, r.stderr)
        if bad == "localhost":
            continue  # www.localhost is a fine name
        r = controller.opsnctl("site", "add", "www." + bad, "--tenant",
                               "31001", "--backend", "web1", check=False)
        assert r.returncode != 0, bad
    for bad in ("www.exa mple.fr", "-x.fr", "a.fr/x", "a.fr\n", ""):
        status, doc, _ = controller.api("POST", "/v1/sites", {
            "hostname": bad, "tenant": "31001", "backend": "web1"})
        assert status == 400 and doc["error"]["code"] == "bad_field", bad
    assert dump(controller) == before
    # Unicode in, punycode stored; found again by either form.
    d = ctl_json(controller, "mail", "domain", "add", "Mairie-Élancourt.fr",
                 "--tenant", "31001", "--backend", "mx1")
    assert d["name"] == "xn--mairie-lancourt-hnb.fr"
    assert d["name_unicode"] == "mairie-élancourt.fr"
    s = ctl_json(controller, "site", "add", "www.élancourt.fr", "--tenant",
                 "31001", "--alias", "ÉLANCOURT.fr", "--backend", "web1")
    assert s["hostname"] == "www.xn--lancourt-90a.fr"
    assert s["aliases"] == ["xn--lancourt-90a.fr"]
    db = sqlite3.connect(db_path(controller))
    names = [r[0] for r in db.execute("SELECT name FROM mail_domains")] + \
        [r[0] for r in db.execute("SELECT hostname FROM sites")]
    db.close()
    assert "xn--mairie-lancourt-hnb.fr" in names
    assert "www.xn--lancourt-90a.fr" in names
    assert all(n.isascii() for n in names)
    assert ctl_json(controller, "site", "show", "www.élancourt.fr")["id"] == \
        s["id"]
    assert ctl_json(controller, "mail", "domain", "show",
                    "mairie-élancourt.fr")["name"] == d["name"]
    # A name already served (as host name or alias) is refused.
    r = controller.opsnctl("site", "add", "élancourt.fr", "--tenant",
                           "31001", "--backend", "web1", check=False)
    assert r.returncode != 0 and "already served" in r.stderr


def test_suspended_member_suspends_its_mailboxes_and_sites(controller):
    setup_member(controller)
    add_box(controller, "secretariat")
    controller.opsnctl("site", "add", "www." + DOMAIN, "--tenant", "31001",
                       "--backend", "web1")
    gen = ctl_json(controller, "backend", "show", "mx1")["generation"]
    controller.opsnctl("tenant", "suspend", "31001")
    b = ctl_json(controller, "mail", "box", "show", f"secretariat@{DOMAIN}")
    assert b["status"] == "suspended" and b["member_suspended"] is True
    assert b["own_status"] == "active"
    assert ctl_json(controller, "site", "show",
                    "www." + DOMAIN)["status"] == "suspended"
    r = controller.opsnctl("mail", "box", "list", "--domain", DOMAIN)
    assert "suspended" in r.stdout
    # Each backend gets a new generation that carries the suspension.
    wait_until(lambda: ctl_json(controller, "backend", "show", "mx1")
               ["generation"] > gen, 10, what="a new generation for mx1")
    changes = ctl_json(controller, "changes", "--pending")["items"]
    kinds = {(c["node"], c["kind"], c["action"]) for c in changes}
    assert ("mx1", "tenant", "suspend") in kinds
    assert ("web1", "tenant", "suspend") in kinds
    # A suspended member gets nothing new.
    r = add_box(controller, "compta", check=False)
    assert r.returncode != 0 and "tenant_inactive" in r.stderr
    controller.opsnctl("tenant", "activate", "31001")
    b = ctl_json(controller, "mail", "box", "show", f"secretariat@{DOMAIN}")
    assert b["status"] == "active" and b["member_suspended"] is False
    wait_until(lambda: any(c["kind"] == "tenant" and c["action"] == "activate"
                           for c in ctl_json(controller, "changes")["items"]),
               10, what="the reactivation in the journal")


def test_deleted_mailbox_is_kept_and_restorable(controller):
    setup_member(controller, quota="500M")
    add_box(controller, "secretariat", quota="400M")
    r = controller.opsnctl("mail", "box", "delete", f"secretariat@{DOMAIN}")
    assert "kept until" in r.stdout
    b = ctl_json(controller, "mail", "box", "show", f"secretariat@{DOMAIN}")
    assert b["status"] == "deleted" and b["purge_after"] is not None
    # Its quota is free while it is deleted...
    add_box(controller, "compta", quota="400M")
    # ...so restoring it must not overfill the domain.
    r = controller.opsnctl("mail", "box", "restore", f"secretariat@{DOMAIN}",
                           check=False)
    assert r.returncode != 0 and "quota_exceeded" in r.stderr
    controller.opsnctl("mail", "box", "delete", f"compta@{DOMAIN}")
    r = controller.opsnctl("mail", "box", "restore", f"secretariat@{DOMAIN}")
    assert "active" in r.stdout
    # The address of a deleted box is not reused behind its back.
    r = add_box(controller, "compta", check=False)
    assert r.returncode != 0 and "restore it" in r.stderr
    # A domain with mailboxes (even deleted ones) is not deleted.
    r = controller.opsnctl("mail", "domain", "delete", DOMAIN, check=False)
    assert r.returncode != 0 and "not_empty" in r.stderr
    pending = ctl_json(controller, "changes", "--pending")["items"]
    actions = [c["action"] for c in pending if c["object"] ==
               f"secretariat@{DOMAIN}"]
    assert actions[:3] == ["restore", "delete", "create"]


def test_changes_stay_pending_while_no_backend_is_connected(controller):
    setup_member(controller)
    add_box(controller, "secretariat")
    controller.opsnctl("mail", "alias", "add", f"contact@{DOMAIN}",
                       f"secretariat@{DOMAIN}", "jean.dupont@example.org")
    controller.opsnctl("site", "add", "www." + DOMAIN, "--tenant", "31001",
                       "--backend", "web1")
    pending = ctl_json(controller, "changes", "--pending")["items"]
    got = {(c["node"], c["kind"], c["object"]) for c in pending}
    assert got == {("mx1", "domain", DOMAIN),
                   ("mx1", "mailbox", f"secretariat@{DOMAIN}"),
                   ("mx1", "alias", f"contact@{DOMAIN}"),
                   ("web1", "site", "www." + DOMAIN)}
    assert ctl_json(controller, "changes", "--failed")["items"] == []
    assert ctl_json(controller, "changes", "--node", "web1")["items"][0][
        "kind"] == "site"
    mx1 = ctl_json(controller, "backend", "show", "mx1")
    assert mx1["applied_generation"] == 0 and mx1["generation"] == 3
    assert mx1["pending_changes"] == 3 and mx1["mailboxes"] == 1
    r = controller.opsnctl("mail", "box", "show", f"secretariat@{DOMAIN}")
    assert "live:" in r.stdout and "pending" in r.stdout
    r = controller.opsnctl("changes", "--pending")
    assert "secretariat@" + DOMAIN in r.stdout
    # DNS: the records point at the backend.
    r = controller.opsnctl("mail", "domain", "dns", DOMAIN)
    assert f"{DOMAIN}. 3600 IN MX 10 mx1.opsn.example." in r.stdout
    assert '"v=spf1 mx -all"' in r.stdout
    assert f"opsn" in r.stdout and "._domainkey." + DOMAIN in r.stdout
    assert f"_dmarc.{DOMAIN}." in r.stdout
    controller.opsnctl("backend", "set", "mx1", "--public-name",
                       "mx.opsn.example")
    r = controller.opsnctl("mail", "domain", "dns", DOMAIN)
    assert "IN MX 10 mx.opsn.example." in r.stdout
    # The DKIM private key is never answered.
    status, doc, _ = controller.api("GET", f"/v1/mail/domains/{DOMAIN}")
    assert "PRIVATE" not in json.dumps(doc)


def test_placement_and_pinning(controller):
    controller.opsnctl("tenant", "add", "--kind", "commune", "--name",
                       "Agassac", "--insee", "31001")
    add_backends(controller, ("mx1", "mail"), ("web1", "web"))
    # No backend is ready (none is connected): placement says so.
    r = controller.opsnctl("mail", "domain", "add", DOMAIN, "--tenant",
                           "31001", check=False)
    assert r.returncode != 0 and "no ready backend with role mail" in \
        r.stderr
    r = controller.opsnctl("mail", "domain", "add", DOMAIN, "--tenant",
                           "31001", "--backend", "web1", check=False)
    assert r.returncode != 0 and "no role mail" in r.stderr
    r = controller.opsnctl("mail", "domain", "add", DOMAIN, "--tenant",
                           "31001", "--backend", "nope", check=False)
    assert r.returncode != 0 and "no backend named" in r.stderr
    names = [b["name"] for b in ctl_json(controller, "backend",
                                         "list")["items"]]
    assert names == ["mx1", "web1"]


def test_import_is_all_or_nothing_with_a_report(controller, workdir):
    setup_member(controller, quota="1G")
    add_box(controller, "secretariat")
    path = os.path.join(workdir, "staff.csv")
    with open(path, "w") as f:
        f.write("address;name;quota;password_hash\n"
                f"secretariat;Secrétariat;100M;{YESCRYPT}\n"
                f"accueil;Accueil;100M;{YESCRYPT}\n"
                f"bad address;X;100M;{YESCRYPT}\n")
    before = dump(controller)
    r = controller.opsnctl("mail", "box", "import", "--domain", DOMAIN,
                           "--csv", path, check=False)
    assert r.returncode != 0 and "line 4" in r.stderr, r.stderr
    assert dump(controller) == before
    # The first record, in order, that repeats an address names the first.
    with open(path, "w") as f:
        f.write("address;name;quota;password\n"
                f"accueil;Accueil;10M;{CSV_PASSWORD}\n"
                f"b;B;10M;{CSV_PASSWORD}\n"
                f"Accueil@{DOMAIN};Accueil;10M;{CSV_PASSWORD}\n"
                f"b;B;10M;{CSV_PASSWORD}\n")
    r = controller.opsnctl("mail", "box", "import", "--domain", DOMAIN,
                           "--csv", path, check=False)
    assert r.returncode != 0, r.stdout
    assert f"line 4: address accueil@{DOMAIN} is also at line 2" in r.stderr
    assert dump(controller) == before
    with open(path, "w") as f:
        f.write("address;name;quota;password_hash\n"
                f"secretariat;Secrétariat;100M;{YESCRYPT}\n"
                f"accueil;Accueil;100M;{YESCRYPT}\n"
                f"urbanisme@{DOMAIN};Urbanisme;200M;{YESCRYPT}\n")
    r = controller.opsnctl("mail", "box", "import", "--domain", DOMAIN,
                           "--csv", path)
    assert "3 records: 2 created, 1 already existed" in r.stdout
    assert f"created  accueil@{DOMAIN}" in r.stdout
    assert f"existing secretariat@{DOMAIN}" in r.stdout
    # Over the domain's quota together: nothing is created.
    with open(path, "w") as f:
        f.write("local;quota;password_hash\n"
                f"a;400M;{YESCRYPT}\n"
                f"b;400M;{YESCRYPT}\n")
    before = dump(controller)
    r = controller.opsnctl("mail", "box", "import", "--domain", DOMAIN,
                           "--csv", path, check=False)
    assert r.returncode != 0 and "quota_exceeded" in r.stderr
    assert dump(controller) == before


def test_aliases_and_catch_all(controller):
    setup_member(controller)
    add_box(controller, "secretariat")
    controller.opsnctl("mail", "alias", "add", f"Contact@{DOMAIN}",
                       f"secretariat@{DOMAIN}", "Jean.Dupont@Example.org")
    a = ctl_json(controller, "mail", "alias", "list")["items"][0]
    assert a["address"] == f"contact@{DOMAIN}"
    assert a["targets"] == [f"secretariat@{DOMAIN}", "Jean.Dupont@example.org"]
    # A local target must exist; an alias cannot shadow a mailbox.
    r = controller.opsnctl("mail", "alias", "add", f"mairie@{DOMAIN}",
                           f"nobody@{DOMAIN}", check=False)
    assert r.returncode != 0 and "no mailbox or alias" in r.stderr
    r = controller.opsnctl("mail", "alias", "add", f"secretariat@{DOMAIN}",
                           "x@example.org", check=False)
    assert r.returncode != 0 and "already a mailbox" in r.stderr
    controller.opsnctl("mail", "alias", "add", "@" + DOMAIN,
                       f"secretariat@{DOMAIN}")
    assert ctl_json(controller, "mail", "alias", "list", "--domain",
                    DOMAIN)["items"][0]["catch_all"] is True
    controller.opsnctl("mail", "alias", "delete", "@" + DOMAIN)
    assert len(ctl_json(controller, "mail", "alias", "list")["items"]) == 1


def test_a_member_token_sees_only_its_own_services(controller):
    setup_member(controller)
    controller.opsnctl("tenant", "add", "--kind", "commune", "--name", "Aignes",
                       "--insee", "31002")
    controller.opsnctl("mail", "domain", "add", "aignes.fr", "--tenant",
                       "31002", "--backend", "mx1")
    tok = controller.opsnctl("token", "create", "--name", "agassac",
                             "--role", "operator", "--tenant",
                             "31001").stdout.strip()
    env = {"OPSN_TOKEN": tok}
    r = controller.opsnctl("-o", "json", "mail", "domain", "list", env=env)
    assert [d["name"] for d in json.loads(r.stdout)["items"]] == [DOMAIN]
    r = controller.opsnctl("mail", "domain", "show", "aignes.fr", env=env,
                           check=False)
    assert r.returncode != 0 and "not_found" in r.stderr
    r = controller.opsnctl("mail", "box", "add", "x@aignes.fr", "--quota",
                           "10M", "--password-hash", YESCRYPT, env=env,
                           check=False)
    assert r.returncode != 0 and "not_found" in r.stderr
    # The journal and the backends cover every member: not for it.
    for args in (("changes",), ("backend", "list")):
        r = controller.opsnctl(*args, env=env, check=False)
        assert r.returncode != 0 and "forbidden" in r.stderr, args


@pytest.mark.parametrize("path", ["/v1/backends", "/v1/mail/domains",
                                  "/v1/mail/mailboxes", "/v1/mail/aliases",
                                  "/v1/sites", "/v1/changes"])
def test_lists_need_a_token(controller, path):
    status, doc, _ = controller.api("GET", path, token=None)
    assert status == 401
