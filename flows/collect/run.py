"""`collect_mailbox`: read the mailbox once, act on each new message exactly once, file it by class.

For each message in the folder, oldest first, in batches of `collect_batch_size` messages and FETCH_BYTES octets:

1. fetch the batch with BODY.PEEK[] (nothing is marked seen, nothing changes on the server);
2. parse each message once and classify it (flows/collect/classify.py); the send-ledger rows the batch's
   replies and complaints refer to are read in one query;
3. in ONE store transaction for the batch: record each message (mailbox, UIDVALIDITY, UID, SHA-256 of its
   bytes, class, outcome) and apply its effect — a pending discussion entry, bounce events and suppressions, a
   complaint's suppression and unsubscribe, a mailto unsubscribe;
4. once that transaction is committed, queue each message for the folder of its class (`<prefix>/Replies`, …).
   The queues are moved at the end of the run, one MOVE of UID ranges per folder (earlier for a folder whose
   UID set has grown to MOVE_SET_CHARS).

A crash before 3 commits leaves nothing of the batch recorded: its messages are processed on the next run. A
crash after it leaves recorded messages in the folder: the next run finds their UIDs (or, after a UIDVALIDITY
change, their digests) recorded, does not act again and only moves them. A message is never deleted; it leaves
the folder only by MOVE once its outcome is committed. A message that cannot be parsed is recorded as
`unreadable` and filed under `<prefix>/Unreadable`; so is one whose effect the store refuses (the batch is then
recorded again message by message, so that one message never holds back the others).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Any, TypeVar

from imapclient.exceptions import IMAPClientError
from sqlalchemy.engine import Connection
from sqlalchemy.exc import InterfaceError, OperationalError

from flows.collect import classify as kinds
from flows.collect import suppression
from flows.collect.classify import Classified, LedgerLookup, LedgerMatch, classify, ledger_ids
from flows.collect.imap import Fetched, Mailbox, UidSet, open_mailbox
from flows.collect.message import UnreadableMessageError, parse
from flows.core.content import load_content
from flows.core.errors import CollectError, TokenError
from flows.core.models import Content
from flows.core.settings import Settings
from flows.core.store import Store, discussion, mailbox, suppressions, unsubscribes, utcnow
from flows.core.tokens import token_from, verify_token

logger = logging.getLogger(__name__)

# Moves are queued for the whole run and sent as UID ranges, one MOVE per folder: each MOVE costs a server a
# fixed price that grows with the folder (Dovecot, Maildir: ~0.7 s in a folder of 10,000 messages, for 100
# messages or 2,000). A set is sent once its text reaches this length: RFC 7162 §4 asks clients to keep command
# lines to about 8,192 octets.
MOVE_SET_CHARS = 8000
MARK_CHUNK = 500  # UIDs per UPDATE that marks moved messages (bound parameters)
# Octets of messages per fetched batch (besides `collect_batch_size` messages): memory follows the batch.
FETCH_BYTES = 16 * 1024 * 1024
T = TypeVar("T")


def _entry_detail(classified: Classified) -> str:
    return f"{classified.detail}: pending discussion entry"


@dataclass
class Outcome:
    """A fetched message, classified, not recorded yet."""

    item: Fetched
    digest: str
    classified: Classified
    folder: str


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
        self.ledger_rows = LedgerLookup(store)
        self._queued: dict[str, UidSet] = {}  # folder → UIDs recorded, not moved yet
        self._names: dict[tuple[str, str], str] = {}  # (audience, address) → the subscriber file's name
        for audience in content.audiences:
            for subscriber in audience.subscribers:
                self._names.setdefault((audience.id, subscriber.email.lower()), subscriber.name)
        self._listing: dict[str, list[str]] = defaultdict(list)  # address → audiences listing it
        for audience in content.audiences:
            for address in dict.fromkeys(s.email.lower() for s in audience.subscribers):
                self._listing[address].append(audience.id)

    # the run --------------------------------------------------------------------------------------------

    def run(self) -> CollectReport:
        self.report.uidvalidity_changed = self._check_uidvalidity()
        uids = self.box.uids()
        self.report.seen = len(uids)
        recorded = self._recorded(uids)
        try:
            for uid in uids:
                if uid in recorded:
                    self._queue(recorded[uid], uid)
                    self.report.repeats += 1
            self._move_queued(everything=True)  # what an earlier run recorded goes first
            todo = [uid for uid in uids if uid not in recorded]
            for batch in self._batches(todo):
                self._process_batch(self._fetch(batch))
                self._move_queued(everything=False)
        finally:
            self._move_queued(everything=True)  # recorded messages are filed even when a later batch fails
        logger.info(
            "%s: %d messages, %s, %d moved", self.report.mailbox, self.report.seen, dict(self.report.processed),
            self.report.moved,
        )
        return self.report

    def _check_uidvalidity(self) -> bool:
        value = self.box.uidvalidity
        known = mailbox.record_uidvalidity(self.store, self.box.address.key, value)
        if known is None or known == value:
            return False
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
        return mailbox.recorded_uids(self.store, self.box.address.key, self.box.uidvalidity, uids)

    def _batches(self, todo: list[int]) -> Iterator[list[int]]:
        """`todo` in UID order, in batches of at most `collect_batch_size` messages and FETCH_BYTES octets (a
        larger message comes alone): a batch is held in memory twice, as bytes and parsed. Messages count as
        an even share of FETCH_BYTES; one SEARCH finds those that are larger, and only their sizes are read."""
        count = self.settings.collect_batch_size
        share = max(FETCH_BYTES // count, 1)
        large = self._imap(lambda: self._large(todo, share), f"reading the sizes of {len(todo)} messages")
        batch: list[int] = []
        octets = 0
        for uid in todo:
            size = large.get(uid, share)
            if batch and (len(batch) >= count or octets + size > FETCH_BYTES):
                yield batch
                batch, octets = [], 0
            batch.append(uid)
            octets += size
        if batch:
            yield batch

    def _large(self, todo: list[int], share: int) -> dict[int, int]:
        if not todo:
            return {}
        wanted = sorted(self.box.larger_than(share).intersection(todo))
        sizes: dict[int, int] = {}
        for start in range(0, len(wanted), 1000):
            sizes.update(self.box.sizes(wanted[start : start + 1000]))
        return sizes

    def _fetch(self, batch: list[int]) -> list[Fetched]:
        return self._imap(lambda: self.box.fetch(batch), f"fetching {len(batch)} messages")

    def _imap(self, command: Callable[[], T], what: str) -> T:
        try:
            return command()
        except (IMAPClientError, OSError) as exc:
            raise CollectError(
                f"{what} failed: {exc}",
                where=self.report.mailbox,
                hint="messages recorded so far stay recorded; run `briefing collect` again",
            ) from None

    def _process_batch(self, fetched: list[Fetched]) -> None:
        digests = {f.uid: hashlib.sha256(f.raw).hexdigest() for f in fetched}
        known = mailbox.folders_by_digest(self.store, list(digests.values()))
        fresh: dict[str, Fetched] = {}  # digest → the first message with these bytes
        copies: list[Fetched] = []  # the same bytes again: recorded earlier, or by the first copy in this batch
        for item in fetched:
            digest = digests[item.uid]
            if digest in known or digest in fresh:
                copies.append(item)
            else:
                fresh[digest] = item
        outcomes = self._classify_batch(fresh)
        self._record_batch(outcomes)  # committed: from here on, the batch's messages may be moved
        folders = known | {o.digest: o.folder for o in outcomes}
        for item in copies:
            folder = folders[digests[item.uid]]
            self.report.repeats += 1
            self.report.handled.append(Handled(item.uid, "", "processed before (same content)", folder, True))
        for item in fetched:  # in UID order, so that the queued sets stay ranges
            self._queue(folders[digests[item.uid]], item.uid)

    # classifying ----------------------------------------------------------------------------------------

    def _classify_batch(self, fresh: dict[str, Fetched]) -> list[Outcome]:
        parsed: list[tuple[str, Fetched, EmailMessage | Classified]] = []
        wanted: list[str] = []
        for digest, item in fresh.items():
            try:
                message = parse(item.raw)
                wanted.extend(ledger_ids(message))
                parsed.append((digest, item, message))
            except Exception as exc:
                parsed.append((digest, item, self._unreadable(item, exc)))
        self.ledger_rows = LedgerLookup(self.store)  # per batch: memory follows the batch, not the mailbox
        self.ledger_rows.prefetch(wanted)
        outcomes = []
        for digest, item, read in parsed:
            classified = read if isinstance(read, Classified) else self._classify(item, read)
            outcomes.append(Outcome(item, digest, classified, self._folder(classified.kind)))
        return outcomes

    def _folder(self, kind: str) -> str:
        return self.box.folder_for(kinds.FOLDERS[kind], self.settings.collect_folder_prefix)

    def _classify(self, item: Fetched, message: EmailMessage) -> Classified:
        try:
            return classify(message, self.store, self.settings, item.internal_date, self.ledger_rows)
        except Exception as exc:
            return self._unreadable(item, exc)

    def _unreadable(self, item: Fetched, exc: Exception) -> Classified:
        if isinstance(exc, UnreadableMessageError):
            return Classified(kinds.UNREADABLE, str(exc))
        # a bug or a library choking on hostile input must not block the other messages
        logger.error("%s: UID %d could not be classified", self.report.mailbox, item.uid, exc_info=exc)
        return Classified(kinds.UNREADABLE, f"cannot be read: {type(exc).__name__}: {exc}"[:1000])

    # recording ------------------------------------------------------------------------------------------

    def _record_batch(self, outcomes: list[Outcome]) -> None:
        """Record the batch and apply its effects in one transaction. Should the store refuse one message's
        effect (a value too long for a column, …), the batch is recorded again one message per transaction and
        that message is recorded as unreadable, with the reason."""
        if not outcomes:
            return
        done = CollectReport()
        try:
            with self.store.begin() as conn:
                self._record(conn, outcomes, done)
        except (OperationalError, InterfaceError):
            raise  # the store itself is unavailable (locked, connection lost): nothing to isolate
        except Exception:
            logger.warning(
                "%s: a batch of %d messages could not be recorded at once; recording them one by one",
                self.report.mailbox, len(outcomes), exc_info=True,
            )
            done = self._record_one_by_one(outcomes)
        self._merge(done)

    def _record_one_by_one(self, outcomes: list[Outcome]) -> CollectReport:
        done = CollectReport()
        for outcome in outcomes:
            alone = CollectReport()
            try:
                with self.store.begin() as conn:
                    self._record(conn, [outcome], alone)
            except (OperationalError, InterfaceError):
                raise
            except Exception as exc:
                logger.error(
                    "%s: UID %d: the store refused its outcome", self.report.mailbox, outcome.item.uid, exc_info=True
                )
                reason = getattr(exc, "orig", None) or exc
                outcome.classified = Classified(
                    kinds.UNREADABLE,
                    f"{outcome.classified.kind} that cannot be recorded: {type(reason).__name__}: {reason}"[:1000],
                    message_id=outcome.classified.message_id,
                    sender_email=outcome.classified.sender_email,
                    subject=outcome.classified.subject,
                )
                outcome.folder = self._folder(kinds.UNREADABLE)
                alone = CollectReport()
                with self.store.begin() as conn:  # the record alone, no effect: a failure now is the store's own
                    self._record(conn, [outcome], alone)
            self._merge(alone, into=done)
        return done

    def _merge(self, done: CollectReport, into: CollectReport | None = None) -> None:
        into = into or self.report
        into.processed.update(done.processed)
        into.suppressed.extend(done.suppressed)
        into.unsubscribed.extend(done.unsubscribed)
        into.entries += done.entries
        into.handled.extend(done.handled)

    def _record(self, conn: Connection, outcomes: list[Outcome], done: CollectReport) -> None:
        """Record these messages and apply their effects, in the caller's transaction; `done` collects what
        was done. The records go in with one INSERT; the digest is unique, so a message another collector has
        recorded meanwhile is not inserted, not returned, and not acted on twice."""
        now = utcnow()
        rows = [self._row(outcome, now) for outcome in outcomes]
        mine = mailbox.record_messages(self.store, conn, rows)
        entries: list[dict[str, Any]] = []
        for outcome, row in zip(outcomes, rows, strict=True):
            if outcome.digest not in mine:
                continue
            classified = outcome.classified
            detail = self._apply(conn, classified, outcome.digest, done, entries)
            if detail[:4000] != row["detail"]:
                mailbox.set_detail(conn, outcome.digest, detail[:4000])
            done.processed[classified.kind] += 1
            done.handled.append(Handled(outcome.item.uid, classified.kind, detail, outcome.folder))
        if entries:
            discussion.add_entries(conn, entries)

    def _row(self, outcome: Outcome, now: datetime) -> dict[str, Any]:
        classified = outcome.classified
        planned = _entry_detail(classified) if classified.kind == kinds.REPLY else classified.detail
        return {
            "mailbox": self.box.address.key,
            "uidvalidity": self.box.uidvalidity,
            "uid": outcome.item.uid,
            "digest": outcome.digest,
            "message_id": classified.message_id,
            "sender": classified.sender_email[:320],
            "subject": classified.subject,
            "kind": classified.kind,
            "detail": planned[:4000],
            "folder": outcome.folder,
            "processed_at": now,
        }

    def _apply(
        self, conn: Connection, classified: Classified, digest: str, done: CollectReport, entries: list[dict[str, Any]]
    ) -> str:
        """The effect of one message, in the transaction that records it; returns the detail to record. New
        discussion entries are added to `entries`, inserted together at the end of the transaction."""
        if classified.kind == kinds.REPLY:
            return self._add_entry(classified, digest, done, entries)
        if classified.kind == kinds.BOUNCE and classified.bounce is not None:
            now = utcnow()
            outcomes = []
            for bounced in classified.bounce.addresses:
                outcome = suppression.record_bounce(self.store, conn, self.settings, bounced, digest, now)
                if outcome == "suppressed":
                    done.suppressed.append(bounced.email)
                outcomes.append(f"{bounced.email}: {bounced.severity} {bounced.status} → {outcome}".replace("  ", " "))
            return "; ".join(outcomes)
        if classified.kind == kinds.COMPLAINT:
            return self._complaint(conn, classified, done)
        if classified.kind == kinds.UNSUBSCRIBE:
            return self._unsubscribe(conn, classified, done)
        return classified.detail

    def _add_entry(
        self, classified: Classified, digest: str, done: CollectReport, entries: list[dict[str, Any]]
    ) -> str:
        match, reply = classified.match, classified.reply
        assert match is not None and reply is not None
        name = classified.sender_name or self._names.get((match.audience, classified.sender_email), "")
        entries.append(
            discussion.pending_entry(
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
        )
        done.entries += 1
        return _entry_detail(classified)

    def _complaint(self, conn: Connection, classified: Classified, done: CollectReport) -> str:
        complaint = classified.complaint
        assert complaint is not None
        address, audiences = self._complainant(complaint.returned_message_id, complaint.returned_unsubscribe)
        address = address or next(iter(complaint.candidates), "")
        if not address:
            return f"{classified.detail}: no address in the report (redacted?): left for a person"
        if not complaint.suppresses:
            return f"{classified.detail} about {address}: not a complaint, nothing done"
        reason = f"complaint ({complaint.feedback_type}{', ' + complaint.user_agent if complaint.user_agent else ''})"
        if suppressions.suppress(self.store, conn, address, reason, suppressions.COMPLAINT):
            done.suppressed.append(address)
        listed = audiences or self._listing.get(address, [])
        done_in = self._unsubscribe_from(conn, address, listed, "complaint", done)
        return f"{classified.detail}: {address} suppressed; unsubscribed from {', '.join(done_in) or 'no audience'}"

    def _complainant(self, returned_id: str, list_unsubscribe: str) -> tuple[str, list[str]]:
        """(address, audiences) of the complained-about message: from the send ledger by its Message-ID, else
        from the signed unsubscribe token in its List-Unsubscribe header (both survive a redacted To)."""
        matches: list[LedgerMatch] = self.ledger_rows.matches([returned_id]) if returned_id else []
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

    def _unsubscribe(self, conn: Connection, classified: Classified, done: CollectReport) -> str:
        address = classified.sender_email
        if not address:
            return f"{classified.detail}: no sender address: left for a person"
        known = {a.id for a in self.content.audiences}
        named = classified.unsubscribe_audience
        audiences = [named] if named in known else self._listing.get(address, [])
        if not audiences:
            return f"{classified.detail}: {address} is on no subscriber list: nothing to do"
        done_in = self._unsubscribe_from(conn, address, audiences, "mailto", done)
        return f"{classified.detail}: {address} unsubscribed from {', '.join(done_in)}"

    def _unsubscribe_from(
        self, conn: Connection, address: str, audiences: list[str], method: str, done: CollectReport
    ) -> list[str]:
        for audience in audiences:
            if unsubscribes.record(self.store, audience, address, method, conn)[0]:
                done.unsubscribed.append(f"{address} ({audience})")
        return audiences

    # moving ---------------------------------------------------------------------------------------------

    def _queue(self, folder: str, uid: int) -> None:
        self._queued.setdefault(folder, UidSet()).add(uid)

    def _move_queued(self, *, everything: bool) -> None:
        """MOVE the queued messages: a folder whose set has reached MOVE_SET_CHARS, or all of them at the end."""
        for folder in list(self._queued):
            queued = self._queued[folder]
            if everything or queued.chars >= MOVE_SET_CHARS:
                del self._queued[folder]
                for part in queued.split(MOVE_SET_CHARS):
                    self._move(folder, part)

    def _move(self, folder: str, uids: UidSet) -> None:
        try:
            self.box.move(uids, folder)
        except (IMAPClientError, OSError) as exc:
            message = f"moving {len(uids)} messages to {folder} failed: {exc}; they stay and are moved next run"
            logger.error("%s: %s", self.report.mailbox, message)
            self.report.move_errors.append(message)
            return
        self.report.moved += len(uids)
        moved = uids.uids()
        for start in range(0, len(moved), MARK_CHUNK):
            self._mark_moved(moved[start : start + MARK_CHUNK])

    def _mark_moved(self, uids: list[int]) -> None:
        mailbox.mark_moved(self.store, self.box.address.key, self.box.uidvalidity, uids)


def collect_mailbox(settings: Settings, store: Store, *, content: Content | None = None) -> CollectReport:
    """Read BRIEFING_IMAP_URL once: act on every new message exactly once and file it by class."""
    content = content if content is not None else load_content(settings.content_dir).content
    with open_mailbox(settings) as box:
        return Collector(settings, store, box, content).run()
