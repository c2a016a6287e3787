"""Private Postfix, Dovecot and nginx instances for the services tests.

Each instance lives in a temporary folder, listens on free loopback ports,
is rendered from the templates a backend uses (ops/mail, ops/web), and is
always stopped by its fixture. ../shared/PLATFORM.md has the details these
helpers follow: every path passed explicitly (`postfix -c`, `dovecot -c`,
`nginx -p -c`), no chroot, daemon output to files, folders traversable by
postfix, the mail user and nobody, Dovecot ready when its pid file exists.
"""
import imaplib
import itertools
import os
import pwd
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import opsn
from opsn import free_port, wait_until

OPS = os.path.join(opsn.TOP, "ops")
# postfix, dovecot and nginx live in sbin folders a user's PATH may lack.
for _d in ("/usr/sbin", "/sbin"):
    if _d not in os.environ.get("PATH", "").split(":"):
        os.environ["PATH"] = os.environ.get("PATH", "") + ":" + _d
MAIL_OWNER = "nobody"       # owns the maildirs in tests (vmail on a backend)
SASL_LISTENER = "private/auth"


def have(*progs):
    """Are the daemons' programs installed (ops/deps.sh)?"""
    return all(shutil.which(p) for p in progs)


def render(template, out, values):
    """Write template with every @NAME@ replaced; fail on one left over."""
    with open(template) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace("@" + k + "@", str(v))
    if "@" in text:
        import re
        left = re.findall(r"@[A-Z_]+@", text)
        assert not left, f"{template}: no value for {left}"
    with open(out, "w") as f:
        f.write(text)


def make_tmp(prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    # mkdtemp makes 0700 folders: the daemons' users must traverse them.
    os.chmod(d, 0o755)
    return d


def run(argv, timeout=30, check=True):
    r = subprocess.run(argv, capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: exit {r.returncode}: "
                             f"{r.stdout}{r.stderr}")
    return r


def _port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _pid_alive(path):
    try:
        with open(path) as f:
            pid = int(f.read().split()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None


def _kill_pidfile(path, timeout=5.0):
    pid = _pid_alive(path)
    if not pid:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


# Dovecot delays every login from an address that failed lately (2 to 15
# s, login_trusted_networks or not): each IMAP session of the tests comes
# from its own loopback address, as different users' would.
_source = itertools.count(1)


class _IMAP(imaplib.IMAP4):
    def __init__(self, host, port, timeout, source):
        self._src = source
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self._src, 0))


def _next_source():
    n = next(_source)
    return f"127.{100 + n // 65025 % 100}.{n // 255 % 255}.{n % 255 + 1}"


def mail_backend(controller, make_agent, stack, extra_args=(), env=None):
    """The commune of Agassac (31001) and a mail backend mx1 whose agent
    writes the stack's maps; returns the agent once mx1 is ready."""
    controller.opsnctl("tenant", "add", "--kind", "commune", "--name",
                       "Agassac", "--insee", "31001", "--siren", "213100019",
                       "--population", "115")
    a = make_agent("mx1", role="mail",
                   extra_args=stack.agent_args() + list(extra_args), env=env)
    wait_until(lambda: controller.node_state("mx1") == "ready", 20,
               what="mx1 ready")
    return a


class MailStack:
    """A private Postfix + Dovecot pair reading the maps under mail_dir.

    The agent under test gets agent_args(): its mail_dir, the Postfix
    config folder and the Dovecot config file of this stack, so that the
    maps it writes are the ones these daemons read.
    """

    def __init__(self, root=None):
        self.root = root or make_tmp("opsn-mail-")
        self.smtp_port = free_port()
        self.submission_port = free_port()
        self.lmtp_port = free_port()
        self.imap_port = free_port()
        self.imaps_port = free_port()
        self.dkim_port = free_port()
        self.postfix_dir = os.path.join(self.root, "postfix")
        self.queue_dir = os.path.join(self.root, "spool")
        self.pf_data = os.path.join(self.root, "postfix-data")
        self.dovecot_dir = os.path.join(self.root, "dovecot")
        self.dovecot_conf = os.path.join(self.dovecot_dir, "dovecot.conf")
        self.dovecot_base = os.path.join(self.root, "dovecot-run")
        self.mail_dir = os.path.join(self.root, "mail")
        self.maps_dir = os.path.join(self.mail_dir, ".maps")
        self.logs = os.path.join(self.root, "logs")
        self.postfix_log = os.path.join(self.logs, "postfix.log")
        self.dovecot_log = os.path.join(self.logs, "dovecot.log")
        self.tls_dir = os.path.join(self.mail_dir, ".tls")
        # OpenDKIM refuses keys on a path that others may write (/tmp is
        # 1777): its folder lives under /run, root's, as on a backend.
        self.dkim_dir = None
        self.dkim_conf = os.path.join(self.root, "opendkim.conf")
        self.dkim_pid = os.path.join(self.root, "opendkim.pid")
        self.dkim_log = os.path.join(self.logs, "opendkim.log")
        self.dkim = have("opendkim")
        self.dovecot_proc = None
        self.dkim_proc = None
        self.started = False

    # ---- configuration ---------------------------------------------------

    def render(self):
        for d in (self.postfix_dir, self.queue_dir, self.dovecot_dir,
                  self.mail_dir, self.maps_dir, self.logs, self.dovecot_base):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
        os.makedirs(self.pf_data, exist_ok=True)
        pw = pwd.getpwnam("postfix")
        os.chown(self.pf_data, pw.pw_uid, pw.pw_gid)
        mail = os.path.join(OPS, "mail")
        values = {
            "MYHOSTNAME": "mx.opsn.test",
            "INET_INTERFACES": "127.0.0.1",
            "INET_PROTOCOLS": "ipv4",
            "QUEUE_DIR": self.queue_dir,
            "DATA_DIR": self.pf_data,
            "MAILLOG_FILE": self.postfix_log,
            "CONFIG_DIR": self.postfix_dir,
            "MAPS_DIR": self.maps_dir,
            "LMTP_ADDR": f"127.0.0.1:{self.lmtp_port}",
            "SASL_PATH": SASL_LISTENER,
            "TLS_CERT": os.path.join(self.tls_dir, "cert.pem"),
            "TLS_KEY": os.path.join(self.tls_dir, "key.pem"),
            "SMTPD_TLS": "may",
            "SMTP_LISTEN": f"127.0.0.1:{self.smtp_port}",
            "SUBMISSION_LISTEN": f"127.0.0.1:{self.submission_port}",
            "SUBMISSION_TLS": "encrypt",
            "DKIM_MILTER": (f"inet:127.0.0.1:{self.dkim_port}" if self.dkim
                            else ""),
        }
        self._placeholder_tls()
        self._render_dkim()
        main_cf = os.path.join(self.postfix_dir, "main.cf")
        render(os.path.join(mail, "main.cf.in"), main_cf, values)
        with open(main_cf, "a") as f:
            # A delivery deferred by a Dovecot reload is retried within a
            # second, not five minutes (the test would time out first).
            f.write("\n# test instance\nqueue_run_delay = 1s\n"
                    "minimal_backoff_time = 1s\nmaximal_backoff_time = 2s\n")
        render(os.path.join(mail, "master.cf.in"),
               os.path.join(self.postfix_dir, "master.cf"), values)
        for t in ("domains", "mailboxes", "aliases", "transport", "access"):
            render(os.path.join(mail, f"opsn-{t}.cf.in"),
                   os.path.join(self.postfix_dir, f"opsn-{t}.cf"), values)
        dv = {
            "LISTEN": "127.0.0.1",
            "BASE_DIR": self.dovecot_base,
            "STATE_DIR": os.path.join(self.dovecot_base, "state"),
            "INSTANCE_NAME": "opsn-test-" + os.path.basename(self.root),
            "LOG_PATH": self.dovecot_log,
            "MAIL_OWNER": MAIL_OWNER,
            "MAIL_GROUP": "nogroup",
            "DISABLE_PLAINTEXT": "no",
            "TRUSTED_NETWORKS": "127.0.0.0/8",
            "AUTH_FAILURE_DELAY": "0",
            "CONFIG_DIR": self.dovecot_dir,
            "MAPS_DIR": self.maps_dir,
            "POSTMASTER": "postmaster@opsn.test",
            "IMAP_ADDR": "127.0.0.1",
            "IMAP_PORT": self.imap_port,
            "IMAPS_PORT": self.imaps_port,
            "LMTP_ADDR": "127.0.0.1",
            "LMTP_PORT": self.lmtp_port,
            "SASL_LISTENER": os.path.join(self.queue_dir, SASL_LISTENER),
            "SSL": "yes",
            "SSL_CERT": "<" + os.path.join(self.tls_dir, "cert.pem"),
            "SSL_KEY": "<" + os.path.join(self.tls_dir, "key.pem"),
        }
        render(os.path.join(mail, "dovecot.conf.in"), self.dovecot_conf, dv)
        render(os.path.join(mail, "dovecot-sql.conf.ext.in"),
               os.path.join(self.dovecot_dir, "dovecot-sql.conf.ext"), dv)

    def _placeholder_tls(self):
        """What the agent installs before a real certificate: the daemons
        need one to start (the agent keeps it if it finds one)."""
        os.makedirs(self.tls_dir, mode=0o700, exist_ok=True)
        if os.path.exists(os.path.join(self.tls_dir, "cert.pem")):
            return
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=mx.opsn.test",
             "-days", "30", "-keyout", os.path.join(self.tls_dir, "key.pem"),
             "-out", os.path.join(self.tls_dir, "cert.pem")])

    def _render_dkim(self):
        """OpenDKIM's configuration and the empty tables the agent would
        make (opendkim does not start without them)."""
        if not self.dkim:
            return
        if self.dkim_dir is None:
            self.dkim_dir = tempfile.mkdtemp(prefix="opsn-dkim-",
                                             dir="/run")
            os.chmod(self.dkim_dir, 0o755)
        gen = os.path.join(self.dkim_dir, "gen-empty")
        os.makedirs(os.path.join(gen, "keys"), exist_ok=True)
        for t in ("KeyTable", "SigningTable"):
            open(os.path.join(gen, t), "a").close()
        cur = os.path.join(self.dkim_dir, "current")
        if not os.path.lexists(cur):
            os.symlink("gen-empty", cur)
        render(os.path.join(OPS, "mail", "opendkim.conf.in"),
               self.dkim_conf, {
                   "SYSLOG": "no",
                   "SOCKET": f"inet:{self.dkim_port}@127.0.0.1",
                   "PID_FILE": self.dkim_pid,
                   "USER": "opendkim",
                   "DKIM_DIR": self.dkim_dir})

    def agent_args(self):
        args = ["--mail-dir", self.mail_dir, "--mail-owner", MAIL_OWNER,
                "--postfix-dir", self.postfix_dir,
                "--dovecot-conf", self.dovecot_conf,
                "--opendkim-pid", self.dkim_pid]
        if self.dkim_dir:
            args += ["--dkim-dir", self.dkim_dir]
        return args

    # ---- start and stop ----------------------------------------------------

    def start(self):
        self.render()
        try:
            self._start_opendkim()
            self._start_postfix()
            self._start_dovecot()
        except BaseException:
            self.stop()
            raise
        self.started = True
        return self

    def _start_postfix(self):
        # The first start creates the queue (about 3 s); a module keeps it.
        run(["postfix", "-c", self.postfix_dir, "start"], timeout=60)
        wait_until(lambda: _port_open(self.smtp_port), 20, 0.05,
                   what="postfix SMTP port")

    def _start_opendkim(self):
        if not self.dkim:
            return
        with open(self.dkim_log, "ab") as log:
            self.dkim_proc = subprocess.Popen(
                ["opendkim", "-f", "-x", self.dkim_conf],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL)

        def up():
            if self.dkim_proc.poll() is not None:
                raise AssertionError("opendkim exited:\n" +
                                     self.tail(self.dkim_log))
            return _port_open(self.dkim_port) and _pid_alive(self.dkim_pid)
        wait_until(up, 20, 0.05, what="opendkim")

    def _start_dovecot(self):
        with open(self.dovecot_log, "ab") as log:
            self.dovecot_proc = subprocess.Popen(
                ["dovecot", "-F", "-c", self.dovecot_conf],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        pidfile = os.path.join(self.dovecot_base, "master.pid")

        def up():
            if self.dovecot_proc.poll() is not None:
                raise AssertionError("dovecot exited:\n" +
                                     self.tail(self.dovecot_log))
            # Dovecot writes its pid once its listeners are up.
            return os.path.exists(pidfile) and _port_open(self.imap_port)
        wait_until(up, 20, 0.05, what="dovecot")

    def stop(self):
        """Stop both daemons; safe to call twice or after a failed start."""
        if os.path.exists(os.path.join(self.postfix_dir, "main.cf")):
            run(["postfix", "-c", self.postfix_dir, "stop"], check=False)
            _kill_pidfile(os.path.join(self.queue_dir, "pid", "master.pid"))
        if self.dkim_proc is not None:
            if self.dkim_proc.poll() is None:
                self.dkim_proc.terminate()
                try:
                    self.dkim_proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.dkim_proc.kill()
                    self.dkim_proc.wait()
            self.dkim_proc = None
        if self.dovecot_proc is not None:
            if self.dovecot_proc.poll() is None:
                self.dovecot_proc.terminate()
                try:
                    self.dovecot_proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.dovecot_proc.kill()
                    self.dovecot_proc.wait()
            self.dovecot_proc = None
        self.started = False

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        if self.dkim_dir:
            shutil.rmtree(self.dkim_dir, ignore_errors=True)

    # ---- what a user does --------------------------------------------------

    def send(self, rcpt, subject, body="hello", sender="sender@example.net"):
        """SMTP to Postfix; returns the refused recipients or raises."""
        msg = (f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
               f"Message-ID: <{os.urandom(8).hex()}@example.net>\r\n"
               f"\r\n{body}\r\n")
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=10) as s:
            return s.sendmail(sender, [rcpt], msg.encode())

    def rcpt_reply(self, rcpt, sender="sender@example.net"):
        """The (code, text) Postfix answers to RCPT TO for rcpt."""
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=10) as s:
            s.ehlo("client.example.net")
            s.mail(sender)
            code, text = s.rcpt(rcpt)
            s.rset()
            return code, text.decode(errors="replace")

    def imap_login(self, user, password):
        """An IMAP session, or None when the login is refused."""
        m = _IMAP("127.0.0.1", self.imap_port, 10, _next_source())
        try:
            m.login(user, password)
        except imaplib.IMAP4.error:
            m.logout()
            return None
        return m

    def subjects(self, user, password):
        """Subjects in the user's INBOX, or None if the login is refused."""
        m = self.imap_login(user, password)
        if m is None:
            return None
        try:
            m.select("INBOX", readonly=True)
            typ, data = m.search(None, "ALL")
            out = []
            for num in data[0].split():
                typ, d = m.fetch(num, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
                hdr = d[0][1].decode(errors="replace").strip()
                out.append(hdr.split(":", 1)[1].strip() if ":" in hdr
                           else hdr)
            return out
        finally:
            m.logout()

    def wait_delivered(self, user, password, subject, timeout=10):
        return wait_until(lambda: subject in (self.subjects(user, password)
                                              or []),
                          timeout, 0.05, what=f"{subject!r} in {user}")

    def settle(self):
        """After a reload, Postfix's processes from before it finish their
        current job with the old tables (an idle cleanup may take one more
        message): leave them a moment before relying on a new alias."""
        time.sleep(0.3)

    def queue(self):
        """Postfix's queue listing (postqueue -p)."""
        return run(["postqueue", "-c", self.postfix_dir, "-p"],
                   check=False).stdout

    def dump_logs(self):
        """The daemons' logs on stderr (a test of the module failed)."""
        import sys
        for p in (self.postfix_log, self.dovecot_log, self.dkim_log):
            sys.stderr.write(f"\n----- {p} -----\n{self.tail(p, 6000)}\n")

    def tail(self, path, n=3000):
        try:
            with open(path, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""


class WebStack:
    """A private nginx serving the server blocks an agent writes."""

    def __init__(self, root=None):
        self.root = root or make_tmp("opsn-web-")
        self.port = free_port()
        self.tls_port = free_port()
        self.prefix = os.path.join(self.root, "nginx")
        self.conf = os.path.join(self.prefix, "nginx.conf")
        self.confd = os.path.join(self.root, "sites.d")
        self.web_root = os.path.join(self.root, "www")
        self.run_dir = os.path.join(self.root, "run")
        self.logs = os.path.join(self.root, "logs")
        self.log = os.path.join(self.logs, "nginx.log")
        self.proc = None

    def render(self):
        for d in (self.prefix, self.confd, self.web_root, self.run_dir,
                  self.logs):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
        render(os.path.join(OPS, "web", "nginx.conf.in"), self.conf, {
            "USER": "nobody nogroup",
            "WORKERS": 1,
            "RUN_DIR": self.run_dir,
            "LOG_DIR": self.logs,
            "LISTEN": f"127.0.0.1:{self.port}",
            "LISTEN_TLS": f"127.0.0.1:{self.tls_port}",
            "CONFD_DIR": self.confd,
        })

    def agent_args(self):
        return ["--web-root", self.web_root, "--nginx-prefix", self.prefix,
                "--nginx-conf", self.conf, "--nginx-confd", self.confd,
                "--web-listen", f"127.0.0.1:{self.port}",
                "--web-listen-tls", f"127.0.0.1:{self.tls_port}",
                "--web-pages", os.path.join(OPS, "web")]

    def start(self):
        self.render()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["nginx", "-p", self.prefix, "-c", self.conf,
                 "-g", "daemon off;"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("nginx exited:\n" +
                                     open(self.log).read())
            return _port_open(self.port)
        try:
            wait_until(up, 20, 0.05, what="nginx")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGQUIT)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        _kill_pidfile(os.path.join(self.run_dir, "nginx.pid"))

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def get(self, host, path="/", headers=False):
        """(status, body) nginx answers for Host: host, and its headers
        when asked."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                     headers={"Host": host})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                out = (r.status, r.read().decode(errors="replace"),
                       dict(r.headers))
        except urllib.error.HTTPError as e:
            out = (e.code, e.read().decode(errors="replace"),
                   dict(e.headers))
        return out if headers else out[:2]
