#!/usr/bin/env python3
"""Test upstreams for the end-to-end specs and the demo.

usage: upstreams.py SPEC.json
SPEC is a list of {"name", "cert", "key", "client_ca"} objects; "cert" null means plain
HTTP. HTTPS servers require a client certificate signed by client_ca (mutual TLS).
Prints one JSON line {name: port} once every server listens, then serves until its
standard input closes (the parent is gone), so nothing outlives the test run.

Every response carries identity headers an attacker-controlled upstream might send
(x-upstream-verify: SUCCESS, ...), so that the specs can check the filter strips them.
GET /__count answers how many requests this upstream has served so far.
"""
import json
import os
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_handler(name, counter):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Without this every response waits ~40 ms for a delayed ACK.
        disable_nagle_algorithm = True

        def do_GET(self):
            if self.path == "/__count":
                body = json.dumps({"upstream": name, "count": counter["n"]}).encode()
            else:
                with counter["lock"]:
                    counter["n"] += 1
                body = json.dumps({"upstream": name, "path": self.path}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.send_header("x-served-by", name)
            self.send_header("x-upstream-verify", "SUCCESS")
            self.send_header("x-upstream-cert-subject", "CN=spoofed-admin")
            self.send_header("X-Upstream-Injected", "yes")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


def main():
    spec = json.load(open(sys.argv[1]))
    ports = {}
    for s in spec:
        counter = {"n": 0, "lock": threading.Lock()}
        server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(s["name"], counter))
        server.daemon_threads = True
        if s.get("cert"):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(s["cert"], s["key"])
            ctx.load_verify_locations(s["client_ca"])
            ctx.verify_mode = ssl.CERT_REQUIRED
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
        ports[s["name"]] = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps(ports), flush=True)
    sys.stdin.read()
    os._exit(0)


if __name__ == "__main__":
    main()
