"""A small HTTP server for probe doctor --on-port tests (standard library only).

Usage: http_server.py [--port P] [--delay S] [--extra-port] [--never-listen]
[--exit-before-listen CODE] [--ignore-sigint] [--exit-on-sigint CODE] [--die-after S] [--work N]

It prints a line, waits --delay seconds, listens on 127.0.0.1 on port P (default: a free one;
with --extra-port on a second free one too, opened first) and answers every request after --work
iterations of Python arithmetic. SIGINT ends it (Python's default: KeyboardInterrupt), or is
ignored (--ignore-sigint: SIGTERM ends it), or makes it exit with CODE; --die-after makes it exit
with status 7 that many seconds after it listened.
"""

import argparse
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    work = 2000

    def do_GET(self):
        total = sum(i * i for i in range(self.work))
        body = f"{total}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--extra-port", action="store_true")
    ap.add_argument("--never-listen", action="store_true")
    ap.add_argument("--exit-before-listen", type=int, default=None)
    ap.add_argument("--ignore-sigint", action="store_true")
    ap.add_argument("--exit-on-sigint", type=int, default=None)
    ap.add_argument("--die-after", type=float, default=None)
    ap.add_argument("--work", type=int, default=2000)
    args = ap.parse_args()
    print("server starting", flush=True)
    print("loading the model (not really)", file=sys.stderr, flush=True)
    if args.ignore_sigint:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    elif args.exit_on_sigint is not None:
        signal.signal(signal.SIGINT, lambda *_: sys.exit(args.exit_on_sigint))
    time.sleep(args.delay)
    if args.exit_before_listen is not None:
        print("cannot load the model", file=sys.stderr, flush=True)
        sys.exit(args.exit_before_listen)
    if args.never_listen:
        while True:
            time.sleep(1)
    extra = ThreadingHTTPServer(("127.0.0.1", 0), Handler) if args.extra_port else None
    Handler.work = args.work
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    if extra is not None:
        print(f"metrics on {extra.server_address[1]}", flush=True)
    if args.die_after is not None:
        threading.Timer(args.die_after, os._exit, (7,)).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("server stopped", flush=True)


if __name__ == "__main__":
    main()
