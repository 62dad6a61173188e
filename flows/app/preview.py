"""`briefing preview`: a local web server to see every audience's email before it goes.

Pages: the list of briefings (status, date, verdict, problems from the checker, what was sent); per briefing
each audience's email in a frame at 600 px and 375 px, its plain-text part, its Markdown, its size against
the budget, subject and preheader, and a "send test" form; the archive page; the unsubscribe endpoints; readers'
replies waiting for moderation (approve/reject buttons) and the suppressed addresses (lift button).
Content is read fresh on every request, and a watcher on content/ and templates/ tells open pages to
reload through server-sent events. Entry points: `create_app` and `serve`.

Drafts are private and emails carry untrusted text, so the server answers only requests addressed to it by a
loopback name (DNS rebinding), every response carries a Content-Security-Policy, and emails are shown in
sandboxed frames with no script (docs/rendering.md, "Preview security").
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import lxml.html
import uvicorn
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from watchfiles import awatch

from flows.core.content import DRAFT_PART_NAMES, Loaded, load_content
from flows.core.errors import BriefingError
from flows.core.models import Briefing, Content, MachineDraft
from flows.core.pages import assign_paths, html_link
from flows.core.safe_urls import web_url
from flows.core.settings import Settings
from flows.core.store import Store, open_store
from flows.deliver.messages import unsubscribe_url
from flows.deliver.unsubscribe import unsubscribe_routes
from flows.edition import render_for_archive, send_test
from flows.publish.archive import preview_page
from flows.render import email as render
from flows.render.email import UNSUBSCRIBE_PLACEHOLDER, RenderedEmail
from flows.status import briefing_statuses

logger = logging.getLogger(__name__)

PREVIEW_RECIPIENT = "preview@example.invalid"
WIDTHS = (600, 375)
KEEPALIVE_SECONDS = 15.0
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
HOST_HEADER = re.compile(r"^(?:\[([0-9a-f:.]+)\]|([a-z0-9.-]+))(?::(\d{1,5}))?$")
# The preview's own pages: a script runs only with the nonce of its response (live reload, width toggle).
PAGE_CSP = (
    "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src 'self' data: https: http:; "
    "connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; "
    "frame-ancestors 'none'"
)
# The emails and their text and Markdown parts: no script, no form, and a sandbox with an opaque origin even when
# one is opened outside its frame ("open alone").
EMAIL_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data: https: http:; form-action 'none'; "
    "base-uri 'none'; object-src 'none'; frame-ancestors 'self'; sandbox"
)
# Every other response (published archive pages, the unsubscribe pages and their confirm form): the same, with forms.
DOCUMENT_CSP = EMAIL_CSP.replace("form-action 'none'", "form-action 'self'").replace("sandbox", "sandbox allow-forms")
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)


@dataclass(frozen=True)
class HostRule:
    """Which `Host` headers name this server: the loopback names, the address it listens on, and with a wildcard
    address (0.0.0.0, ::) any IP literal, which no DNS name can stand for. `port`: the port it listens on, when
    known. A page on another site whose DNS name was rebound to 127.0.0.1 still sends its own name, so it is
    refused: it can neither read drafts nor send test messages."""

    names: frozenset[str] = LOOPBACK_NAMES
    port: int | None = None
    any_address: bool = False

    @classmethod
    def listening_on(cls, host: str, port: int | None) -> HostRule:
        name = host.strip("[]").lower()
        wildcard = name in ("0.0.0.0", "::", "")
        return cls(names=LOOPBACK_NAMES | ({name} if name and not wildcard else set()), port=port, any_address=wildcard)

    def allows(self, header: str) -> bool:
        match = HOST_HEADER.match(header.lower())
        if match is None:
            return False
        name, port = match.group(1) or match.group(2), match.group(3)
        if self.port is not None and int(port or 80) != self.port:
            return False
        if name in self.names:
            return True
        if not self.any_address:
            return False
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    def describe(self) -> str:
        names = ", ".join(sorted(f"[{n}]" if ":" in n else n for n in self.names))
        return names + (f" on port {self.port}" if self.port is not None else "")


class PreviewGuard:
    """ASGI middleware: refuses requests whose `Host` the rule does not allow (403), and gives every response
    `nosniff`, a same-origin referrer policy and, unless the route set its own, DOCUMENT_CSP."""

    def __init__(self, app: ASGIApp, rule: HostRule) -> None:
        self.app = app
        self.rule = rule

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
        if not self.rule.allows(host):
            allowed = self.rule.describe()
            logger.warning("refused a request for Host %r: the preview answers only to %s", host, allowed)
            message = f"Host {host!r} refused: this preview answers only to {allowed}\n"
            await PlainTextResponse(message, status_code=403)(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS:
                    headers.setdefault(key.decode(), value.decode())
                headers.setdefault("content-security-policy", DOCUMENT_CSP)
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclass
class AudienceView:
    """One audience's rendering of a briefing, or why it could not be rendered."""

    id: str
    name: str
    email: RenderedEmail | None = None
    error: str = ""

    @property
    def size(self) -> int:
        return self.email.html_bytes if self.email else 0


@dataclass
class DraftPart:
    """One unreviewed machine draft as the preview shows it: what it is, who wrote it, and its text."""

    name: str
    label: str
    origin: str
    line: int | None
    texts: list[str]
    source: str = ""


def machine_draft_parts(briefing: Briefing) -> list[DraftPart]:
    """Every machine-drafted part of the briefing with the text it currently has (the editor may have edited it)."""
    parts = []
    blocks = {b.id: b for b in briefing.aligned}
    for draft in briefing.machine_drafts:
        origin = ", ".join(x for x in (draft.model, draft.drafted) if x) or "model and date not given"
        label = f"audience note for '{draft.item}'" if draft.section == "notes" and draft.item else ""
        label = label or (f"translation {draft.item}" if draft.item else DRAFT_PART_NAMES.get(draft.section, ""))
        texts, source = _draft_texts(briefing, draft), ""
        if draft.section == "translation" and draft.item in blocks:
            source = blocks[draft.item].source
        parts.append(DraftPart(draft.name, label, origin, draft.line, [t for t in texts if t], source))
    return parts


def _draft_texts(briefing: Briefing, draft: MachineDraft) -> list[str]:
    if draft.section in ("verdict", "judgement"):
        return [getattr(briefing, draft.section)]
    if draft.section == "core_points":
        return [f"{p.lead} — {p.explanation}" for p in briefing.core_points]
    if draft.section == "prompts":
        return list(briefing.prompts)
    if draft.section == "notes":
        notes = [n for n in briefing.notes if not draft.item or n.audience == draft.item]
        return [text for n in notes for text in (n.meaning, n.next_step)]
    return [b.translation for b in briefing.aligned if not draft.item or b.id == draft.item]


def highlight_snippets(briefing: Briefing) -> list[str]:
    """Short stretches of each machine-drafted text, for marking where they appear in a rendered email."""
    texts = [t for part in machine_draft_parts(briefing) for t in part.texts]
    if any(d.section == "core_points" for d in briefing.machine_drafts):
        texts += [text for p in briefing.core_points for text in (p.lead, p.explanation)]
    return sorted({" ".join(t.split())[:24] for t in texts if len(t.strip()) >= 2})


HIGHLIGHT_CLASS = "machine-draft-hl"
HIGHLIGHT_STYLE = (
    f"<style>.{HIGHLIGHT_CLASS} {{ background:#fff3b0 !important; outline:2px dashed #bf8700; outline-offset:1px; }}"
    "</style>"
)


def _shows(element: lxml.html.HtmlElement, snippet: str) -> bool:
    return snippet in " ".join(element.text_content().split())


def with_highlights(html: str, snippets: list[str]) -> str:
    """Preview only: mark the smallest elements that show a machine-drafted, unreviewed text.

    Done here, on the server: the emails are served under a CSP without script (see EMAIL_CSP)."""
    if not snippets:
        return html
    document = lxml.html.document_fromstring(html)
    body = document.find("body")
    elements = list(body.iter()) if body is not None else []
    for snippet in snippets:
        for element in elements:
            if not isinstance(element.tag, str) or not _shows(element, snippet):
                continue
            if "preheader" in (element.get("class") or "").split():  # hidden: the reader sees it in the inbox only
                continue
            if any(isinstance(child.tag, str) and _shows(child, snippet) for child in element):
                continue
            element.set("class", f"{element.get('class', '')} {HIGHLIGHT_CLASS}".strip())
            element.set("title", "machine draft, not reviewed")
    head = document.find("head")
    if head is not None:
        head.append(lxml.html.fragment_fromstring(HIGHLIGHT_STYLE))
    return lxml.html.tostring(document, encoding="unicode", doctype="<!doctype html>")


class Reloader:
    """A version number that goes up whenever a watched file changes; waiters are woken on each change."""

    def __init__(self) -> None:
        self.version = 0
        self._changed = asyncio.Event()

    def bump(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, timeout: float) -> bool:
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True


def render_audiences(
    briefing: Briefing,
    content: Content,
    settings: Settings,
    store: Store,
    *,
    is_test: bool = False,
    only: str | None = None,
) -> list[AudienceView]:
    """Render each audience on its own, so one audience's error (common in drafts) leaves the others visible."""
    page = assign_paths(store, (briefing,))[briefing.slug]
    views = []
    for audience in content.audiences:
        if only and audience.id != only:
            continue
        view = AudienceView(audience.id, audience.name)
        try:
            rendered = render_for_archive(settings, content, briefing, page, audiences=[audience.id], is_test=is_test)
            view.email = rendered.emails[audience.id]
        except BriefingError as err:
            view.error = str(err)
        views.append(view)
    return views


def is_web_or_relative(url: str) -> bool:
    """Links the archive preview may render: http(s), relative and fragment links (no javascript:, data:, …)."""
    if web_url(url, ""):
        return True
    try:
        return not urlsplit(url.strip()).scheme and not url.strip().startswith("//")
    except ValueError:
        return False


class WebLinksMarkdown(MarkdownIt):
    """markdown-it whose links and images are http(s), relative or fragments only (its default lets `data:` images
    through)."""

    def validateLink(self, url: str) -> bool:  # noqa: N802 (markdown-it's name)
        return is_web_or_relative(url)


# The only raw HTML the archive's Markdown pages carry: footnote markers, their targets and back links.
FOOTNOTE_TAG = re.compile(
    r'^(?:<sup class="fnref">|</sup>|</a>|<a id="[a-z]+-fn-\d+">|<a href="#[a-z]+-fnref-\d+-\d+">'
    r'|<a id="[a-z]+-fnref-\d+-\d+" href="#[a-z]+-fn-\d+">)$'
)


def archive_markdown() -> WebLinksMarkdown:
    """markdown-it for archive pages: raw HTML is shown as text, except the footnote tags the archive template
    writes itself (FOOTNOTE_TAG), so markers and back links work in the preview as on the published site."""
    md = WebLinksMarkdown("commonmark", {"html": True})
    md.enable("table")

    def inline(renderer: Any, tokens: list[Any], idx: int, options: Any, env: Any) -> str:
        content = tokens[idx].content
        return content if FOOTNOTE_TAG.match(content) else escapeHtml(content)

    def block(renderer: Any, tokens: list[Any], idx: int, options: Any, env: Any) -> str:
        return f"<p>{escapeHtml(tokens[idx].content)}</p>\n"

    md.add_render_rule("html_inline", inline)
    md.add_render_rule("html_block", block)
    return md


def same_origin(request: Request) -> bool:
    """True when the browser says the request comes from this server's own pages (or says nothing: curl)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


class PreviewApp:
    """The request handlers, bound to one settings object, store and reloader."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.reloader = Reloader()
        self.markdown = archive_markdown()

    # helpers ------------------------------------------------------------------------------------------

    def page(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        nonce = secrets.token_urlsafe(18)
        body = render.render_template(
            self.settings.templates_dir,
            f"preview/{name}",
            version=self.reloader.version,
            settings=self.settings,
            nonce=nonce,
            **context,
        )
        return HTMLResponse(body, status_code=status, headers={"Content-Security-Policy": PAGE_CSP.format(nonce=nonce)})

    def load(self) -> Loaded:
        return load_content(self.settings.content_dir)

    def find(self, loaded: Loaded, slug: str) -> Briefing | None:
        return next((b for b in loaded.content.briefings if b.slug == slug), None)

    def not_found(self, what: str) -> HTMLResponse:
        return self.page("not_found.html.j2", status=404, what=what)

    def published_html(self, briefing: Briefing) -> str | None:
        relative = html_link(assign_paths(self.store, (briefing,))[briefing.slug])
        return relative if (self.settings.archive_path / relative).is_file() else None

    # routes -------------------------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        loaded = await run_in_threadpool(self.load)
        views, general = await run_in_threadpool(briefing_statuses, loaded, self.store)
        return self.page("index.html.j2", views=views, general=general, audiences=loaded.content.audiences)

    async def briefing(self, request: Request) -> Response:
        loaded = await run_in_threadpool(self.load)
        briefing = self.find(loaded, request.path_params["slug"])
        if briefing is None:
            return self.not_found(f"briefing '{request.path_params['slug']}'")
        views, _ = await run_in_threadpool(briefing_statuses, loaded, self.store)
        view = next(v for v in views if v.briefing.slug == briefing.slug)
        audiences = await run_in_threadpool(render_audiences, briefing, loaded.content, self.settings, self.store)
        width = int(request.query_params.get("w", "600")) if request.query_params.get("w") in ("600", "375") else 600
        return self.page(
            "briefing.html.j2",
            view=view,
            audiences=audiences,
            drafts=machine_draft_parts(briefing),
            widths=WIDTHS,
            width=width,
            budget=self.settings.email_size_budget,
            published=self.published_html(briefing),
            sent_to=request.query_params.get("sent", ""),
            send_error=request.query_params.get("error", ""),
            smtp=bool(self.settings.smtp_url),
        )

    async def email_part(self, request: Request) -> Response:
        slug, audience_id, kind = (request.path_params[k] for k in ("slug", "audience", "kind"))
        if kind not in ("html", "txt", "md"):
            return self.not_found(f"email part '.{kind}'")
        loaded = await run_in_threadpool(self.load)
        briefing = self.find(loaded, slug)
        if briefing is None:
            return self.not_found(f"briefing '{slug}'")
        views = await run_in_threadpool(
            partial(render_audiences, only=audience_id), briefing, loaded.content, self.settings, self.store
        )
        if not views:
            return self.not_found(f"audience '{audience_id}'")
        view = views[0]
        if view.email is None:
            return PlainTextResponse(f"this email cannot be rendered: {view.error}\n", status_code=422)
        link = unsubscribe_url(self.settings, audience_id, PREVIEW_RECIPIENT)
        headers = {"Content-Security-Policy": EMAIL_CSP}
        if kind == "html":
            html = with_highlights(view.email.html.replace(UNSUBSCRIBE_PLACEHOLDER, link), highlight_snippets(briefing))
            return HTMLResponse(html, headers=headers)
        if kind == "txt":
            return PlainTextResponse(view.email.text.replace(UNSUBSCRIBE_PLACEHOLDER, link), headers=headers)
        markdown = view.email.markdown.replace(UNSUBSCRIBE_PLACEHOLDER, link)
        return PlainTextResponse(markdown, media_type="text/markdown", headers=headers)

    async def archive(self, request: Request) -> Response:
        loaded = await run_in_threadpool(self.load)
        briefing = self.find(loaded, request.path_params["slug"])
        if briefing is None:
            return self.not_found(f"briefing '{request.path_params['slug']}'")
        published = self.published_html(briefing)
        if published:
            return RedirectResponse(f"/published/{quote(published)}", status_code=303)
        path = assign_paths(self.store, (briefing,))[briefing.slug]
        try:
            path, markdown = preview_page(briefing, loaded.content, self.store, self.settings)
            error = ""
        except BriefingError as err:
            markdown, error = "", str(err)
        return self.page(
            "archive.html.j2",
            briefing=briefing,
            path=path,
            markdown=markdown,
            html=self.markdown.render(markdown),
            error=error,
        )

    async def send_test_form(self, request: Request) -> Response:
        if not same_origin(request):
            # a page on another site must not make this server send mail (cross-site form POST)
            return PlainTextResponse("cross-site request refused\n", status_code=403)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", errors="replace")).items()}
        slug, audience_id, address = form.get("slug", ""), form.get("audience", ""), form.get("address", "").strip()
        loaded = await run_in_threadpool(self.load)
        try:
            sent = await run_in_threadpool(send_test, self.settings, loaded, self.store, slug, audience_id, address)
        except BriefingError as err:
            logger.warning("test send failed: %s", err)
            return RedirectResponse(f"/b/{quote(slug)}?error={quote(str(err))}#{quote(audience_id)}", status_code=303)
        done = f"{audience_id} → {address} ({sent.reply})"
        return RedirectResponse(f"/b/{quote(slug)}?sent={quote(done)}#{quote(audience_id)}", status_code=303)

    # --- collect --- moderation of readers' replies and the suppression list (flows/collect)

    async def discussion(self, request: Request) -> Response:
        from flows.core.discussion import shown_name
        from flows.core.store.discussion import STATUSES, list_entries

        loaded = await run_in_threadpool(self.load)
        names = {a.id: a.name for a in loaded.content.audiences}
        entries = await run_in_threadpool(partial(list_entries, self.store, status=None))
        order = {status: position for position, status in enumerate(STATUSES)}
        entries.sort(key=lambda e: (order.get(e.status, 9), e.received_at))
        shown = {e.id: shown_name(e, self.settings, names) for e in entries}
        titles = {b.slug: b.verdict or b.slug for b in loaded.content.briefings}
        return self.page(
            "discussion.html.j2",
            entries=entries,
            shown=shown,
            titles=titles,
            audiences=names,
            notice=request.query_params.get("done", ""),
        )

    async def decide_entry(self, request: Request) -> Response:
        from flows.core.store.discussion import APPROVED, REJECTED, decide

        if not same_origin(request):
            return PlainTextResponse("cross-site request refused\n", status_code=403)
        action = request.path_params["action"]
        status = {"approve": APPROVED, "reject": REJECTED}.get(action)
        if status is None:
            return self.not_found(f"action '{action}'")
        entry_id = int(request.path_params["entry_id"])
        results = await run_in_threadpool(decide, self.store, [entry_id], status)
        if results[entry_id] == "no such entry":
            return self.not_found(f"discussion entry {entry_id}")
        done = f"entry {entry_id}: {results[entry_id]} (the archive changes at the next publish)"
        return RedirectResponse(f"/discussion?done={quote(done)}#entry-{entry_id}", status_code=303)

    async def suppressions(self, request: Request) -> Response:
        from flows.core.store.suppressions import list_suppressions

        rows = await run_in_threadpool(partial(list_suppressions, self.store, include_lifted=True))
        return self.page("suppressions.html.j2", rows=rows, notice=request.query_params.get("done", ""))

    async def lift_suppression(self, request: Request) -> Response:
        from flows.core.store.suppressions import lift

        if not same_origin(request):
            return PlainTextResponse("cross-site request refused\n", status_code=403)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", errors="replace")).items()}
        address = form.get("address", "").strip()
        lifted = await run_in_threadpool(lift, self.store, address)
        done = f"lifted the suppression of {address}" if lifted else f"{address} was not suppressed"
        return RedirectResponse(f"/suppressions?done={quote(done)}", status_code=303)

    async def events(self, request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            yield f"retry: 1000\ndata: {self.reloader.version}\n\n"
            while not await request.is_disconnected():
                if await self.reloader.wait(KEEPALIVE_SECONDS):
                    yield f"data: {self.reloader.version}\n\n"
                else:
                    yield ": keepalive\n\n"

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    async def watch(self, stop: asyncio.Event) -> None:
        """Bump the version whenever a file under content/ or templates/ changes."""
        folders = [str(p) for p in (self.settings.content_dir, self.settings.templates_dir) if p.is_dir()]
        async for changes in awatch(*folders, stop_event=stop, debounce=200, step=50, recursive=True):
            render.load_labels.cache_clear()
            self.reloader.bump()
            logger.info("reloading pages: %s", ", ".join(sorted({Path(p).name for _, p in changes})))

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        watcher = asyncio.create_task(self.watch(stop))
        try:
            yield
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(watcher, 5)

    def routes(self) -> list[Route | Mount]:
        return [
            Route("/", self.index),
            Route("/b/{slug}", self.briefing),
            Route("/email/{slug}/{audience}.{kind:str}", self.email_part),
            Route("/archive/{slug}", self.archive),
            Route("/send-test", self.send_test_form, methods=["POST"]),
            Route("/discussion", self.discussion),
            Route("/discussion/{entry_id:int}/{action}", self.decide_entry, methods=["POST"]),
            Route("/suppressions", self.suppressions),
            Route("/suppressions/lift", self.lift_suppression, methods=["POST"]),
            Route("/events", self.events),
            *unsubscribe_routes(self.settings, self.store),
            Mount("/published", StaticFiles(directory=self.settings.archive_path, html=True, check_dir=False)),
        ]


def create_app(
    settings: Settings, store: Store | None = None, *, host: str = "127.0.0.1", port: int | None = None
) -> Starlette:
    """The preview app for a server listening on `host` (and `port`, when known): see HostRule."""
    handlers = PreviewApp(settings, store or open_store(settings.store_url))
    guard = Middleware(PreviewGuard, rule=HostRule.listening_on(host, port))
    return Starlette(routes=handlers.routes(), lifespan=handlers.lifespan, middleware=[guard])


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the preview server until interrupted (Ctrl-C)."""
    config = uvicorn.Config(
        create_app(settings, host=host, port=port),
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=2,
        lifespan="on",
    )
    uvicorn.Server(config).run()
