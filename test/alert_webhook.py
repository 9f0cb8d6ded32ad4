#!/usr/bin/env python3
"""A webhook receiver for Alertmanager on 127.0.0.1, for tests and the demo.

Listens on --port (0: a free port, written to --port-file once listening) and appends the JSON
body of every POST, one line each, to --log. Ends on SIGTERM or SIGINT.
"""
import argparse
import os
import json
import signal
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n)
            try:
                doc = json.loads(body)
            except ValueError:
                doc = {"invalid": body.decode("utf-8", "replace")}
            with open(args.log, "a") as f:
                f.write(json.dumps(doc) + "\n")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = HTTPServer(("127.0.0.1", args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(args.port_file + ".tmp", args.port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
