"""Unsubscribing: one service used by `briefing unsubscribe TOKEN` and by the web endpoints.

`unsubscribe_routes(settings, store)` gives the preview/archive server its two routes:
- `GET /unsubscribe?t=TOKEN` shows a page with a confirm button; a GET never unsubscribes (mail scanners and
  link previews follow links);
- `POST /unsubscribe?t=TOKEN` records the unsubscribe. Mail providers send it with the body
  `List-Unsubscribe=One-Click` (RFC 8058, form-urlencoded or multipart); the confirm page's form posts the
  same URL. A forged or altered token gets a 400 and changes nothing.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from flows.core.errors import TokenError
from flows.core.settings import Settings
from flows.core.store import Store, unsubscribes
from flows.core.tokens import token_from, verify_token

logger = logging.getLogger(__name__)

ONE_CLICK = ("List-Unsubscribe", "One-Click")
MAX_BODY = 64 * 1024
MULTIPART_FIELD = re.compile(rb'name="List-Unsubscribe"\r\n(?:[^\r\n]+\r\n)*\r\nOne-Click\r\n')


@dataclass(frozen=True)
class Unsubscribed:
    audience: str
    email: str
    newly: bool  # False: it was recorded before
    skipped_rows: int  # queued or deferred emails of this audience that will now not be sent


def unsubscribe_with_token(settings: Settings, store: Store, token: str, method: str) -> Unsubscribed:
    """Verify the token and record the unsubscribe; raises TokenError for a bad token."""
    audience, email = verify_token(settings.verification_secrets, token_from(token))
    newly, skipped = unsubscribes.record(store, audience, email, method)
    logger.info("unsubscribed %s from %s via %s (%s)", email, audience, method, "new" if newly else "already")
    return Unsubscribed(audience, email, newly, skipped)


def is_one_click(body: bytes, content_type: str) -> bool:
    """RFC 8058 one-click body: `List-Unsubscribe=One-Click`, form-urlencoded or multipart/form-data."""
    if content_type.startswith("multipart/form-data"):
        return bool(MULTIPART_FIELD.search(body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")))
    fields = parse_qs(body.decode("utf-8", errors="replace"))
    return fields.get(ONE_CLICK[0]) == [ONE_CLICK[1]]


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:'PingFang SC','Hiragino Sans GB','Microsoft YaHei','Noto Sans SC',sans-serif;"
        "max-width:32rem;margin:3rem auto;padding:0 1rem;line-height:1.7}button{font-size:1rem;padding:.5rem 1rem}"
        "</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status, headers={"Cache-Control": "no-store"})


def _invalid(err: TokenError) -> HTMLResponse:
    logger.warning("refused unsubscribe token: %s", err)
    return _page("Invalid link · 链接无效", f"<p>{html.escape(str(err))}</p>", status=400)


def unsubscribe_routes(settings: Settings, store: Store, audience_names: dict[str, str] | None = None) -> list[Route]:
    """The GET confirm page and the POST that records, bound to one settings object and store."""
    names = audience_names or {}

    async def confirm_page(request: Request) -> Response:
        token = request.query_params.get("t", "")
        try:
            audience, email = verify_token(settings.verification_secrets, token)
        except TokenError as err:
            return _invalid(err)
        name = html.escape(names.get(audience, audience))
        action = html.escape(f"/unsubscribe?t={token}", quote=True)
        body = (
            f"<p>确认退订「{name}」简报？<br>Unsubscribe <strong>{html.escape(email)}</strong> "
            f"from the <strong>{name}</strong> briefing?</p>"
            f'<form method="post" action="{action}">'
            '<input type="hidden" name="confirm" value="1">'
            '<button type="submit">退订 · Unsubscribe</button></form>'
        )
        return _page("Unsubscribe · 退订", body)

    async def record(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY:
            return PlainTextResponse("request body too large\n", status_code=413)
        one_click = is_one_click(body, request.headers.get("content-type", ""))
        try:
            done = await run_in_threadpool(
                unsubscribe_with_token,
                settings,
                store,
                request.query_params.get("t", ""),
                "one-click" if one_click else "web",
            )
        except TokenError as err:
            return _invalid(err)
        if one_click:
            return PlainTextResponse("unsubscribed\n")
        name = html.escape(names.get(done.audience, done.audience))
        return _page(
            "Unsubscribed · 已退订",
            f"<p>{html.escape(done.email)} 不会再收到「{name}」简报。<br>"
            f"{html.escape(done.email)} will receive no more {name} emails.</p>",
        )

    return [
        Route("/unsubscribe", confirm_page, methods=["GET"]),
        Route("/unsubscribe", record, methods=["POST"]),
    ]
