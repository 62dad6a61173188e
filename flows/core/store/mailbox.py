"""The mailbox repository of `briefing collect`: each IMAP folder's UIDVALIDITY, and one row per message processed,
written in the same transaction as its effect (so a message is acted on once, across crashes and reruns)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from flows.core.store.base import Database, utcnow
from flows.core.store.schema import mail_messages, mailbox_state

_DIGESTS = select(mail_messages.c.digest, mail_messages.c.folder).where(
    mail_messages.c.digest.in_(bindparam("digests", expanding=True))
)
_SET_DETAIL = update(mail_messages).where(mail_messages.c.digest == bindparam("row_digest")).values(
    detail=bindparam("new_detail")
)
_RECORD: dict[bool, Any] = {}


def record_uidvalidity(store: Database, mailbox: str, uidvalidity: int) -> int | None:
    """Remember the folder's UIDVALIDITY; returns the one known before (None the first time). A different one
    means every UID in the folder was renumbered."""
    with store.begin() as conn:
        known = conn.execute(select(mailbox_state.c.uidvalidity).where(mailbox_state.c.mailbox == mailbox)).scalar()
        if known is None:
            conn.execute(mailbox_state.insert().values(mailbox=mailbox, uidvalidity=uidvalidity, updated_at=utcnow()))
        elif known != uidvalidity:
            renumbered = update(mailbox_state).where(mailbox_state.c.mailbox == mailbox)
            conn.execute(renumbered.values(uidvalidity=uidvalidity, updated_at=utcnow()))
    return known


def recorded_uids(store: Database, mailbox: str, uidvalidity: int, uids: list[int]) -> dict[int, str]:
    """UID → folder of those of `uids` (sorted) whose message is recorded already."""
    if not uids:
        return {}
    query = select(mail_messages.c.uid, mail_messages.c.folder).where(
        mail_messages.c.mailbox == mailbox,
        mail_messages.c.uidvalidity == uidvalidity,
        mail_messages.c.uid.between(uids[0], uids[-1]),  # not the whole history of the mailbox
    )
    present = set(uids)
    with store.engine.connect() as conn:
        return {int(r.uid): r.folder for r in conn.execute(query) if int(r.uid) in present}


def folders_by_digest(store: Database, digests: list[str]) -> dict[str, str]:
    """Digest → folder of the messages with these bytes recorded already (by any UID, before any renumbering)."""
    with store.engine.connect() as conn:
        return {r.digest: r.folder for r in conn.execute(_DIGESTS, {"digests": sorted(set(digests))})}


def record_messages(store: Database, conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
    """Insert message records in the caller's transaction; returns the digests inserted. The digest is unique: a
    message another collector recorded meanwhile is not inserted, not returned, and not acted on twice."""
    statement = _RECORD.get(store.is_sqlite)
    if statement is None:
        statement = _RECORD[store.is_sqlite] = (
            store.insert(mail_messages)
            .on_conflict_do_nothing(index_elements=[mail_messages.c.digest])
            .returning(mail_messages.c.digest)
        )
    return {r.digest for r in conn.execute(statement, rows)}


def set_detail(conn: Connection, digest: str, detail: str) -> None:
    conn.execute(_SET_DETAIL, {"row_digest": digest, "new_detail": detail})


def mark_moved(store: Database, mailbox: str, uidvalidity: int, uids: list[int]) -> None:
    with store.begin() as conn:
        conn.execute(
            update(mail_messages)
            .where(
                mail_messages.c.mailbox == mailbox,
                mail_messages.c.uidvalidity == uidvalidity,
                mail_messages.c.uid.in_(uids),
            )
            .values(moved_at=utcnow())
        )
