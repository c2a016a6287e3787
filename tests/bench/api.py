"""Small API client for tests/bench/run.sh.

    api.py URL CA health              prints the number of ready nodes
    api.py URL CA tokens N OUT        writes N join tokens to OUT, one a line
    api.py URL CA sites NODE N OUT    creates N sites on web backend NODE (for
                                      a member "bench") and writes their ids
                                      to OUT, one a line

The admin token is read from OPSN_TOKEN_FILE. Join tokens are created over
one kept-alive HTTPS connection (one POST each, as `opsnctl node token`).
"""
import http.client
import json
import os
import ssl
import sys
import urllib.parse


def connect(url, ca):
    u = urllib.parse.urlsplit(url)
    ctx = ssl.create_default_context(cafile=ca)
    return http.client.HTTPSConnection(u.hostname, u.port, context=ctx,
                                       timeout=30)


def call(conn, method, path, body=None, token=None):
    headers = {}
    if token:
        headers["Authorization"] = "Bearer " + token
    if body is not None:
        body = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    return r.status, json.loads(data) if data else None


def health(url, ca):
    status, doc = call(connect(url, ca), "GET", "/v1/health")
    if status != 200:
        sys.exit(f"api.py: /v1/health answered {status}")
    print(doc.get("nodes", {}).get("ready", 0))


def tokens(url, ca, n, out):
    with open(os.environ["OPSN_TOKEN_FILE"]) as f:
        admin = f.read().strip()
    conn = connect(url, ca)
    with open(out, "w") as f:
        for _ in range(n):
            status, doc = call(conn, "POST", "/v1/node-tokens",
                               {"ttl": "1h"}, admin)
            if status != 201:
                sys.exit(f"api.py: POST /v1/node-tokens answered {status}: "
                         f"{doc}")
            f.write(doc["token"] + "\n")


def sites(url, ca, node, n, out):
    """The controller takes samples only of what it placed on a node: the
    simulated web backend reports sites it really holds."""
    with open(os.environ["OPSN_TOKEN_FILE"]) as f:
        admin = f.read().strip()
    conn = connect(url, ca)
    status, doc = call(conn, "GET", "/v1/tenants?limit=1000", None, admin)
    ids = [t["id"] for t in doc.get("items", []) if t["name"] == "bench"]
    if ids:
        tenant = ids[0]
    else:
        status, doc = call(conn, "POST", "/v1/tenants",
                           {"kind": "other", "name": "bench"}, admin)
        if status != 201:
            sys.exit(f"api.py: POST /v1/tenants answered {status}: {doc}")
        tenant = doc["id"]
    with open(out, "w") as f:
        for i in range(n):
            status, doc = call(conn, "POST", "/v1/sites", {
                "hostname": f"s{i}.{node}.bench.example", "tenant": tenant,
                "backend": node}, admin)
            if status != 201:
                sys.exit(f"api.py: POST /v1/sites answered {status}: {doc}")
            f.write(doc["id"] + "\n")


def main(argv):
    if len(argv) >= 4 and argv[3] == "health":
        health(argv[1], argv[2])
    elif len(argv) == 6 and argv[3] == "tokens":
        tokens(argv[1], argv[2], int(argv[4]), argv[5])
    elif len(argv) == 7 and argv[3] == "sites":
        sites(argv[1], argv[2], argv[4], int(argv[5]), argv[6])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
