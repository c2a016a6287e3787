"""Helpers to run the real opsn programs on loopback in a temporary folder."""
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

# The test build (`make test` builds it): a release build ignores the
# OPSN_TEST_* switches some tests need.
BIN = os.environ.get("OPSN_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "test", "bin")
BIN = os.path.abspath(BIN)
# Built with sanitizers (make check): CPU figures are ASan's, not a user's.
SANITIZED = os.sep + "san" + os.sep in BIN


def luhn_complete(digits):
    """digits followed by the check digit that makes a Luhn number (a
    SIREN from 8 digits, a SIRET from 13)."""
    for last in range(10):
        s = digits + str(last)
        total = 0
        for i, ch in enumerate(reversed(s)):
            d = int(ch)
            if i % 2 == 1:
                d *= 2
                if d > 9:
                    d -= 9
            total += d
        if total % 10 == 0:
            return s
    raise AssertionError(digits)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(fn, timeout=20.0, interval=0.1, what="condition"):
    """Poll fn until it returns a true value; return it or fail."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - keep polling, report last
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                         f"last: {last!r}")


class Proc:
    """A program started in the background with its log in a file."""

    def __init__(self, argv, log, env=None):
        self.argv = argv
        self.log = log
        self.env = env
        self.p = None

    def start(self):
        env = dict(os.environ)
        env.update(self.env or {})
        logf = open(self.log, "ab")
        # stdout/stderr to a file: a pipe would hang the harness.
        self.p = subprocess.Popen(self.argv, stdout=logf, stderr=logf,
                                  stdin=subprocess.DEVNULL, env=env)
        logf.close()
        return self

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.p is None:
            return
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.p = None

    def kill9(self):
        self.stop(signal.SIGKILL)

    def output(self):
        with open(self.log, "r", errors="replace") as f:
            return f.read()


class Controller(Proc):
    def __init__(self, root, name="controller", extra_conf="", env=None):
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir, exist_ok=True)
        self.data = os.path.join(self.dir, "data")
        self.api_port = free_port()
        self.agent_port = free_port()
        self.conf = os.path.join(self.dir, "controller.conf")
        with open(self.conf, "w") as f:
            f.write("[controller]\n"
                    "unreachable_timeout = 3s\n"
                    "heartbeat_interval = 500ms\n" + extra_conf)
        argv = [os.path.join(BIN, "opsn-controller"), "-d", "-c", self.conf,
                "--data-dir", self.data,
                "--api-listen", f"127.0.0.1:{self.api_port}",
                "--agent-listen", f"127.0.0.1:{self.agent_port}"]
        super().__init__(argv, os.path.join(self.dir, "controller.log"), env)

    @property
    def url(self):
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def ca(self):
        return os.path.join(self.data, "ca.pem")

    @property
    def agent_addr(self):
        return f"127.0.0.1:{self.agent_port}"

    def token(self):
        with open(os.path.join(self.data, "admin.token")) as f:
            return f.read().strip()

    def start(self):
        super().start()
        wait_until(self.healthy, 20, what="controller health")
        return self

    def healthy(self):
        if not self.alive():
            raise AssertionError("controller exited:\n" + self.output())
        try:
            return self.api("GET", "/v1/health", token=None)[0] == 200
        except (OSError, urllib.error.URLError):
            return False

    def api(self, method, path, body=None, token="admin", headers=None):
        """Call the API; return (status, parsed JSON or text, headers)."""
        ctx = ssl.create_default_context(cafile=self.ca)
        data = None if body is None else (
            body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data,
                                     method=method)
        if token == "admin":
            token = self.token()
        if token:
            req.add_header("Authorization", "Bearer " + token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
                status, raw, hdrs = r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            status, raw, hdrs = e.code, e.read(), e.headers
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            doc = raw.decode(errors="replace")
        return status, doc, hdrs

    def ctl_env(self):
        return {"OPSN_URL": self.url, "OPSN_TOKEN": self.token(),
                "OPSN_CA": self.ca, "HOME": self.dir}

    def opsnctl(self, *args, check=True, env=None, input=None):
        e = dict(os.environ)
        e.pop("OPSN_TOKEN_FILE", None)
        e.update(self.ctl_env())
        e.update(env or {})
        r = subprocess.run([os.path.join(BIN, "opsnctl"), *args], env=e,
                           capture_output=True, text=True, timeout=180,
                           input=input)
        if check and r.returncode != 0:
            raise AssertionError(f"opsnctl {' '.join(args)} failed "
                                 f"({r.returncode}): {r.stderr}")
        return r

    def nodes(self):
        r = self.opsnctl("-o", "json", "node", "list")
        doc = json.loads(r.stdout)
        items = doc["items"] if isinstance(doc, dict) else doc
        return {n["name"]: n for n in items}

    def node_state(self, name):
        return self.nodes().get(name, {}).get("state")

    def join_token(self, ttl=None):
        args = ["node", "token"] + (["--ttl", ttl] if ttl else [])
        return self.opsnctl(*args).stdout.strip()


class Agent(Proc):
    def __init__(self, root, name, controllers, token=None, role="web",
                 ca=None, extra_args=(), env=None, data=None):
        self.name = name
        self.dir = os.path.join(root, "agent-" + name)
        os.makedirs(self.dir, exist_ok=True)
        self.data = data or os.path.join(self.dir, "data")
        argv = [os.path.join(BIN, "opsn-agent"), "-d",
                "--data-dir", self.data, "--name", name,
                "--controller", ",".join(controllers), "--role", role,
                "--reconnect-max", "1s",
                # No test talks to Let's Encrypt; tlsstack.Pebble is the CA
                # of those that want one (a later --acme-directory wins).
                "--acme-directory", "off"]
        if token:
            argv += ["--join-token", token]
        if ca:
            argv += ["--ca", ca]
        argv += list(extra_args)
        super().__init__(argv, os.path.join(self.dir, "agent.log"), env)

    def set_token(self, token):
        i = self.argv.index("--join-token") if "--join-token" in self.argv \
            else None
        if i is None:
            self.argv += ["--join-token", token]
        else:
            self.argv[i + 1] = token

    def run_once(self, timeout=20):
        """Run to completion (for agents expected to exit)."""
        env = dict(os.environ)
        env.update(self.env or {})
        return subprocess.run(self.argv, capture_output=True, text=True,
                              timeout=timeout, env=env)


def rmtree(path):
    shutil.rmtree(path, ignore_errors=True)


# ---- libvirt: the tests use the real daemon on qemu:///system ----

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
IMAGE_DIR = os.environ.get("OPSN_IMAGE_DIR",
                           os.path.join(TOP, "build", "images", "tiny"))
LIBVIRT_URI = "qemu:///system"


def virsh(*args, check=True):
    r = subprocess.run(["virsh", "-c", LIBVIRT_URI, *args],
                       capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError(f"virsh {' '.join(args)}: {r.stderr}")
    return r


def libvirt_up():
    r = subprocess.run([os.path.join(TOP, "ops", "libvirt-up.sh")],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise AssertionError("libvirt daemon did not start: " + r.stderr)


def domains():
    """Every domain name the daemon has, running or not."""
    out = virsh("list", "--all", "--name").stdout
    return [d.strip() for d in out.splitlines() if d.strip()]


def domain_node(dom):
    """The node named in a domain's opsn metadata, or None."""
    r = virsh("metadata", dom, "https://opsn.example/xmlns/vm/1",
              check=False)
    if r.returncode != 0:
        return None
    import re
    m = re.search(r"<(?:\w+:)?node>([^<]*)</", r.stdout)
    return m.group(1) if m else None


def domain_state(dom):
    r = virsh("domstate", dom, check=False)
    return r.stdout.strip() if r.returncode == 0 else None


def domain_pid(dom):
    try:
        with open(f"/run/libvirt/qemu/{dom}.pid") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def cleanup_nodes(nodes):
    """Remove every domain, volume and pool that names one of nodes."""
    for dom in domains():
        if domain_node(dom) in nodes:
            virsh("destroy", dom, check=False)
            virsh("undefine", dom, "--nvram", check=False)
            virsh("undefine", dom, check=False)
    for n in nodes:
        pool = f"opsn-{n}"
        r = virsh("vol-list", pool, check=False)
        if r.returncode == 0:
            for line in r.stdout.splitlines()[2:]:
                parts = line.split()
                if parts:
                    virsh("vol-delete", parts[0], "--pool", pool,
                          check=False)
        virsh("pool-destroy", pool, check=False)
        virsh("pool-undefine", pool, check=False)


class Bridge:
    """A Linux bridge made for one test and removed after it."""

    def __init__(self):
        self.name = "opsnt" + os.urandom(3).hex()
        subprocess.run(["ip", "link", "add", self.name, "type", "bridge"],
                       check=True)
        subprocess.run(["ip", "link", "set", self.name, "up"], check=True)

    def remove(self):
        subprocess.run(["ip", "link", "del", self.name],
                       capture_output=True)


def add_tiny_image(controller, name="tiny"):
    """Upload the tiny guest through opsnctl."""
    with open(os.path.join(IMAGE_DIR, "cmdline")) as f:
        cmdline = f.read().strip()
    return controller.opsnctl(
        "image", "add", name,
        "--file", os.path.join(IMAGE_DIR, "disk.qcow2"),
        "--kernel", os.path.join(IMAGE_DIR, "vmlinuz"),
        "--initrd", os.path.join(IMAGE_DIR, "initrd.img"),
        "--cmdline", cmdline)
