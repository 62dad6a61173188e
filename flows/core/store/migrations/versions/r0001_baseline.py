"""Baseline: the store's schema as the last release before Alembic (commit bd6e626) made it.

A new database gets every table. A store made before Alembic keeps every row: the tables, columns and indexes it
lacks are added (a store an older release made may lack some that later releases added when they opened it), and
the old hand-written migrations' schema_version table is dropped: from here on alembic_version records the
revision. The tables are written out here, not imported from schema.py, so this revision stays what it was.

Revision 0001, the first.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table, Text, UniqueConstraint

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

LEGACY_VERSION_TABLE = "schema_version"


def _baseline() -> MetaData:
    metadata = MetaData()
    Table(
        "feed_state",
        metadata,
        Column("feed_url", String(2000), primary_key=True),
        Column("feed_id", String(64), nullable=False, default=""),
        Column("etag", String(500)),
        Column("last_modified", String(100)),
        Column("last_status", String(32)),
        Column("last_error", Text),
        Column("bozo", Text),
        Column("entries_new", Integer, default=0),
        Column("entries_seen", Integer, default=0),
        Column("last_fetched_at", DateTime),
        Column("entries_updated", Integer, default=0),
        Column("warnings", Text),
        Column("last_ok_at", DateTime),
    )

    Table(
        "articles",
        metadata,
        Column("id", String(64), primary_key=True),
        Column("url", String(2000), nullable=False),
        Column("canonical_url", String(2000), index=True),
        Column("guid", String(2000), index=True),
        Column("feed_id", String(64), default=""),
        Column("title", Text, nullable=False),
        Column("site", String(500), default=""),
        Column("author", String(500), default=""),
        Column("published", DateTime),
        Column("summary", Text, default=""),
        Column("content_html", Text, default=""),
        Column("paragraphs", Text, default="[]"),
        Column("fingerprint", String(64), index=True),
        Column("version", Integer, default=1, nullable=False),
        Column("first_seen", DateTime, nullable=False),
        Column("updated_at", DateTime, nullable=False),
    )

    send_ledger = Table(
        "send_ledger",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("slug", String(128), nullable=False),
        Column("audience", String(64), nullable=False),
        Column("recipient", String(320), nullable=False),
        Column("content_hash", String(64), nullable=False),
        Column("message_id", String(500), nullable=False),
        Column("state", String(16), nullable=False, index=True),
        Column("attempts", Integer, nullable=False, default=0),
        Column("last_reply", Text, default=""),
        Column("next_attempt_at", DateTime),
        Column("claimed_by", String(128)),
        Column("claimed_at", DateTime),
        Column("created_at", DateTime, nullable=False),
        Column("updated_at", DateTime, nullable=False),
        UniqueConstraint("slug", "audience", "recipient", "content_hash", name="uq_ledger_row"),
    )

    # The ledger's claim query filters on (slug, audience, state) and takes the lowest ids first.
    Index(
        "ix_send_ledger_claim", send_ledger.c.slug, send_ledger.c.audience, send_ledger.c.state, send_ledger.c.id
    )

    Table(
        "unsubscribes",
        metadata,
        Column("audience", String(64), primary_key=True),
        Column("email", String(320), primary_key=True),
        Column("at", DateTime, nullable=False),
        Column("method", String(32), nullable=False),
    )

    Table(
        "published",
        metadata,
        Column("slug", String(128), primary_key=True),
        Column("path", String(500), nullable=False, unique=True),
        Column("content_hash", String(64), nullable=False),
        Column("first_published", DateTime, nullable=False),
        Column("updated", DateTime, nullable=False),
        # --- publish --- identity of the source article, so a slug edit keeps the page where it was first published
        Column("article_key", String(64), index=True),
    )

    # Readiness events already emitted, so a restart of `briefing serve` does not announce a briefing twice.
    Table(
        "ready_events",
        metadata,
        Column("slug", String(128), primary_key=True),
        Column("content_hash", String(64), primary_key=True),
        Column("event_id", String(64), nullable=False),
        Column("emitted_at", DateTime, nullable=False),
    )

    # --- draft --- what a model answered, so drafting the same source again costs no request (flows/draft/cache.py).
    # kind: translation (per block; source_hash = hash of the block's text), summary or notes (hash of the request).
    Table(
        "draft_cache",
        metadata,
        Column("kind", String(16), primary_key=True),
        Column("source_hash", String(64), primary_key=True),
        Column("model", String(200), primary_key=True),
        Column("prompt_version", String(16), primary_key=True),
        Column("language", String(16), primary_key=True),
        Column("value", Text, nullable=False),
        Column("tokens", Integer, nullable=False, default=0),
        Column("created_at", DateTime, nullable=False),
    )


    # --- collect --- the inbound mailbox (flows/collect): what was read, what it did, and what editors decide.
    # The IMAP folder's UIDVALIDITY as last seen; a change means every UID in the folder was renumbered.
    Table(
        "mailbox_state",
        metadata,
        Column("mailbox", String(500), primary_key=True),
        Column("uidvalidity", BigInteger, nullable=False),
        Column("updated_at", DateTime, nullable=False),
    )

    # One row per message processed, written in the same transaction as its effect; `digest` (SHA-256 of the raw
    # message) recognises it again after a UIDVALIDITY change.
    Table(
        "mail_messages",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("mailbox", String(500), nullable=False),
        Column("uidvalidity", BigInteger, nullable=False),
        Column("uid", BigInteger, nullable=False),
        Column("digest", String(64), nullable=False, unique=True),
        Column("message_id", String(998), default=""),
        Column("sender", String(320), default=""),
        Column("subject", Text, default=""),
        Column("kind", String(32), nullable=False),
        Column("detail", Text, default=""),
        Column("folder", String(500), nullable=False),
        Column("processed_at", DateTime, nullable=False),
        Column("moved_at", DateTime),
        Index("ix_mail_messages_uid", "mailbox", "uidvalidity", "uid"),
    )

    # Replies are matched to the briefing they answer by the Message-IDs they reference (In-Reply-To/References).
    Index("ix_send_ledger_message_id", send_ledger.c.message_id)

    # Addresses never mailed again until an editor lifts the suppression (lifted_at set).
    Table(
        "suppressions",
        metadata,
        Column("email", String(320), primary_key=True),
        Column("reason", Text, nullable=False),
        Column("source", String(32), nullable=False),
        Column("at", DateTime, nullable=False),
        Column("lifted_at", DateTime),
    )

    Table(
        "bounce_events",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("email", String(320), nullable=False, index=True),
        Column("severity", String(8), nullable=False),
        Column("status", String(16), default=""),
        Column("diagnostic", Text, default=""),
        Column("message_digest", String(64), nullable=False),
        Column("at", DateTime, nullable=False),
    )

    Table(
        "discussion_entries",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("message_digest", String(64), nullable=False, unique=True),
        Column("slug", String(128), nullable=False, index=True),
        Column("audience", String(64), nullable=False),
        Column("recipient", String(320), default=""),
        Column("sender_email", String(320), default=""),
        Column("sender_name", String(500), default=""),
        Column("received_at", DateTime, nullable=False),
        Column("text", Text, nullable=False),
        Column("html", Text, default=""),
        Column("status", String(16), nullable=False, index=True),
        Column("created_at", DateTime, nullable=False),
        Column("decided_at", DateTime),
    )
    return metadata


def _for_existing_rows(column: Column[object]) -> Column[object]:
    """The column as it is added to a table that has rows: a NOT NULL column gets its default on the server too
    (the database fills the rows it already has)."""
    added = column._copy()
    default = getattr(column.default, "arg", None)
    if not column.nullable and column.server_default is None and default is not None and not callable(default):
        added.server_default = sa.DefaultClause(sa.literal(default, column.type).compile(
            dialect=op.get_bind().dialect, compile_kwargs={"literal_binds": True}
        ).string)
    return added


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    existing = set(inspector.get_table_names())
    for table in _baseline().sorted_tables:
        if table.name not in existing:
            table.create(bind)
            continue
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                op.add_column(table.name, _for_existing_rows(column))
        indexes = {i["name"] for i in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                op.create_index(index.name, table.name, [c.name for c in index.columns], unique=bool(index.unique))
    if LEGACY_VERSION_TABLE in existing:
        op.drop_table(LEGACY_VERSION_TABLE)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(_baseline().sorted_tables):
        table.drop(bind, checkfirst=True)
