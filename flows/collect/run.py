"""`collect_mailbox`: read the mailbox once, act on each new message exactly once, file it by class.

For each message in the folder, oldest first, in batches of `collect_batch_size`:

1. fetch it with BODY.PEEK[] (nothing is marked seen, nothing changes on the server);
2. classify it (flows/collect/classify.py);
3. in ONE store transaction: record the message (mailbox, UIDVALIDITY, UID, SHA-256 of its bytes, class,
   outcome) and apply its effect — a pending discussion entry, bounce events and suppressions, a complaint's
   suppression and unsubscribe, a mailto unsubscribe;
4. after the batch is recorded, MOVE each message to the folder of its class (`<prefix>/Replies`, …).

A crash before 3 leaves nothing recorded: the message is processed on the next run. A crash between 3 and 4
leaves a recorded message in the folder: the next run finds its UID (or, after a UIDVALIDITY change, its
digest) recorded, does not act again and only moves it. A message is never deleted; it leaves the folder only
by MOVE once its outcome is committed. A message that cannot be parsed is recorded as `unreadable` and filed
under `<prefix>/Unreadable`; it never stops the others.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from imapclient.exceptions import IMAPClientError
from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from flows.collect import classify as kinds
from flows.collect import discussion, suppression
from flows.collect.classify import Classified, LedgerMatch, classify, ledger_matches
from flows.collect.errors import CollectError
from flows.collect.imap import Fetched, Mailbox, open_mailbox
from flows.collect.message import UnreadableMessageError, parse
from flows.content import load_content
from flows.models import Content
from flows.settings import Settings
from flows.store import Store, mail_messages, mailbox_state, utcnow
from flows.tokens import TokenError, verify_token
from flows.unsubscribe import token_from

logger = logging.getLogger(__name__)

MOVE_CHUNK = 500  # UIDs per MOVE command: keeps the command line well under servers' limits (Dovecot: 64 KB)
_DIGESTS = select(mail_messages.c.digest, mail_messages.c.folder).where(
    mail_messages.c.digest.in_(bindparam("digests", expanding=True))
)


@dataclass
class Handled:
    uid: int
    kind: str
    detail: str
    folder: str
    repeat: bool = False  # recorded by an earlier run (crash before the move, or a UIDVALIDITY change)


@dataclass
class CollectReport:
    mailbox: str = ""
    uidvalidity: int = 0
    uidvalidity_changed: bool = False
    seen: int = 0  # messages in the folder at the start
    processed: Counter[str] = field(default_factory=Counter)  # kind → messages acted on in this run
    repeats: int = 0  # recorded earlier, only moved now
    moved: int = 0
    move_errors: list[str] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)
    unsubscribed: list[str] = field(default_factory=list)
    entries: int = 0
    handled: list[Handled] = field(default_factory=list)

    @property
    def needs_attention(self) -> bool:
        return bool(self.move_errors or self.processed[kinds.UNREADABLE])

    def to_dict(self) -> dict[str, Any]:
        return {
            "mailbox": self.mailbox,
            "uidvalidity": self.uidvalidity,
            "uidvalidity_changed": self.uidvalidity_changed,
            "seen": self.seen,
            "processed": dict(self.processed),
            "repeats": self.repeats,
            "moved": self.moved,
            "move_errors": self.move_errors,
            "suppressed": self.suppressed,
            "unsubscribed": self.unsubscribed,
            "entries": self.entries,
            "messages": [h.__dict__ for h in self.handled],
        }


class Collector:
    """One run over one mailbox: the store, the content's audiences and the report it fills."""

    def __init__(self, settings: Settings, store: Store, box: Mailbox, content: Content) -> None:
        self.settings = settings
        self.store = store
        self.box = box
        self.content = content
        self.report = CollectReport(mailbox=box.address.display, uidvalidity=box.uidvalidity)

    # the run --------------------------------------------------------------------------------------------

    def run(self) -> CollectReport:
        self.report.uidvalidity_changed = self._check_uidvalidity()
        uids = self.box.uids()
        self.report.seen = len(uids)
        recorded = self._recorded(uids)
        leftovers: dict[str, list[int]] = defaultdict(list)
        for uid in uids:
            if uid in recorded:
                leftovers[recorded[uid]].append(uid)
                self.report.repeats += 1
        self._move(leftovers)
        todo = [uid for uid in uids if uid not in recorded]
        size = self.settings.collect_batch_size
        for start in range(0, len(todo), size):
            batch = todo[start : start + size]
            self._move(self._process_batch(self._fetch(batch)))
        logger.info(
            "%s: %d messages, %s, %d moved", self.report.mailbox, self.report.seen, dict(self.report.processed),
            self.report.moved,
        )
        return self.report

    def _check_uidvalidity(self) -> bool:
        key, value = self.box.address.key, self.box.uidvalidity
        with self.store.begin() as conn:
            known = conn.execute(select(mailbox_state.c.uidvalidity).where(mailbox_state.c.mailbox == key)).scalar()
            if known == value:
                return False
            if known is None:
                conn.execute(mailbox_state.insert().values(mailbox=key, uidvalidity=value, updated_at=utcnow()))
                return False
            renumbered = update(mailbox_state).where(mailbox_state.c.mailbox == key)
            conn.execute(renumbered.values(uidvalidity=value, updated_at=utcnow()))
        logger.warning(
            "%s: UIDVALIDITY changed from %s to %s: every UID was renumbered; messages already processed are "
            "recognised by their content and only moved",
            self.report.mailbox,
            known,
            value,
        )
        return True

    def _recorded(self, uids: list[int]) -> dict[int, str]:
        """UID → folder of the messages still in the folder whose outcome is already recorded."""
        query = select(mail_messages.c.uid, mail_messages.c.folder).where(
            mail_messages.c.mailbox == self.box.address.key, mail_messages.c.uidvalidity == self.box.uidvalidity
        )
        present = set(uids)
        with self.store.engine.connect() as conn:
            return {int(r.uid): r.folder for r in conn.execute(query) if int(r.uid) in present}

    def _fetch(self, batch: list[int]) -> list[Fetched]:
        try:
            return self.box.fetch(batch)
        except (IMAPClientError, OSError) as exc:
            raise CollectError(
                f"fetching {len(batch)} messages failed: {exc}",
                where=self.report.mailbox,
                hint="messages recorded so far stay recorded; run `briefing collect` again",
            ) from None

    def _process_batch(self, fetched: list[Fetched]) -> dict[str, list[int]]:
        digests = {f.uid: hashlib.sha256(f.raw).hexdigest() for f in fetched}
        with self.store.engine.connect() as conn:
            known = {r.digest: r.folder for r in conn.execute(_DIGESTS, {"digests": sorted(set(digests.values()))})}
        moves: dict[str, list[int]] = defaultdict(list)
        for item in fetched:
            digest = digests[item.uid]
            folder = known.get(digest)
            if folder is not None:
                self.report.repeats += 1
                self.report.handled.append(Handled(item.uid, "", "processed before (same content)", folder, True))
            else:
                folder = self._process(item, digest)
                known[digest] = folder
            moves[folder].append(item.uid)
        return moves

    # one message --------------------------------------------------------------------------------------

    def _process(self, item: Fetched, digest: str) -> str:
        try:
            classified = classify(parse(item.raw), self.store, self.settings, item.internal_date)
        except UnreadableMessageError as exc:
            classified = Classified(kinds.UNREADABLE, str(exc))
        except Exception as exc:  # a bug or a library choking on hostile input must not block the other messages
            logger.exception("%s: UID %d could not be classified", self.report.mailbox, item.uid)
            classified = Classified(kinds.UNREADABLE, f"cannot be read: {type(exc).__name__}: {exc}"[:1000])
        folder = self.box.folder_for(kinds.FOLDERS[classified.kind], self.settings.collect_folder_prefix)
        with self.store.begin() as conn:
            if not self._record(conn, item, digest, classified, folder):
                return folder  # another collector recorded it between our check and now
            detail = self._apply(conn, classified, digest)
            if detail != classified.detail:
                conn.execute(
                    update(mail_messages).where(mail_messages.c.digest == digest).values(detail=detail[:4000])
                )
        self.report.processed[classified.kind] += 1
        self.report.handled.append(Handled(item.uid, classified.kind, detail, folder))
        return folder

    def _record(self, conn: Connection, item: Fetched, digest: str, classified: Classified, folder: str) -> bool:
        added = conn.execute(
            self.store.insert(mail_messages)
            .values(
                mailbox=self.box.address.key,
                uidvalidity=self.box.uidvalidity,
                uid=item.uid,
                digest=digest,
                message_id=classified.message_id,
                sender=classified.sender_email[:320],
                subject=classified.subject,
                kind=classified.kind,
                detail=classified.detail[:4000],
                folder=folder,
                processed_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=[mail_messages.c.digest])
            .returning(mail_messages.c.id)
        ).first()
        return added is not None

    def _apply(self, conn: Connection, classified: Classified, digest: str) -> str:
        """The effect of one message, in the transaction that records it; returns the detail to record."""
        if classified.kind == kinds.REPLY:
            return self._add_entry(conn, classified, digest)
        if classified.kind == kinds.BOUNCE and classified.bounce is not None:
            now = utcnow()
            outcomes = []
            for bounced in classified.bounce.addresses:
                outcome = suppression.record_bounce(self.store, conn, self.settings, bounced, digest, now)
                if outcome == "suppressed":
                    self.report.suppressed.append(bounced.email)
                outcomes.append(f"{bounced.email}: {bounced.severity} {bounced.status} → {outcome}".replace("  ", " "))
            return "; ".join(outcomes)
        if classified.kind == kinds.COMPLAINT:
            return self._complaint(conn, classified)
        if classified.kind == kinds.UNSUBSCRIBE:
            return self._unsubscribe(conn, classified)
        return classified.detail

    def _add_entry(self, conn: Connection, classified: Classified, digest: str) -> str:
        match, reply = classified.match, classified.reply
        assert match is not None and reply is not None
        name = classified.sender_name or self._subscriber_name(match.audience, classified.sender_email)
        discussion.add_pending(
            conn,
            digest=digest,
            slug=match.slug,
            audience=match.audience,
            recipient=match.recipient,
            sender_email=classified.sender_email,
            sender_name=name,
            received_at=classified.sent_at or utcnow(),
            text=reply.text,
            html=reply.html,
        )
        self.report.entries += 1
        return f"{classified.detail}: pending discussion entry"

    def _complaint(self, conn: Connection, classified: Classified) -> str:
        complaint = classified.complaint
        assert complaint is not None
        address, audiences = self._complainant(complaint.returned_message_id, complaint.returned_unsubscribe)
        address = address or next(iter(complaint.candidates), "")
        if not address:
            return f"{classified.detail}: no address in the report (redacted?): left for a person"
        if not complaint.suppresses:
            return f"{classified.detail} about {address}: not a complaint, nothing done"
        reason = f"complaint ({complaint.feedback_type}{', ' + complaint.user_agent if complaint.user_agent else ''})"
        if suppression.suppress(self.store, conn, address, reason, suppression.COMPLAINT):
            self.report.suppressed.append(address)
        done = self._unsubscribe_from(conn, address, audiences or self._audiences_listing(address), "complaint")
        return f"{classified.detail}: {address} suppressed; unsubscribed from {', '.join(done) or 'no audience'}"

    def _complainant(self, returned_id: str, list_unsubscribe: str) -> tuple[str, list[str]]:
        """(address, audiences) of the complained-about message: from the send ledger by its Message-ID, else
        from the signed unsubscribe token in its List-Unsubscribe header (both survive a redacted To)."""
        matches: list[LedgerMatch] = ledger_matches(self.store, [returned_id]) if returned_id else []
        if matches:
            return matches[0].recipient.lower(), [matches[0].audience]
        for url in list_unsubscribe.replace(",", " ").split():
            url = url.strip().strip("<>")
            if "unsubscribe?t=" not in url:
                continue
            try:
                audience, email = verify_token(self.settings.secret, token_from(url))
            except TokenError:
                continue
            return email, [audience]
        return "", []

    def _unsubscribe(self, conn: Connection, classified: Classified) -> str:
        address = classified.sender_email
        if not address:
            return f"{classified.detail}: no sender address: left for a person"
        known = {a.id for a in self.content.audiences}
        named = classified.unsubscribe_audience
        audiences = [named] if named in known else self._audiences_listing(address)
        if not audiences:
            return f"{classified.detail}: {address} is on no subscriber list: nothing to do"
        done = self._unsubscribe_from(conn, address, audiences, "mailto")
        return f"{classified.detail}: {address} unsubscribed from {', '.join(done)}"

    def _unsubscribe_from(self, conn: Connection, address: str, audiences: list[str], method: str) -> list[str]:
        for audience in audiences:
            if suppression.record_unsubscribe(self.store, conn, audience, address, method):
                self.report.unsubscribed.append(f"{address} ({audience})")
        return audiences

    def _audiences_listing(self, address: str) -> list[str]:
        return [a.id for a in self.content.audiences if any(s.email.lower() == address for s in a.subscribers)]

    def _subscriber_name(self, audience_id: str, address: str) -> str:
        for audience in self.content.audiences:
            if audience.id == audience_id:
                return next((s.name for s in audience.subscribers if s.email.lower() == address), "")
        return ""

    # moving ---------------------------------------------------------------------------------------------

    def _move(self, moves: dict[str, list[int]]) -> None:
        for folder, all_uids in moves.items():
            for start in range(0, len(all_uids), MOVE_CHUNK):
                self._move_chunk(folder, all_uids[start : start + MOVE_CHUNK])

    def _move_chunk(self, folder: str, uids: list[int]) -> None:
        try:
            self.box.move(uids, folder)
        except (IMAPClientError, OSError) as exc:
            message = f"moving {len(uids)} messages to {folder} failed: {exc}; they stay and are moved next run"
            logger.error("%s: %s", self.report.mailbox, message)
            self.report.move_errors.append(message)
            return
        self.report.moved += len(uids)
        self._mark_moved(uids)

    def _mark_moved(self, uids: list[int]) -> None:
        with self.store.begin() as conn:
            conn.execute(
                update(mail_messages)
                .where(
                    mail_messages.c.mailbox == self.box.address.key,
                    mail_messages.c.uidvalidity == self.box.uidvalidity,
                    mail_messages.c.uid.in_(uids),
                )
                .values(moved_at=utcnow())
            )


def collect_mailbox(settings: Settings, store: Store, *, content: Content | None = None) -> CollectReport:
    """Read BRIEFING_IMAP_URL once: act on every new message exactly once and file it by class."""
    content = content if content is not None else load_content(settings.content_dir).content
    with open_mailbox(settings) as box:
        return Collector(settings, store, box, content).run()


def last_processed(store: Store, limit: int = 50) -> list[dict[str, Any]]:
    """The most recently processed messages, newest first (for `briefing status` and the preview)."""
    query = (
        select(
            mail_messages.c.processed_at,
            mail_messages.c.kind,
            mail_messages.c.sender,
            mail_messages.c.subject,
            mail_messages.c.detail,
            mail_messages.c.folder,
        )
        .order_by(mail_messages.c.id.desc())
        .limit(limit)
    )
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]

