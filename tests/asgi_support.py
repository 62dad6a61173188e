"""Serve an ASGI app with uvicorn on a loopback port, in a thread, for tests that talk HTTP to it.

A real server instead of Starlette's in-process `TestClient`: requests go through uvicorn's HTTP parsing, the
lifespan runs as `briefing preview` runs it, and the tests do not depend on the client library `TestClient`
is built on (Starlette now asks for httpx2 there).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import uvicorn

STARTUP_TIMEOUT_S = 30.0


@contextmanager
def serve_asgi(app: object, *, app_for_port: Callable[[int], object] | None = None) -> Iterator[httpx.Client]:
    """Start `app` on 127.0.0.1 (a free port, lifespan on); yield an httpx client for it; stop it after.

    `app_for_port` builds the app instead, once the port is known (an app that checks the port it serves on)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    if app_for_port is not None:
        app = app_for_port(port)
    config = uvicorn.Config(app, lifespan="on", log_level="warning", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port} within {STARTUP_TIMEOUT_S:.0f} s")
        time.sleep(0.01)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=True, timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()
