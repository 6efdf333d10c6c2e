"""The upstream app of the proxy tests, run inside a container (stdlib only).

    DELAY=<s>  sleep before listening (a slow-starting service)
    NAME=<n>   echoed by GET /

Routes: / (hello), /headers (JSON of request headers), /cookie (two Set-Cookie, one Secure),
/gzip (a gzip body with Content-Encoding), POST /echo (body back), POST /unsupported (501 before
reading the body, then close), /dated (its own fixed Date header), /sse?n=<k> (k events, 0.3 s
apart), /big?mb=<k> (k MiB streamed), /ws (WebSocket echo).
"""

import base64
import gzip
import hashlib
import json
import os
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
FIXED_DATE = "Sat, 01 Jan 2000 00:00:00 GMT"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stdout.write(f"{self.command} {self.path}\n")
        sys.stdout.flush()

    def _send(self, status, body, headers=()):
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if url.path == "/":
            self._send(200, f"hello from {os.environ.get('NAME', 'app')}\n".encode())
        elif url.path == "/headers":
            body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
            self._send(200, body, [("Content-Type", "application/json")])
        elif url.path == "/cookie":
            self._send(
                200,
                b"cookies\n",
                [("Set-Cookie", "a=1; Path=/; Secure; HttpOnly"), ("Set-Cookie", "b=2; Path=/")],
            )
        elif url.path == "/dated":
            # send_response would add the current date: this answer's Date is recognisable.
            self.send_response_only(200)
            self.send_header("Date", FIXED_DATE)
            self.send_header("Content-Length", "6")
            self.end_headers()
            self.wfile.write(b"dated\n")
        elif url.path == "/gzip":
            body = gzip.compress(b"compressed payload " * 50)
            self._send(200, body, [("Content-Encoding", "gzip"), ("Content-Type", "text/plain")])
        elif url.path == "/sse":
            self._sse(int(query.get("n", ["5"])[0]))
        elif url.path == "/big":
            self._big(int(query.get("mb", ["1"])[0]))
        elif url.path == "/ws":
            self._websocket()
        else:
            self._send(404, b"not found\n")

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_POST(self):
        if self.path == "/unsupported":
            # As http.server does for a method it lacks: answer at once, never read the body.
            self.send_error(501, "POST is not implemented by this app")
            return
        body = self._body()
        self._send(200, b"got %d bytes: " % len(body) + hashlib.sha256(body).hexdigest().encode())

    def _sse(self, count):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        for n in range(count):
            self.wfile.write(f"data: event {n}\n\n".encode())
            self.wfile.flush()
            time.sleep(0.3)
        self.close_connection = True

    def _big(self, mebibytes):
        self.send_response(200)
        self.send_header("Content-Length", str(mebibytes * 1024 * 1024))
        self.end_headers()
        chunk = b"x" * 65536
        for _ in range(mebibytes * 16):
            self.wfile.write(chunk)

    def _websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()  # noqa: S324
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                self.close_connection = True
                return
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                length = struct.unpack("!H", self.rfile.read(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
            if opcode == 8:
                self.wfile.write(b"\x88\x00")
                self.close_connection = True
                return
            if opcode in (1, 2):
                frame = bytes([0x80 | opcode])
                if len(data) < 126:
                    frame += bytes([len(data)])
                else:
                    frame += bytes([126]) + struct.pack("!H", len(data))
                self.wfile.write(frame + data)
                self.wfile.flush()


def main():
    delay = float(os.environ.get("DELAY", "0"))
    print(f"starting, listening in {delay} s", flush=True)
    time.sleep(delay)
    bind = os.environ.get("BIND", "0.0.0.0")  # noqa: S104 - inside its container
    ThreadingHTTPServer.request_queue_size = 256  # the default listen backlog is 5
    server = ThreadingHTTPServer((bind, int(os.environ.get("PORT", "8080"))), Handler)
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
