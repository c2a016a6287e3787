#!/usr/bin/python3
"""HTTPS image server for tests/unit/test_agt_imgcache.c.

Serves ROOT/<name>/<part> as GET /v1/images/<name>/<part> to clients with
a certificate from --ca, honours "Range: bytes=N-" with 206, answers
unknown names with the controller's JSON error, and appends one line per
request to --log: "GET <path> range=<Range header or ->".

Test modes: --drop-after K closes each response after K body bytes,
--no-range ignores Range headers, --delay-ms sleeps between 16 KiB chunks.
"""
import argparse
import json
import os
import re
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PARTS = ("disk", "kernel", "initrd")
CHUNK = 16 * 1024


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send_json_error(self, status, code, message):
        body = json.dumps({"error": {"code": code, "message": message}})
        body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        opts = self.server.opts
        rng = self.headers.get("Range")
        with self.server.lock:
            with open(opts.log, "a") as f:
                f.write(f"GET {self.path} range={rng or '-'}\n")

        prefix = "/v1/images/"
        rest = self.path[len(prefix):] if self.path.startswith(prefix) else ""
        bits = rest.split("/")
        name = urllib.parse.unquote(bits[0]) if len(bits) == 2 else ""
        part = bits[1] if len(bits) == 2 else ""
        path = os.path.join(opts.root, name, part)
        if (name in ("", ".", "..") or "/" in name or part not in PARTS
                or not os.path.isfile(path)):
            self.send_json_error(404, "not_found",
                                 f"no image named '{name}'")
            return

        size = os.path.getsize(path)
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and not opts.no_range:
            start = int(m.group(1))
            if start >= size:
                self.send_json_error(416, "bad_range",
                                     f"range starts after byte {size}")
                return
            self.send_response(206)
            self.send_header("Content-Range",
                             f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size - start))
        self.end_headers()

        sent = 0
        with open(path, "rb") as f:
            f.seek(start)
            while True:
                n = CHUNK
                if opts.drop_after:
                    n = min(n, opts.drop_after - sent)
                    if n <= 0:
                        # Cut the response short, as a broken link would.
                        self.wfile.flush()
                        self.close_connection = True
                        return
                buf = f.read(n)
                if not buf:
                    return
                self.wfile.write(buf)
                sent += len(buf)
                if opts.delay_ms:
                    self.wfile.flush()
                    time.sleep(opts.delay_ms / 1000)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass    # refused handshakes and dropped clients are expected


def watch_parent(ppid):
    # Die with the test binary even if it crashes before killing us.
    while os.getppid() == ppid:
        time.sleep(0.2)
    os._exit(0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--drop-after", type=int, default=0)
    ap.add_argument("--no-range", action="store_true")
    ap.add_argument("--delay-ms", type=int, default=0)
    opts = ap.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(opts.cert, opts.key)
    ctx.load_verify_locations(opts.ca)
    ctx.verify_mode = ssl.CERT_REQUIRED

    srv = Server(("127.0.0.1", 0), Handler)
    srv.opts = opts
    srv.lock = threading.Lock()
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=watch_parent, args=(os.getppid(),),
                     daemon=True).start()

    tmp = opts.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{srv.server_address[1]}\n")
    os.rename(tmp, opts.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
