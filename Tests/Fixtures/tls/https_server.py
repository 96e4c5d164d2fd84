#!/usr/bin/env python3
"""A small HTTPS server for Ferry's TLS tests, on 127.0.0.1.

usage: https_server.py CERT KEY PAYLOAD REDIRECT_TARGET
  GET /file      -> 200 with the bytes of PAYLOAD
  GET /redirect  -> 302 to REDIRECT_TARGET
Prints the port it listens on, then serves until killed.
"""
import http.server
import ssl
import sys

cert, key, payload_path, redirect_target = sys.argv[1:5]
with open(payload_path, "rb") as handle:
    payload = handle.read()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", redirect_target)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/file":
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("ETag", '"tls-payload"')
            self.end_headers()
            self.wfile.write(payload)
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
