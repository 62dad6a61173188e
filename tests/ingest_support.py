"""A real loopback HTTP server for the ingest tests, with routes written as small Python functions.

A route gets the request (path, headers, how many times it was hit) and returns a `Reply`: status,
headers, a body as bytes or as an iterator of chunks (sent chunked, so a huge body never sits in memory),
and an optional delay or a hang (the server holds the connection open until it stops).
"""

from __future__ import annotations

import ssl
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    hit: int  # 1 for the first request to this path


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Iterable[bytes] = b""
    delay: float = 0.0
    hang: bool = False


Route = Callable[[Request], Reply]


class _QuietServer(ThreadingHTTPServer):
    # socketserver's default listen backlog of 5 drops connections when a run opens dozens at once (the corpus
    # test: 64) on a busy machine; the client then waits out a SYN retransmit and reports a connect timeout
    request_queue_size = 128

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client closing its keep-alive socket
            super().handle_error(request, client_address)


class LoopbackServer:
    """Threaded HTTP/1.1 server on 127.0.0.1 with an OS-chosen port."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.scheme = "https" if tls else "http"
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.requests: list[Request] = []
        self.bytes_sent: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0  # TCP connections accepted (keep-alive reuse shows as fewer than requests)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.httpd = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def route(self, path: str, route: Route) -> str:
        """Serve `path`; a route without a query string also answers that path with any query."""
        self.routes[path] = route
        return self.url(path)

    def static(self, path: str, body: bytes | str, content_type: str = "application/rss+xml", **headers: str) -> str:
        data = body.encode("utf-8") if isinstance(body, str) else body
        return self.route(path, lambda _r: Reply(headers={"Content-Type": content_type, **headers}, body=data))

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def setup(self) -> None:
                super().setup()
                with server._lock:
                    server.connections += 1

            def do_GET(self) -> None:
                path = self.path
                with server._lock:
                    server.hits[path] += 1
                    request = Request(path, {k.lower(): v for k, v in self.headers.items()}, server.hits[path])
                    server.requests.append(request)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    route = server.routes.get(path) or server.routes.get(path.split("?", 1)[0])
                    reply = route(request) if route else Reply(404, body=b"not found")
                    if reply.hang:
                        server._stopping.wait(30)
                        return
                    if reply.delay:
                        time.sleep(reply.delay)
                    self._send(path, reply)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _send(self, path: str, reply: Reply) -> None:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if isinstance(reply.body, bytes):
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                    server.bytes_sent[path] += len(reply.body)
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for chunk in reply.body:
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        server.bytes_sent[path] += len(chunk)
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

        return Handler


def http_date(when: datetime | None = None) -> str:
    return format_datetime((when or datetime(2026, 5, 1, 12, 0, tzinfo=UTC)).astimezone(UTC), usegmt=True)


@dataclass
class Item:
    title: str
    link: str = ""
    guid: str = ""
    content: str = ""
    description: str = ""
    author: str = ""
    published: str = "Thu, 04 Jun 2026 09:30:00 +0000"


def rss(items: list[Item], *, title: str = "Test feed", encoding: str | None = "utf-8") -> str:
    """An RSS 2.0 document; `encoding=None` leaves the XML declaration without an encoding."""
    declaration = f'<?xml version="1.0" encoding="{encoding}"?>' if encoding else '<?xml version="1.0"?>'
    parts = [
        declaration,
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"'
        ' xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>',
        f"<title>{escape(title)}</title><link>http://example.invalid/</link><description>d</description>",
    ]
    for item in items:
        parts.append("<item>")
        parts.append(f"<title>{escape(item.title)}</title>")
        if item.link:
            parts.append(f"<link>{escape(item.link)}</link>")
        if item.guid:
            parts.append(f'<guid isPermaLink="false">{escape(item.guid)}</guid>')
        if item.author:
            parts.append(f"<dc:creator>{escape(item.author)}</dc:creator>")
        parts.append(f"<pubDate>{item.published}</pubDate>")
        if item.description:
            parts.append(f"<description>{escape(item.description)}</description>")
        if item.content:
            parts.append(f"<content:encoded><![CDATA[{item.content}]]></content:encoded>")
        parts.append("</item>")
    parts.append("</channel></rss>")
    return "\n".join(parts)


def long_text(seed: str, sentences: int = 12) -> str:
    """Distinct prose of a few hundred characters per seed (full-content entries, not teasers)."""
    return " ".join(f"{seed} sentence {n} says something specific about {seed} for readers." for n in range(sentences))


def malformed_rss() -> str:
    """Two readable entries with a bare `&` in a title, then an unclosed item: ill-formed (bozo) XML."""
    return (
        rss(
            [
                Item("AT&T and friends", "http://bad.invalid/1", "bad-guid-1", long_text("one")),
                Item("Second & last", "http://bad.invalid/2", "bad-guid-2", long_text("two")),
            ]
        )
        .replace("AT&amp;T", "AT&T")
        .replace("</channel></rss>", "<item><title>unclosed")
    )


def chunks(total: int, size: int = 1 << 20) -> Iterator[bytes]:
    """`total` bytes of filler generated lazily, `size` at a time."""
    block = b"x" * size
    sent = 0
    while sent < total:
        piece = block[: min(size, total - sent)]
        sent += len(piece)
        yield piece
