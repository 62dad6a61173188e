"""Helpers for the delivery tests: a real aiosmtpd server on loopback with fault injection, sample renders."""

from __future__ import annotations

import asyncio
import email
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from flows.core.content import load_content
from flows.core.models import Content
from flows.core.pages import assign_paths
from flows.core.settings import Settings
from flows.core.store import Store
from flows.edition import render_for_archive
from flows.render.email import RenderedBriefing


def free_port() -> int:
    """A port the OS just handed out on 127.0.0.1 (aiosmtpd's Controller cannot start on port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Received:
    recipient: str
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


@dataclass
class FaultyMailbox:
    """aiosmtpd handler that stores every accepted message and misbehaves on request.

    temporary: recipient → how many times RCPT answers 451 before it is accepted (a big number: always);
    permanent: recipients answered 550; drop_after_data: after the Nth accepted message the server stores it
    and closes the connection without replying (the client cannot know); drop_at_mail: the Nth MAIL command
    closes the connection (nothing of that message was sent).
    """

    temporary: dict[str, int] = field(default_factory=dict)
    permanent: set[str] = field(default_factory=set)
    drop_after_data: set[int] = field(default_factory=set)
    drop_at_mail: set[int] = field(default_factory=set)
    reply_delay: float = 0.0  # seconds between storing a message and answering (widens the "uncertain" window)
    received: list[Received] = field(default_factory=list)
    refusals: Counter[str] = field(default_factory=Counter)
    mail_commands: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:  # noqa: N802
        with self.lock:
            self.mail_commands += 1
            drop = self.mail_commands in self.drop_at_mail
        if drop:
            server.transport.close()
            return "421 4.3.0 closing"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:  # noqa: N802
        with self.lock:
            if address in self.permanent:
                return "550 5.1.1 <" + address + ">: no such mailbox"
            if self.refusals[address] < self.temporary.get(address, 0):
                self.refusals[address] += 1
                return "451 4.7.1 greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.received.append(Received(rcpt, envelope.original_content or envelope.content))
            drop = len(self.received) in self.drop_after_data
        if drop:
            server.transport.close()
        elif self.reply_delay:
            await asyncio.sleep(self.reply_delay)
        return "250 2.0.0 queued"

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def by_recipient(self) -> Counter[str]:
        with self.lock:
            return Counter(r.recipient for r in self.received)


class SmtpServer:
    """A real aiosmtpd server on 127.0.0.1 in a background thread."""

    def __init__(self, handler: FaultyMailbox | None = None) -> None:
        self.handler = handler or FaultyMailbox()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, data_size_limit=0)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def write_subscribers(project: Path, audience_file: str, emails: list[str]) -> None:
    rows = ["email,name,locale", *(f"{e},读者{i},zh-CN" for i, e in enumerate(emails))]
    (project / "content" / "subscribers" / audience_file).write_text("\n".join(rows) + "\n", encoding="utf-8")


def load_sample(project: Path) -> Content:
    return load_content(project / "content").content


def render_sample(settings: Settings, store: Store, content: Content, slug: str = "") -> RenderedBriefing:
    briefing = next(b for b in content.ready if not slug or b.slug == slug)
    return render_for_archive(settings, content, briefing, assign_paths(store, content.ready)[briefing.slug])
