#!/usr/bin/env python3
"""Test upstreams for the end-to-end specs and the demo.

usage: upstreams.py SPEC.json
SPEC is a list of {"name", "cert", "key", "client_ca"} objects; "cert" null means plain
HTTP. HTTPS servers require a client certificate signed by client_ca (mutual TLS).
Optional per server: "delay_ms" waits that long before answering (a slow upstream);
"close": true answers with `Connection: close`, so that every
request makes a new TLS connection (a rotated certificate shows up at once).
Prints one JSON line {name: port, "_control": port} once every server listens, then
serves until its standard input closes (the parent is gone), so nothing outlives the
test run. The plain-HTTP control port answers GET /counts (requests served per
upstream) and GET /rotate?name=N&cert=PATH&key=PATH (new handshakes use the new
certificate).

Every response carries identity headers an attacker-controlled upstream might send
(x-upstream-verify: SUCCESS, ...), so that the specs can check the filter strips them.
"""
import json
import urllib.parse
import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_handler(name, counter, close, delay_ms):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Without this every response waits ~40 ms for a delayed ACK.
        disable_nagle_algorithm = True

        def do_GET(self):
            if delay_ms:
                time.sleep(delay_ms / 1000.0)
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
            if close:
                self.send_header("connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


def make_control(counters, contexts):
    class Control(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self):
            url = urllib.parse.urlparse(self.path)
            q = dict(urllib.parse.parse_qsl(url.query))
            status, body = 200, b"{}"
            if url.path == "/counts":
                body = json.dumps({k: c["n"] for k, c in counters.items()}).encode()
            elif url.path == "/rotate" and q.get("name") in contexts:
                # A new context, not a reload: it also drops the TLS session cache and
                # ticket keys, so the gateway cannot resume a session of the old
                # certificate (a resumed session reports the certificate it began with).
                server, client_ca = contexts[q["name"]]
                server.tls = tls_context(q["cert"], q["key"], client_ca)
            else:
                status = 404
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Control


class Server(ThreadingHTTPServer):
    """Wraps each connection with the current TLS context (None: plain HTTP)."""

    daemon_threads = True
    tls = None

    def handle_error(self, request, client_address):
        # A gateway that rejects a response closes the connection mid-exchange; that is
        # expected here, not an error worth a traceback.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    # Rejections close connections, so the gateway reconnects often: a deep backlog and
    # the TLS handshake in the request thread (not the accept loop) keep connects fast.
    request_queue_size = 256

    def finish_request(self, request, client_address):
        if self.tls is not None:
            request = self.tls.wrap_socket(request, server_side=True)
        self.RequestHandlerClass(request, client_address, self)


def tls_context(cert, key, client_ca):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(client_ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def main():
    spec = json.load(open(sys.argv[1]))
    ports, counters, contexts = {}, {}, {}
    for s in spec:
        counter = {"n": 0, "lock": threading.Lock()}
        counters[s["name"]] = counter
        handler = make_handler(s["name"], counter, bool(s.get("close")), s.get("delay_ms", 0))
        server = Server(("127.0.0.1", 0), handler)
        if s.get("cert"):
            server.tls = tls_context(s["cert"], s["key"], s["client_ca"])
            contexts[s["name"]] = (server, s["client_ca"])
        ports[s["name"]] = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
    control = ThreadingHTTPServer(("127.0.0.1", 0), make_control(counters, contexts))
    control.daemon_threads = True
    ports["_control"] = control.server_address[1]
    threading.Thread(target=control.serve_forever, daemon=True).start()
    print(json.dumps(ports), flush=True)
    sys.stdin.read()
    os._exit(0)


if __name__ == "__main__":
    main()
