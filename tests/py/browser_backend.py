"""The browser test's web side (Python's http.server, nobody here wrote
it): serves clients/js and tests/browser as static files, answers the
gateway's uplinks on POST /echo (the body back, status 200), and takes the
page's verdict on POST /report, printing it as `report <json>`.

Usage: browser_backend.py CLIENTS_JS_DIR PAGES_DIR
Binds 127.0.0.1 on a port the kernel picks and prints `port N` first.
"""

import os
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

CLIENTS, PAGES = sys.argv[1], sys.argv[2]


class Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def translate_path(self, path):
        name = path.split("?", 1)[0].lstrip("/")
        for root in (PAGES, CLIENTS):
            candidate = os.path.join(root, name)
            if os.path.isfile(candidate):
                return candidate
        return os.path.join(PAGES, "missing")

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/report":
            print("report " + body.decode(), flush=True)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        self.wfile.write(body)


SimpleHTTPRequestHandler.extensions_map[".js"] = "text/javascript"
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(f"port {server.server_address[1]}", flush=True)
server.serve_forever()
