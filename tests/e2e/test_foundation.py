"""Foundation: enrolment, mutual TLS, node states, revocation, the CLI."""
import json
import os
import socket
import sqlite3
import ssl
import stat
import subprocess
import time
import urllib.parse

import opsn
from opsn import wait_until


def ready(controller, *names):
    return wait_until(
        lambda: all(controller.node_state(n) == "ready" for n in names),
        20, what=f"{names} ready")


def test_three_agents_enrol_and_show_ready(controller, make_agent):
    for n in ("hv1", "hv2", "mail1"):
        make_agent(n, role="mail" if n == "mail1" else "web")
    ready(controller, "hv1", "hv2", "mail1")
    table = controller.opsnctl("node", "list").stdout
    for n in ("hv1", "hv2", "mail1"):
        line = [ln for ln in table.splitlines() if ln.split()[:1] == [n]]
        assert line and "ready" in line[0], table
    show = controller.opsnctl("-o", "json", "node", "show", "mail1").stdout
    node = json.loads(show)
    assert node["roles"] == ["mail"]
    assert node["cpus"] >= 1 and node["memory_bytes"] > 0
    # Both speak 1 and 2: the highest is chosen.
    assert node["proto_version"] == 2


def test_first_start_writes_secrets_with_safe_modes(controller, make_agent):
    a = make_agent("hv1")
    ready(controller, "hv1")
    mode = stat.S_IMODE(os.stat(os.path.join(controller.data,
                                             "admin.token")).st_mode)
    assert mode == 0o600
    for f in ("key.pem", "cert.pem"):
        mode = stat.S_IMODE(os.stat(os.path.join(a.data, f)).st_mode)
        assert mode == 0o600, f
    mode = stat.S_IMODE(os.stat(os.path.join(controller.data,
                                             "ca-key.pem")).st_mode)
    assert mode == 0o600
    db = sqlite3.connect(os.path.join(controller.data, "opsn.db"))
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] >= 1
    # The token itself is never stored, only its hash.
    tok = controller.token()
    rows = db.execute("SELECT hash FROM api_tokens").fetchall()
    assert all(tok not in r[0] for r in rows)


def test_reused_token_is_refused_and_nothing_stored(workdir, controller,
                                                    procs):
    tok = controller.join_token()
    a = opsn.Agent(workdir, "hv1", [controller.agent_addr], token=tok)
    procs.append(a)
    a.start()
    ready(controller, "hv1")
    b = opsn.Agent(workdir, "hv2", [controller.agent_addr], token=tok)
    r = b.run_once()
    assert r.returncode != 0
    assert "already used" in r.stderr
    assert not os.path.exists(os.path.join(b.data, "cert.pem"))
    assert not os.path.exists(os.path.join(b.data, "key.pem"))
    assert "hv2" not in controller.nodes()
    assert "already used" in controller.output()


def test_unknown_and_expired_tokens_are_refused(workdir, controller):
    tok = controller.join_token()
    bad = tok[:-4] + ("0000" if not tok.endswith("0000") else "1111")
    a = opsn.Agent(workdir, "x1", [controller.agent_addr], token=bad)
    r = a.run_once()
    assert r.returncode != 0 and "unknown" in r.stderr
    db = sqlite3.connect(os.path.join(controller.data, "opsn.db"))
    db.execute("UPDATE join_tokens SET expires_at = 1")
    db.commit()
    a = opsn.Agent(workdir, "x2", [controller.agent_addr], token=tok)
    r = a.run_once()
    assert r.returncode != 0 and "expired" in r.stderr
    assert not os.path.exists(os.path.join(a.data, "cert.pem"))
    r = opsn.Agent(workdir, "x3", [controller.agent_addr],
                   token="nonsense").run_once()
    assert r.returncode != 0 and "malformed" in r.stderr


def test_node_named_as_the_controller_is_refused(workdir, controller):
    """A node certificate for one of the controller's own names could pass
    for the controller with a careless client: no such node is enrolled."""
    for name in ("localhost", "127.0.0.1"):
        a = opsn.Agent(workdir, name, [controller.agent_addr],
                       token=controller.join_token())
        r = a.run_once()
        assert r.returncode != 0
        assert "one of the controller's own names" in r.stderr, r.stderr
        assert not os.path.exists(os.path.join(a.data, "cert.pem"))
    assert not controller.nodes()


def test_node_certificate_names_the_node_in_its_san(controller, make_agent):
    a = make_agent("hv1")
    ready(controller, "hv1")
    r = subprocess.run(["openssl", "x509", "-noout", "-ext",
                        "subjectAltName,extendedKeyUsage", "-in",
                        os.path.join(a.data, "cert.pem")],
                       capture_output=True, text=True, check=True)
    assert "DNS:hv1" in r.stdout
    assert "TLS Web Client Authentication" in r.stdout
    assert "Server" not in r.stdout


def test_token_pins_the_ca(workdir, controller, procs):
    """A token from one controller does not enrol against another."""
    other = opsn.Controller(workdir, "other")
    procs.append(other)
    other.start()
    tok = other.join_token()
    a = opsn.Agent(workdir, "hv1", [controller.agent_addr], token=tok)
    r = a.run_once()
    assert r.returncode != 0
    assert "fingerprint" in r.stderr
    # With --ca naming the wrong CA the handshake itself fails.
    tok = controller.join_token()
    a = opsn.Agent(workdir, "hv2", [controller.agent_addr], token=tok,
                   ca=other.ca)
    r = a.run_once()
    assert r.returncode != 0 and "certificate verify failed" in r.stderr
    assert not controller.nodes()


def test_agent_with_certificate_from_another_ca_is_refused(
        workdir, controller, procs, make_agent):
    make_agent("hv1")
    other = opsn.Controller(workdir, "other")
    procs.append(other)
    other.start()
    # Enrol "hv9" with the other controller, then point it at ours.
    a = opsn.Agent(workdir, "hv9", [other.agent_addr],
                   token=other.join_token())
    procs.append(a)
    a.start()
    ready(other, "hv9")
    a.stop()
    a.argv[a.argv.index("--controller") + 1] = controller.agent_addr
    a.start()
    wait_until(lambda: "could not connect" in a.output() and
               ("certificate" in a.output() or "alert" in a.output()),
               15, what="agent refused")
    assert "hv9" not in controller.nodes()
    assert controller.alive()
    ready(controller, "hv1")


def test_plaintext_and_garbage_clients_do_not_harm_the_controller(
        controller, make_agent):
    make_agent("hv1")
    ready(controller, "hv1")
    # Plaintext HTTP on the agent port.
    with socket.create_connection(("127.0.0.1", controller.agent_port),
                                  5) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        s.settimeout(10)
        got = b""
        while True:  # a TLS alert at most, then the controller closes
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        assert b"HTTP" not in got and len(got) < 64
    # A TLS client (no certificate) that sends garbage after the handshake.
    ctx = ssl.create_default_context(cafile=controller.ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    with socket.create_connection(("127.0.0.1", controller.agent_port),
                                  5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(os.urandom(4096))
            s.settimeout(10)
            try:
                while s.recv(4096):
                    pass
            except (ssl.SSLError, ConnectionResetError):
                pass
    # A frame with an unknown type and a huge length.
    with socket.create_connection(("127.0.0.1", controller.agent_port),
                                  5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(bytes.fromhex("7fffffff0001000100000001""00000000"))
            s.settimeout(10)
            try:
                while s.recv(4096):
                    pass
            except (ssl.SSLError, ConnectionResetError):
                pass
    assert controller.alive()
    assert controller.healthy()
    ready(controller, "hv1")
    assert "over the maximum" in controller.output()


def test_unknown_message_type_gets_an_error_answer(controller):
    """Before enrolment an unknown type is answered, not a crash."""
    ctx = ssl.create_default_context(cafile=controller.ca)
    with socket.create_connection(("127.0.0.1", controller.agent_port),
                                  5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            # length 0, version 1, type 999, reqid 7, status 0
            s.sendall(bytes.fromhex("00000000000103e700000007""00000000"))
            s.settimeout(10)
            hdr = b""
            while len(hdr) < 16:
                chunk = s.recv(16 - len(hdr))
                assert chunk, "connection closed without an answer"
                hdr += chunk
            length = int.from_bytes(hdr[0:4], "big")
            assert int.from_bytes(hdr[6:8], "big") == 1     # MSG_ERROR
            assert int.from_bytes(hdr[8:12], "big") == 7    # same request
            assert int.from_bytes(hdr[12:16], "big") == 2   # ST_UNKNOWN_TYPE
            body = b""
            while len(body) < length:
                body += s.recv(length - len(body))
            assert b"unknown message type 999" in body
    assert controller.alive()


def test_killed_agent_becomes_unreachable_then_ready_again(controller,
                                                           make_agent):
    a = make_agent("hv1")
    make_agent("hv2")
    ready(controller, "hv1", "hv2")
    a.kill9()
    t0 = time.monotonic()
    wait_until(lambda: controller.node_state("hv1") == "unreachable", 10,
               what="hv1 unreachable")
    # unreachable_timeout is 3 s in the test configuration.
    assert time.monotonic() - t0 < 3 + 2
    assert controller.node_state("hv2") == "ready"
    # Restart without a token: the stored certificate is enough.
    i = a.argv.index("--join-token")
    del a.argv[i:i + 2]
    a.start()
    ready(controller, "hv1")
    assert "enrolled as" not in a.output().split("started (role")[-1]


def test_controller_restart_agents_come_back(controller, make_agent):
    for n in ("hv1", "hv2", "hv3"):
        make_agent(n)
    ready(controller, "hv1", "hv2", "hv3")
    controller.kill9()
    controller.start()
    ready(controller, "hv1", "hv2", "hv3")
    controller.stop()
    controller.start()
    ready(controller, "hv1", "hv2", "hv3")


def test_revoked_node_is_dropped_and_refused(controller, make_agent):
    a = make_agent("hv1")
    make_agent("hv2")
    ready(controller, "hv1", "hv2")
    r = controller.opsnctl("node", "revoke", "hv1")
    assert r.returncode == 0
    assert controller.node_state("hv1") == "revoked"
    wait_until(lambda: "revoked" in a.output(), 10, what="agent told")
    # It keeps trying and keeps being refused.
    time.sleep(2)
    assert controller.node_state("hv1") == "revoked"
    assert not controller.nodes()["hv1"]["connected"]
    assert "node 'hv1' is revoked" in controller.output()
    assert controller.node_state("hv2") == "ready"
    r = controller.opsnctl("node", "revoke", "nosuch", check=False)
    assert r.returncode != 0 and "nosuch" in r.stderr


def test_older_supported_protocol_connects(workdir, procs):
    c = opsn.Controller(workdir, env={"OPSN_TEST_PROTO_RANGE": "1-2"})
    procs.append(c)
    c.start()
    a = opsn.Agent(workdir, "old", [c.agent_addr], token=c.join_token(),
                   env={"OPSN_TEST_PROTO_RANGE": "1-1"})
    procs.append(a)
    a.start()
    ready(c, "old")
    assert c.nodes()["old"]["proto_version"] == 1


def test_unsupported_protocol_is_refused_on_both_sides(workdir, procs):
    c = opsn.Controller(workdir, env={"OPSN_TEST_PROTO_RANGE": "2-3"})
    procs.append(c)
    c.start()
    a = opsn.Agent(workdir, "old", [c.agent_addr], token=c.join_token(),
                   env={"OPSN_TEST_PROTO_RANGE": "1-1"})
    procs.append(a)
    a.start()
    msg = "speaks protocol versions 1 to 1, the controller supports 2 to 3"
    wait_until(lambda: msg in a.output(), 15, what="agent logs refusal")
    wait_until(lambda: msg in c.output(), 5, what="controller logs refusal")
    assert c.node_state("old") != "ready"


def test_agent_tries_each_controller_address(workdir, controller, procs):
    dead = f"127.0.0.1:{opsn.free_port()}"
    a = opsn.Agent(workdir, "hv1", [dead, controller.agent_addr],
                   token=controller.join_token())
    procs.append(a)
    a.start()
    ready(controller, "hv1")
    # Reconnects after the controller restarts, skipping the dead one.
    controller.stop()
    controller.start()
    ready(controller, "hv1")


def test_api_errors_are_json(controller):
    st, doc, hdrs = controller.api("GET", "/v1/nodes", token=None)
    assert st == 401 and doc["error"]["code"] == "unauthenticated"
    st, doc, _ = controller.api("GET", "/v1/nodes", token="opsn_wrong")
    assert st == 401
    st, doc, _ = controller.api("GET", "/v1/nodes/nosuch")
    assert st == 404 and "nosuch" in doc["error"]["message"]
    st, doc, _ = controller.api("GET", "/v1/nope")
    assert st == 404 and doc["error"]["code"] == "not_found"
    st, doc, _ = controller.api("POST", "/v1/node-tokens", body=b"{bad")
    assert st == 400 and doc["error"]["code"] == "bad_json"
    st, doc, _ = controller.api("POST", "/v1/node-tokens",
                                body={"ttl": "forever"})
    assert st == 400 and "ttl" in doc["error"]["message"]
    st, doc, _ = controller.api("POST", "/v1/node-tokens",
                                body={"tll": "1h"})
    assert st == 400 and "tll" in doc["error"]["message"]
    st, doc, hdrs = controller.api("GET", "/v1/health", token=None)
    assert st == 200 and doc["status"] == "ok"
    assert hdrs.get("X-Request-Id")


# The lists in id order: their cursor is the id of the last item seen.
ID_LISTS = ("/v1/tenants", "/v1/vms", "/v1/changes", "/v1/statements",
            "/v1/statements?period=2026-11&format=csv", "/v1/adjustments",
            "/v1/tariffs", "/v1/audit")


def test_a_cursor_no_page_gave_is_refused(controller):
    """A mistyped cursor was read as no cursor (the first page again) or
    as a number that matched nothing (an empty page): now a 400."""
    for name in ("cur-a", "cur-b", "cur-c"):
        st, doc, _ = controller.api("POST", "/v1/tenants", body={
            "kind": "other", "name": name})
        assert st == 201, doc
    st, doc, _ = controller.api("GET", "/v1/tenants?limit=2")
    assert st == 200 and len(doc["items"]) == 2 and doc["next_cursor"]
    st, doc, _ = controller.api(
        "GET", "/v1/tenants?limit=2&cursor=" + doc["next_cursor"])
    assert st == 200 and [t["name"] for t in doc["items"]] == ["cur-c"]
    for path in ID_LISTS:
        sep = "&" if "?" in path else "?"
        for good in ("", "0", "1", "12"):
            st, doc, _ = controller.api("GET", f"{path}{sep}cursor={good}")
            # No statements yet: the export has nothing to give.
            assert st == (404 if "format" in path else 200), (path, doc)
        for bad in ("abc", "5x", "-3", "+4", " 7", "1.5",
                    "99999999999999999999"):
            st, doc, _ = controller.api(
                "GET", f"{path}{sep}cursor={urllib.parse.quote(bad)}")
            assert st == 400, (path, bad, st, doc)
            assert doc["error"]["code"] == "bad_parameter"
            assert "cursor" in doc["error"]["message"]


def test_numbers_in_the_query_are_checked(controller):
    """A size or an offset that is not a whole number in range was read
    as 0 (a capacity question about a VM of no size)."""
    cap = "/v1/cluster/capacity?memory_mib="
    st, doc, _ = controller.api("GET", cap + "64&vcpus=2&disk_bytes=0")
    assert st == 200, doc
    asked = [p for p in doc["plans"] if p["plan"] is None]
    assert asked and asked[0]["vcpus"] == 2 and \
        asked[0]["memory_mib"] == 64, doc
    for q, what in (("abc", "memory_mib"), ("8", "memory_mib"),
                    ("64&vcpus=0", "vcpus"), ("64&vcpus=2x", "vcpus"),
                    ("64&disk_bytes=-1", "disk_bytes")):
        st, doc, _ = controller.api("GET", cap + q)
        assert st == 400 and what in doc["error"]["message"], (q, doc)
    st, doc, _ = controller.api("GET", "/v1/vms/nosuch/console?offset=x")
    assert st == 400 and "offset" in doc["error"]["message"], doc
    st, doc, _ = controller.api("GET", "/v1/vms/nosuch/console?offset=5")
    assert st == 404, doc


def test_opsnctl_reports_server_errors(controller):
    r = controller.opsnctl("node", "show", "nosuch", check=False)
    assert r.returncode != 0
    assert "no node named 'nosuch'" in r.stderr
    r = controller.opsnctl("node", "list", check=False,
                           env={"OPSN_TOKEN": "opsn_bad"})
    assert r.returncode != 0 and "unauth" in r.stderr
    r = controller.opsnctl("node", "list", check=False,
                           env={"OPSN_URL": f"https://127.0.0.1:"
                                f"{opsn.free_port()}"})
    assert r.returncode != 0


def test_config_check_names_file_and_line(workdir):
    bad = os.path.join(workdir, "bad.conf")
    with open(bad, "w") as f:
        f.write("[controller]\napi_listen = 127.0.0.1:1\n\n"
                "unreachable_timeout = soon\n")
    r = subprocess.run([os.path.join(opsn.BIN, "opsn-controller"), "-n",
                        "-c", bad], capture_output=True, text=True)
    assert r.returncode != 0
    assert f"{bad}:4:" in r.stderr and "duration" in r.stderr
    good = os.path.join(workdir, "good.conf")
    with open(good, "w") as f:
        f.write("[controller]\napi_listen = 127.0.0.1:1\n")
    r = subprocess.run([os.path.join(opsn.BIN, "opsn-controller"), "-n",
                        "-c", good], capture_output=True, text=True)
    assert r.returncode == 0 and "OK" in r.stdout
    r = subprocess.run([os.path.join(opsn.BIN, "opsn-agent"), "-n",
                        "--controller", "nonsense"], capture_output=True,
                       text=True)
    assert r.returncode != 0 and "nonsense" in r.stderr


def test_node_list_pages_without_losing_a_node(controller, make_agent):
    names = [f"pg{i}" for i in range(5)]
    for n in names:
        make_agent(n)
    wait_until(lambda: set(names) <= set(controller.nodes()), 20)
    seen, cursor = [], None
    while True:
        q = "/v1/nodes?limit=2" + (f"&cursor={cursor}" if cursor else "")
        st, doc, _ = controller.api("GET", q)
        assert st == 200 and len(doc["items"]) <= 2
        seen += [n["name"] for n in doc["items"]]
        cursor = doc["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(names)
