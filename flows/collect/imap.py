"""The IMAP side of collecting: connect, select the folder, list and fetch messages, move them by class.

Built on IMAPClient. `imaps://` is TLS from the first byte; `imap://` upgrades with STARTTLS when the server offers
it, and a server that does not offer it gets no password unless it is on loopback (or `imap_starttls` is off).
Messages are fetched with `BODY.PEEK[]`, so reading one never marks it seen; a message leaves the folder only
through MOVE (or COPY + expunge of that one UID where the server lacks MOVE), after its outcome is recorded.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote, urlparse

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from flows.core.errors import CollectError
from flows.core.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_FOLDER = "INBOX"


@dataclass(frozen=True)
class ImapAddress:
    """Where the mailbox is, parsed from BRIEFING_IMAP_URL."""

    secure: bool
    host: str
    port: int
    username: str
    password: str
    folder: str

    @classmethod
    def parse(cls, url: str) -> ImapAddress:
        parsed = urlparse(url)
        secure = parsed.scheme == "imaps"
        folder = unquote(parsed.path.lstrip("/")) or DEFAULT_FOLDER
        return cls(
            secure=secure,
            host=parsed.hostname or "localhost",
            port=parsed.port or (993 if secure else 143),
            username=unquote(parsed.username or ""),
            password=unquote(parsed.password or ""),
            folder=folder,
        )

    @property
    def key(self) -> str:
        """The mailbox's identity in the store (no password): user@host:port/folder."""
        return f"{self.username}@{self.host}:{self.port}/{self.folder}"

    @property
    def display(self) -> str:
        return f"{'imaps' if self.secure else 'imap'}://{self.key}"

    @property
    def on_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


class UidSet:
    """UIDs as an IMAP sequence set of ranges: 1,2,3,7 is sent as `1:3,7`. A range only ever spans UIDs that were
    added, all of them, so a command never touches a message that was not meant; one MOVE carries thousands of
    UIDs within a short command line."""

    def __init__(self, uids: Iterable[int] = ()) -> None:
        self.ranges: list[list[int]] = []
        self.chars = 0  # length of the set as sent: `1:3,7`
        self.count = 0
        for uid in uids:
            self.add(uid)

    def add(self, uid: int) -> None:
        if self.ranges and uid == self.ranges[-1][1] + 1:
            last = self.ranges[-1]
            before = len(_range_text(last))
            last[1] = uid
            self.chars += len(_range_text(last)) - before
        else:
            self.chars += len(str(uid)) + (1 if self.ranges else 0)
            self.ranges.append([uid, uid])
        self.count += 1

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def __len__(self) -> int:
        return self.count

    def items(self) -> list[str]:
        """The ranges as IMAPClient takes them (it joins them with commas)."""
        return [_range_text(r) for r in self.ranges]

    def uids(self) -> list[int]:
        return [uid for first, last in self.ranges for uid in range(first, last + 1)]

    def split(self, max_chars: int) -> list[UidSet]:
        """The same UIDs as sets whose text is at most `max_chars` long (ranges are not cut)."""
        parts: list[UidSet] = []
        current = UidSet()
        for first, last in self.ranges:
            text = len(_range_text([first, last]))
            if current and current.chars + 1 + text > max_chars:
                parts.append(current)
                current = UidSet()
            current.chars += text + (1 if current.ranges else 0)
            current.ranges.append([first, last])
            current.count += last - first + 1
        if current:
            parts.append(current)
        return parts


def _range_text(span: list[int]) -> str:
    return str(span[0]) if span[0] == span[1] else f"{span[0]}:{span[1]}"


@dataclass(frozen=True)
class Fetched:
    uid: int
    raw: bytes
    internal_date: datetime | None


def tls_context(settings: Settings) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if settings.imap_ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(settings.imap_ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise CollectError(
                f"cannot load the CA file: {exc}", where=str(settings.imap_ca_file), hint="fix BRIEFING_IMAP_CA_FILE"
            ) from None
    return context


class Mailbox:
    """One logged-in IMAP connection with the folder to read selected (read-write)."""

    def __init__(self, client: IMAPClient, address: ImapAddress, uidvalidity: int) -> None:
        self.client = client
        self.address = address
        self.uidvalidity = uidvalidity
        self.can_move = client.has_capability("MOVE")
        self.delimiter = self._delimiter()
        self._folders: set[str] = set()

    def _delimiter(self) -> str:
        try:
            listed = self.client.list_folders(directory="", pattern=self.address.folder)
        except IMAPClientError:
            listed = []
        for _flags, delimiter, _name in listed:
            if delimiter:
                return delimiter.decode() if isinstance(delimiter, bytes) else str(delimiter)
        return "/"

    def uids(self) -> list[int]:
        """Every message in the folder, oldest first."""
        return sorted(int(uid) for uid in self.client.search(["ALL"]))

    def larger_than(self, octets: int) -> set[int]:
        """UIDs of the messages larger than `octets` (one SEARCH: the server knows every message's size)."""
        return {int(uid) for uid in self.client.search(["LARGER", octets])}

    def sizes(self, uids: list[int]) -> dict[int, int]:
        """RFC822.SIZE of these messages."""
        answer = self.client.fetch(uids, ["RFC822.SIZE"]) if uids else {}
        return {int(uid): int(data.get(b"RFC822.SIZE", 0)) for uid, data in answer.items()}

    def fetch(self, uids: list[int]) -> list[Fetched]:
        """Raw bytes of these messages without setting \\Seen; a UID expunged meanwhile is simply absent."""
        if not uids:
            return []
        answer = self.client.fetch(uids, ["BODY.PEEK[]", "INTERNALDATE"])
        fetched = []
        for uid in uids:
            data = answer.get(uid)
            if not data or b"BODY[]" not in data:
                logger.info("%s: UID %d is gone from the folder", self.address.display, uid)
                continue
            raw = data[b"BODY[]"]
            fetched.append(Fetched(uid, bytes(raw) if raw is not None else b"", data.get(b"INTERNALDATE")))
        return fetched

    def folder_for(self, name: str, prefix: str) -> str:
        return f"{prefix}{self.delimiter}{name}" if prefix else name

    def ensure_folder(self, folder: str) -> None:
        if folder in self._folders:
            return
        if not self.client.folder_exists(folder):
            logger.info("%s: creating folder %s", self.address.display, folder)
            try:
                self.client.create_folder(folder)
            except IMAPClientError:
                if not self.client.folder_exists(folder):  # another collector may have created it meanwhile
                    raise
        self._folders.add(folder)

    def move(self, uids: UidSet, folder: str) -> None:
        """Move these messages to `folder` (created when missing). Without MOVE: COPY, then flag and expunge
        exactly these UIDs (UIDPLUS), never the whole folder."""
        if not uids:
            return
        self.ensure_folder(folder)
        items = uids.items()
        if self.can_move:
            self.client.move(items, folder)
            return
        self.client.copy(items, folder)
        self.client.delete_messages(items, silent=True)  # silent: IMAPClient reads the answer by single UIDs
        if self.client.has_capability("UIDPLUS"):
            self.client.uid_expunge(items)
        else:
            logger.warning(
                "%s has neither MOVE nor UIDPLUS: copied messages are flagged \\Deleted but left for the mail "
                "client to expunge",
                self.address.host,
            )

    def close(self) -> None:
        try:
            self.client.logout()
        except (IMAPClientError, OSError):
            logger.debug("logout failed", exc_info=True)
            _shutdown(self.client)


def _connect(settings: Settings, address: ImapAddress) -> IMAPClient:
    context = tls_context(settings)
    try:
        client = IMAPClient(
            address.host, port=address.port, ssl=address.secure, ssl_context=context, timeout=settings.imap_timeout
        )
    except (OSError, IMAPClientError) as exc:
        raise CollectError(
            f"cannot connect to the IMAP server: {exc}", where=address.display, hint="check BRIEFING_IMAP_URL"
        ) from None
    try:
        if not address.secure and settings.imap_starttls:
            if client.has_capability("STARTTLS"):
                client.starttls(context)
            elif not address.on_loopback:
                raise CollectError(
                    "the IMAP server does not offer STARTTLS; refusing to send the password in clear text",
                    where=address.display,
                    hint="use an imaps:// URL, or set BRIEFING_IMAP_STARTTLS=false if the network is trusted",
                )
        client.login(address.username, address.password)
    except LoginError as exc:
        _shutdown(client)
        raise CollectError(
            f"IMAP login refused: {_text(exc)}",
            where=address.display,
            hint="check the user and password in BRIEFING_IMAP_URL",
        ) from None
    except (OSError, ssl.SSLError, IMAPClientError) as exc:
        _shutdown(client)
        raise CollectError(f"IMAP error while logging in: {exc}", where=address.display) from None
    except BaseException:
        _shutdown(client)
        raise
    return client


def _text(exc: Exception) -> str:
    return str(exc).removeprefix("b'").removesuffix("'") or type(exc).__name__


def _shutdown(client: IMAPClient) -> None:
    with suppress(OSError):
        client.shutdown()


@contextmanager
def open_mailbox(settings: Settings) -> Iterator[Mailbox]:
    """Log in and select the folder of BRIEFING_IMAP_URL; log out when done."""
    if not settings.imap_url:
        raise CollectError(
            "no mailbox to read: BRIEFING_IMAP_URL is empty",
            hint="set it to the mailbox that receives replies and bounces, e.g. imaps://user:pass@imap.example.org/INBOX",
        )
    address = ImapAddress.parse(settings.imap_url)
    client = _connect(settings, address)
    try:
        selected = client.select_folder(address.folder)
    except IMAPClientError as exc:
        _shutdown(client)
        raise CollectError(
            f"cannot open the folder {address.folder!r}: {exc}", where=address.display, hint="check the URL's path"
        ) from None
    mailbox = Mailbox(client, address, int(selected[b"UIDVALIDITY"]))
    try:
        yield mailbox
    finally:
        mailbox.close()
