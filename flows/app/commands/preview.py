"""`briefing preview`: the local preview server (see flows/app/preview.py)."""

from __future__ import annotations

import ipaddress
import logging
import socket

import typer

from flows.app.output import console, emit, err_console, fail
from flows.core.errors import BriefingError, SettingsError
from flows.core.settings import load_settings

logger = logging.getLogger(__name__)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_port(host: str, port: int) -> int:
    """Fail early with one clear line when the port is taken (uvicorn would only log it and exit 1).

    Returns the port to use: the OS picks a free one for port 0, so the printed URL is the real one.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise SettingsError(
                f"cannot listen on {host}:{port}: {exc.strerror}", hint="pick another --port, e.g. --port 8001"
            ) from None
        return int(probe.getsockname()[1])


def preview(
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Interface to listen on (loopback by default: drafts are private)."
    ),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to listen on (0: any free port)."),
) -> None:
    """Preview every audience's email in a browser before it goes out (local web server).

    Each email at 600 px and 375 px, its plain-text part, Markdown, size against the budget, subject and
    preheader; the archive page; a test-send form; the unsubscribe endpoints. Open pages reload when a file
    under content/ or templates/ changes. Stop it with Ctrl-C.

    Example: briefing preview --port 8001
    """
    try:
        settings = load_settings()
        if not settings.content_dir.is_dir():
            raise SettingsError(
                f"content folder {settings.content_dir} does not exist",
                hint="run from the project folder or set BRIEFING_CONTENT_DIR",
            )
        port = check_port(host, port)
    except BriefingError as err:
        raise fail(err) from None
    from flows.app.preview import serve

    if not _is_loopback(host):
        err_console.print(f"[yellow]warning:[/] listening on {host}: anyone on that network can read drafts")
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
    emit({"url": url, "content_dir": str(settings.content_dir)}, text=f"Preview at [bold]{url}[/] (Ctrl-C to stop)")
    console.file.flush()
    serve(settings, host=host, port=port)


def register(app: typer.Typer) -> None:
    app.command()(preview)
