"""Unsubscribe endpoints for the preview/archive server: RFC 8058 one-click POST and a GET confirm page.

`GET /unsubscribe?t=TOKEN` shows a page with a confirm button (a GET never unsubscribes: mail scanners follow
links). `POST /unsubscribe?t=TOKEN` records the unsubscribe; mail providers send it with the body
`List-Unsubscribe=One-Click`, the confirm page's form sends the same token. Tokens are verified with
`flows.tokens.verify_token`; a forged or altered token gets a 400 page and changes nothing.
"""

from __future__ import annotations

import html
import logging
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from flows.settings import Settings
from flows.store import Store
from flows.tokens import TokenError, verify_token

logger = logging.getLogger(__name__)

ONE_CLICK_BODY = "List-Unsubscribe=One-Click"


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:'PingFang SC','Hiragino Sans GB','Microsoft YaHei','Noto Sans SC',sans-serif;"
        "max-width:32rem;margin:3rem auto;padding:0 1rem;line-height:1.7}button{font-size:1rem;padding:.5rem 1rem}"
        "</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status)


def unsubscribe_routes(settings: Settings, store: Store) -> list[Route]:
    """The two routes, bound to one settings object and store."""

    def _verify(request: Request) -> tuple[str, str] | HTMLResponse:
        token = request.query_params.get("t", "")
        try:
            return verify_token(settings.secret, token)
        except TokenError as err:
            logger.warning("refused unsubscribe token: %s", err)
            return _page("Invalid link · 链接无效", f"<p>{html.escape(str(err))}</p>", status=400)

    async def confirm_page(request: Request) -> Response:
        checked = _verify(request)
        if isinstance(checked, HTMLResponse):
            return checked
        audience, email = checked
        token = html.escape(request.query_params["t"], quote=True)
        body = (
            f"<p>Unsubscribe <strong>{html.escape(email)}</strong> from the "
            f"<strong>{html.escape(audience)}</strong> briefing?</p>"
            f"<p>确认退订「{html.escape(audience)}」简报？</p>"
            f'<form method="post" action="/unsubscribe?t={token}">'
            '<button type="submit" name="confirm" value="1">Unsubscribe · 退订</button></form>'
        )
        return _page("Unsubscribe · 退订", body)

    async def unsubscribe(request: Request) -> Response:
        checked = _verify(request)
        if isinstance(checked, HTMLResponse):
            return checked
        audience, email = checked
        form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
        one_click = form.get("List-Unsubscribe") == ["One-Click"]
        method = "one-click" if one_click else "web"
        added = await run_in_threadpool(store.unsubscribe, audience, email, method)
        logger.info("unsubscribe %s from %s (%s, %s)", email, audience, method, "new" if added else "already")
        if one_click:
            return Response("unsubscribed\n", media_type="text/plain")
        return _page(
            "Unsubscribed · 已退订",
            f"<p>{html.escape(email)} will receive no more «{html.escape(audience)}» emails.</p>",
        )

    return [
        Route("/unsubscribe", confirm_page, methods=["GET"]),
        Route("/unsubscribe", unsubscribe, methods=["POST"]),
    ]
