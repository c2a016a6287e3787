"""Mail over TLS and signed: real Postfix, Dovecot and OpenDKIM read what a
mail agent writes (mailstack.py); swaks submits as a mail client does;
python3-dkim checks the signature against the record opsnctl prints;
sslscan lists what each port accepts.
"""
import email
import os
import json
import smtplib
import subprocess

import pytest

import mailstack
import tlsstack
from opsn import wait_until

pytestmark = pytest.mark.skipif(
    not mailstack.have("postfix", "dovecot", "doveadm", "opendkim", "swaks",
                       "sslscan"),
    reason="postfix, dovecot, opendkim, swaks or sslscan not installed "
           "(ops/deps.sh)")

DOMAIN = "mairie-agassac.fr"
PASSWORD = "Correct horse 31001"


@pytest.fixture
def backend(controller, make_agent, stack):
    a = mailstack.mail_backend(controller, make_agent, stack)
    controller.opsnctl("mail", "domain", "add", DOMAIN, "--tenant", "31001")
    for box in ("secretariat", "maire"):
        controller.opsnctl("mail", "box", "add", f"{box}@{DOMAIN}",
                           "--quota", "100M", "--password-stdin",
                           input=PASSWORD + "\n")
    wait_until(lambda: json.loads(controller.opsnctl(
        "-o", "json", "mail", "box", "show", f"maire@{DOMAIN}").stdout)[
        "live"]["state"] == "applied", 15, 0.05, what="mailboxes live")
    return a


def swaks(stack, *args, source="127.0.0.1"):
    return subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port",
         str(stack.submission_port), "--local-interface", source,
         "--timeout", "10", *args],
        capture_output=True, text=True, timeout=60)


def fetch(stack, user, subject):
    """The raw message with that subject in user's INBOX."""
    m = stack.imap_login(user, PASSWORD)
    assert m is not None, f"{user} cannot log in"
    try:
        m.select("INBOX", readonly=True)
        typ, data = m.search(None, "SUBJECT", f'"{subject}"')
        nums = data[0].split()
        if not nums:
            return None
        typ, d = m.fetch(nums[-1], "(BODY.PEEK[])")
        return d[0][1]
    finally:
        m.logout()


def dkim_record(controller, domain):
    doc = json.loads(controller.opsnctl("-o", "json", "mail", "domain",
                                        "dns", domain).stdout)
    recs = {r["name"]: r["value"] for r in doc["records"]
            if r["type"] == "TXT" and "._domainkey." in r["name"]}
    return recs


def dkim_verifies(raw, records):
    import dkim

    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        return records.get(name.rstrip("."), "").encode()
    return dkim.verify(raw, dnsfunc=dnsfunc)


def test_submission_needs_starttls_before_auth_and_signs_with_dkim(
        controller, backend, stack):
    # Before STARTTLS no password may travel: AUTH is not even offered,
    # and a client that tries anyway is refused.
    with smtplib.SMTP("127.0.0.1", stack.submission_port, timeout=10) as s:
        s.ehlo("client.example.net")
        assert not s.has_extn("auth")
        assert s.has_extn("starttls")
        code, _ = s.docmd("AUTH", "PLAIN AHNlY3JldGFyaWF0QG1haXJpZS1hZ2Fz")
        assert code == 530, code
    r = swaks(stack, "--auth", "PLAIN", "--auth-user",
              f"secretariat@{DOMAIN}", "--auth-password", PASSWORD,
              "--from", f"secretariat@{DOMAIN}", "--to", f"maire@{DOMAIN}",
              "--header", "Subject: sans TLS")
    assert r.returncode != 0, r.stdout
    # With STARTTLS, from an authenticated client off the backend (not
    # 127.0.0.1, which OpenDKIM would trust anyway): accepted and signed.
    r = swaks(stack, "--tls", "--auth", "PLAIN", "--auth-user",
              f"secretariat@{DOMAIN}", "--auth-password", PASSWORD,
              "--from", f"secretariat@{DOMAIN}", "--to", f"maire@{DOMAIN}",
              "--header", "Subject: Conseil municipal",
              "--body", "Le conseil se tiendra mardi.", source="127.0.0.2")
    assert r.returncode == 0, r.stdout + r.stderr
    raw = wait_until(lambda: fetch(stack, f"maire@{DOMAIN}",
                                   "Conseil municipal"), 15, 0.1,
                     what="the message delivered")
    msg = email.message_from_bytes(raw)
    sig = msg["DKIM-Signature"]
    assert sig is not None, raw.decode(errors="replace")[:2000]
    assert f"d={DOMAIN}" in sig.replace(" ", "").replace("\n", "")
    records = dkim_record(controller, DOMAIN)
    assert dkim_verifies(raw, records)
    # The same message altered no longer verifies (the check can fail).
    assert not dkim_verifies(raw.replace(b"mardi", b"jeudi"), records)


def test_mail_ports_speak_only_what_the_anssi_allows(backend, stack):
    for port, starttls in ((stack.smtp_port, "smtp"),
                           (stack.submission_port, "smtp"),
                           (stack.imaps_port, None)):
        protocols, _ = tlsstack.assert_anssi(port, starttls)
        assert "TLSv1.3" in protocols and "TLSv1.2" in protocols


def send_signed(stack, subject):
    """Submit a message as secretariat and return it as maire reads it."""
    r = swaks(stack, "--tls", "--auth", "PLAIN", "--auth-user",
              f"secretariat@{DOMAIN}", "--auth-password", PASSWORD,
              "--from", f"secretariat@{DOMAIN}", "--to", f"maire@{DOMAIN}",
              "--header", f"Subject: {subject}", "--body", subject)
    assert r.returncode == 0, r.stdout + r.stderr
    return wait_until(lambda: fetch(stack, f"maire@{DOMAIN}", subject), 15,
                      0.1, what=f"{subject!r} delivered")


def selector_of(raw):
    sig = email.message_from_bytes(raw)["DKIM-Signature"]
    tags = dict(t.strip().split("=", 1) for t in
                sig.replace("\r\n", "").replace("\n", "").split(";")
                if "=" in t)
    return tags["s"].strip()


def domain_live(controller):
    wait_until(lambda: json.loads(controller.opsnctl(
        "-o", "json", "mail", "domain", "show", DOMAIN).stdout)["live"][
        "state"] == "applied", 15, 0.05, what="the domain applied")


@pytest.fixture
def knot():
    k = tlsstack.Knot()
    yield k
    k.cleanup()


def zone_lines(controller, exclude=()):
    """The records `mail domain dns` prints, as knot reads them."""
    out = controller.opsnctl("mail", "domain", "dns", DOMAIN).stdout
    return "\n".join(line for line in out.splitlines()
                     if line and not line.startswith(";") and
                     not any(x in line for x in exclude))


def check(controller, knot):
    r = controller.opsnctl("-o", "json", "mail", "domain", "check", DOMAIN,
                           "--resolver", knot.addr(), check=False)
    return r.returncode, json.loads(r.stdout)


def test_dkim_rotation_signs_with_the_new_key_once_published(
        controller, backend, stack, knot):
    knot.start({DOMAIN: zone_lines(controller, exclude=("IN MX",
                                                         "v=spf1"))
                + f"\n{DOMAIN}. 60 IN TXT \"v=spf1 a -all\"\n"})
    old = selector_of(send_signed(stack, "Avant"))
    # The check: DKIM and DMARC as printed, SPF different, MX missing.
    rc, doc = check(controller, knot)
    assert rc != 0 and not doc["ok"]
    got = {(r["type"], r["name"]): r["status"] for r in doc["records"]}
    assert got[("MX", DOMAIN)] == "missing"
    assert got[("TXT", DOMAIN)] == "different"
    assert got[("TXT", f"{old}._domainkey.{DOMAIN}")] == "ok"
    assert got[("TXT", f"_dmarc.{DOMAIN}")] == "ok"
    spf = [r for r in doc["records"] if r["name"] == DOMAIN and
           r["type"] == "TXT"][0]
    assert spf["found"] == ["v=spf1 a -all"] and \
        spf["expected"] == "v=spf1 mx -all"
    text = controller.opsnctl("mail", "domain", "check", DOMAIN,
                              "--resolver", knot.addr(), check=False).stdout
    assert "missing" in text and "v=spf1 a -all" in text
    # A new key: printed, not used until its record is out there.
    out = controller.opsnctl("mail", "domain", "dkim-rotate", DOMAIN).stdout
    new = [w for w in out.split() if w.endswith(f"._domainkey.{DOMAIN}.")]
    assert len(new) == 1, out
    new = new[0].split(".")[0]
    assert new != old
    rc, doc = check(controller, knot)
    nxt = [r for r in doc["records"] if r.get("next")][0]
    assert nxt["status"] == "missing" and not doc.get("dkim_rotated")
    assert selector_of(send_signed(stack, "Pendant")) == old
    # Published: the check switches, and mail is signed with the new key,
    # which verifies against what `mail domain dns` prints.
    knot.set_zone(DOMAIN, zone_lines(controller))
    rc, doc = check(controller, knot)
    assert doc.get("dkim_rotated") is True, doc
    domain_live(controller)
    raw = send_signed(stack, "Apres")
    assert selector_of(raw) == new
    records = dkim_record(controller, DOMAIN)
    assert f"{old}._domainkey.{DOMAIN}" in records  # the previous, kept
    assert dkim_verifies(raw, records)
    # Forced: signs at once, with yet another selector.
    controller.opsnctl("mail", "domain", "dkim-rotate", DOMAIN, "--force")
    domain_live(controller)
    raw = send_signed(stack, "Force")
    assert selector_of(raw) not in (old, new)
    assert dkim_verifies(raw, dkim_record(controller, DOMAIN))


def test_mail_host_name_gets_its_certificate(controller, make_agent, stack,
                                             workdir):
    import ssl
    ca = tlsstack.CA("Syndicat test CA")
    d = os.path.join(workdir, "certs")
    os.makedirs(d)
    cert, key = ca.write(d, "mx", ["mx.opsn.test"])
    a = mailstack.mail_backend(controller, make_agent, stack, [
        "--mail-tls-cert", cert, "--mail-tls-key", key])
    controller.opsnctl("backend", "set", "mx1", "--mail-hostname",
                       "mx.opsn.test")

    def shown():
        b = json.loads(controller.opsnctl("-o", "json", "backend", "show",
                                          "mx1").stdout)
        return b if b["certificate"]["state"] == "valid" else None
    b = wait_until(shown, 20, 0.1, what="the mail certificate valid")
    assert b["mail_hostname"] == "mx.opsn.test"
    assert b["certificate"]["issuer"] == "Syndicat test CA"
    assert "valid until" in controller.opsnctl("backend", "show",
                                               "mx1").stdout
    ctx = ssl.create_default_context(cadata=ca.pem)

    def presented():
        import socket
        with socket.create_connection(("127.0.0.1", stack.imaps_port),
                                      5) as s:
            with ctx.wrap_socket(s, server_hostname="mx.opsn.test") as t:
                return t.version() in ("TLSv1.2", "TLSv1.3")
    wait_until(presented, 15, 0.2, what="IMAPS with the certificate")
    # A file that does not name the host is reported and not installed:
    # what was served stays.
    other, other_key = ca.write(d, "other", ["autre.opsn.test"])
    os.replace(other, cert)
    os.replace(other_key, key)
    a.stop()
    a.start()

    def refused():
        c = json.loads(controller.opsnctl("-o", "json", "backend", "show",
                                          "mx1").stdout)["certificate"]
        return c if c["state"] == "failed" else None
    c = wait_until(refused, 20, 0.1, what="the new file refused")
    assert "does not cover mx.opsn.test" in c["message"], c
    assert presented()
