"""Make the legacy-store fixture: a store as the code of commit bd6e626 (the last release before Alembic) makes
it, with rows in every table, dumped as SQL for SQLite and PostgreSQL, plus the rows as JSON.

It runs that release's code, not this checkout's:

    git worktree add /tmp/legacy bd6e626   # or: git archive bd6e626 | tar -x -C /tmp/legacy
    cd /tmp/legacy && PYTHONPATH=/tmp/legacy:/tmp/legacy/tests \
        python <this checkout>/tests/data/legacy_store/make_fixture.py

tests/test_store_migrations.py loads the dumps into empty databases and opens them with today's code.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import insert, select

HERE = Path(__file__).resolve().parent
AT = datetime(2026, 6, 3, 8, 30, 15)
TABLES = (
    "feed_state", "articles", "send_ledger", "unsubscribes", "published", "ready_events", "draft_cache",
    "mailbox_state", "mail_messages", "suppressions", "bounce_events", "discussion_entries", "schema_version",
)


def fill(url: str) -> None:
    """Rows in every table, through the release's own code where it has a function for it."""
    from flows.models import Article, ParagraphKind, make_paragraphs

    from flows import ledger
    from flows import store as legacy

    store = legacy.Store(url)
    article = Article(
        id="a1b2c3d4e5f60718",
        url="https://news.example.org/2026/06/ai-builds-ai",
        title="Anthropic: AI builds AI — 人工智能",
        site="news.example.org",
        author="J. Doe",
        published=datetime(2026, 6, 1, 9, 0, tzinfo=UTC),
        feed_id="frontier-notes",
        summary="Teaser",
        content_html="<p>First paragraph.</p><p>第二段。</p>",
        paragraphs=make_paragraphs(
            [(ParagraphKind.TEXT, "First paragraph.", ""), (ParagraphKind.TEXT, "第二段。", "")]
        ),
        fingerprint="f1e2d3c4b5a69788",
    )
    store.save_article(article, canonical_url="https://news.example.org/2026/06/ai-builds-ai", guid="urn:x:1")
    store.record_feed(
        "https://news.example.org/feed.xml", feed_id="frontier-notes", last_status="ok", etag='"v1"',
        last_modified="Mon, 01 Jun 2026 09:00:00 GMT", entries_new=1, entries_seen=3, entries_updated=0,
        warnings="[]", last_ok_at=AT,
    )
    store.record_feed(
        "https://broken.example.org/feed.xml", feed_id="broken", last_status="error", last_error="HTTP 503"
    )
    entries = [
        ledger.Entry("sent@example.org", "<m1@briefing.example.org>"),
        ledger.Entry("failed@example.org", "<m2@briefing.example.org>"),
        ledger.Entry("gone@example.org", "<m3@briefing.example.org>", ledger.SKIPPED, "unsubscribed"),
        ledger.Entry("later@example.org", "<m4@briefing.example.org>"),
    ]
    ledger.enqueue(store, "anthropic-ai-builds-ai", "atou", "hash1", entries)
    rows = {r.recipient: r for r in ledger.claim_batch(store, "anthropic-ai-builds-ai", "atou", "host:1:w", 10)}
    for recipient, state, reply in (
        ("sent@example.org", ledger.SENT, "250 2.0.0 Ok: queued"),
        ("failed@example.org", ledger.FAILED, "550 5.1.1 no such user"),
        ("later@example.org", ledger.DEFERRED, "451 4.7.1 try again"),
    ):
        assert ledger.start_sending(store, rows[recipient].id, "host:1:w")
        retry = AT if state == ledger.DEFERRED else None
        ledger.finish(store, rows[recipient].id, state, reply, retry, worker="host:1:w")
    store.unsubscribe("atou", "Gone@Example.org", "link")
    store.record_ready_announced("anthropic-ai-builds-ai", "hash1", "6f1d3c52-0000-4000-8000-000000000001")
    with store.begin() as conn:
        conn.execute(insert(legacy.published).values(
            slug="anthropic-ai-builds-ai", path="2026/06/anthropic-ai-builds-ai.md", content_hash="d1",
            first_published=AT, updated=AT, article_key="a1b2c3d4e5f60718"))
        conn.execute(insert(legacy.draft_cache).values(
            kind="translation", source_hash="s" * 64, model="qwen2.5:7b-instruct", prompt_version="3",
            language="zh-CN", value=json.dumps("第一段的译文", ensure_ascii=False), tokens=42, created_at=AT))
        conn.execute(insert(legacy.mailbox_state).values(mailbox="imaps://news@imap.example.org/INBOX",
                                                         uidvalidity=3_000_000_001, updated_at=AT))
        conn.execute(insert(legacy.mail_messages).values(
            mailbox="imaps://news@imap.example.org/INBOX", uidvalidity=3_000_000_001, uid=4_000_000_002,
            digest="b" * 64, message_id="<reply@mail.example.net>", sender="reader@example.net",
            subject="Re: AI builds AI", kind="reply", detail="anthropic-ai-builds-ai/atou: pending discussion entry",
            folder="Briefing/Replies", processed_at=AT, moved_at=AT))
        conn.execute(insert(legacy.suppressions).values(email="bounce@example.net", reason="hard bounce 5.1.1",
                                                        source="hard-bounce", at=AT, lifted_at=None))
        conn.execute(insert(legacy.bounce_events).values(email="bounce@example.net", severity="hard", status="5.1.1",
                                                         diagnostic="550 no such user", message_digest="c" * 64, at=AT))
        conn.execute(insert(legacy.discussion_entries).values(
            message_digest="b" * 64, slug="anthropic-ai-builds-ai", audience="atou", recipient="sent@example.org",
            sender_email="reader@example.net", sender_name="张伟", received_at=AT, text="很有意思的观点。",
            html="<p>很有意思的观点。</p>", status="pending", created_at=AT, decided_at=None))
    store.close()


def rows_as_json(url: str) -> dict[str, list[dict[str, object]]]:
    from flows import store as legacy

    store = legacy.Store(url)
    out: dict[str, list[dict[str, object]]] = {}
    with store.engine.connect() as conn:
        for name in TABLES:
            table = legacy.metadata.tables[name]
            order = list(table.primary_key.columns) or list(table.columns)
            rows = conn.execute(select(table).order_by(*order)).mappings().all()
            out[name] = [{k: _plain(v) for k, v in row.items()} for row in rows]
    store.close()
    return out


def _plain(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime | date) else value


def dump_sqlite(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return "\n".join(line for line in conn.iterdump()) + "\n"
    finally:
        conn.close()


def dump_postgres(url: str, schema: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    env = {**os.environ, "PGPASSWORD": parsed.password or ""}
    command = [
        "pg_dump", "--no-owner", "--no-privileges", "--no-comments", "--inserts", f"--schema={schema}",
        "-h", parsed.host or "127.0.0.1", "-p", str(parsed.port or 5432), "-U", parsed.username or "postgres",
        parsed.database or "postgres",
    ]
    text = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    lines = []
    for line in text.splitlines():
        if line.startswith(("SET ", "SELECT pg_catalog.set_config", "CREATE SCHEMA", "\\restrict", "\\unrestrict")):
            continue  # session settings of pg_dump and the throwaway schema: the test loads into its own
        lines.append(line.replace(f"{schema}.", "").replace(schema, "legacy"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def main() -> None:
    from pg_support import fresh_schema, session_postgres

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "legacy.db"
        url = f"sqlite:///{path}"
        fill(url)
        (HERE / "sqlite.sql").write_text(dump_sqlite(path), encoding="utf-8")
        sqlite_rows = rows_as_json(url)
    postgres = session_postgres()
    base = next(postgres)
    try:
        with fresh_schema(base) as url:
            fill(url)
            schema = url.split("search_path%3D", 1)[1].split("&", 1)[0] if "search_path%3D" in url else url.split(
                "search_path=", 1)[1].split("&", 1)[0]
            (HERE / "postgresql.sql").write_text(dump_postgres(base, schema), encoding="utf-8")
            pg_rows = rows_as_json(url)
    finally:
        postgres.close()
    (HERE / "rows.json").write_text(
        json.dumps({"sqlite": sqlite_rows, "postgresql": pg_rows}, ensure_ascii=False, indent=1, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    sys.stdout.write(f"wrote {HERE}/sqlite.sql, postgresql.sql and rows.json\n")


if __name__ == "__main__":
    main()
