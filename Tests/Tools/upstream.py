#!/usr/bin/env python3
"""A real upstream for the egress tests: HTTP and HTTPS on loopback.

Every request is answered with a JSON echo (method, path, headers, body length and
text) and appended to a JSON-lines log, so a test can assert both what arrived and
that nothing arrived. GET /big?n=BYTES streams that many bytes; GET /slow?s=SECONDS
waits before answering; a path ending in /quiet is answered with "ok" and no echo.

usage: upstream.py LOG [--cert CERT --key KEY]   (prints {"http": port, "https": port})
"""
import http.server
import json
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse

LOG = sys.argv[1]
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        entry = {
            "method": self.command, "path": url.path, "query": url.query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"), "tls": isinstance(self.connection, ssl.SSLSocket),
        }
        with lock, open(LOG, "a") as f:
            f.write(json.dumps(entry) + "\n")
        if url.path == "/big":
            n = int(query.get("n", ["1048576"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            if self.command == "HEAD":
                return
            chunk = b"x" * 65536
            while n > 0:
                k = min(n, len(chunk))
                self.wfile.write(chunk[:k])
                n -= k
            return
        if url.path.endswith("/quiet"):
            out = b"ok\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(out)
            return
        if url.path == "/slow":
            time.sleep(float(query.get("s", ["1"])[0]))
        out = json.dumps(entry).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_any


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(server):
    server.serve_forever(poll_interval=0.1)


def main():
    plain = Server(("127.0.0.1", 0), Handler)
    ports = {"http": plain.server_address[1]}
    threading.Thread(target=serve, args=(plain,), daemon=True).start()
    if "--cert" in sys.argv:
        cert = sys.argv[sys.argv.index("--cert") + 1]
        key = sys.argv[sys.argv.index("--key") + 1]
        secure = Server(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        secure.socket = context.wrap_socket(secure.socket, server_side=True)
        ports["https"] = secure.server_address[1]
        threading.Thread(target=serve, args=(secure,), daemon=True).start()
    print(json.dumps(ports), flush=True)
    sys.stdin.read()  # runs until the test closes our stdin (or kills us)


main()
