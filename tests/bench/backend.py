"""A mail backend with many mailboxes (tests/bench/run.sh, section backend).

    backend.py OUT [MAILBOXES]

A controller, a private Postfix + Dovecot (tests/e2e/mailstack.py) and a
mail agent speaking protocol 2, all real, on loopback. MAILBOXES (250,000)
are imported 10,000 at a time on 25 domains; then:

  1. a full resync (the agent, away while they were imported, comes back
     holding nothing): the bytes of the whole state in parts and the time
     until the backend reports it applied, with the agent's apply time;
  2. one mailbox changes (its quota): the bytes the controller sends for
     it (a delta), the time until it is reported applied, the agent's
     apply time.

The reference, in the same run: the whole state is what protocol 1 sends
for every change, in one frame (over 16 MiB here, so it cannot be sent at
all). Writes its figures to OUT. Never fails on a time.
"""
import crypt
import os
import re
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(TOP, "tests", "e2e"))

import mailstack  # noqa: E402
import opsn  # noqa: E402
from opsn import wait_until  # noqa: E402

# Under the API's body limit (1 MiB): about 250 bytes a mailbox.
PER_IMPORT = 2500
PER_DOMAIN = 10000


def backend(c):
    st, doc, _ = c.api("GET", "/v1/backends/mx1")
    assert st == 200, doc
    return doc


def in_step(c, gen):
    b = backend(c)
    return b["applied_generation"] >= gen and b["generation"] == gen


def log_lines(path, pattern):
    with open(path, errors="replace") as f:
        return re.findall(pattern, f.read())


def main(out, n):
    work = mailstack.make_tmp("opsn-bench-backend-")
    # A national-scale backend takes seconds to apply: heartbeats at the
    # defaults, not the end-to-end tests' half second.
    # The bench measures the server, not its per-token rate limit.
    c = opsn.Controller(work, extra_conf="heartbeat_interval = 10s\n"
                        "unreachable_timeout = 30s\n"
                        "[api]\nrate = 0\n").start()
    stack = mailstack.MailStack()
    agent = None
    try:
        stack.start()
        c.opsnctl("tenant", "add", "--kind", "commune", "--name", "Agassac",
                  "--insee", "31001", "--siren", "213100019",
                  "--population", "115")
        agent = opsn.Agent(work, "mx1", [c.agent_addr],
                           token=c.join_token(), role="mail",
                           extra_args=stack.agent_args())
        agent.start()
        wait_until(lambda: c.node_state("mx1") == "ready", 30,
                   what="mx1 ready")
        # Filled while the agent is away: it then gets it all at once.
        agent.stop()
        pw_hash = "{SHA512-CRYPT}" + crypt.crypt(
            "Correct horse 31001", crypt.mksalt(crypt.METHOD_SHA512))
        t0 = time.monotonic()
        ndom = (n + PER_DOMAIN - 1) // PER_DOMAIN
        for d in range(ndom):
            dom = f"commune{d}.fr"
            st, doc, _ = c.api("POST", "/v1/mail/domains", {
                "name": dom, "tenant": "31001", "backend": "mx1"})
            assert st == 201, doc
            left = min(PER_DOMAIN, n - d * PER_DOMAIN)
            for k in range(0, left, PER_IMPORT):
                recs = [{"local": f"agent{k + i}",
                         "password_hash": pw_hash,
                         "quota_bytes": 100 << 20}
                        for i in range(min(PER_IMPORT, left - k))]
                st, doc, _ = c.api("POST", "/v1/mail/mailboxes/import",
                                   {"domain": dom, "records": recs})
                assert st == 200, doc
        filled = time.monotonic() - t0
        gen = backend(c)["generation"]

        # 1. A full resync: the agent, holding nothing, comes back.
        t0 = time.monotonic()
        agent.start()
        wait_until(lambda: in_step(c, gen), 1800, 0.05,
                   what="the whole state applied")
        full = time.monotonic() - t0
        whole = log_lines(c.log, r"mx1 got generation %d whole, in (\d+) "
                          r"parts, (\d+) bytes" % gen)[-1]
        full_apply = log_lines(agent.log, r"mail: generation %d: .* in "
                               r"(\d+) ms" % gen)

        # 2. One mailbox changes.
        addr = "agent7@commune0.fr"
        t0 = time.monotonic()
        st, doc, _ = c.api("PATCH", f"/v1/mail/mailboxes/{addr}",
                           {"quota_bytes": 200 << 20})
        assert st == 200, doc
        gen = backend(c)["generation"]
        wait_until(lambda: in_step(c, gen), 300, 0.005,
                   what="the change applied")
        one = time.monotonic() - t0
        delta = log_lines(c.log, r"delta \d+ -> %d \(.*; (\d+) bytes\)"
                          % gen)
        one_apply = log_lines(agent.log, r"mail: generation %d: .* in (\d+) "
                              r"ms" % gen)

        with open(out, "w") as f:
            f.write(f"A mail backend with {n} mailboxes on {ndom} domains "
                    f"(real Postfix and Dovecot), protocol 2\n")
            f.write(f"  filled through the API in {filled:.0f} s "
                    f"({n // PER_IMPORT} imports)\n")
            f.write(f"  {'':32s} {'bytes sent':>12s} {'until applied':>14s}"
                    f" {'agent apply':>12s}\n")
            f.write(f"  {'full resync (' + whole[0] + ' parts)':32s} "
                    f"{whole[1]:>12s} {full:>12.1f} s "
                    f"{(full_apply[-1] if full_apply else '?'):>9s} ms\n")
            f.write(f"  {'one mailbox changed (delta)':32s} "
                    f"{delta[-1] if delta else '?':>12s} "
                    f"{one * 1000:>11.0f} ms "
                    f"{(one_apply[-1] if one_apply else '?'):>9s} ms\n")
            ratio = int(whole[1]) / int(delta[-1]) if delta else 0
            f.write(f"  reference: protocol 1 sends the whole state, "
                    f"{whole[1]} bytes, at every change (at most "
                    f"{16 << 20} in one frame); the delta is 1/{ratio:.0f} "
                    f"of it\n")
    finally:
        if agent is not None:
            agent.stop()
        c.stop()
        stack.cleanup()
        opsn.rmtree(work)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) == 3 else 250000)
