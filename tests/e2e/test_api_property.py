"""A property of the whole API, tried with generated requests (Hypothesis).

The routes come from /v1/openapi.json. To every one of them go generated
and malformed path parameters, query strings, headers, tokens and bodies
(JSON built from the API's own field names, other JSON, truncated JSON,
bytes, bodies in parts gone wrong), for OPSN_PROPERTY_SECONDS (60). Each
answer must be:

- never a 5xx (and no sanitizer report in the controller's log under
  `make check`: the procs fixture checks it);
- a 4xx with a JSON {"error": {"code", "message"}} document;
- after any 4xx, the database as before the request: nothing committed
  (PRAGMA data_version on a read-only connection), or if something was,
  the same SQL dump as before.
"""
import hashlib
import http.client
import json
import os
import sqlite3
import ssl
import string
import tempfile
import time
import urllib.parse

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

import opsn

SECONDS = float(os.environ.get("OPSN_PROPERTY_SECONDS", "60"))
# Hypothesis keeps caches in .hypothesis/: not in the source tree.
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(),
                                     "opsn-hypothesis"))

# The fields the handlers know (their "known" lists), and values that
# name objects the setup creates, so that some requests get far.
FIELDS = [
    "address", "aliases", "allowances", "amount", "backend", "bands",
    "bridge", "cmdline", "contribution_per_inhabitant", "currency", "date",
    "default", "deliberation", "disk", "disk_bytes", "domain", "email",
    "effective_from", "effective_to", "format", "hostname", "image",
    "initrd", "insee", "joined_on", "kernel", "kind", "left_on", "local",
    "mac", "max", "members", "memory_mib", "monthly_fee", "name", "nics",
    "node", "number", "parent", "password", "password_hash", "period",
    "plan", "population", "power", "public_name", "quota_bytes",
    "quota_disk_bytes", "quota_memory_mib", "quota_vcpus", "quota_vms",
    "rates", "reason", "records", "role", "siren", "size", "source",
    "targets", "tariff", "tenant", "ttl", "vcpus", "version", "where",
    "sha256", "quota_mib", "mailboxes", "status",
]
KNOWN = [
    "31555", "31044", "213100449", "prop", "small", "tiny", "balma.fr",
    "jean@balma.fr", "www.balma.fr", "standard", "2026-10", "2026-10-01",
    "commune", "epci", "operator", "auditor", "admin", "disk", "kernel",
    "qcow2", "raw", "1h", "0", "-1", "", "99999999999999999999",
    "0" * 64, "../../etc/passwd", "%00", "%zz", "é", "\u202e",
]
QUERY_KEYS = ["limit", "cursor", "tenant", "kind", "status", "parent",
              "node", "from", "to", "group", "offset", "domain", "object",
              "period", "format", "name"]
# Our own tokens: revoking them would end the run's reach.
OURS = {"admin", "prop-member", "prop-auditor"}

scalar = st.one_of(st.none(), st.booleans(),
                   st.integers(min_value=-(1 << 70), max_value=1 << 70),
                   st.floats(allow_nan=False, allow_infinity=False),
                   st.text(max_size=40), st.sampled_from(KNOWN))
json_value = st.recursive(
    scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8),
                        inner, max_size=5)),
    max_leaves=12)
json_body = st.dictionaries(st.sampled_from(FIELDS), json_value,
                            max_size=8).map(lambda d: json.dumps(d).encode())
body = st.one_of(
    st.none(),
    json_body,
    json_body.flatmap(lambda b: st.integers(0, max(0, len(b) - 1)).map(
        lambda n: b[:n])),                            # truncated
    json_value.map(lambda v: json.dumps(v).encode()),  # not an object
    st.binary(max_size=200),
    st.integers(1, 3000).map(lambda n: b"[" * n),     # deep nesting
    st.just(b'{"name": "a", "name": "b"}'),           # duplicate keys
    st.just(b'{"name": "\\u0000"}'),
)
param = st.one_of(st.sampled_from(KNOWN),
                  st.text(alphabet=string.printable + "éà€", min_size=1,
                          max_size=24))
header_value = st.text(alphabet=string.ascii_letters + string.digits +
                       " -_.,;:=/*\"'%", max_size=60)
extra_headers = st.dictionaries(
    st.sampled_from(["If-Match", "X-Request-Id", "Content-Type", "Accept",
                     "Content-Range", "Upload-Sha256", "Range",
                     "If-None-Match", "X-Forwarded-For"]),
    st.one_of(header_value, st.sampled_from([
        "bytes */10", "bytes 0-9/10", "bytes 5-1/10", "bytes 0-0/0",
        "bytes 0-99999999999999999999/1", "bytes */99999999999999",
        "0" * 64, "\"1\"", "*", "application/json", "text/plain"])),
    max_size=3)
caller = st.sampled_from(["admin", "admin", "member", "auditor", "none",
                          "garbage", "basic"])


def quote(v):
    return urllib.parse.quote(v, safe="%" if "%" in v[:1] else "")


class Api:
    def __init__(self, c, tokens):
        self.c = c
        self.tokens = tokens
        self.conn = None
        self.db = os.path.join(c.data, "opsn.db")
        self.ro = None

    def connect(self):
        ctx = ssl.create_default_context(cafile=self.c.ca)
        self.conn = http.client.HTTPSConnection(
            "127.0.0.1", self.c.api_port, context=ctx, timeout=60)

    def call(self, method, path, headers, data):
        for attempt in (0, 1):
            if self.conn is None:
                self.connect()
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                raw = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return r.status, r.getheader("Content-Type", ""), raw
            except (http.client.HTTPException, OSError):
                # The server closes after some refusals (413 before the
                # body): a fresh connection, once.
                self.conn.close()
                self.conn = None
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def version(self):
        """Changes whenever another connection commits (SQLite)."""
        if self.ro is None:
            self.ro = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True,
                                      isolation_level=None)
        return self.ro.execute("PRAGMA data_version").fetchone()[0]

    def dump(self):
        db = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            return "\n".join(db.iterdump())
        finally:
            db.close()


def setup_objects(c):
    """A member, tokens bound and unbound, and objects to name."""
    calls = [
        ("POST", "/v1/tenants", {"kind": "commune", "name": "Prop",
                                 "insee": "31555"}),
        ("POST", "/v1/plans", {"name": "small", "vcpus": 1,
                               "memory_mib": 256, "disk_bytes": 1 << 30}),
        ("POST", "/v1/images", {"name": "tiny", "format": "raw",
                                "disk": {"sha256": "0" * 64,
                                         "size": 1024}}),
    ]
    for method, path, b in calls:
        st_, doc, _ = c.api(method, path, b)
        assert st_ in (200, 201), (path, doc)
    tokens = {"admin": c.token()}
    for name, role, tenant in (("prop-member", "operator", "31555"),
                               ("prop-auditor", "auditor", None)):
        b = {"name": name, "role": role}
        if tenant:
            b["tenant"] = tenant
        st_, doc, _ = c.api("POST", "/v1/tokens", b)
        assert st_ == 201, doc
        tokens[name.split("-")[1]] = doc["token"]
    return tokens


@pytest.fixture
def open_controller(workdir, procs):
    # No rate limit (the test is the flood), no background rollups
    # writing while a refused request is checked.
    c = opsn.Controller(workdir, extra_conf=(
        "[api]\nrate = 0\n[metering]\nrollup_interval = 1h\n"))
    procs.append(c)
    c.start()
    return c


def test_generated_requests_never_5xx_and_refusals_change_nothing(
        open_controller):
    c = open_controller
    st_, spec, _ = c.api("GET", "/v1/openapi.json", token=None)
    assert st_ == 200
    routes = [(m.upper(), p) for p, item in spec["paths"].items()
              for m in item]
    assert len(routes) > 50, routes
    api = Api(c, setup_objects(c))
    state = {"version": api.version(), "dump": api.dump(), "n": 0,
             "by_status": {}}

    request = st.tuples(
        st.sampled_from(routes), st.lists(param, min_size=4, max_size=4),
        st.dictionaries(st.sampled_from(QUERY_KEYS) | st.text(max_size=6),
                        param, max_size=3),
        caller, extra_headers, body)

    def check(req):
        (method, pattern), params, query, who, hdrs, data = req
        values = iter(params)
        segs = []
        for seg in pattern.split("/"):
            if seg.startswith("{"):
                v = next(values)
                if seg == "{name}" and pattern.startswith("/v1/tokens") \
                        and v in OURS:
                    v = "someone"
                segs.append(quote(v))
            else:
                segs.append(seg)
        path = "/".join(segs)
        if query:
            path += "?" + urllib.parse.urlencode(query)
        headers = dict(hdrs)
        tokens = api.tokens
        if who in tokens:
            headers["Authorization"] = "Bearer " + tokens[who]
        elif who == "garbage":
            headers["Authorization"] = "Bearer opsn_" + "0" * 40
        elif who == "basic":
            headers["Authorization"] = "Basic YWRtaW46YWRtaW4="
        if "Content-Range" in headers and "Upload-Sha256" not in headers \
                and data:
            headers["Upload-Sha256"] = hashlib.sha256(data).hexdigest()
        status, ctype, raw = api.call(method, path, headers, data)
        state["n"] += 1
        state["by_status"][status] = state["by_status"].get(status, 0) + 1
        assert status < 500, (method, path, headers, data, status, raw)
        # Nothing committed since the last dump: the database is as it was.
        # Else the dump says whether a refusal changed it.
        version = api.version()
        if 400 <= status < 500:
            assert ctype.startswith("application/json"), (path, ctype)
            doc = json.loads(raw)
            assert doc["error"]["code"] and doc["error"]["message"], doc
            if version != state["version"]:
                assert api.dump() == state["dump"], (
                    f"{method} {path} answered {status} "
                    f"({doc['error']['code']}) but changed the database")
        elif version != state["version"]:
            state["dump"] = api.dump()
        state["version"] = version

    @settings(max_examples=40, deadline=None, database=None,
              phases=[Phase.generate, Phase.shrink],
              suppress_health_check=list(HealthCheck))
    @given(request)
    def run(req):
        check(req)

    end = time.monotonic() + SECONDS
    while time.monotonic() < end:
        run()
    print(f"{state['n']} requests to {len(routes)} routes in "
          f"{SECONDS:.0f}s; answers: "
          + ", ".join(f"{k}: {v}" for k, v in
                      sorted(state["by_status"].items())))
    assert state["n"] > 100
    assert c.api("GET", "/v1/health", token=None)[0] == 200
