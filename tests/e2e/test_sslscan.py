"""TLS as a scanner sees it: Debian's sslscan against both ports.

The API offers TLS 1.3 and, for older clients, TLS 1.2 with only the ECDHE
suites with AEAD of the ANSSI TLS guide's recommended list; the agent port
offers TLS 1.3 only. Any other protocol, suite or group fails the test.
"""
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

SSLSCAN = shutil.which("sslscan") or "/usr/bin/sslscan"

pytestmark = pytest.mark.skipif(
    not shutil.which(SSLSCAN), reason="sslscan missing (ops/deps.sh)")

TLS13 = {"TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256",
         "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_CCM_SHA256"}
# ANSSI, "Recommandations de sécurité relatives à TLS" v1.2, annex A.1:
# the ECDHE suites with AEAD (OpenSSL's names).
TLS12_ANSSI = {
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-CCM", "ECDHE-ECDSA-AES128-CCM",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-CHACHA20-POLY1305",
}
GROUPS = ("secp256r1", "secp384r1", "secp521r1", "x25519", "x448")


def scan(addr):
    r = subprocess.run([SSLSCAN, "--no-colour", "--xml=-", addr],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    xml = r.stdout[r.stdout.index("<?xml"):]
    root = ET.fromstring(xml).find("ssltest")
    assert root is not None, r.stdout
    protocols = {f"{p.get('type')}{p.get('version')}"
                 for p in root.iter("protocol") if p.get("enabled") == "1"}
    ciphers = {(c.get("sslversion"), c.get("cipher"))
               for c in root.iter("cipher")}
    return root, protocols, ciphers


def check_common(root):
    for group in root.iter("group"):
        assert group.get("name").split()[0] in GROUPS, group.attrib
    for reneg in root.iter("renegotiation"):
        assert reneg.get("supported") == "0", reneg.attrib
    for hb in root.iter("heartbleed"):
        assert hb.get("vulnerable") == "0", hb.attrib
    for comp in root.iter("compression"):
        assert comp.get("supported") != "1", comp.attrib


def test_api_port_offers_tls13_and_anssi_tls12_suites_only(controller):
    root, protocols, ciphers = scan(f"127.0.0.1:{controller.api_port}")
    assert protocols == {"tls1.2", "tls1.3"}, protocols
    for version, cipher in ciphers:
        if version == "TLSv1.3":
            assert cipher in TLS13, cipher
        else:
            assert version == "TLSv1.2", (version, cipher)
            assert cipher in TLS12_ANSSI, cipher
    assert ("TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384") in ciphers
    preferred = {c.get("sslversion"): c.get("cipher")
                 for c in root.iter("cipher")
                 if c.get("status") == "preferred"}
    assert preferred["TLSv1.2"] == "ECDHE-ECDSA-AES256-GCM-SHA384"
    check_common(root)


def test_agent_port_offers_tls13_only(controller):
    root, protocols, ciphers = scan(controller.agent_addr)
    assert protocols == {"tls1.3"}, protocols
    assert ciphers and all(v == "TLSv1.3" and c in TLS13
                           for v, c in ciphers), ciphers
    check_common(root)
