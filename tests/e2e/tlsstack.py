"""A certificate world on loopback for the TLS, DKIM and DNS tests.

- CA: a test certificate authority (python3-cryptography) for members'
  certificates, Pebble's own HTTPS and the mail host names.
- Knot: an authoritative DNS server (Debian knot) on a loopback port,
  serving zones the test writes and reloads.
- Pebble: Let's Encrypt's test ACME server (Debian pebble) on loopback,
  validating HTTP-01 challenges against the private nginx, resolving host
  names through Knot.
- uacme_wrapper(): Debian's uacme trusts only the system's CA bundle (it
  has no option for another); the wrapper runs it in a private mount
  namespace where that bundle also holds the test CA (Pebble's HTTPS).

Every daemon runs in a temporary folder, with its output in a file, and
is stopped by its fixture (PLATFORM.md).
"""
import datetime
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import mailstack
from opsn import free_port, wait_until

SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def have(*progs):
    return all(shutil.which(p) or os.path.exists(p) for p in progs)


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class CA:
    """A test certificate authority."""

    def __init__(self, name="opsn test CA"):
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (x509.CertificateBuilder()
                     .subject_name(subject).issuer_name(subject)
                     .public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(_now() - datetime.timedelta(days=1))
                     .not_valid_after(_now() + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True,
                                                          path_length=None),
                                    critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.pem = cert_pem(self.cert)

    def issue(self, names, not_before=None, not_after=None, rsa_bits=None,
              ips=()):
        """(chain PEM: leaf then this CA, key PEM) for names."""
        key = (rsa.generate_private_key(65537, rsa_bits) if rsa_bits
               else ec.generate_private_key(ec.SECP256R1()))
        nb = not_before or _now() - datetime.timedelta(hours=1)
        na = not_after or _now() + datetime.timedelta(days=10)
        import ipaddress
        sans = [x509.DNSName(n) for n in names] + \
            [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(
                    NameOID.COMMON_NAME, names[0])]))
                .issuer_name(self.cert.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(nb).not_valid_after(na)
                .add_extension(x509.SubjectAlternativeName(sans),
                               critical=False)
                .add_extension(x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(self.key, hashes.SHA256()))
        return cert_pem(cert) + self.pem, key_pem(key)

    def write(self, folder, name, names, **kw):
        """Issue and write NAME.pem and NAME.key into folder."""
        chain, key = self.issue(names, **kw)
        c = os.path.join(folder, name + ".pem")
        k = os.path.join(folder, name + ".key")
        with open(c, "w") as f:
            f.write(chain)
        with open(k, "w") as f:
            f.write(key)
        os.chmod(k, 0o600)
        return c, k


def _stop(proc, sig=signal.SIGTERM):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class _Daemon:
    """A daemon in its own temporary folder."""

    def __init__(self, prefix):
        self.root = mailstack.make_tmp(prefix)
        self.proc = None

    def stop(self):
        _stop(self.proc)
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class Knot(_Daemon):
    """knotd serving the zones given to start() or set_zone()."""

    def __init__(self):
        super().__init__("opsn-knot-")
        self.port = free_port()
        self.conf = os.path.join(self.root, "knot.conf")
        self.log = os.path.join(self.root, "knot.log")
        self.zones = {}

    def addr(self):
        return f"127.0.0.1:{self.port}"

    def _zone_file(self, origin):
        return os.path.join(self.root, origin.rstrip(".") + ".zone")

    def _write_zone(self, origin, records):
        origin = origin.rstrip(".") + "."
        serial = int(time.time() * 10) % 4000000000
        text = (f"$ORIGIN {origin}\n$TTL 60\n"
                f"@ SOA ns.{origin} hostmaster.{origin} {serial} 3600 600 "
                f"86400 60\n@ NS ns.{origin}\nns A 127.0.0.1\n{records}\n")
        with open(self._zone_file(origin), "w") as f:
            f.write(text)
        self.zones[origin] = records

    def _write_conf(self):
        zones = "".join(f"  - domain: {z}\n    file: {self._zone_file(z)}\n"
                        for z in self.zones)
        with open(self.conf, "w") as f:
            f.write(f"server:\n    rundir: {self.root}\n"
                    f"    listen: 127.0.0.1@{self.port}\n"
                    f"database:\n    storage: {self.root}\n"
                    f"control:\n    listen: {self.root}/knot.sock\n"
                    f"zone:\n{zones}"
                    "log:\n  - target: stderr\n    any: warning\n")

    def start(self, zones):
        for origin, records in zones.items():
            self._write_zone(origin, records)
        self._write_conf()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(["knotd", "-c", self.conf],
                                         stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL)
        first = next(iter(self.zones))
        wait_until(lambda: self.query("ns." + first, "A") == ["127.0.0.1"],
                   10, 0.05, what="knot answering")
        return self

    def set_zone(self, origin, records):
        """Replace a zone's records (SOA and NS are added) and reload."""
        self._write_zone(origin, records)
        mailstack.run(["knotc", "-b", "-c", self.conf, "zone-reload",
                       origin.rstrip(".") + "."])

    def query(self, name, rtype):
        r = mailstack.run(["kdig", "@127.0.0.1", "-p", str(self.port),
                           "+short", "+norec", name, rtype], check=False)
        return r.stdout.split("\n")[:-1] if r.stdout else []


class Pebble(_Daemon):
    """Pebble on loopback: HTTP-01 challenges go to http_port on
    127.0.0.1 (the private nginx), names are resolved by dns (Knot)."""

    def __init__(self, http_port, dns, validity=None, ca=None):
        super().__init__("opsn-pebble-")
        self.port = free_port()
        self.mgmt = free_port()
        self.http_port = http_port
        self.dns = dns
        self.validity = validity
        self.ca = ca or CA("opsn test CA for pebble")
        self.log = os.path.join(self.root, "pebble.log")
        self.bundle = os.path.join(self.root, "bundle.pem")
        self.wrapper = os.path.join(self.root, "uacme")

    @property
    def directory(self):
        return f"https://127.0.0.1:{self.port}/dir"

    def start(self):
        cert, key = self.ca.write(self.root, "pebble-tls", ["localhost"],
                                  ips=["127.0.0.1"])
        conf = {"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.mgmt}",
            "certificate": cert, "privateKey": key,
            "httpPort": self.http_port, "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False}}
        if self.validity:
            conf["pebble"]["certificateValidityPeriod"] = self.validity
        import json
        path = os.path.join(self.root, "pebble.json")
        with open(path, "w") as f:
            json.dump(conf, f)
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1",
                   PEBBLE_WFE_NONCEREJECT="0", PEBBLE_AUTHZREUSE="0")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["pebble", "-config", path, "-dnsserver", self.dns.addr()],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
        wait_until(lambda: self._get(self.directory), 15, 0.05,
                   what="pebble's directory")
        with open(SYSTEM_BUNDLE) as f, open(self.bundle, "w") as out:
            out.write(f.read() + self.ca.pem)
        with open(self.wrapper, "w") as f:
            # uacme has no CA option: it sees the test CA in the system
            # bundle, in its own mount namespace only.
            f.write("#!/bin/sh\nexec unshare -m sh -c 'mount --bind "
                    f"{self.bundle} {SYSTEM_BUNDLE} && exec /usr/bin/uacme "
                    "\"$@\"' uacme \"$@\"\n")
        os.chmod(self.wrapper, 0o755)
        return self

    def _get(self, url):
        ctx = ssl.create_default_context(cadata=self.ca.pem)
        with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
            return r.read().decode()

    def roots(self):
        """Pebble's root certificate (PEM): what browsers would trust."""
        return self._get(f"https://127.0.0.1:{self.mgmt}/roots/0")

    def agent_args(self, retry_min="1s", retry_max="4s"):
        return ["--acme-directory", self.directory,
                "--acme-client", self.wrapper,
                "--acme-email", "hostmaster@opsn.test",
                "--acme-retry-min", retry_min,
                "--acme-retry-max", retry_max]


# ---- what a TLS client sees --------------------------------------------

ANSSI_PROTOCOLS = {"TLSv1.2", "TLSv1.3"}


def sslscan(port, starttls=None, sni=None):
    """(enabled protocols, accepted (protocol, cipher) pairs) of a port,
    as sslscan finds them (starttls: "smtp", "imap", or None)."""
    import xml.etree.ElementTree as ET
    argv = ["sslscan", "--no-colour", "--xml=-", "--no-heartbleed",
            "--no-compression", "--no-renegotiation", "--no-fallback",
            "--no-groups"]
    if starttls:
        argv.append(f"--starttls-{starttls}")
    if sni:
        argv.append(f"--sni-name={sni}")
    argv.append(f"127.0.0.1:{port}")
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    xml = r.stdout[r.stdout.index("<?xml"):] if "<?xml" in r.stdout else ""
    assert xml, f"sslscan: {r.stdout}{r.stderr}"
    root = ET.fromstring(xml)
    protocols = {f"TLSv{p.get('version')}" if p.get("type") == "tls"
                 else f"SSLv{p.get('version')}"
                 for p in root.iter("protocol") if p.get("enabled") == "1"}
    ciphers = [(c.get("sslversion"), c.get("cipher"))
               for c in root.iter("cipher")
               if c.get("status") in ("accepted", "preferred")]
    return protocols, ciphers


def assert_anssi(port, starttls=None, sni=None):
    """Only TLS 1.2 (ECDHE with an AEAD suite) and TLS 1.3 answer."""
    protocols, ciphers = sslscan(port, starttls, sni)
    assert protocols and protocols <= ANSSI_PROTOCOLS, (port, protocols)
    assert ciphers, (port, "no cipher accepted")
    for version, cipher in ciphers:
        assert version in ANSSI_PROTOCOLS, (port, version, cipher)
        if version == "TLSv1.2":
            assert cipher.startswith("ECDHE-") and (
                "GCM" in cipher or "CHACHA20" in cipher), (port, cipher)
    return protocols, ciphers
