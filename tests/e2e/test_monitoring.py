"""Monitoring: /metrics as Prometheus reads it, the alerting rules and the
Grafana dashboard (ops/prometheus, ops/grafana), checked with Debian's
promtool.
"""
import json
import os
import re
import shutil
import subprocess
import time

import pytest

import opsn
from opsn import wait_until

TOP = opsn.TOP
RULES = os.path.join(TOP, "ops", "prometheus", "opsn-rules.yml")
RULES_TEST = os.path.join(TOP, "tests", "prometheus", "opsn-rules.test.yml")
DASHBOARD = os.path.join(TOP, "ops", "grafana", "opsn.json")

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None,
                                reason="promtool not installed (ops/deps.sh)")


def promtool(*args, stdin=None):
    return subprocess.run(["promtool", *args], input=stdin,
                          capture_output=True, text=True, timeout=60)


def samples(text):
    """{(name, frozenset(labels)): value} of an exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"',
                                      m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def value(s, name, **labels):
    want = frozenset(labels.items())
    got = [v for (n, ls), v in s.items() if n == name and want <= ls]
    assert got, f"no {name}{labels or ''} in /metrics"
    return got[0]


def families(text):
    return set(re.findall(r"^# TYPE (\S+) ", text, re.M))


@pytest.fixture
def scraped(workdir, procs, controller, make_agent):
    """A controller with a web backend whose agent meters, after calls to
    a few routes: (exposition text, parsed samples)."""
    env = {"OPSN_TEST_METER_INTERVAL_MS": "200",
           "OPSN_TEST_METER_SYNTHETIC": "2"}
    make_agent("w1", role="web", env=env)
    wait_until(lambda: controller.node_state("w1") == "ready", 20,
               what="w1 ready")
    controller.opsnctl("tenant", "add", "--kind", "commune", "--name",
                       "Agassac", "--insee", "31001", "--population", "100")
    for _ in range(3):
        assert controller.api("GET", "/v1/nodes")[0] == 200
    # Deeper than the console's pages (/{dir}/{sub}/{file}): no route.
    assert controller.api("GET", "/v1/no/such/route")[0] == 404
    assert controller.api("GET", "/v1/usage?from=2026-01-01&to=2026-02-01"
                          )[0] == 200
    time.sleep(1.2)		# heartbeats and a few sample batches

    def scrape():
        st, text, hdrs = controller.api("GET", "/metrics")
        assert st == 200, text
        assert hdrs["Content-Type"].startswith("text/plain; version=0.0.4")
        return text
    text = wait_until(lambda: (lambda t: t if 'opsn_meter_spool_max_samples'
                               '{node="w1"}' in t else None)(scrape()),
                      10, what="w1's spool in /metrics")
    return text, samples(text)


def test_metrics_pass_promtool_with_no_warning(scraped):
    text, _ = scraped
    r = promtool("check", "metrics", stdin=text)
    assert r.returncode == 0 and r.stdout.strip() == "" and \
        r.stderr.strip() == "", f"promtool: {r.stdout}{r.stderr}"


def test_metrics_cover_process_nodes_api_certificates(scraped):
    text, s = scraped
    now = time.time()
    # The process, as Prometheus' client libraries name it.
    rss = value(s, "process_resident_memory_bytes")
    assert 1 << 20 < rss < 1 << 30
    assert value(s, "process_open_fds") > 3
    assert value(s, "process_max_fds") >= value(s, "process_open_fds")
    assert value(s, "process_cpu_seconds_total") > 0
    assert now - 120 < value(s, "process_start_time_seconds") <= now + 1
    # Latency histograms per route, with the count of replies.
    assert value(s, "opsn_api_request_duration_seconds_count",
                 method="GET", route="/v1/nodes") >= 3
    assert value(s, "opsn_api_request_duration_seconds_bucket",
                 method="GET", route="/v1/nodes", le="+Inf") >= 3
    assert value(s, "opsn_api_request_duration_seconds_count",
                 method="GET", route="/v1/usage") == 1
    assert value(s, "opsn_api_requests_total", method="*",
                 route="unmatched", status="4xx") == 1
    # The loop's turns: every one counted once, in cumulative buckets.
    turns = value(s, "opsn_loop_busy_seconds_count")
    assert turns > 10
    assert value(s, "opsn_loop_busy_seconds_bucket", le="+Inf") == turns
    les = sorted(float(dict(ls)["le"]) for (n, ls) in s
                 if n == "opsn_loop_busy_seconds_bucket")
    counts = [value(s, "opsn_loop_busy_seconds_bucket", le=f"{b:g}")
              for b in les if b != float("inf")]
    assert counts == sorted(counts) and counts[-1] <= turns
    assert 0 < value(s, "opsn_loop_busy_seconds_sum") < \
        time.time() - value(s, "process_start_time_seconds") + 1
    # Heartbeats on the monotonic clock: fresh for a connected node.
    assert value(s, "opsn_node_heartbeat_age_seconds", node="w1") < 3
    assert value(s, "opsn_node_connected", node="w1") == 1
    assert value(s, "opsn_node_state", node="w1", state="ready") == 1
    # Certificates: the CA for ten years, the server and node for 825 days.
    ca = value(s, "opsn_certificate_expiry_timestamp_seconds",
               certificate="ca")
    srv = value(s, "opsn_certificate_expiry_timestamp_seconds",
                certificate="server")
    node = value(s, "opsn_node_certificate_expiry_timestamp_seconds",
                 node="w1")
    assert abs(ca - (now + 3650 * 86400)) < 3 * 86400
    assert abs(srv - (now + 825 * 86400)) < 3 * 86400
    assert abs(node - (now + 825 * 86400)) < 3 * 86400
    # Provisioning per backend, disks, spool bounds.
    assert value(s, "opsn_services_changes", backend="w1",
                 state="pending") >= 0
    assert value(s, "opsn_services_changes", backend="w1",
                 state="failed") >= 0
    assert value(s, "opsn_services_generation_lag", backend="w1") >= 0
    assert value(s, "opsn_data_dir_avail_bytes") > 0
    assert value(s, "opsn_db_size_bytes") > 0
    assert value(s, "opsn_node_data_dir_size_bytes", node="w1") > 0
    assert value(s, "opsn_meter_spool_max_samples", node="w1") == 1000000
    assert value(s, "opsn_meter_spool_max_bytes", node="w1") == 512 << 20
    assert value(s, "opsn_meter_samples_ingested_total") > 0


def dashboard_exprs():
    with open(DASHBOARD) as f:
        doc = json.load(f)
    out = []
    for p in doc["panels"]:
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"]))
    return out


def test_rules_check_and_unit_tests_pass():
    r = promtool("check", "rules", RULES)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr
    r = promtool("test", "rules", RULES_TEST)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_dashboard_queries_parse(workdir):
    """Each panel's query is valid PromQL once Grafana's variables are
    filled in: promtool checks them as recording rules."""
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel{i}",
         "expr": e.replace("$__rate_interval", "5m").replace("$job", ".*")}
        for i, (_, e) in enumerate(exprs)]}]}
    path = os.path.join(workdir, "dashboard-rules.yml")
    with open(path, "w") as f:
        json.dump(rules, f)		# YAML is a superset of JSON
    r = promtool("check", "rules", path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_rules_and_dashboard_name_only_exported_metrics(scraped):
    """A typo in a rule or a panel would alert on nothing, silently."""
    text, _ = scraped
    exported = families(text) | {"up"}
    for fam in list(exported):
        exported |= {fam + "_bucket", fam + "_sum", fam + "_count"}
    with open(RULES) as f:
        rules = f.read()
    exprs = [e for _, e in dashboard_exprs()]
    named = set()
    for e in re.findall(r"expr: *>?\s*([^\n]+(?:\n {10}[^\n]+)*)", rules) + \
            exprs:
        named |= set(re.findall(r"\b((?:opsn|process)_[a-z0-9_]+)", e))
    assert named, "no metric found in the rules"
    missing = sorted(named - exported)
    assert not missing, f"not exported by the controller: {missing}"
