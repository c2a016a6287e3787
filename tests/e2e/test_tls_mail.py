"""Mail over TLS and signed: real Postfix, Dovecot and OpenDKIM read what a
mail agent writes (mailstack.py); swaks submits as a mail client does;
python3-dkim checks the signature against the record opsnctl prints;
sslscan lists what each port accepts.
"""
import email
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
