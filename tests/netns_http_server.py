"""HTTP servers for the simulated internet (tests/netns_support.py); run inside the network namespace.

    python tests/netns_http_server.py SPEC.json

SPEC: {"log": path, "sites": [{"addresses": [...], "port": 80, "routes": {path: route}}]}, a route being
the fields of `netns_support.Route`. Every request is appended to the log as one JSON line (fields of
`netns_support.LoggedRequest`). Runs until SIGTERM.
"""

from __future__ import annotations

import gzip
import json
import signal
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NOT_FOUND: dict[str, Any] = {"status": 404, "body": "not found", "content_type": "text/plain", "headers": {}}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: str, port: int, routes: dict[str, dict[str, Any]], log: Log) -> None:
        self.address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.routes = routes
        self.log = log
        super().__init__((address, port), Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Log:
    def __init__(self, path: str) -> None:
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (open for the process's life)
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()


STOPPING = threading.Event()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        route = self.server.routes.get(self.path.split("?", 1)[0], NOT_FOUND)
        record = {
            "local_address": self.connection.getsockname()[0],
            "path": self.path,
            "host": self.headers.get("Host", ""),
            "if_none_match": self.headers.get("If-None-Match", ""),
            "if_modified_since": self.headers.get("If-Modified-Since", ""),
            "accept_encoding": self.headers.get("Accept-Encoding", ""),
            "status": 0,
            "content_encoding": "",
            "outcome": "answered",
        }
        if route.get("reset"):
            # SO_LINGER with a zero timeout: close() sends RST instead of FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            record["outcome"] = "reset"
            self.server.log.write(record)
            self.connection.close()
            return
        if route.get("stall"):
            record["outcome"] = "stalled"
            self.server.log.write(record)
            STOPPING.wait()
            return
        if route.get("delay"):
            time.sleep(route["delay"])
        status, headers, body = answer(route, self.headers)
        record["status"] = status
        record["content_encoding"] = headers.get("Content-Encoding", "")
        self.server.log.write(record)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        trickle = route.get("trickle", 0.0)
        if not trickle or not body:
            self.wfile.write(body)
            return
        step = max(1, -(-len(body) // 8))
        for start in range(0, len(body), step):
            self.wfile.write(body[start : start + step])
            self.wfile.flush()
            time.sleep(trickle)


def answer(route: dict[str, Any], request: Any) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body for a request: 304 on a matching validator, gzip when asked and accepted."""
    headers = dict(route.get("headers") or {})
    if route.get("etag"):
        headers["ETag"] = route["etag"]
    if route.get("last_modified"):
        headers["Last-Modified"] = route["last_modified"]
    etags = [tag.strip() for tag in request.get("If-None-Match", "").split(",") if tag.strip()]
    if (route.get("etag") and route["etag"] in etags) or (
        route.get("last_modified") and request.get("If-Modified-Since") == route["last_modified"]
    ):
        return 304, headers, b""
    body = route.get("body", "").encode("utf-8")
    headers["Content-Type"] = route.get("content_type", "text/plain")
    if route.get("gzip"):
        headers["Vary"] = "Accept-Encoding"
        if "gzip" in request.get("Accept-Encoding", ""):
            headers["Content-Encoding"] = "gzip"
            body = gzip.compress(body)
    return int(route.get("status", 200)), headers, body


def main(spec_path: str) -> None:
    with open(spec_path, encoding="utf-8") as spec_file:
        spec = json.load(spec_file)
    log = Log(spec["log"])
    servers = [
        Server(address, site["port"], site["routes"], log) for site in spec["sites"] for address in site["addresses"]
    ]
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    signal.signal(signal.SIGTERM, lambda *_: STOPPING.set())
    STOPPING.wait()
    for server in servers:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main(sys.argv[1])
