"""Mail: domains, mailboxes and aliases served by real Postfix and Dovecot.

One private Postfix + Dovecot pair per module (mailstack.py) reads the
maps a mail agent writes; each test has its own controller and agent and
drives them through opsnctl, then checks what a user meets: SMTP answers,
delivery over LMTP, IMAP logins and the messages read back.
"""
import json
import os
import time

import pytest

import mailstack
from opsn import wait_until

pytestmark = pytest.mark.skipif(
    not mailstack.have("postfix", "dovecot", "doveadm"),
    reason="postfix, dovecot or doveadm not installed (ops/deps.sh)")

DOMAIN = "mairie-agassac.fr"
PASSWORD = "Correct horse 31001"


@pytest.fixture
def backend(controller, make_agent, stack):
    """A commune, a mail backend on the stack, and a domain on it."""
    a = mailstack.mail_backend(controller, make_agent, stack)
    controller.opsnctl("mail", "domain", "add", DOMAIN, "--tenant", "31001",
                       "--quota", "1G")
    return a


def box_add(controller, address, password=PASSWORD, quota="100M",
            check=True):
    return controller.opsnctl("mail", "box", "add", address, "--quota",
                              quota, "--password-stdin",
                              input=password + "\n", check=check)


def show(controller, address):
    return json.loads(controller.opsnctl("-o", "json", "mail", "box", "show",
                                         address).stdout)


def live(controller, address):
    """Wait until the backend reports the mailbox's last change applied."""
    def applied():
        s = show(controller, address)["live"]
        assert s["state"] != "error", s
        return s["state"] == "applied"
    wait_until(applied, 15, 0.05, what=f"{address} live")


def rcpt_code(stack, address, code):
    """Wait until Postfix answers RCPT TO with code (reloads are async);
    return the whole answer."""
    def answer():
        r = stack.rcpt_reply(address)
        return r if r[0] == code else None
    return wait_until(answer, 10, 0.05, what=f"RCPT {address} -> {code}")


def backend_generation(controller):
    b = json.loads(controller.opsnctl("-o", "json", "backend", "show",
                                      "mx1").stdout)
    return b["generation"], b["applied_generation"]


def can_login(stack, address, password):
    m = stack.imap_login(address, password)
    if m is None:
        return False
    m.logout()
    return True


def test_mail_sent_over_smtp_is_read_back_over_imap(controller, backend,
                                                     stack):
    addr = "secretariat@" + DOMAIN
    t0 = time.monotonic()
    box_add(controller, addr)
    live(controller, addr)
    applied = time.monotonic() - t0
    wait_until(lambda: can_login(stack, addr, PASSWORD), 15, 0.02,
               what="first IMAP login")
    first_login = time.monotonic() - t0
    print(f"\nbox add: applied after {applied * 1000:.0f} ms, first IMAP "
          f"login after {first_login * 1000:.0f} ms")
    assert stack.send(addr, "Conseil municipal du 12") == {}
    stack.wait_delivered(addr, PASSWORD, "Conseil municipal du 12")
    # Delivered by Postfix over LMTP into the maildir under mail_dir.
    home = os.path.join(stack.mail_dir, DOMAIN, "secretariat")
    assert os.path.isdir(os.path.join(home, "Maildir"))
    assert "relay=127.0.0.1" in stack.tail(stack.postfix_log, 100000)
    assert stack.imap_login(addr, "not the password") is None


def test_new_password_replaces_the_old_one(controller, backend, stack):
    addr = "maire@" + DOMAIN
    box_add(controller, addr)
    live(controller, addr)
    wait_until(lambda: can_login(stack, addr, PASSWORD), 10, 0.05)
    controller.opsnctl("mail", "box", "passwd", addr, "--password-stdin",
                       input="Another long secret\n")
    live(controller, addr)
    wait_until(lambda: not can_login(stack, addr, PASSWORD), 10, 0.05,
               what="old password refused")
    assert can_login(stack, addr, "Another long secret")


def test_deleted_mailbox_is_refused_and_its_mail_kept(controller, backend,
                                                      stack):
    addr = "compta@" + DOMAIN
    box_add(controller, addr)
    live(controller, addr)
    stack.send(addr, "Facture 2026-04")
    stack.wait_delivered(addr, PASSWORD, "Facture 2026-04")
    controller.opsnctl("mail", "box", "delete", addr)
    live(controller, addr)
    code, text = rcpt_code(stack, addr, 550)
    assert code == 550 and "5.1.1" in text, text
    assert not can_login(stack, addr, PASSWORD)
    # Kept for the retention period: the maildir is still there.
    new = os.path.join(stack.mail_dir, DOMAIN, "compta", "Maildir", "new")
    cur = os.path.join(stack.mail_dir, DOMAIN, "compta", "Maildir", "cur")
    assert os.listdir(new) or os.listdir(cur)


def test_alias_delivers_to_its_target(controller, backend, stack):
    target = "accueil@" + DOMAIN
    box_add(controller, target)
    live(controller, target)
    controller.opsnctl("mail", "alias", "add", "contact@" + DOMAIN, target)
    wait_until(lambda: stack.rcpt_reply("contact@" + DOMAIN)[0] == 250, 10,
               0.05, what="alias accepted")
    stack.settle()
    stack.send("contact@" + DOMAIN, "Demande d'acte de naissance")
    stack.wait_delivered(target, PASSWORD, "Demande d'acte de naissance")
    # An unknown address of the domain is still refused (no catch-all).
    assert stack.rcpt_reply("nobody@" + DOMAIN)[0] == 550


def test_suspended_mailbox_cannot_log_in_and_its_mail_waits(
        controller, backend, stack):
    addr = "urbanisme@" + DOMAIN
    box_add(controller, addr)
    live(controller, addr)
    controller.opsnctl("mail", "alias", "add", "permis@" + DOMAIN, addr)
    wait_until(lambda: can_login(stack, addr, PASSWORD), 10, 0.05)
    controller.opsnctl("mail", "box", "suspend", addr)
    live(controller, addr)
    wait_until(lambda: not can_login(stack, addr, PASSWORD), 10, 0.05,
               what="suspended login refused")
    # Direct mail is deferred (the sender retries); mail through an alias
    # waits in Postfix's queue.
    code, text = rcpt_code(stack, addr, 451)
    assert text.startswith("4.7.1"), text
    stack.settle()
    stack.send("permis@" + DOMAIN, "Permis de construire 17")
    wait_until(lambda: addr in stack.queue(), 10, 0.05, what="mail held")
    controller.opsnctl("mail", "box", "activate", addr)
    live(controller, addr)
    stack.wait_delivered(addr, PASSWORD, "Permis de construire 17")
    assert stack.rcpt_reply(addr)[0] == 250


def test_mail_and_logins_work_while_the_controller_is_down(controller,
                                                          backend, stack):
    addr = "elus@" + DOMAIN
    box_add(controller, addr)
    live(controller, addr)
    controller.stop()
    time.sleep(0.5)
    assert backend.alive()
    assert stack.send(addr, "Pendant la panne") == {}
    stack.wait_delivered(addr, PASSWORD, "Pendant la panne")
    assert can_login(stack, addr, PASSWORD)


def test_quota_over_what_the_domain_has_left_is_refused(controller, backend,
                                                        stack):
    box_add(controller, "dgs@" + DOMAIN, quota="600M")
    live(controller, "dgs@" + DOMAIN)
    maps = os.path.join(stack.maps_dir, "postfix.sqlite")
    before_maps = os.stat(maps)
    before = controller.opsnctl("-o", "json", "mail", "box", "list").stdout
    gen = backend_generation(controller)
    r = box_add(controller, "rh@" + DOMAIN, quota="500M", check=False)
    assert r.returncode != 0
    assert "quota_exceeded" in r.stderr, r.stderr
    r = controller.opsnctl("mail", "box", "set", "dgs@" + DOMAIN,
                           "--quota", "2G", check=False)
    assert r.returncode != 0 and "quota_exceeded" in r.stderr, r.stderr
    # Nothing changed: not in the API, not on the backend.
    assert controller.opsnctl("-o", "json", "mail", "box",
                              "list").stdout == before
    assert backend_generation(controller) == gen
    time.sleep(0.3)
    after_maps = os.stat(maps)
    assert (after_maps.st_ino, after_maps.st_mtime_ns) == \
        (before_maps.st_ino, before_maps.st_mtime_ns)
    assert stack.rcpt_reply("rh@" + DOMAIN)[0] == 550


def agent_log(agent):
    with open(agent.log, errors="replace") as f:
        return f.read()


def test_changes_reach_the_backend_as_deltas_and_a_restart_as_parts(
        controller, backend, stack):
    """Protocol 2: the whole state in parts once, then each change alone."""
    first = "secretariat@" + DOMAIN
    box_add(controller, first)
    live(controller, first)
    for n in range(3):
        box_add(controller, f"agent{n}@" + DOMAIN)
    live(controller, "agent2@" + DOMAIN)
    gen, applied = backend_generation(controller)
    wait_until(lambda: backend_generation(controller)[1] == gen, 15,
               what="backend in step")
    log = agent_log(backend)
    assert "whole, in 1 parts" in log
    assert log.count("delta ") >= 3, log[-2000:]
    # Restarted, it holds nothing: the whole state again, in parts.
    backend.stop()
    backend.start()
    wait_until(lambda: log.count("whole, in") < agent_log(backend).count(
        "whole, in"), 20, what="whole state after a restart")
    wait_until(lambda: can_login(stack, first, PASSWORD), 15, 0.05,
               what="login after the restart")


def test_an_agent_of_protocol_1_gets_whole_states(controller, make_agent,
                                                  stack):
    """An agent one protocol version older keeps working."""
    a = mailstack.mail_backend(controller, make_agent, stack,
                               env={"OPSN_TEST_PROTO_RANGE": "1-1"})
    controller.opsnctl("mail", "domain", "add", DOMAIN, "--tenant", "31001",
                       "--quota", "1G")
    addr = "ancien-agent@" + DOMAIN
    box_add(controller, addr)
    live(controller, addr)
    wait_until(lambda: can_login(stack, addr, PASSWORD), 15, 0.05)
    log = agent_log(a)
    assert "protocol 1)" in log
    assert "delta" not in log and "parts" not in log
