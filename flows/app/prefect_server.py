"""The loopback Prefect server `briefing serve` starts: `prefect server start`, plus a Retry-After on every 503.

On SQLite, Prefect's server answers a write that meets another write (`SQLITE_BUSY`, `SQLITE_BUSY_SNAPSHOT`:
SQLite refuses at once to upgrade a read transaction to a write, whatever the busy timeout) with a 503, and the
Prefect client retries it after `2 ** attempt` seconds — 2 s for the first retry, which is most of the time from
"ready" to the first email when it strikes a flow run's state change or the trigger's run creation. The client
honours a `Retry-After` header instead of its own backoff, so this server adds `Retry-After: 0.2` to each 503:
the collision is a moment's, and the retry a fifth of a second later nearly always goes through. The header is
added on the application object Prefect caches, so the server's own in-memory clients (the triggers service
creating a `brief` run) retry sooner too.

Otherwise it is what `prefect server start --host HOST --port PORT` runs in the foreground: the API, the UI when
`PREFECT_UI_ENABLED`/`PREFECT_SERVER_UI_ENABLED` allow it, and the server's services in the same process.

Run: python -m flows.app.prefect_server --host 127.0.0.1 --port 4200
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "0.2"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class RetrySoonOn503:
    """ASGI middleware: a 503 response without a Retry-After gets `Retry-After: RETRY_AFTER_SECONDS`."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_hint(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 503:
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"retry-after" for name, _value in headers):
                    headers.append((b"retry-after", RETRY_AFTER_SECONDS.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_hint)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.app.prefect_server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4200)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)

    import uvicorn
    from prefect.server.api.server import create_app

    app = create_app(final=True)  # cached: `create_app()` inside the server returns this same object
    app.add_middleware(RetrySoonOn503)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
