"""The API's limits, before and after a caller is known.

h2o 2.2.5 reads a request's whole body before any handler runs, so no
request body may be over [api] max_body (1 MiB): a larger Content-Length
is refused before a byte of the body is read, a chunked body is stopped
there, and a larger body comes in parts (Content-Range + Upload-Sha256),
each part an authenticated request. Also: slow clients, the connection
cap and per-token request rates.
"""
import hashlib
import http.client
import json
import os
import socket
import ssl
import threading
import time

import pytest

import opsn

MIB = 1 << 20
# Under `make check` the controller carries ASan: its memory is not the
# figure a user sees.
SANITIZED = opsn.SANITIZED


def tls(controller, timeout=10):
    ctx = ssl.create_default_context(cafile=controller.ca)
    s = socket.create_connection(("127.0.0.1", controller.api_port),
                                 timeout=timeout)
    return ctx.wrap_socket(s, server_hostname="127.0.0.1")


def read_reply(s):
    """(status, headers, JSON) of one HTTP/1.1 reply on socket s."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        got = s.recv(65536)
        if not got:
            raise ConnectionError("closed before a reply: %r" % buf)
        buf += got
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.strip().lower(): v.strip() for k, v in
            (line.split(":", 1) for line in lines[1:])}
    n = int(hdrs.get("content-length", "0"))
    while len(body) < n:
        got = s.recv(65536)
        if not got:
            break
        body += got
    return status, hdrs, json.loads(body) if body else None


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def records(n, start=0):
    """n valid commune records with long names (~170 bytes each)."""
    out = []
    for i in range(start, start + n):
        dep, num = 1 + i // 999, 1 + i % 999
        out.append({"kind": "commune", "insee": f"{dep:02d}{num:03d}",
                    "name": f"Commune d'essai numéro {i} " + "x" * 100,
                    "population": i})
    return out


def count_tenants(controller):
    st, doc, _ = controller.api("GET", "/v1/tenants?limit=1000")
    assert st == 200, doc
    n = len(doc["items"])
    while doc["next_cursor"]:
        st, doc, _ = controller.api(
            "GET", "/v1/tenants?limit=1000&cursor=" + doc["next_cursor"])
        n += len(doc["items"])
    return n


class Parts:
    """Send a body in parts over one kept-alive connection."""

    def __init__(self, controller, method, path, body, token="admin"):
        self.c = controller
        self.method, self.path, self.body = method, path, body
        self.sha = hashlib.sha256(body).hexdigest()
        self.token = controller.token() if token == "admin" else token
        ctx = ssl.create_default_context(cafile=controller.ca)
        self.conn = http.client.HTTPSConnection(
            "127.0.0.1", controller.api_port, context=ctx, timeout=60)

    def send(self, start=None, end=None, sha=None, total=None):
        total = len(self.body) if total is None else total
        hdrs = {"Upload-Sha256": sha or self.sha,
                "Content-Type": "application/json"}
        if self.token:
            hdrs["Authorization"] = "Bearer " + self.token
        if start is None:
            hdrs["Content-Range"] = f"bytes */{total}"
            data = b""
        else:
            hdrs["Content-Range"] = f"bytes {start}-{end}/{total}"
            data = self.body[start:end + 1]
        self.conn.request(self.method, self.path, body=data, headers=hdrs)
        r = self.conn.getresponse()
        raw = r.read()
        return r.status, json.loads(raw) if raw else None, r.headers

    def rest(self, start, part=MIB):
        """Send from start to the end; the last reply."""
        while True:
            end = min(start + part, len(self.body)) - 1
            st, doc, hdrs = self.send(start, end)
            if end + 1 == len(self.body) or st != 202:
                return st, doc, hdrs
            assert doc["received"] == end + 1, doc
            start = end + 1


def test_body_over_the_limit_is_refused_before_it_is_read(controller):
    for path, token in (("/v1/health", None),
                        ("/v1/tenants", controller.token())):
        s = tls(controller)
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        # Only the head: the answer must come without the body.
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n{auth}"
                  "Content-Type: application/json\r\n"
                  "Content-Length: 1073741824\r\n\r\n".encode())
        st, hdrs, doc = read_reply(s)
        assert st == 413, doc
        assert doc["error"]["code"] == "too_large", doc
        assert "1048576" in doc["error"]["message"], doc
        assert hdrs["content-type"] == "application/json"
        s.close()
    assert controller.api("GET", "/v1/health", token=None)[0] == 200


def test_chunked_body_stops_at_the_limit(controller):
    s = tls(controller)
    s.sendall(b"POST /v1/health HTTP/1.1\r\nHost: x\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"10000\r\n" + b"{" * 0x10000 + b"\r\n"
    for _ in range(17):         # 17 x 64 KiB: just over 1 MiB
        s.sendall(chunk)
    st, _, doc = read_reply(s)
    assert st == 413, doc
    assert doc["error"]["code"] == "too_large"


def flood(controller, mode, clients=100, size=1 << 30):
    """clients send a body of size without a token; (idle, peak) RSS."""
    pid = controller.p.pid
    idle = peak = rss_kib(pid)
    sent = [0] * clients

    def client(i):
        try:
            s = tls(controller, timeout=30)
            if mode == "length":
                s.sendall(b"POST /v1/health HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Length: %d\r\n\r\n" % size)
                block = b"\0" * 65536
            else:
                s.sendall(b"POST /v1/health HTTP/1.1\r\nHost: x\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n")
                block = b"10000\r\n" + b"\0" * 65536 + b"\r\n"
            while sent[i] < size:
                s.sendall(block)
                sent[i] += 65536
        except OSError:
            pass        # the server refused the body and closed

    threads = [threading.Thread(target=client, args=(i,))
               for i in range(clients)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak = max(peak, rss_kib(pid))
        time.sleep(0.005)
    for t in threads:
        t.join()
    # What a client pushed is what the kernels' buffers took, not 1 GiB.
    assert max(sent) < 64 * MIB, max(sent)
    return idle, peak


def test_rss_stays_flat_while_anonymous_clients_send_huge_bodies(
        controller):
    idle, peak = flood(controller, "length")
    print(f"100 x 1 GiB with Content-Length: RSS {idle} KiB idle, "
          f"{peak} KiB peak (+{(peak - idle) / 1024:.1f} MiB)")
    if not SANITIZED:
        assert peak - idle < 8 * 1024, (idle, peak)
    idle, peak = flood(controller, "chunked")
    print(f"100 x 1 GiB chunked: RSS {idle} KiB idle, {peak} KiB peak "
          f"(+{(peak - idle) / 1024:.1f} MiB)")
    if not SANITIZED:
        # [api] max_buffered (16 MiB), what one loop iteration reads past
        # it, and 100 TLS connections.
        assert peak - idle < 40 * 1024, (idle, peak)
    assert controller.api("GET", "/v1/health", token=None)[0] == 200


def test_import_in_parts_resumes_and_is_checked(controller):
    body = json.dumps({"source": "csv", "records": records(20000)}).encode()
    assert len(body) > 3 * MIB
    before = count_tenants(controller)

    # A wrong checksum: nothing imported, nothing kept.
    bad = Parts(controller, "POST", "/v1/tenants/import", body)
    bad.sha = hashlib.sha256(b"something else").hexdigest()
    st, doc, _ = bad.rest(0)
    assert st == 400 and doc["error"]["code"] == "checksum_mismatch", doc
    assert count_tenants(controller) == before
    assert os.listdir(os.path.join(controller.data, "parts")) == []

    # Two parts, then the connection is lost: the rest resumes.
    p = Parts(controller, "POST", "/v1/tenants/import", body)
    st, doc, hdrs = p.send()
    assert (st, doc["received"], doc["size"]) == (200, 0, len(body)), doc
    assert doc["part_max"] == MIB
    assert p.send(0, MIB - 1)[0] == 202
    st, doc, hdrs = p.send(MIB, 2 * MIB - 1)
    assert st == 202 and doc["received"] == 2 * MIB, doc
    assert hdrs["Upload-Offset"] == str(2 * MIB)
    p.conn.close()
    p = Parts(controller, "POST", "/v1/tenants/import", body)
    st, doc, _ = p.send()
    assert doc["received"] == 2 * MIB, doc
    # A part past the stored bytes would leave a hole.
    st, doc, hdrs = p.send(2 * MIB + 10, 2 * MIB + 20)
    assert st == 409 and doc["error"]["code"] == "offset_mismatch", doc
    assert hdrs["Upload-Offset"] == str(2 * MIB)
    p = Parts(controller, "POST", "/v1/tenants/import", body)
    st, doc, _ = p.rest(2 * MIB)
    assert st == 200, doc
    assert doc["created"] == 20000, doc
    assert count_tenants(controller) == before + 20000
    assert os.listdir(os.path.join(controller.data, "parts")) == []


def test_parts_need_a_caller_with_the_permission(controller):
    body = b"{" + b" " * (3 * MIB) + b"}"
    st, doc, _ = Parts(controller, "POST", "/v1/tenants/import", body,
                       token=None).send(0, MIB - 1)
    assert st == 401, doc
    st, doc, _ = controller.api("POST", "/v1/tokens",
                                {"name": "look", "role": "auditor"})
    assert st == 201, doc
    st, doc, _ = Parts(controller, "POST", "/v1/tenants/import", body,
                       token=doc["token"]).send(0, MIB - 1)
    assert st == 403, doc
    assert "tenants.write" in doc["error"]["message"], doc
    # Over the route's own limit (64 MiB): refused before a part is kept.
    st, doc, _ = Parts(controller, "POST", "/v1/tenants/import",
                       body).send(total=65 * MIB)
    assert st == 413, doc
    # A route that takes no parts beyond one request's limit.
    st, doc, _ = Parts(controller, "POST", "/v1/tenants", body).send()
    assert st == 413, doc
    assert not os.path.exists(os.path.join(controller.data, "parts")) or \
        os.listdir(os.path.join(controller.data, "parts")) == []


def test_image_upload_resumes_where_the_controller_stopped(controller,
                                                           workdir):
    path = os.path.join(workdir, "disk.raw")
    data = os.urandom(3 * MIB + 12345)
    with open(path, "wb") as f:
        f.write(data)
    sha = hashlib.sha256(data).hexdigest()
    st, doc, _ = controller.api("POST", "/v1/images", {
        "name": "resumed", "format": "raw",
        "disk": {"sha256": sha, "size": len(data)}})
    assert st == 201, doc
    # An earlier upload sent one part, as opsnctl would have.
    p = Parts(controller, "PUT", "/v1/images/resumed/disk", data)
    assert p.send(0, MIB - 1)[0] == 202
    r = controller.opsnctl("image", "add", "resumed", "--file", path,
                           "--format", "raw")
    assert "resuming an unfinished upload" in r.stderr, r.stderr
    assert "state:      ready" in r.stdout, r.stdout
    with open(os.path.join(controller.data, "images", sha), "rb") as f:
        assert f.read() == data
    assert os.listdir(os.path.join(controller.data, "parts")) == []


@pytest.fixture
def limited(workdir, procs):
    c = opsn.Controller(workdir, extra_conf=(
        "[api]\nrate = 2\nburst = 5\nmax_connections = 3\n"
        "request_timeout = 1s\nhandshake_timeout = 1s\n"))
    procs.append(c)
    c.start()
    return c


def test_rate_limit_answers_429_with_retry_after(limited):
    st, doc, _ = limited.api("POST", "/v1/tokens",
                             {"name": "other", "role": "auditor"})
    assert st == 201, doc
    other = doc["token"]
    answers = [limited.api("GET", "/v1/plans")[0] for _ in range(6)]
    assert answers.count(429) >= 1, answers
    st, doc, hdrs = limited.api("GET", "/v1/plans")
    assert st == 429, doc
    assert doc["error"]["code"] == "rate_limited"
    assert int(hdrs["Retry-After"]) >= 1
    # Another token has its own bucket; public routes have none.
    assert limited.api("GET", "/v1/plans", token=other)[0] == 200
    assert limited.api("GET", "/v1/health", token=None)[0] == 200
    time.sleep(int(hdrs["Retry-After"]) + 0.2)
    assert limited.api("GET", "/v1/plans")[0] == 200
    # opsnctl waits out a 429 as Retry-After says, and carries on.
    while limited.api("GET", "/v1/plans")[0] != 429:
        pass
    t0 = time.monotonic()
    r = limited.opsnctl("plan", "list")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 >= 0.9


def test_connection_cap_and_slow_clients(limited):
    held = [tls(limited) for _ in range(3)]
    with pytest.raises((OSError, ssl.SSLError)):
        s = tls(limited, timeout=5)
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        read_reply(s)
    # The held connections sent nothing: request_timeout closes them.
    time.sleep(1.5)
    for s in held:
        assert s.recv(1) == b""
    assert limited.api("GET", "/v1/health", token=None)[0] == 200

    # A TCP connection that never starts TLS.
    raw = socket.create_connection(("127.0.0.1", limited.api_port),
                                   timeout=5)
    t0 = time.monotonic()
    assert raw.recv(1) == b""
    assert time.monotonic() - t0 < 3
    # A head that never ends, a body that never comes.
    for start in (b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ",
                  b"POST /v1/health HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 100\r\n\r\n{\"a\":"):
        s = tls(limited)
        s.sendall(start)
        t0 = time.monotonic()
        assert s.recv(1) == b""
        assert time.monotonic() - t0 < 3
