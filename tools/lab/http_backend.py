#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Lab HTTP backend (python3 standard library only).

Listens dual-stack on [::]:PORT (IPV6_V6ONLY off, so IPv4 clients reach it as
::ffff:a.b.c.d) and answers:

  GET /           -> "backend=<name>\n"
  GET /bytes?n=N  -> N bytes of 'x' (0 <= N <= 1 GiB), for direct-server-return
                     checks: the reply is large, the request small.
  GET /health     -> "ok\n"

Every reply carries the header "X-Backend: <name>". Started by tools/lab/lab.sh
inside a backend namespace; with --pidfile it writes its PID there once the
socket is bound, so the lab knows it is ready and can end exactly this process
group.
"""

import argparse
import os
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MAX_BYTES = 1 << 30
CHUNK = b"x" * 65536


class DualStackServer(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def make_handler(name):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "stickylb-lab-backend"

        def _reply(self, status, body, content_length=None):
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("X-Backend", name)
            length = len(body) if content_length is None else content_length
            self.send_header("Content-Length", str(length))
            self.end_headers()
            if body:
                self.wfile.write(body)

        def do_GET(self):  # noqa: N802 (http.server naming)
            url = urlsplit(self.path)
            if url.path == "/":
                self._reply(200, f"backend={name}\n".encode())
            elif url.path == "/health":
                self._reply(200, b"ok\n")
            elif url.path == "/bytes":
                try:
                    count = int(parse_qs(url.query).get("n", ["0"])[0])
                except ValueError:
                    count = -1
                if count < 0 or count > MAX_BYTES:
                    self._reply(400, b"n must be an integer in [0, 2^30]\n")
                    return
                self._reply(200, b"", content_length=count)
                remaining = count
                while remaining > 0:
                    piece = CHUNK if remaining >= len(CHUNK) else CHUNK[:remaining]
                    self.wfile.write(piece)
                    remaining -= len(piece)
            else:
                self._reply(404, b"not found\n")

        def log_message(self, format, *args):  # noqa: A002 (base class signature)
            if self.server.verbose:
                sys.stderr.write(f"{self.client_address[0]} {format % args}\n")

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="name returned in replies, e.g. be1")
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--bind", default="::")
    parser.add_argument("--pidfile", help="write the PID here once listening")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args()

    server = DualStackServer((args.bind, args.port), make_handler(args.name))
    server.verbose = args.verbose

    def stop(signum, frame):  # noqa: ARG001
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    if args.pidfile:
        temporary = f"{args.pidfile}.tmp"
        with open(temporary, "w", encoding="ascii") as handle:
            handle.write(f"{os.getpid()}\n")
        os.replace(temporary, args.pidfile)
    sys.stderr.write(f"backend {args.name} listening on [{args.bind}]:{args.port}\n")
    sys.stderr.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
